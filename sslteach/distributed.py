"""Training one model on several processes (``torchrun``), with the same loop as one process.

``torchrun --nproc_per_node=N -m sslteach train METHOD ...`` starts N processes; each reads its rank from the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), and :class:`~sslteach.loop.Trainer` then:

* splits the **global batch** over the ranks: every rank draws the same global indices (the samplers share the
  run's seed) and takes its own contiguous slice, so the labeled split and the batches are those of the one-process
  run; each rank has its own augmentation stream (rank 0 keeps the one-process stream);
* averages the **gradients** over the ranks after every backward pass (:func:`average_gradients`, one coalesced
  all-reduce), so every rank applies the same update and holds bit-identical weights;
* computes **BatchNorm** statistics over the global batch (:class:`GlobalBatchNorm`, which replaces every BatchNorm
  layer when ``sync_bn`` is on, the default: then a step normalises the images as the one-process run does);
* keeps every other piece of per-run state identical: EMA copies and teachers follow identical weights; a method
  that updates state from its batch (a memory bank, per-image targets, threshold statistics) first gathers the
  batch from every rank (``ctx.gather``); whole-dataset passes (relabelling, re-selection, a feature bank) run on
  every rank on identical models.

Rank 0 alone evaluates, prints progress, and writes ``--out``, checkpoints and the run cache; the other ranks wait
for it at the end. A rank that fails, or Ctrl-C, ends every rank with a one-line error and nothing stored.

Why not ``torch.nn.parallel.DistributedDataParallel``: a method calls parts of its network directly
(``model.forward_open``, ``model.encode``, its heads), which DDP's wrapper does not see, and averaging the gradients
after ``backward`` is what DDP does. And torch's ``SyncBatchNorm`` refuses CPU tensors, where the tests run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


class DistributedError(RuntimeError):
    """A multi-process run that cannot go on (another rank failed, a collective timed out, Ctrl-C)."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place in a ``torchrun`` job (one process: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_type: str = "cpu") -> Ranks:
    """Join the process group of a ``torchrun`` job (``nccl`` on CUDA, ``gloo`` elsewhere); a no-op in one process
    or when already joined."""
    r = ranks()
    if r.active and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(r.local_rank)
        dist.init_process_group(backend)
        _stop_on_sigterm()
    return r


def _stop_on_sigterm() -> None:
    """torchrun ends the other ranks with SIGTERM when one fails (and on Ctrl-C): turn it into a clean stop, so
    each rank says why in one line instead of dying silently."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def is_main() -> bool:
    return ranks().main


def barrier() -> None:
    if ranks().active and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank."""
    if not (ranks().active and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(t: torch.Tensor) -> torch.Tensor:
    """The tensors of every rank concatenated along dim 0, in rank order (one process: ``t`` itself). For state
    updates (no gradient)."""
    if not (ranks().active and dist.is_initialized()):
        return t
    t = t.detach().contiguous()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return torch.cat(out)


def average_gradients(params) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one all-reduce of a flat buffer)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or not (ranks().active and dist.is_initialized()):
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    i = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[i: i + n].view_as(g))
        i += n


def broadcast_parameters(module: nn.Module) -> None:
    """Rank 0's weights and buffers on every rank (they start equal from the seed; this makes sure)."""
    if not (ranks().active and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


class _AllReduceSum(torch.autograd.Function):
    """The sum over the ranks, with its gradient: the gradient of every rank's loss with respect to the sum flows
    back to every rank's summands (the all-reduce of the incoming gradients)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        g = grad.clone()
        dist.all_reduce(g)
        return g


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch: each rank's sums and sums of squares
    are all-reduced (with their gradient), so a multi-process step normalises as the
    one-process step over the whole batch. In eval mode, or in one process, it is the usual BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x):
        if not (self.training and ranks().active and dist.is_initialized()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[-1]
        mean, sq = stats[:c] / n, stats[c: 2 * c] / n
        var = (sq - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``module`` as a :class:`GlobalBatchNorm` with the same weights and statistics."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module
