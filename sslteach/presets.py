"""Presets: one name that sets a dataset, a label budget and loop settings sized for a CPU, so that a notebook
(``preset = "real_images"`` in 03 and 10) or the command line runs a documented experiment without a dozen knobs.

Every number here was measured (see ``benchmarks/RESULTS.md``: machine, torch version, date, 3 seeds). The expected
time is announced before a preset's runs start; it is for 2 idle CPU cores and shrinks on a GPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .utils import check_choice


@dataclass(frozen=True)
class Preset:
    dataset: str
    labels_per_class: int
    steps: int
    width: int
    batch_size: int
    methods: tuple = ("supervised", "fixmatch")
    #: per-method knobs, e.g. ``{"fixmatch": {"mu": 3}}`` (the paper's value stays recorded in the method's Config)
    method_options: dict = field(default_factory=dict)
    #: measured seconds of one run of each method on 2 idle CPU cores (``benchmarks/RESULTS.md``)
    expected_seconds: dict = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        return d

    def run_options(self, method: str) -> dict:
        """``train(...)`` keyword arguments of this preset for ``method`` (dataset and label budget included)."""
        return dict(dataset=self.dataset, labels_per_class=self.labels_per_class, steps=self.steps,
                    width=self.width, batch_size=self.batch_size, **self.method_options.get(method, {}))

    def expected(self, methods=None) -> float:
        """Expected seconds for one run of each of ``methods`` (default: the preset's) on 2 idle CPU cores."""
        return float(sum(self.expected_seconds.get(m, 0.0) for m in (methods or self.methods)))


PRESETS: dict[str, Preset] = {
    # Fashion-MNIST, 4 labels per class (40 labeled images), issue 17. The settings of the measured curve in
    # benchmarks/RESULTS.md: small CNN of width 16, B = 16, FixMatch with mu = 3 (paper: 7; halves the step).
    "real_images": Preset(
        dataset="fashion_mnist", labels_per_class=4, steps=1000, width=16, batch_size=16,
        methods=("supervised", "fixmatch", "mean_teacher"),
        method_options={"fixmatch": {"mu": 3}, "mean_teacher": {"mu": 3}},
        # 2 idle cores (AMD EPYC), 2 threads, 2026-11-24: FixMatch 70.1 % vs supervised 63.9 % (3 seeds). With one
        # thread beside another job, on the earlier dev machine: 163 / 42 / 145 s (70.8 % vs 65.3 %)
        expected_seconds={"supervised": 13.0, "fixmatch": 38.0, "mean_teacher": 37.0},
        note="Fashion-MNIST (28x28 clothes, offline from the Debian package dataset-fashion-mnist), 40 labels",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a one-line error lists the valid names."""
    check_choice("preset", name, PRESETS)
    return PRESETS[name]
