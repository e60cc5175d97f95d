"""Learning-rate schedules as small pure functions of the step."""

from __future__ import annotations

import math


def get_lr(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float,
           schedule: str = "cosine") -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    1. linear warm-up from base_lr / warmup_steps to base_lr over the first warmup_steps;
    2. then, for "cosine", a half cosine from base_lr down to base_lr * min_lr_ratio at the
       last step ("constant" stays at base_lr);
    3. past total_steps (a resumed run given more epochs), the floor.
    """
    warmup_steps = min(warmup_steps, max(total_steps // 10, 1))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    floor = base_lr * min_lr_ratio
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))
