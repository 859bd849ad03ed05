"""Learning rate as a pure function of the step: nothing to checkpoint, and a resumed run gets the same curve."""

from __future__ import annotations

import math

from edgekd.errors import EdgekdError
from edgekd.train.config import SCHEDULES


def lr_at(step: int, total: int, base_lr: float, warmup: int = 0, kind: str = "poly") -> float:
    """Linear warm-up over `warmup` steps, then poly (power 2, as arcface_torch), cosine or constant decay to 0."""
    if kind not in SCHEDULES:
        raise EdgekdError(f"unknown lr schedule '{kind}' (known: {', '.join(SCHEDULES)})")
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if kind == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "poly":
        return base_lr * (1.0 - progress) ** 2
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
