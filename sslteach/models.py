"""Small networks that return ``(logits, features)``: an MLP for 2-D points, a small CNN for 8x8 / 28x28 / 32x32
images, and WRN-28-2 (the FixMatch backbone) for 32x32 images on a GPU."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .utils import check_choice

MODELS = ("auto", "mlp", "cnn", "wrn28_2")


class MLP(nn.Module):
    """Two hidden layers for 2-D inputs. ``forward`` returns ``(logits [B, C], features [B, hidden])``."""

    def __init__(self, in_dim: int = 2, num_classes: int = 2, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        self.feature_dim = hidden

    def forward(self, x):
        h = self.body(x.flatten(1))
        return self.head(self.dropout(h)), h


def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class SmallCNN(nn.Module):
    """A small VGG-style CNN for 8x8, 28x28 and 32x32 images (conv-BN-LeakyReLU blocks, global average pooling).

    ``width`` channels in the first stage, doubled after each pooling. Returns ``(logits, features)`` where the
    features are the pooled ``[B, 2 * width]`` vector before the classifier (and before dropout).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, width: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        layers = [_block(in_channels, width), _block(width, width), nn.MaxPool2d(2)]
        size = image_size // 2
        if image_size >= 28:  # one more stage for 28x28 / 32x32
            layers += [_block(width, width * 2), _block(width * 2, width * 2), nn.MaxPool2d(2)]
            width *= 2
            size //= 2
        layers += [_block(width, width * 2), _block(width * 2, width * 2)]
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width * 2, num_classes)
        self.feature_dim = width * 2

    def forward(self, x):
        h = self.body(x).mean(dim=(2, 3))
        return self.head(self.dropout(h)), h


class _WideBasic(nn.Module):
    def __init__(self, cin, cout, stride, activate_before_residual=False):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin, momentum=0.001), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout, momentum=0.001), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.abr = activate_before_residual

    def forward(self, x):
        o = F.leaky_relu(self.bn1(x), 0.1)
        if self.abr or self.shortcut is not None:
            x_in = o if self.abr else x
        else:
            x_in = x
        y = self.conv2(F.leaky_relu(self.bn2(self.conv1(o)), 0.1))
        return y + (self.shortcut(x_in) if self.shortcut is not None else x_in)


class WideResNet(nn.Module):
    """WRN-28-2 as in FixMatch (1.5 M parameters; BN momentum 0.001, LeakyReLU 0.1). Meant for 32x32 on a GPU."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, depth: int = 28, widen: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        blocks = []
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBasic(ch[stage] if i == 0 else ch[stage + 1], ch[stage + 1],
                                         stride if i == 0 else 1, activate_before_residual=(stage == 0 and i == 0)))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(ch[3], momentum=0.001)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(ch[3], num_classes)
        self.feature_dim = ch[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x):
        h = F.leaky_relu(self.bn(self.blocks(self.conv(x))), 0.1).mean(dim=(2, 3))
        return self.head(self.dropout(h)), h


def make_model(name: str, input_shape: tuple, num_classes: int, dropout: float = 0.0, width: int = 32) -> nn.Module:
    """Build a model for inputs of ``input_shape``: ``"auto"`` picks the MLP for 2-D points and the small CNN for
    images; ``"wrn28_2"`` needs 32x32 images."""
    check_choice("model", name, MODELS)
    is_points = len(input_shape) == 1
    if name == "auto":
        name = "mlp" if is_points else "cnn"
    if name == "mlp":
        in_dim = 1
        for s in input_shape:
            in_dim *= s
        return MLP(in_dim, num_classes, dropout=dropout)
    if is_points:
        raise ValueError(f"model={name!r} needs images; for 2-D points use model='mlp' or 'auto'")
    c, h, w = input_shape
    if name == "cnn":
        return SmallCNN(c, num_classes, h, width=width, dropout=dropout)
    if h != 32 or w != 32:
        raise ValueError(f"model='wrn28_2' needs 32x32 images (cifar10, svhn); got {h}x{w}: use model='cnn'")
    return WideResNet(c, num_classes, dropout=dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
