"""Small fakes for testing one method step by hand: a linear net that keeps its logits (with their gradient), an
augmenter that counts its calls, and a batch/context built from the first digits."""
import torch
import torch.nn as nn

from sslteach.augment import Augmenter
from sslteach.train import Batch, Context


class RecordingNet(nn.Module):
    """A tiny linear net that keeps its last input and logits (with their gradient). Returns (logits, features)."""

    def __init__(self, in_dim=64, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)
        self.dropout = nn.Dropout(0.0)
        self.inputs = self.logits = None

    def forward(self, x):
        self.inputs = x
        logits = self.fc(self.dropout(x.flatten(1)))
        if logits.requires_grad:
            logits.retain_grad()
        self.logits = logits
        return logits, x.flatten(1)


class CountingAug(Augmenter):
    """The image augmenter, counting how often each view is asked for."""

    def __init__(self):
        super().__init__("image")
        self.calls = {"weak": 0, "strong": 0}

    def weak(self, x):
        self.calls["weak"] += 1
        return super().weak(x)

    def strong(self, x):
        self.calls["strong"] += 1
        return super().strong(x)


def batch_and_ctx(digits, b=4, mu=3, step=0, total=10, aug=None):
    """``b`` labeled and ``mu * b`` unlabeled digits (with their positions), and a CPU context at ``step``/``total``."""
    x = digits.x_train
    batch = Batch(x[:b], digits.y_train[:b], x[b: b + mu * b], digits.y_train[b: b + mu * b],
                  idx_ulb=torch.arange(mu * b))
    ctx = Context(aug or Augmenter("image"), step, total, torch.device("cpu"), 10, mu * b)
    return batch, ctx


class TaggedAug(Augmenter):
    """A deterministic augmenter whose every call returns a *different*, recognisable view: call k of ``weak``
    adds ``0.01 k`` to the images, call k of ``strong`` scales them by 0.5 and adds ``0.02 k``. Every view handed
    out is kept in ``views`` as ``(kind, tensor)``, so a test can tell which view went where."""

    def __init__(self):
        super().__init__("image")
        self.views: list[tuple[str, torch.Tensor]] = []
        self.calls = {"weak": 0, "strong": 0}

    def weak(self, x):
        self.calls["weak"] += 1
        v = x + 0.01 * self.calls["weak"]
        self.views.append(("weak", v))
        return v

    def strong(self, x):
        self.calls["strong"] += 1
        v = 0.5 * x + 0.02 * self.calls["strong"]
        self.views.append(("strong", v))
        return v


def shuffled_batch_and_ctx(digits, b=4, mu=3, step=0, total=10, aug=None, num_unlabeled=40, seed=0):
    """Like :func:`batch_and_ctx`, but the unlabeled images are a *shuffled, non-contiguous* draw from a set of
    ``num_unlabeled`` (so an image's position in the batch is not its index in the set), and the labeled images
    have shuffled bank positions too."""
    g = torch.Generator().manual_seed(seed)
    x, y = digits.x_train, digits.y_train
    idx_ulb = torch.randperm(num_unlabeled, generator=g)[: mu * b]
    idx_lb = torch.randperm(b, generator=g)
    base = 100  # the unlabeled set is x[100: 100 + num_unlabeled]
    batch = Batch(x[idx_lb], y[idx_lb], x[base + idx_ulb], y[base + idx_ulb], idx_ulb=idx_ulb, idx_lb=idx_lb)
    ctx = Context(aug or Augmenter("image"), step, total, torch.device("cpu"), 10, num_unlabeled)
    return batch, ctx
