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


# ----------------------------------------------------------------------------- BatchNorm, passes, gradients (issue 25)
class Call:
    """One forward pass of a :class:`BNRecordingNet`: its input (a copy), whether the net was in training mode and
    gradients were on, the BatchNorm running statistics *before* the pass, and its outputs (with their graph)."""

    def __init__(self, x, training, grad, running, logits, feats):
        self.x, self.training, self.grad, self.running = x, training, grad, running
        self.logits, self.feats = logits, feats


class BNRecordingNet(nn.Module):
    """A tiny network *with BatchNorm* (as the usual small CNN has): ``features = tanh(BN(W x))`` ``[N, d]``,
    ``logits = head(features)``; returns ``(logits, features)`` and has ``feature_dim``. Every pass is kept in
    ``calls`` (:class:`Call`), so a test can check how many passes a step made, on which images, in which BatchNorm
    mode and with or without gradient. Logits and features of a pass with gradient keep their ``.grad``
    (``retain_grad``). A deep copy (an EMA teacher) starts with an empty record."""

    def __init__(self, in_dim=64, d=8, num_classes=10, momentum=0.1):
        super().__init__()
        self.body = nn.Linear(in_dim, d)
        self.bn = nn.BatchNorm1d(d, momentum=momentum)
        self.head = nn.Linear(d, num_classes)
        self.feature_dim = d
        self.calls: list[Call] = []

    def __getstate__(self):  # deepcopy: an EMA copy gets its own, empty record
        state = dict(self.__dict__)
        state["calls"] = []
        return state

    def forward(self, x):
        running = (self.bn.running_mean.clone(), self.bn.running_var.clone())
        feats = torch.tanh(self.bn(self.body(x.flatten(1))))
        logits = self.head(feats)
        if logits.requires_grad:
            logits.retain_grad()
            feats.retain_grad()
        self.calls.append(Call(x.detach().clone(), self.training, torch.is_grad_enabled(), running, logits, feats))
        return logits, feats

    def features_by_hand(self, x, train: bool, running=None):
        """The features recomputed from the weights alone: BatchNorm with the batch's own statistics
        (``train=True``) or with ``running = (mean, var)`` (default: the current running statistics)."""
        h = x.flatten(1) @ self.body.weight.T + self.body.bias
        if train:
            mean, var = h.mean(0), h.var(0, unbiased=False)
        else:
            mean, var = running if running is not None else (self.bn.running_mean, self.bn.running_var)
        h = (h - mean) / torch.sqrt(var + self.bn.eps) * self.bn.weight + self.bn.bias
        return torch.tanh(h)

    def logits_by_hand(self, x, train: bool, running=None):
        f = self.features_by_hand(x, train, running)
        return f @ self.head.weight.T + self.head.bias, f


def bn_running_after(running, h, momentum=0.1):
    """BatchNorm's running statistics after one training-mode pass over pre-activations ``h`` ``[N, d]`` (unbiased
    variance, as PyTorch keeps it)."""
    mean, var = running
    return ((1 - momentum) * mean + momentum * h.mean(0), (1 - momentum) * var + momentum * h.var(0, unbiased=True))


def grads(loss, params):
    """d loss / d p for every parameter (zeros where the loss does not depend on it), the graph kept."""
    params = list(params)
    g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, g)]


def assert_same_grads(got, want, names=None, rtol=1e-4, atol=1e-6):
    for i, (a, b) in enumerate(zip(got, want)):
        name = names[i] if names else i
        assert torch.allclose(a, b, rtol=rtol, atol=atol), f"gradient of {name} differs: {(a - b).abs().max():.3g}"


def untag(kind: str, k: int, v: torch.Tensor) -> torch.Tensor:
    """The images a :class:`TaggedAug` view was made from: call ``k`` (1-based) of ``kind``."""
    return v - 0.01 * k if kind == "weak" else (v - 0.02 * k) / 0.5


def rows_in(x: torch.Tensor, pool: torch.Tensor, atol=1e-5) -> torch.Tensor:
    """For each image of ``x``, its position in ``pool`` (-1 where it is not there)."""
    d = (x.flatten(1)[:, None, :] - pool.flatten(1)[None, :, :]).abs().amax(dim=2)  # [N, M]
    best, pos = d.min(dim=1)
    return torch.where(best <= atol, pos, torch.full_like(pos, -1))
