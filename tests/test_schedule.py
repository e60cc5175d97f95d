"""The learning-rate schedule, step by step, against its stated rules."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from aekit.train.schedule import get_lr, warmup_length

LR = 1e-3


def lrs(total: int, warmup: int, schedule: str = "cosine", ratio: float = 0.1) -> list[float]:
    return [get_lr(s, base_lr=LR, total_steps=total, warmup_steps=warmup, min_lr_ratio=ratio, schedule=schedule)
            for s in range(total + 5)]


def test_warmup_rises_linearly_to_the_peak():
    rates = lrs(1000, 50)
    assert rates[0] == pytest.approx(LR / 50)
    assert rates[24] == pytest.approx(LR * 25 / 50)
    assert rates[49] == pytest.approx(LR)
    assert all(b > a for a, b in pairwise(rates[:50]))


def test_cosine_decays_to_the_floor_at_the_last_step_and_stays_there():
    rates = lrs(1000, 50, ratio=0.1)
    assert rates[50] == pytest.approx(LR)
    assert all(b <= a for a, b in pairwise(rates[50:1000]))
    assert rates[1000] == pytest.approx(LR * 0.1)
    assert rates[1004] == pytest.approx(LR * 0.1)
    middle = 50 + (1000 - 50) // 2  # halfway through the decay: halfway between peak and floor
    assert rates[middle] == pytest.approx(LR * 0.1 + 0.5 * (LR - LR * 0.1), rel=1e-2)


def test_constant_stays_at_the_peak_after_warmup():
    rates = lrs(500, 20, schedule="constant")
    assert set(rates[20:]) == {LR}


@pytest.mark.parametrize(("asked", "total", "used"), [(100, 10_000, 100), (100, 500, 50), (100, 5, 1), (0, 100, 0)])
def test_warmup_is_capped_at_a_tenth_of_the_run(asked, total, used):
    assert warmup_length(asked, total) == used
    rates = lrs(total, asked)
    if used:
        assert rates[used - 1] == pytest.approx(LR) and rates[used - 2 if used > 1 else 0] <= LR
    assert max(rates) == pytest.approx(LR)


def test_a_longer_run_resumed_follows_the_schedule_for_its_new_length():
    short, long = lrs(1000, 50), lrs(2000, 50)
    assert long[1000] > short[1000]  # the extended cosine is higher at the old end
    assert long[1000] == pytest.approx(get_lr(1000, base_lr=LR, total_steps=2000, warmup_steps=50,
                                              min_lr_ratio=0.1))
    assert all(math.isfinite(r) and r > 0 for r in long)
