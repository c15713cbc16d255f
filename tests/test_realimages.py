"""Real images on a laptop (issue 17): the "real images" preset, the per-dataset defaults that make
``python -m sslteach train fixmatch --dataset fashion_mnist --labels-per-class 4`` use it, and a short run on the
real Fashion-MNIST files. The accuracy-against-time figures themselves are measured by ``make bench``
(benchmarks/RESULTS.md), not asserted here: they are minutes of training."""
from __future__ import annotations

import importlib
import os

import pytest

from sslteach import METHODS, compare, data, presets, train
from sslteach.cli import main
from sslteach.train import DATASET_DEFAULTS, resolve_options


def _need_fashion():
    if not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        why = f"{data.DEBIAN_FASHION_MNIST} is missing: sudo apt-get install dataset-fashion-mnist"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)


def test_the_real_images_preset():
    p = presets.get_preset("real_images")
    assert p.dataset == "fashion_mnist" and p.labels_per_class == 4
    assert {"supervised", "fixmatch"} <= set(p.methods) and set(p.methods) <= set(METHODS)
    assert set(p.method_options) <= set(p.methods)
    assert all(p.expected_seconds.get(m, 0) > 0 for m in p.methods), "every method's time is measured"
    opts = p.run_options("fixmatch")
    assert opts["dataset"] == "fashion_mnist" and opts["steps"] == p.steps and opts["mu"] == 3
    assert "mu" not in p.run_options("supervised")
    assert p.expected(["supervised"]) == p.expected_seconds["supervised"]
    assert p.as_dict()["methods"] == list(p.methods)
    with pytest.raises(ValueError, match="unknown preset 'nope'; valid values: real_images"):
        presets.get_preset("nope")


def test_fashion_mnist_defaults_follow_the_preset_and_any_option_overrides_them():
    p = presets.get_preset("real_images")
    tcfg, _, mcfg, applied = resolve_options(METHODS["fixmatch"], "fashion_mnist", {})
    assert tcfg == {"width": p.width, "batch_size": p.batch_size, "steps": p.steps, **p.train_options}
    assert mcfg == {"mu": 3, "dist_align": True} and p.train_options == {"cutout": 0.3, "eval_every": 500}
    assert applied == {**tcfg, **mcfg}
    tcfg, _, mcfg, applied = resolve_options(METHODS["fixmatch"], "fashion_mnist",
                                             {"mu": 7, "width": 32, "cutout": 0.5, "dist_align": False})
    assert tcfg["width"] == 32 and tcfg["cutout"] == 0.5 and mcfg == {"mu": 7, "dist_align": False}
    assert not {"mu", "width", "cutout", "dist_align"} & set(applied)
    _, _, mcfg, _ = resolve_options(METHODS["supervised"], "fashion_mnist", {})
    assert mcfg == {}  # FixMatch's knob is not given to another method
    assert "method_options" in DATASET_DEFAULTS["fashion_mnist"]


def test_a_method_object_keeps_its_own_knobs_on_fashion_mnist(monkeypatch):
    from sslteach.methods import get_method

    seen = {}

    def fake_fit(self):
        seen["mu"] = self.method.config.mu
        raise KeyboardInterrupt

    m = get_method("fixmatch", mu=5)
    _need_fashion()
    T = importlib.import_module("sslteach.train")
    monkeypatch.setattr(T.Trainer, "fit", fake_fit)
    with pytest.raises(KeyboardInterrupt):
        train(m, "fashion_mnist", labels_per_class=4, steps=2, progress=False, cache=False)
    assert seen["mu"] == 5


def test_cli_uses_and_prints_the_fashion_mnist_defaults(capsys, monkeypatch):
    _need_fashion()
    import sslteach.cli as cli

    captured = {}

    def fake_train(method, dataset, **kw):  # the real training, 2 steps: the real files, the preset's knobs
        captured.update(kw, method=method, dataset=dataset)
        captured["result"] = train(method, dataset, **{**kw, "steps": 2, "eval_every": 2})
        return captured["result"]

    monkeypatch.setattr(cli, "train", fake_train)
    assert main(["train", "fixmatch", "--dataset", "fashion_mnist", "--labels-per-class", "4", "--no-progress",
                 "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert ("defaults for this run (any flag overrides them): --width 16, --batch-size 16, --steps 4000, --cutout 0.3, "
            "--eval-every 500, --mu 3, --dist-align True") in out
    assert "mu" not in captured and "width" not in captured  # the defaults come from train(), not the CLI
    r = captured["result"]
    p = presets.get_preset("real_images")
    assert r.method_config["mu"] == 3 and r.method_config["dist_align"] is True
    assert r.train_config["width"] == p.width == 16 and r.train_config["cutout"] == 0.3
    assert r.train_config["batch_size"] == p.batch_size and r.history.records[-1]["step"] == 2


@pytest.mark.parametrize("name", ["03_fixmatch", "10_compare"])
def test_the_notebooks_take_the_preset_as_one_parameter(name):
    """The preset is one parameter of 03 and 10 (their quick-mode run under a preset was checked by hand with
    papermill; the suite runs them at their defaults). It must name a real preset and announce the time."""
    import nbformat

    from conftest import ROOT

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", 4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'preset: str = ""' in params.source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "presets.get_preset(preset)" in code and "Expected" in code
