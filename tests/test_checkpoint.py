"""Checkpoints and ``--resume`` (issue 29): a run stopped after a checkpoint and resumed ends bit for bit like the
uninterrupted run on the CPU — history, weights and the method's learned state — for every method; a checkpoint
of another run, or a damaged one, is refused with a one-line error."""
from __future__ import annotations

import pytest
import torch

import sslteach
from sslteach import train
from sslteach.checkpoint import CheckpointError
from sslteach.cli import main

SPLIT = {"cossl": "long_tailed", "openmatch": "open_set"}
EXTRA = {"noisy_student": {"rounds": 1}, "openmatch": {"select_every": 3}}


def _opts(name, **kw):
    return {**dict(steps=16, eval_every=5, batch_size=8, width=8, progress=False, cache=False, seed=2,
                   split=SPLIT.get(name, "balanced"), **EXTRA.get(name, {})), **kw}


def _strip(r):
    return [{k: v for k, v in rec.items() if k != "time"} for rec in r.history.records]


@pytest.mark.parametrize("name", sorted(sslteach.METHODS))
def test_a_resumed_run_ends_bit_for_bit_like_an_uninterrupted_one(name, tmp_path):
    """16 steps; the second run writes a checkpoint every 7 steps and is stopped (Ctrl-C) at step 11; the third
    resumes from the checkpoint of step 7 (Noisy Student switches rounds at step 8, after the checkpoint)."""
    full = train(name, **_opts(name))
    ck = tmp_path / "run.ckpt"

    def ctrl_c(trainer, logs):
        if trainer.step == 11:
            raise KeyboardInterrupt

    part = train(name, checkpoint=str(ck), checkpoint_every=7, callbacks={"on_step": ctrl_c}, **_opts(name))
    assert part.interrupted and part.steps_done == 11 and ck.exists()
    res = train(name, checkpoint=str(ck), checkpoint_every=7, resume=True, **_opts(name))
    assert res.extra["resumed_from_step"] == 7  # the last checkpoint before the stop
    assert not res.interrupted and res.steps_done == 16
    assert _strip(res) == _strip(full)
    for a, b in zip(full.model.state_dict().values(), res.model.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = full.method_obj.state_tensors(), res.method_obj.state_tensors()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert res.test_accuracy == full.test_accuracy


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(tmp_path):
    ck = tmp_path / "run.ckpt"
    train("supervised", checkpoint=str(ck), checkpoint_every=4, **_opts("supervised", steps=8))
    with pytest.raises(CheckpointError, match="belongs to another run"):
        train("supervised", checkpoint=str(ck), resume=True, **_opts("supervised", steps=9))
    with pytest.raises(CheckpointError, match="belongs to another run"):
        train("fixmatch", checkpoint=str(ck), resume=True, **_opts("fixmatch", steps=8))
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read"):
        train("supervised", checkpoint=str(ck), resume=True, **_opts("supervised", steps=8))
    with pytest.raises(ValueError, match="need a checkpoint file"):
        train("supervised", checkpoint_every=4, **_opts("supervised", steps=8))


def test_resume_without_a_checkpoint_file_starts_from_scratch(tmp_path):
    r = train("supervised", checkpoint=str(tmp_path / "none.ckpt"), resume=True, **_opts("supervised", steps=6))
    assert r.steps_done == 6 and "resumed_from_step" not in r.extra


def test_the_command_line_checkpoints_and_resumes(tmp_path, capsys):
    ck = tmp_path / "cli.ckpt"
    args = ["train", "supervised", "--steps", "12", "--eval-every", "4", "--checkpoint", str(ck), "--no-progress",
            "--no-cache"]
    assert main(args + ["--checkpoint-every", "4"]) == 0 and ck.exists()
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(args + ["--resume"]) == 0  # a flag without a value means true
    again = capsys.readouterr().out.strip().splitlines()[-1]
    assert again.split(" after ")[0] == first.split(" after ")[0]  # the same accuracy (the seconds differ)
    with pytest.raises(SystemExit) as e:
        main(["train", "supervised", "--steps", "13", "--checkpoint", str(ck), "--resume", "--no-progress",
              "--no-cache"])
    assert e.value.code == 2 and "belongs to another run" in capsys.readouterr().err
