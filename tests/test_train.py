"""The shared training loop: device choice, determinism, EMA, schedule, history, stopping early."""
import importlib
import json
import math

import pytest
import torch
import torch.nn as nn

import sslteach
from sslteach import EMA, TrainConfig, Trainer, balanced_split, train
from sslteach.train import cosine_lr_factor
from sslteach.utils import get_device, seed_everything


def test_device_auto_and_explicit(monkeypatch):
    assert get_device("cpu").type == "cpu"
    from sslteach import utils

    # "auto" is CUDA, then MPS, then the CPU, whatever this machine has: pretend each case
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(utils, "_mps_available", lambda: False)
    assert get_device("auto").type == "cpu"
    monkeypatch.setattr(utils, "_mps_available", lambda: True)
    assert get_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto").type == "cuda"
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda, mps"):
        get_device("tpu")


def test_cuda_requested_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' but no CUDA GPU"):
        train("supervised", steps=5, device="cuda", progress=False)


def test_seed_everything_sets_the_real_cudnn_flags():
    seed_everything(0)
    assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False


def test_same_seed_same_run_bit_for_bit():
    a = train("fixmatch", steps=30, eval_every=10, seed=4, progress=False)
    b = train("fixmatch", steps=30, eval_every=10, seed=4, progress=False)
    c = train("fixmatch", steps=30, eval_every=10, seed=5, progress=False)
    strip = lambda r: [{k: v for k, v in rec.items() if k != "time"} for rec in r.history.records]  # noqa: E731
    assert strip(a) == strip(b)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert strip(a) != strip(c)


def test_history_has_loss_terms_accuracy_and_time():
    r = train("fixmatch", steps=40, eval_every=20, progress=False)
    keys = r.history.keys()
    for k in ("step", "time", "lr", "loss", "loss_x", "loss_u", "mask_rate", "pseudo_acc", "test_acc",
              "test_acc_ema", "test_acc_report"):
        assert k in keys, k
    steps, accs = r.history.series("test_acc")
    assert steps == [20, 40] and all(0 <= a <= 1 for a in accs)
    assert r.history.records[-1]["final"] is True
    assert r.test_accuracy == r.history.last("test_acc_ema")


def test_ema_update_by_hand():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema = EMA(m, decay=0.9)
    with torch.no_grad():
        m.weight.fill_(3.0)
    a = ema.update(m)  # first update: a = min(0.9, 1 - 1/2) = 0.5
    assert a == 0.5 and ema.module.weight.item() == pytest.approx(0.5 * 1 + 0.5 * 3)
    for _ in range(20):
        a = ema.update(m)
    assert a == 0.9  # the warm-up cap is gone
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_cosine_schedule_matches_fixmatch():
    assert cosine_lr_factor(0, 100) == 1.0
    assert cosine_lr_factor(100, 100) == pytest.approx(math.cos(7 * math.pi / 16))
    r = train("supervised", steps=20, eval_every=10, lr=0.1, progress=False)
    assert r.history.records[0]["lr"] == pytest.approx(0.1 * cosine_lr_factor(10, 20))


@pytest.mark.parametrize("bad, match", [({"steps": 0}, "steps must be in"), ({"steps": -5}, "steps"),
                                        ({"lr": -1.0}, "lr"), ({"ema_decay": 1.5}, "ema_decay"),
                                        ({"batch_size": 0}, "batch_size"), ({"model": "vgg"}, "unknown model")])
def test_bad_train_config(bad, match):
    with pytest.raises(ValueError, match=match):
        train("supervised", progress=False, **bad)


def test_unknown_method_and_option():
    with pytest.raises(ValueError, match=r"unknown method 'fixmach'; valid values: .*fixmatch"):
        train("fixmach", steps=5)
    with pytest.raises(ValueError, match="unknown option for method 'supervised'"):
        train("supervised", steps=5, tau=0.9)


def test_callback_can_stop_and_history_is_kept():
    r = train("supervised", steps=500, eval_every=10, progress=False,
              callbacks={"on_eval": lambda tr, rec: "stop" if rec["step"] >= 30 else None})
    assert r.interrupted and r.steps_done == 30
    assert [rec["step"] for rec in r.history.records] == [10, 20, 30, 30]  # + the final evaluation
    assert 0 <= r.test_accuracy <= 1


def test_ctrl_c_keeps_model_and_history():
    def interrupt(trainer, logs):
        if trainer.step == 25:
            raise KeyboardInterrupt

    r = train("supervised", steps=500, eval_every=10, progress=False, callbacks={"on_step": interrupt})
    assert r.interrupted and r.steps_done == 25
    assert r.history.records[-1]["final"] and len(r.history) == 3  # evals at 10, 20 + final
    # the model returned is the one trained for 25 steps (its accuracy is the final record's), not a fresh one
    split = balanced_split("digits", 2, seed=0)
    assert sslteach.evaluate(r.model, split.x_test, split.y_test) == r.history.records[-1]["test_acc"]
    assert r.history.records[-1]["test_acc"] > 0.2


