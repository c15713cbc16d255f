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
