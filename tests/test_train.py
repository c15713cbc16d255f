"""The shared training loop: device choice, determinism, EMA, schedule, history, stopping early."""
import json
import math

import pytest
import torch
import torch.nn as nn

import sslteach
from sslteach import EMA, TrainConfig, Trainer, balanced_split, train
from sslteach.train import cosine_lr_factor
from sslteach.utils import get_device, seed_everything


def test_device_auto_and_explicit():
    assert get_device("cpu").type == "cpu"
    auto = get_device("auto").type
    assert auto == ("cuda" if torch.cuda.is_available() else auto)
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda, mps"):
        get_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_requested_without_gpu_is_a_clear_error():
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
def test_supervised_baseline_learns_from_two_labels(baseline_digits_2):
    from conftest import mean_accuracy

    # 10% is chance; 20 labeled digits are enough for a clearly useful classifier
    assert mean_accuracy(baseline_digits_2) > 0.6
    assert all(r.wall_seconds < 60 for r in baseline_digits_2)