def test_stop_from_another_thread():
    import threading

    split = balanced_split("digits", 2, seed=0)
    trainer = Trainer(sslteach.get_method("supervised"), split, TrainConfig(steps=100_000, progress=False,
                                                                             eval_every=20))
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", trainer.fit()))
    th.start()
    while trainer.step < 50:
        th.join(0.01)
    trainer.stop()
    th.join(30)
    assert not th.is_alive() and box["r"].interrupted and 50 <= box["r"].steps_done < 100_000


def test_result_json(tmp_path):
    r = train("supervised", steps=20, eval_every=10, progress=False)
    r.save_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    for k in ("method", "dataset", "labels_per_class", "steps", "seed", "device", "test_accuracy", "wall_seconds",
              "history"):
        assert k in d
    assert d["labels_per_class"] == 2 and d["device"] == "cpu" and len(d["history"]) == 2


def test_two_moons_uses_the_mlp():
    r = train("supervised", "two_moons", labels_per_class=5, steps=200, progress=False)
    assert isinstance(r.model, sslteach.models.MLP) and r.test_accuracy > 0.7


@pytest.mark.slow
def test_supervised_baseline_learns_from_two_labels():
    """The baseline every claim compares against (claim scale, 500 steps): measured 73.8 / 69.8 / 73.6 %
    (mean 72.4 %). 10 % is chance; 20 labeled digits are enough for a clearly useful classifier."""
    from conftest import claim_runs, mean_accuracy

    assert mean_accuracy(claim_runs("supervised", steps=500)) > 0.6


# ----------------------------------------------------------------------------- every method, every time
SMOKE = dict(steps=8, eval_every=4, batch_size=8, progress=False, cache=False)
SMOKE_OPTIONS = {"noisy_student": {"rounds": 1}}


@pytest.mark.parametrize("name", sorted(sslteach.METHODS))
def test_every_method_is_deterministic_for_a_seed(name):
    """Same seed, same run (history, weights, the method's learned state); another seed, another run."""
    opts = {**SMOKE, **SMOKE_OPTIONS.get(name, {})}
    a = train(name, seed=3, **opts)
    b = train(name, seed=3, **opts)
    c = train(name, seed=4, **opts)
    strip = lambda r: [{k: v for k, v in rec.items() if k != "time"} for rec in r.history.records]  # noqa: E731
    assert strip(a) == strip(b)
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    sa, sb = a.method_obj.state_tensors(), b.method_obj.state_tensors()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert strip(a) != strip(c) or any(not torch.equal(x, y) for x, y in
                                       zip(a.model.state_dict().values(), c.model.state_dict().values()))


_CTRL_C = {"armed": False}  # module level: shared by the network and its EMA copy (a deepcopy)


class _CtrlCNet(torch.nn.Module):
    """A digits network that raises KeyboardInterrupt on its first forward in eval mode (an evaluation) once
    ``_CTRL_C["armed"]`` is set: Ctrl-C pressed while the loop evaluates."""

    def __init__(self):
        super().__init__()
        from sslteach.models import make_model

        self.net = make_model("auto", (1, 8, 8), 10, 0.0, 8)

    def forward(self, x):
        if _CTRL_C["armed"] and not self.training:
            _CTRL_C["armed"] = False
            raise KeyboardInterrupt
        return self.net(x)


def test_ctrl_c_during_an_evaluation_keeps_the_model_and_history():
    """Ctrl-C while the loop evaluates (inside its first prediction pass): the run ends cleanly with the history so
    far and the model trained until then; the final evaluation still runs."""

    def on_step(trainer, logs):
        if trainer.step == 20:  # the evaluation at step 20 will be interrupted
            _CTRL_C["armed"] = True

    _CTRL_C["armed"] = False
    r = train("supervised", steps=100, eval_every=10, progress=False, cache=False, network=_CtrlCNet(),
              callbacks={"on_step": on_step})
    assert r.interrupted and r.steps_done == 20
    assert [rec["step"] for rec in r.history.records] == [10, 20]  # the interrupted eval left no half record
    assert r.history.records[-1]["final"] and 0 <= r.test_accuracy <= 1


def test_a_second_ctrl_c_during_the_final_evaluation_still_returns():
    def on_step(trainer, logs):
        if trainer.step == 15:
            _CTRL_C["armed"] = True  # ... and the final evaluation is interrupted too
            raise KeyboardInterrupt

    _CTRL_C["armed"] = False
    r = train("supervised", steps=100, eval_every=10, progress=False, cache=False, network=_CtrlCNet(),
              callbacks={"on_step": on_step})
    assert r.interrupted and r.steps_done == 15 and r.model is not None
    assert r.test_accuracy == r.history.records[-1]["test_acc_report"]  # the last evaluation we have (step 10)


