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


def _train_claim(cid: str, seeds, scale: str, device: str, threads: int) -> tuple[str, float]:
    """In a worker process: run one claim (its runs land in the run cache); returns its seconds."""
    import torch

    torch.set_num_threads(threads)
    t = time.perf_counter()
    run(cid, seeds=seeds, scale=scale, device=device)
    return cid, time.perf_counter() - t


def _warm(targets: list, args) -> None:
    """Train every claim's runs in ``args.jobs`` processes (spawned: no state shared but the run cache, whose file
    locks let a run two claims share be trained once); the caller then judges each claim from the cache."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        todo = [pool.submit(_train_claim, cid, args.seeds, args.scale, args.device, threads) for cid in targets]
        for done in as_completed(todo):
            cid, secs = done.result()
            print(f"trained {cid} ({secs:.0f} s)", flush=True)


def claims_command(parser, args) -> int:
    if args.action == "list" and not args.all:
        return _list(args)
    if (args.claim is None) == (not args.all):
        parser.exit(2, "error: claims run needs a claim id or --all (not both); `python -m sslteach claims` lists "
                       "them\n")
    for path in (args.out, args.markdown):
        if path and not Path(path).expanduser().parent.is_dir():
            parser.exit(2, f"error: the folder of {path} does not exist; create it first\n")
    if not 1 <= args.jobs <= 16:
        parser.exit(2, f"error: --jobs must be between 1 and 16, got {args.jobs}\n")
    if args.jobs > 1 and args.no_cache:
        parser.exit(2, "error: --jobs > 1 trains into the run cache; it cannot be combined with --no-cache\n")
    try:
        targets = [c.id for c in CLAIMS] if args.all else [get(args.claim).id]
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    load, t0, results = os.getloadavg()[0], time.perf_counter(), []
    if args.jobs > 1 and len(targets) > 1:
        _warm(targets, args)
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
