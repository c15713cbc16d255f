"""What ``tests/test_distributed.py`` runs under ``torchrun`` (each process writes its own JSON lines).

    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py MODE OUT [METHOD ...]

* ``weights``: a short run of each method; per rank, a digest of the trained weights and of the method's state;
* ``first_step``: one optimizer step on the first global batch with views that are the images themselves (so one
  process and two see the same inputs), with and without ``sync_bn``; per rank, the weights after the step;
* ``kill``: FixMatch, rank 1 dies at step 5; the other ranks report the one-line error they get;
* ``accuracy``: one short FixMatch run; the test accuracy (rank 0).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import torch

from sslteach import prepare_run, train
from sslteach.augment import Augmenter
from sslteach.distributed import DistributedError

SPLIT = {"cossl": "long_tailed", "openmatch": "open_set"}
EXTRA = {"noisy_student": {"rounds": 1}, "openmatch": {"select_every": 3, "fix_start": 0.3}}


class Ready(Augmenter):
    def weak(self, x):
        return x

    def strong(self, x):
        return x


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def weights(out, names):
    rows = []
    for name in names:
        r = train(name, steps=12, eval_every=6, batch_size=8, width=8, progress=False, cache=False, seed=1,
                  split=SPLIT.get(name, "balanced"), **EXTRA.get(name, {}))
        state = r.method_obj.state_tensors()
        rows.append({"method": name, "weights": digest(r.model.state_dict().values()),
                     "state": digest(state[k] for k in sorted(state)), "accuracy": r.test_accuracy})
    return rows


def first_step(out, names):
    rows = []
    for name in names:
        for sync in (True, False):
            trainer = prepare_run(name, steps=10, batch_size=8, width=8, progress=False, cache=False, seed=3,
                                  sync_bn=sync).trainer()
            trainer.setup()
            trainer.ctx.aug = Ready("image")
            trainer.train_step(trainer.next_batch())
            rows.append({"method": name, "sync_bn": sync,
                         "weights": {k: v.tolist() for k, v in trainer.model.state_dict().items()
                                     if v.dtype.is_floating_point}})
    return rows


def kill(out, names):
    rank = int(os.environ.get("RANK", "0"))

    def die(trainer, logs):
        if rank == 1 and trainer.step == 5:
            os._exit(3)

    try:
        train("fixmatch", steps=40, eval_every=10, batch_size=8, width=8, progress=False, cache=names[0],
              callbacks={"on_step": die})
    except DistributedError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return [{"error": str(e)}]
    return [{"finished": True}]


def accuracy(out, names):
    r = train("fixmatch", steps=300, eval_every=100, batch_size=16, width=16, mu=4, progress=False, cache=False,
              seed=0)
    return [{"accuracy": r.test_accuracy}]


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    rows = {"weights": weights, "first_step": first_step, "kill": kill, "accuracy": accuracy}[mode](out, names)
    with open(f"{out}.rank{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump(rows, f)
