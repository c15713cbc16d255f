"""Command line: ``python -m sslteach list`` and ``python -m sslteach train METHOD [options]``.

Every :class:`~sslteach.train.TrainConfig` field, every split setting (:class:`~sslteach.data.SplitConfig`) and
every field of METHOD's configuration becomes a flag (``lambda_u`` -> ``--lambda-u``), with the help text and range
taken from the field's metadata. ``train METHOD --help`` lists the loop, split and data options and METHOD's own
options only.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from . import distributed
from .data import DATASETS, OFFLINE_DATASETS, SPLIT_KINDS, SplitConfig
from .methods import METHODS
from .train import TrainConfig, resolve_options, train

TRAIN_HELP = {f.name: f for f in fields(TrainConfig)}
SPLIT_FIELDS = {f.name: f for f in fields(SplitConfig) if f.name not in ("kind", "labels_per_class")}
#: Flags without a value (everything else takes exactly one).
_SWITCHES = ("--no-cache", "--no-progress", "-h", "--help")


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _classes(s: str):
    try:
        parts = [int(p) for p in s.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number K or a list like 0,1,2; got {s!r}") from None
    if not parts:
        raise argparse.ArgumentTypeError("expected a number K or a list like 0,1,2")
    return parts[0] if "," not in s else parts


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(parser, f):
    m = f.metadata or {}
    default = f.default if f.default is not MISSING else None
    kind = m.get("type") or type(default)
    rng = ""
    if m.get("low") is not None or m.get("high") is not None:
        rng = f" [{m.get('low', '')}, {m.get('high') if m.get('high') is not None else 'inf'}]"
    paper = f" (paper: {m['paper']})" if m.get("paper") is not None else ""
    kw = {"dest": f.name, "default": None, "help": f"{m.get('help', '')}{rng}{paper} (default: {default})"}
    if kind is bool:  # --flag alone means true; --flag false turns it off
        kw.update(type=_bool, metavar="BOOL", nargs="?", const=True)
    elif kind == "classes":
        kw["type"] = _classes
    elif kind in (int, float, str):
        kw["type"] = kind
    if m.get("choices"):
        kw["choices"] = m["choices"]
    parser.add_argument(_flag(f.name), **kw)


def _add_train_parser(sub, method: str | None):
    where = f"{method}'s own options at the end" if method else "then `train METHOD --help` for METHOD's own options"
    tp = sub.add_parser("train", help="train one method and print a one-line result",
                        description=f"Train METHOD; every option below has a sensible default ({where}).")
    tp.add_argument("method", help=f"one of: {', '.join(METHODS)}")
    tp.add_argument("--dataset", default="digits", help=f"one of: {', '.join(DATASETS)} (default: digits)")
    tp.add_argument("--labels-per-class", type=int, default=2, dest="labels_per_class",
                    help="labeled images per class (default: 2)")
    tp.add_argument("--out", default=None, help="write the result (with its history) to this JSON file")
    tp.add_argument("--no-cache", action="store_true",
                    help="train even if the run cache holds this run, and store nothing (the cache: $SSLTEACH_CACHE "
                         "or ~/.cache/sslteach/runs)")
    sp = tp.add_argument_group("split (labeled / unlabeled data)")
    sp.add_argument("--split", default="balanced", choices=SPLIT_KINDS,
                    help="balanced: --labels-per-class of every class; long_tailed: class sizes decay with "
                         "--imbalance-ratio (CoSSL); open_set: unlabeled data also holds unknown classes (OpenMatch) "
                         "(default: balanced)")
    for f in SPLIT_FIELDS.values():
        _add_field(sp, f)
    for name in ("steps", "seed", "device"):
        _add_field(tp, TRAIN_HELP[name])
    g = tp.add_argument_group("training loop")
    for f in fields(TrainConfig):
        if f.name not in ("steps", "seed", "device", "progress"):
            _add_field(g, f)
    tp.add_argument("--no-progress", action="store_true", help="no progress bar")
    if method in METHODS:
        mfields = [f for f in fields(METHODS[method].Config) if f.name not in TRAIN_HELP]
        if mfields:
            grp = tp.add_argument_group(f"{method} options")
            for f in mfields:
                _add_field(grp, f)
    return tp


def _add_claims_parser(sub):
    cp = sub.add_parser("claims", help="the papers' claims: list them, or rerun one (or all) and print the verdict",
                        description="Without arguments: list the claims (id, paper, regime, estimated time). "
                                    "`claims run ID` reruns one claim through the run cache and prints its verdict.")
    cp.add_argument("action", nargs="?", default="list", choices=("list", "run"))
    cp.add_argument("claim", nargs="?", default=None, help="a claim id (see `claims`)")
    cp.add_argument("--all", action="store_true", help="run every claim")
    cp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (labeled sets) (default: 0 1 2)")
    cp.add_argument("--scale", default="notebook", choices=("notebook", "test", "quick"),
                    help="the notebook's regime (default), the test suite's smaller one, or a seconds-long smoke test")
    cp.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    cp.add_argument("--out", default=None, help="write the runs, the numbers and the verdicts to this JSON file")
    cp.add_argument("--markdown", default=None, help="write the table of CLAIMS.md to this file")
    cp.add_argument("--no-cache", action="store_true", help="train every run again, store nothing")
    cp.add_argument("--jobs", type=int, default=1,
                    help="worker processes that train the claims' runs side by side into the run cache (1-16; "
                         "2 on a 2-core machine: each worker one thread); the verdicts are then read from the cache")


def build_parser(method: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``method``, ``train`` knows that method's own options (and no other method's)."""
    p = argparse.ArgumentParser(prog="python -m sslteach", description="sslteach: semi-supervised learning, "
                                "one paper at a time.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the methods and datasets")
    _add_train_parser(sub, method)
    _add_claims_parser(sub)
    from .lecture import add_prepare_parser  # `prepare NOTEBOOK`: the lecturer's warm-up (sslteach/lecture.py)

    add_prepare_parser(sub)
    return p


