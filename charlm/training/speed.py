"""The machine's training speed, measured before a run so the recipe can size the model for its budget.

A probe times training steps (forward, backward, Adam update; 64 streams x 32 tokens) of two reference
models of the run's cell, depth and vocabulary, PROBE_WIDTHS wide, each after one untimed step that loads
the compiled kernels and warms the caches. Two widths give the two parts of `charlm.training.recipe.Speed`:
the per-time-step cost that dominates small models and the per-parameter cost of the matrix products that
dominates wide ones.
"""

import time

import numpy as np

from charlm.engine.optim import make_optimizer
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, loss_and_grads
from charlm.training.recipe import Speed, parameters

PROBE_WIDTHS = (64, 256)
PROBE_BATCH = 64
PROBE_SEQ_LEN = 32
PROBE_STEPS = 3


def measure_speed(cell: str, layers: int, vocab: int, *, clock=time.perf_counter) -> Speed:
    """Seconds per token of a training step on this machine, as a fixed part plus a part per parameter."""
    (p0, t0), (p1, t1) = (_seconds_per_token(cell, width, layers, vocab, clock) for width in PROBE_WIDTHS)
    per_param = max((t1 - t0) / (p1 - p0), 1e-15)  # timing noise must not make wide models look free
    return Speed(fixed=max(t0 - per_param * p0, 0.0), per_param=per_param)


def _seconds_per_token(cell: str, hidden: int, layers: int, vocab: int, clock) -> tuple[int, float]:
    """(parameters, median seconds per token over PROBE_STEPS steps) of one reference model."""
    cfg = ModelConfig(cell=cell, vocab_size=vocab, hidden=hidden, layers=layers, embed=0, dropout=0.1)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    optimizer = make_optimizer("adam", params, momentum=0.9, weight_decay=0.0)
    x = rng.integers(0, vocab, (PROBE_SEQ_LEN, PROBE_BATCH))
    y = rng.integers(0, vocab, (PROBE_SEQ_LEN, PROBE_BATCH))
    state, workspace = init_state(cfg, PROBE_BATCH), {}
    seconds = []
    for _ in range(PROBE_STEPS + 1):
        start = clock()
        _, grads, state = loss_and_grads(params, cfg, x, y, state, rng=rng, workspace=workspace)
        optimizer.step(params, grads, 1e-3)
        seconds.append(clock() - start)
    return parameters(cell, hidden, layers, vocab), float(np.median(seconds[1:])) / x.size
