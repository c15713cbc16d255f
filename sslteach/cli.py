"""Command line: ``python -m sslteach list`` and ``python -m sslteach train METHOD [options]``.

Every :class:`~sslteach.train.TrainConfig` field and every field of the method's configuration becomes a flag
(``lambda_u`` -> ``--lambda-u``), with the help text and range taken from the field's metadata.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields

from pathlib import Path

from .data import DATASETS, OFFLINE_DATASETS, SPLIT_KINDS
from .methods import METHODS
from .train import TrainConfig, resolve_options, train

TRAIN_HELP = {f.name: f for f in fields(TrainConfig)}


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


def _add_field(parser, f, dest_prefix=""):
    flag = "--" + f.name.replace("_", "-")
    m = f.metadata or {}
    default = f.default if f.default is not MISSING else None
    kind = type(default)
    helptext = m.get("help", "")
    rng = ""
    if m.get("low") is not None or m.get("high") is not None:
        rng = f" [{m.get('low', '')}, {m.get('high', '')}]"
    paper = f" (paper: {m['paper']})" if m.get("paper") is not None else ""
    kw = {"dest": dest_prefix + f.name, "default": None, "help": f"{helptext}{rng}{paper} (default: {default})"}
    if kind is bool:
        kw["type"] = _bool
        kw["metavar"] = "BOOL"
    elif kind in (int, float, str):
        kw["type"] = kind
    if m.get("choices"):
        kw["choices"] = m["choices"]
    parser.add_argument(flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sslteach", description="sslteach: semi-supervised learning, "
                                "one paper at a time.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the methods and datasets")
    tp = sub.add_parser("train", help="train one method and print a one-line result",
                        description="Train METHOD; every option below has a sensible default.")
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
    sp.add_argument("--imbalance-ratio", type=float, default=None, dest="imbalance_ratio",
                    help="long_tailed: gamma = N_max / N_min, labeled and unlabeled [1, inf) (default: 50)")
    sp.add_argument("--n-max", type=int, default=None, dest="n_max",
                    help="long_tailed: labeled images of the largest class (default: per dataset, digits 50)")
    sp.add_argument("--m-max", type=int, default=None, dest="m_max",
                    help="long_tailed: unlabeled images of the largest class (default: per dataset, digits 80)")
    sp.add_argument("--unlabeled-imbalance-ratio", type=float, default=None, dest="unlabeled_imbalance_ratio",
                    help="long_tailed: gamma of the unlabeled set (default: --imbalance-ratio)")
    sp.add_argument("--known-classes", type=_classes, default=None, dest="known_classes",
                    help="open_set: K (classes 0..K-1 are known) or a comma-separated list of classes (default: 6)")
    for name in ("steps", "seed", "device"):
        _add_field(tp, TRAIN_HELP[name])
    g = tp.add_argument_group("training loop")
    for f in fields(TrainConfig):
        if f.name not in ("steps", "seed", "device", "progress"):
            _add_field(g, f)
    tp.add_argument("--no-progress", action="store_true", help="no progress bar")
    owners: dict[str, list[str]] = {}
    for name, cls in METHODS.items():
        for f in fields(cls.Config):
            owners.setdefault(f.name, []).append(name)
    seen = set(TRAIN_HELP)
    for name, cls in METHODS.items():
        mfields = [f for f in fields(cls.Config) if f.name not in seen]
        if mfields:
            grp = tp.add_argument_group(f"{name} options")
            for f in mfields:
                if len(owners[f.name]) > 1:  # shared flag: each method keeps its own default
                    others = ", ".join(m for m in owners[f.name] if m != name)
                    grp.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                     type=_bool if isinstance(f.default, bool) else type(f.default),
                                     help=f"{f.metadata.get('help', '')} (also for {others}; default: the "
                                          f"method's own, {name}: {f.default})")
                else:
                    _add_field(grp, f)
                seen.add(f.name)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        print("methods:")
        for name, cls in METHODS.items():
            opts = ", ".join(f.name for f in fields(cls.Config))
            print(f"  {name:22s} {cls.summary}" + (f"  [options: {opts}]" if opts else ""))
        print("datasets:")
        for d in DATASETS:
            print(f"  {d:22s} {'offline' if d in OFFLINE_DATASETS else 'downloaded by torchvision'}")
        return 0
    if args.method not in METHODS:
        parser.exit(2, f"error: unknown method {args.method!r}; valid values: {', '.join(METHODS)}\n")
    method_fields = {f.name for f in fields(METHODS[args.method].Config)}
    split_flags = ("imbalance_ratio", "n_max", "m_max", "unlabeled_imbalance_ratio", "known_classes")
    given = {k: v for k, v in vars(args).items() if v is not None}
    options = {k: given[k] for k in TRAIN_HELP if k in given}
    options.update({k: given[k] for k in method_fields if k in given})
    options.update({k: given[k] for k in split_flags if k in given})
    other_method_flags = [k for k in given if k not in options and k not in
                          ("command", "method", "dataset", "labels_per_class", "out", "no_progress", "no_cache",
                           "split")]
    if other_method_flags:
        flags = ", ".join("--" + k.replace("_", "-") for k in other_method_flags)
        valid = ", ".join("--" + f.replace("_", "-") for f in sorted(method_fields)) or "none"
        parser.exit(2, f"error: {flags} not an option of method {args.method!r} (its options: {valid})\n")
    wrong_split = [k for k in split_flags if k in given and
                   k not in {"long_tailed": split_flags[:4], "open_set": ("known_classes",)}.get(args.split, ())]
    if wrong_split:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong_split)
        parser.exit(2, f"error: {flags} only apply to another --split (this run: --split {args.split})\n")
    if args.out:  # fail now, not after minutes of training
        out = Path(args.out)
        if not out.parent.is_dir():
            parser.exit(2, f"error: --out {args.out}: the folder {out.parent} does not exist; create it first\n")
        if out.is_dir():
            parser.exit(2, f"error: --out {args.out} is a folder; give a file name such as {out / 'result.json'}\n")
    options["progress"] = not args.no_progress
    _, _, _, applied = resolve_options(METHODS[args.method], args.dataset, options)
    if applied:
        print("defaults for this run (any flag overrides them): "
              + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in applied.items()))
    try:
        result = train(args.method, args.dataset, labels_per_class=args.labels_per_class, split=args.split,
                       cache=False if args.no_cache else None, **options)
    except (ValueError, RuntimeError) as e:
        parser.exit(2, f"error: {e}\n")
    print(result.summary())
    if result.per_class_accuracy and args.split != "balanced":
        print("per-class accuracy: " + " ".join(f"{v:.0%}" for v in result.per_class_accuracy))
    if args.out:
        result.save_json(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
