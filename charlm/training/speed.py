"""The machine's training speed, measured before a run so the recipe can size the model for its budget.

A probe times training steps (forward, backward, Adam update) of models of the run's cell, depth and
vocabulary, each after one untimed step that loads the compiled kernels and warms the caches:
- the wider reference model first, at each thread count `charlm.training.threads.choose_threads` times: the
  count that trains it fastest now is kept for the rest of the probe (and the run starts at it);
- two reference models, PROBE_WIDTHS wide, over 64 streams x 32 tokens, give the two parts of
  `charlm.training.recipe.Speed`: the per-time-step cost that dominates small models and the per-parameter
  cost of the matrix products that dominates wide ones;
- then the widths the recipe's choice turns on (`charlm.training.recipe.deciding_widths`: the one it would
  choose and the next wider), each at its own chunking, replace the model's extrapolation where it matters:
  the per-parameter cost falls as matrices widen, and wide models train over longer chunks. Until the
  chosen width and the next wider are both measured, at most REFINE_ROUNDS times; each over more steps than
  the reference models, as its figure decides.
"""

import time

import numpy as np

from charlm.engine.optim import make_optimizer
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, loss_and_grads
from charlm.training.options import TrainOptions
from charlm.training.recipe import deciding_widths
from charlm.training.recipe_rules import LAYERS, CorpusStats, Speed, parameters
from charlm.training.threads import ThreadChoice, choose_threads

PROBE_WIDTHS = (64, 256)
PROBE_BATCH = 64
PROBE_SEQ_LEN = 32
PROBE_STEPS = 3
# A width the choice turns on is timed over at least DECIDING_STEPS steps and DECIDING_SHARE of the budget
# (at most DECIDING_SECONDS): its figure decides, and the machine's speed can move for a second or two.
DECIDING_STEPS = 5
DECIDING_SHARE = 0.005
DECIDING_SECONDS = 1.0
REFINE_ROUNDS = 3


def measure_speed(cell: str, layers: int, vocab: int, *, threads: int | None = None, clock=time.perf_counter
                  ) -> tuple[Speed, ThreadChoice]:
    """Seconds per token of a training step on this machine, as a fixed part plus a part per parameter, at
    the thread count chosen on the way (`threads`: the user's, else the fastest now)."""
    narrow, wide = PROBE_WIDTHS
    timed = {}

    def wide_seconds(count: int, give_up: float | None) -> float:
        timed[count] = _seconds_per_token(cell, wide, layers, vocab, clock, give_up=give_up)
        return timed[count][1]

    choice = choose_threads(wide_seconds, option=threads)
    p1, t1 = timed[choice.threads] if choice.threads in timed else _seconds_per_token(cell, wide, layers, vocab,
                                                                                      clock)
    p0, t0 = _seconds_per_token(cell, narrow, layers, vocab, clock)
    per_param = max((t1 - t0) / (p1 - p0), 1e-15)  # timing noise must not make wide models look free
    return Speed(fixed=max(t0 - per_param * p0, 0.0), per_param=per_param), choice


def measure_recipe_speed(opts: TrainOptions, stats: CorpusStats, *, clock=time.perf_counter
                         ) -> tuple[Speed, ThreadChoice]:
    """`measure_speed`, with the widths the recipe's choice of width turns on measured directly."""
    layers = opts.layers or LAYERS
    speed, choice = measure_speed(opts.cell, layers, stats.vocab, threads=opts.threads, clock=clock)
    at_least = min(DECIDING_SECONDS, DECIDING_SHARE * (opts.time_budget or 0.0))
    for _ in range(REFINE_ROUNDS):
        widths = deciding_widths(opts, stats, speed)
        if not widths:
            break
        for hidden, batch, seq_len in widths:
            params, seconds = _seconds_per_token(opts.cell, hidden, layers, stats.vocab, clock, batch=batch,
                                                 seq_len=seq_len, steps=DECIDING_STEPS, at_least=at_least)
            speed = speed.with_measured(params, seconds)
    return speed, choice


def _seconds_per_token(cell: str, hidden: int, layers: int, vocab: int, clock, *, batch: int = PROBE_BATCH,
                       seq_len: int = PROBE_SEQ_LEN, steps: int = PROBE_STEPS, at_least: float = 0.0,
                       give_up: float | None = None) -> tuple[int, float]:
    """(parameters, median seconds per token over `steps` steps, or more until `at_least` seconds have
    passed, of `batch` streams x `seq_len` tokens) of one model `hidden` wide. With `give_up`: the first
    step's seconds per token when they exceed it (a count that hopeless is not worth timing further)."""
    cfg = ModelConfig(cell=cell, vocab_size=vocab, hidden=hidden, layers=layers, embed=0, dropout=0.1)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    optimizer = make_optimizer("adam", params, momentum=0.9, weight_decay=0.0)
    x = rng.integers(0, vocab, (seq_len, batch))
    y = rng.integers(0, vocab, (seq_len, batch))
    state, workspace = init_state(cfg, batch), {}
    seconds = []
    while len(seconds) <= steps or sum(seconds[1:]) < at_least:
        start = clock()
        _, grads, state = loss_and_grads(params, cfg, x, y, state, rng=rng, workspace=workspace)
        optimizer.step(params, grads, 1e-3)
        seconds.append(clock() - start)
        if give_up is not None and seconds[0] / x.size > give_up:
            return parameters(cell, hidden, layers, vocab), seconds[0] / x.size
    return parameters(cell, hidden, layers, vocab), float(np.median(seconds[1:])) / x.size