def method_in(argv: list[str]) -> str | None:
    """The METHOD of ``train METHOD ...`` (options may come before it), or ``None``."""
    if not argv or argv[0] != "train":
        return None
    rest = iter(argv[1:])
    for tok in rest:
        if tok.startswith("-"):
            if tok not in _SWITCHES and "=" not in tok:
                next(rest, None)  # the flag's value
            continue
        return tok
    return None


def _list() -> int:
    print("methods:")
    for name, cls in METHODS.items():
        opts = ", ".join(f.name for f in fields(cls.Config))
        print(f"  {name:22s} {cls.summary}" + (f"  [options: {opts}]" if opts else ""))
    print("datasets:")
    for d in DATASETS:
        print(f"  {d:22s} {'offline' if d in OFFLINE_DATASETS else 'downloaded by torchvision'}")
    return 0


def _check_flags(parser, args, unknown: list[str]) -> None:
    """One-line errors for flags of another method and split settings of another split kind."""
    if unknown:
        owners = {_flag(f.name): n for n, c in METHODS.items() for f in fields(c.Config)}
        mine = sorted(_flag(f.name) for f in fields(METHODS[args.method].Config))
        theirs = [t.split("=")[0] for t in unknown if t.split("=")[0] in owners]
        if theirs:
            parser.exit(2, f"error: {', '.join(theirs)} not an option of method {args.method!r} (its options: "
                           f"{', '.join(mine) or 'none'})\n")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    wrong = [k for k, f in SPLIT_FIELDS.items() if getattr(args, k) is not None and args.split not in
             f.metadata["splits"]]
    if wrong:
        parser.exit(2, f"error: {', '.join(_flag(k) for k in wrong)} only apply to another --split (this run: "
                       f"--split {args.split})\n")
    if args.out:  # fail now, not after minutes of training
        out = Path(args.out)
        if not out.parent.is_dir():
            parser.exit(2, f"error: --out {args.out}: the folder {out.parent} does not exist; create it first\n")
        if out.is_dir():
            parser.exit(2, f"error: --out {args.out} is a folder; give a file name such as {out / 'result.json'}\n")


def _train(parser, args) -> int:
    method_fields = {f.name for f in fields(METHODS[args.method].Config)}
    given = {k: v for k, v in vars(args).items() if v is not None}
    options = {k: given[k] for k in (*TRAIN_HELP, *method_fields, *SPLIT_FIELDS) if k in given}
    options["progress"] = not args.no_progress
    _, _, _, applied = resolve_options(METHODS[args.method], args.dataset, options)
    if applied and distributed.is_main():
        print("defaults for this run (any flag overrides them): "
              + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in applied.items()))
    try:
        result = train(args.method, args.dataset, labels_per_class=args.labels_per_class, split=args.split,
                       cache=False if args.no_cache else None, **options)
    except (ValueError, RuntimeError) as e:
        parser.exit(2, f"error: {e}\n")
    if result is None or not distributed.is_main():  # torchrun: rank 0 reports for every rank
        return 0
    print(result.summary())
    if result.per_class_accuracy and args.split != "balanced":
        print("per-class accuracy: " + " ".join(f"{v:.0%}" for v in result.per_class_accuracy))
    if args.out:
        result.save_json(args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    method = method_in(argv)
    parser = build_parser(method)
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("list", "claims") and unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "list":
        return _list()
    if args.command == "claims":
        from .claims.cli import claims_command

        return claims_command(parser, args)
    if args.command == "prepare":
        from .lecture import prepare_command

        return prepare_command(parser, args, unknown)
    if args.method not in METHODS:
        parser.exit(2, f"error: unknown method {args.method!r}; valid values: {', '.join(METHODS)}\n")
    _check_flags(parser, args, unknown)
    return _train(parser, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
