"""``python -m sslteach claims``: list the claims, rerun one or all, print the verdicts, write JSON and CLAIMS.md."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import CLAIMS, estimate, get, regime_for, run


def _list(args) -> int:
    print(f"{len(CLAIMS)} claims (`python -m sslteach claims run ID` reruns one; --all every one):")
    for c in CLAIMS:
        est = estimate(c.id, args.seeds, args.scale, cache=False if args.no_cache else None)
        t = est["seconds_2_cores"]
        when = (f"~{t:.0f} s on 2 cores" if t == t else "no estimate off digits") + \
               (f", {est['cached']} of {est['runs']} runs cached" if est["cached"] else f", {est['runs']} runs")
        print(f"  {c.id:42s} {c.paper} - {regime_for(c, args.scale).describe()} ({when})")
    return 0


def claims_command(parser, args) -> int:
    if args.action == "list" and not args.all:
        return _list(args)
    if (args.claim is None) == (not args.all):
        parser.exit(2, "error: claims run needs a claim id or --all (not both); `python -m sslteach claims` lists "
                       "them\n")
    for path in (args.out, args.markdown):
        if path and not Path(path).expanduser().parent.is_dir():
            parser.exit(2, f"error: the folder of {path} does not exist; create it first\n")
    try:
        targets = [c.id for c in CLAIMS] if args.all else [get(args.claim).id]
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    load, t0, results = os.getloadavg()[0], time.perf_counter(), []
    for cid in targets:
        r = run(cid, seeds=args.seeds, scale=args.scale, cache=False if args.no_cache else None, device=args.device)
        results.append(r)
        print(r.sentence(), f"({r.seconds:.0f} s, {r.cached} run(s) from the cache)", flush=True)
    wall = time.perf_counter() - t0
    print(f"{len(results)} claim(s) in {wall:.0f} s: " + ", ".join(
        f"{sum(r.verdict.status == s for r in results)} {s}" for s in ("holds", "mixed", "does not hold")))
    if args.out:
        Path(args.out).write_text(json.dumps({"seconds": wall, "load_average": load,
                                              "claims": [r.to_dict() for r in results]}, indent=1, default=str))
        print(f"wrote {args.out}")
    if args.markdown:
        from .report import markdown

        Path(args.markdown).write_text(markdown(results, wall, load))
        print(f"wrote {args.markdown}")
    return 0
