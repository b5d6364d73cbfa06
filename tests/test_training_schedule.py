"""The learning-rate schedule (charlm.training.schedule): warm-up, then constant or cosine decay."""

import pytest

from charlm.training.schedule import learning_rate


def test_warm_up_rises_linearly_to_the_peak():
    rates = [learning_rate(step, 0.0, lr=1.0, warmup=10) for step in range(12)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0) and rates[11] == pytest.approx(1.0)
    assert [b - a for a, b in zip(rates[:9], rates[1:10], strict=True)] == pytest.approx([0.1] * 9)


def test_cosine_decays_monotonically_from_the_peak_to_the_floor():
    rates = [learning_rate(50, p / 20, lr=2.0, min_lr_ratio=0.1) for p in range(21)]
    assert rates[0] == pytest.approx(2.0) and rates[-1] == pytest.approx(0.2)
    assert all(b < a for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert rates[10] == pytest.approx((2.0 + 0.2) / 2)  # half way in progress, half way in rate
    assert learning_rate(50, 1.5, lr=2.0) == learning_rate(50, 1.0, lr=2.0)  # past the end: the floor


def test_constant_keeps_the_peak_after_warm_up():
    assert learning_rate(50, 0.9, lr=1.0, schedule="constant", warmup=30) == 1.0
    assert learning_rate(0, 0.0, lr=1.0, schedule="constant", warmup=4) == 0.25
