"""The supervised-only baseline: the labeled images alone, same model, same weak augmentation, same loop."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Method, MethodConfig, supervised_loss


@dataclass
class SupervisedConfig(MethodConfig):
    pass


class Supervised(Method):
    """Cross-entropy on weakly augmented labeled images; the unlabeled images are never looked at."""

    name = "supervised"
    title = "supervised"
    summary = "labeled data only (the baseline every notebook compares against)"
    year = None
    family = "baseline"
    notebook = "00_start_here"
    cpu_ms_per_step = 4.5
    Config = SupervisedConfig

    def step(self, model, batch, ctx):
        logits_x_lb, _ = model(ctx.aug.weak(batch.x_lb))
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        return loss_x, {"loss_x": loss_x.detach()}
