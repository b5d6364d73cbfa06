"""The learning-rate schedule: linear warm-up, then constant or cosine decay over the run's progress."""

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, progress: float, *, lr: float, schedule: str = "cosine", warmup: int = 0,
                  min_lr_ratio: float = 0.1) -> float:
    """The learning rate for update `step` (0-based) at `progress`, the fraction of the run done.

    - lr: the peak rate
    - schedule: "constant" keeps lr; "cosine" falls from lr at progress 0 to min_lr_ratio * lr at progress 1
      (progress outside [0, 1] is clamped), along half a cosine period
    - warmup: the first `warmup` updates scale the rate by (step + 1) / warmup, so the first update is small
      while the optimiser's moment estimates are still noise
    """
    rate = lr
    if schedule == "cosine":
        p = min(max(progress, 0.0), 1.0)
        floor = lr * min_lr_ratio
        rate = floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * p))
    if warmup and step < warmup:
        rate *= (step + 1) / warmup
    return rate
