"""Learning-rate schedules: plain callables for ``torch.optim.lr_scheduler.LambdaLR``.

They sit in their own module (not with a LightningModule) because checkpoints.py allows them in the
safe unpickler: a checkpoint's hyper-parameters may hold the schedule object.
"""

from __future__ import annotations

import math


class WarmupCosine:
    """LR factor: linear warm-up over ``warmup`` steps (or epochs), then cosine decay to ``min_factor`` at ``total``."""

    def __init__(self, warmup: int, total: int, min_factor: float = 0.0) -> None:
        if total <= 0:
            raise ValueError(f"WarmupCosine needs total > 0, got {total}")
        self.warmup = max(int(warmup), 0)
        self.total = int(total)
        self.min_factor = float(min_factor)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