def test_ctrl_c_at_a_noisy_student_round_switch(monkeypatch):
    """Ctrl-C while the new teacher labels the unlabeled set (the slow moment of a round switch): the run returns
    with its rounds so far, and the model trained until then."""
    from sslteach.methods.noisy_student import NoisyStudent

    def interrupted_relabel(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(NoisyStudent, "relabel", interrupted_relabel)
    r = train("noisy_student", steps=40, rounds=1, eval_every=10, progress=False, cache=False)
    assert r.interrupted and r.steps_done == 20  # the teacher phase ended at step 20, then Ctrl-C
    rounds = r.extra["rounds"]
    assert rounds[0]["round"] == 0 and 0 <= rounds[0]["test_acc"] <= 1
    assert r.history.records[-1]["final"]


def test_results_carry_per_class_and_split_settings():
    r = train("supervised", steps=20, eval_every=10, progress=False, cache=False)
    assert len(r.per_class_accuracy) == 10 and r.split["kind"] == "balanced" and r.split["labels_per_class"] == 2
    assert r.balanced_accuracy == pytest.approx(sum(r.per_class_accuracy) / 10)
    lt = train("supervised", split="long_tailed", imbalance_ratio=10, steps=20, eval_every=10, progress=False,
               cache=False)
    assert lt.split["kind"] == "long_tailed" and lt.split["imbalance_ratio"] == 10
    assert {"test_acc_head", "test_acc_tail", "test_bal_acc"} <= set(lt.history.records[0])
    op = train("supervised", split="open_set", known_classes=6, labels_per_class=3, steps=20, eval_every=10,
               progress=False, cache=False)
    assert len(op.per_class_accuracy) == 6 and 0 <= op.auroc <= 1 and "test_auroc" in op.history.records[0]
    assert op.auroc == op.history.records[-1]["test_auroc"]


def test_open_set_auroc_is_computed_from_the_methods_outlier_score(monkeypatch):
    """AUROC = how well the method's score ranks the unknown test images (y = -1) above the known ones: a score
    that *is* the answer gives 1, its opposite 0."""
    from sslteach.data import make_split
    from sslteach.methods.supervised import Supervised

    split = make_split("digits", kind="open_set", known_classes=6, labels_per_class=2)
    order = {}

    def oracle(self, model, x):  # score 1 for an unknown image: look it up by its pixels
        key = {tuple(v.flatten().tolist()): int(y < 0) for v, y in zip(split.info["x_test_open"],
                                                                       split.info["y_test_open"])}
        return torch.tensor([float(key[tuple(v.flatten().tolist())]) for v in x]) * order["sign"]

    monkeypatch.setattr(Supervised, "outlier_scores", oracle)
    order["sign"] = 1.0
    assert train("supervised", split=split, steps=5, progress=False, cache=False).auroc == 1.0
    order["sign"] = -1.0
    assert train("supervised", split=split, steps=5, progress=False, cache=False).auroc == 0.0


def test_auroc_equals_scikit_learn():
    from sklearn.metrics import roc_auc_score

    from sslteach.evaluation import auroc

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        s = torch.randint(0, 6, (80,), generator=g).float()  # many ties
        y = torch.rand(80, generator=g) < 0.3
        assert auroc(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert auroc([0.1, 0.9], [False, True]) == 1.0 and auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([1.0, 2.0], [True, True]) != auroc([1.0, 2.0], [True, True])  # NaN: no negatives


def test_method_and_dataset_defaults_and_explicit_options(monkeypatch):
    train_mod = importlib.import_module("sslteach.train")
    from sslteach.methods.fixmatch import FixMatch

    r = train("supervised", steps=5, progress=False, cache=False)
    assert r.train_config["width"] == 16  # digits' default
    assert train("supervised", steps=5, width=8, progress=False, cache=False).train_config["width"] == 8
    monkeypatch.setattr(FixMatch, "train_defaults", {"width": 12, "steps": 7})
    r = train("fixmatch", progress=False, cache=False, eval_every=5)
    assert r.train_config["width"] == 12 and r.steps == 7  # the method's defaults beat the dataset's
    monkeypatch.setitem(train_mod.DATASET_DEFAULTS, "two_moons", {"steps": 9})
    assert train("supervised", "two_moons", labels_per_class=3, progress=False, cache=False).steps == 9


def test_the_optimizer_is_a_loop_setting():
    """``optimizer="adam"`` (CoSSL's official optimizer; the inversion author's script's) trains with Adam, SGD with
    Nesterov momentum stays the default; an unknown name is a one-line error."""
    spec = sslteach.prepare_run("supervised", steps=4, eval_every=2, optimizer="adam", lr=0.01, cache=False,
                                progress=False)
    trainer = spec.trainer()
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    sgd = sslteach.prepare_run("supervised", steps=2, cache=False, progress=False).trainer()
    sgd.setup()
    assert isinstance(sgd.optimizer, torch.optim.SGD) and sgd.optimizer.defaults["nesterov"]
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; valid values: sgd, adam"):
        train("supervised", steps=2, optimizer="rmsprop", cache=False)
