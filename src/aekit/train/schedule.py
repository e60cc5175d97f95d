"""Learning-rate schedules as small pure functions of the step."""

from __future__ import annotations

import math

# Warm-up never takes more than this share of a run's steps: a short run (a test, a smoke run
# on a few hundred images) would otherwise spend most of its steps below the learning rate asked
# for.  The trainer says so when it shortens the warm-up the config asked for.
MAX_WARMUP_SHARE = 0.1


def warmup_length(warmup_steps: int, total_steps: int) -> int:
    """The warm-up actually used: ``warmup_steps``, but at most a tenth of ``total_steps`` (at least 1)."""
    return min(warmup_steps, max(int(total_steps * MAX_WARMUP_SHARE), 1))


def get_lr(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float,
           schedule: str = "cosine") -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    1. linear warm-up from base_lr / W to base_lr over the first W steps, where W is
       :func:`warmup_length` (``warmup_steps``, capped at a tenth of the run);
    2. then, for "cosine", a half cosine from base_lr down to base_lr * min_lr_ratio at the
       last step ("constant" stays at base_lr);
    3. past total_steps, the floor.  A run resumed with more epochs has a larger
       ``total_steps``: the cosine is the one for the new length, so the rate jumps up to
       where that longer schedule is at the current step and decays from there.
    """
    warmup = warmup_length(warmup_steps, total_steps)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    floor = base_lr * min_lr_ratio
    decay_steps = max(total_steps - warmup, 1)
    progress = min((step - warmup) / decay_steps, 1.0)
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))
