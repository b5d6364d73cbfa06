"""The time-budget policy, as pure functions of measured seconds, and `Pace`, which keeps those measurements
in step with the machine's speed.

A time budget covers the run's whole loop: training stops early enough that the closing evaluation and the
final score of the best checkpoint still end within it. Their cost comes from two measurements:
- exact_seconds: exact scoring of all validation text (one stream), estimated once at setup by timing a
  probe of PROBE_IDS ids after a warm-up of WARM_UP_IDS (the cost depends on the sizes, not on the weights);
  None without validation text
- eval_seconds: the last evaluation during training, None until the first one is timed
Both were measured at a moment of the machine's load; when the training steps slow down (another program
starts), the closing work slows down alike, so the trainer scales each estimate by `Pace.since` its moment.
"""

import statistics
from collections import deque
from dataclasses import dataclass

# The machine's pace is the median of the last PACE_STEPS steps' seconds per token: one slow step (a garbage
# collection, a page fault) must not move it.
PACE_STEPS = 9

# Ids in the probe that estimates exact scoring: 1024 targets, enough that the per-id cost outweighs the
# fixed cost of one scoring call, few enough that the probe is a small part of setup on any corpus.
PROBE_IDS = 1025
# An untimed scoring of this many ids goes first: the first calls load compiled kernels and allocate buffers,
# a one-off cost that would make the probe, scaled up to all validation text, overstate it many times over.
WARM_UP_IDS = 33
# Before the first evaluation is timed, its cost is guessed as this share of an exact pass. An evaluation
# scores in parallel streams: the same arithmetic in wider matrix products, which costs less than one
# row at a time. The guess only needs the right size: the first measured evaluation replaces it.
STREAMS_COST_GUESS = 0.4
# After each evaluation the next one waits at least this many times as long as it took, so evaluations
# take at most 1 / (1 + EVAL_SPACING) of the run however slow they are: time spent scoring is time not
# spent training.
EVAL_SPACING = 24
# Otherwise automatic evaluations come every EVAL_INTERVAL seconds, and at least EVALS_PER_BUDGET times
# within a shorter budget, so a short run still shows a validation curve.
EVAL_INTERVAL = 60.0
EVALS_PER_BUDGET = 8
# The final score is exact (as `charlm perplexity` scores) when that costs at most this share of the
# budget; without a budget, of the training time but never less than EXACT_FINAL_FLOOR seconds. Past
# that share the final score would eat the training it reports on.
EXACT_FINAL_SHARE = 0.25
EXACT_FINAL_FLOOR = 60.0
# The reserve also holds this many seconds for what no clock of the run sees (the interpreter starting before
# the invocation's clock is read, the process exiting after the final score).
EXIT_SECONDS = 2.0
# The closing work is estimated from earlier measurements on a machine whose speed moves, so its error grows
# with it: the reserve holds this share more than the estimate.
ESTIMATE_MARGIN = 0.1
# The reserve is at most this share of the budget, so a run always spends at least as long training as
# it spends on its closing evaluations.
MAX_RESERVE_SHARE = 0.5


# An evaluation during training scores at most the validation ids that fit in 1 / EVAL_SPACING of the interval
# between evaluations (priced from the exact-scoring probe, then from the first evaluation's own time), so
# evaluations come as often as eval_interval says rather than being pushed apart by their own cost; never
# fewer than MIN_EVAL_IDS, below which one evaluation's figure would move more with the sample than with the
# model.
MIN_EVAL_IDS = 8_192


def exact_seconds_estimate(probe_seconds: float, probe_ids: int, val_ids: int) -> float:
    """Seconds to score `val_ids` ids exactly, given that `probe_ids` of them took `probe_seconds`."""
    return probe_seconds * val_ids / probe_ids


def final_is_exact(exact_seconds: float | None, *, time_budget: float | None, train_seconds: float,
                   seconds_left: float | None = None) -> bool:
    """Whether the best checkpoint's final score is exact (else parallel streams); False without validation.
    Given the `seconds_left` of the budget when the final score starts: exact when it fits in them (the
    reserve kept room for it, or training stopped early), so what was planned is what is done."""
    if exact_seconds is None:
        return False
    if time_budget and seconds_left is not None:
        return exact_seconds <= seconds_left - EXIT_SECONDS
    allowance = (time_budget * EXACT_FINAL_SHARE if time_budget
                 else max(EXACT_FINAL_FLOOR, train_seconds * EXACT_FINAL_SHARE))
    return exact_seconds <= allowance


def eval_size(eval_chars: int, *, exact_seconds: float | None, val_ids: int, time_budget: float | None) -> int:
    """How many validation ids each evaluation during training scores: at most `eval_chars`, and at most what
    an evaluation can score in eval_interval / EVAL_SPACING seconds (at least MIN_EVAL_IDS)."""
    if not exact_seconds or not val_ids:
        return eval_chars
    seconds_per_id = STREAMS_COST_GUESS * exact_seconds / val_ids
    affordable = int(eval_interval(time_budget) / EVAL_SPACING / seconds_per_id)
    return min(eval_chars, max(MIN_EVAL_IDS, affordable))


def resized_evaluation(eval_ids: int, seconds: float, *, eval_chars: int, time_budget: float | None,
                       least: int = MIN_EVAL_IDS) -> int:
    """The evaluation size that fits eval_interval / EVAL_SPACING seconds, given that `eval_ids` ids (or other
    units: a translate task's pairs) took `seconds`: at least `least`, at most `eval_chars`."""
    affordable = int(eval_ids * eval_interval(time_budget) / EVAL_SPACING / max(seconds, 1e-9))
    return min(eval_chars, max(least, affordable))


def evals_cover_val(val_ids: int, eval_chars: int) -> bool:
    """True when an evaluation during training scores all `val_ids` validation ids (at most `eval_chars`)."""
    return val_ids <= eval_chars


def reserved_seconds(time_budget: float | None, *, exact_seconds: float | None, eval_seconds: float | None,
                     val_ids: int, eval_chars: int, slowdown: float = 1.0) -> float:
    """Seconds of the budget kept for the work after the last step: the closing evaluation, then the final
    score of the best checkpoint (none when an evaluation already scored all validation text: its score is
    reused), ESTIMATE_MARGIN more for the estimates' error, and EXIT_SECONDS. 0 without a budget or without
    validation text; at most MAX_RESERVE_SHARE of the budget. `slowdown`: how many times slower the machine
    trains than when `exact_seconds` was estimated."""
    if not time_budget or exact_seconds is None:
        return 0.0
    exact_seconds *= slowdown
    evaluation = eval_seconds if eval_seconds is not None else STREAMS_COST_GUESS * exact_seconds
    if final_is_exact(exact_seconds, time_budget=time_budget, train_seconds=0.0):
        final = exact_seconds
    elif evals_cover_val(val_ids, eval_chars):
        final = 0.0
    else:
        final = evaluation * val_ids / eval_chars  # an evaluation's cost (of eval_chars ids), scaled to all
    return min((evaluation + final) * (1 + ESTIMATE_MARGIN) + EXIT_SECONDS, time_budget * MAX_RESERVE_SHARE)


def eval_interval(time_budget: float | None, eval_seconds: float | None = None) -> float:
    """Seconds from one automatic evaluation to the next, given the last one took `eval_seconds`."""
    interval = min(EVAL_INTERVAL, time_budget / EVALS_PER_BUDGET) if time_budget else EVAL_INTERVAL
    return interval if eval_seconds is None else max(interval, EVAL_SPACING * eval_seconds)


def progress_fraction(*, step: int, total_steps: int | None, time_budget: float | None, reserved: float,
                      progress0: float, session_seconds: float) -> float:
    """Fraction of the run done: by steps (total_steps from --steps or --epochs), or by time within a budget,
    whichever is further. Time counts from `progress0`, the fraction a resumed run started at, over the
    budget less the `reserved` seconds."""
    fractions = []
    if total_steps:
        fractions.append(step / total_steps)
    if time_budget:
        fractions.append(progress0 + (1 - progress0) * session_seconds / (time_budget - reserved))
    return max(fractions) if fractions else 0.0


class Pace:
    """Recent training steps: how fast the machine trains now, and how long the next step will take."""

    def __init__(self):
        self.per_token: deque[float] = deque(maxlen=PACE_STEPS)
        self.seconds: deque[float] = deque(maxlen=PACE_STEPS)
        self.at_start: float | None = None  # seconds per token over the first PACE_STEPS steps

    def add(self, seconds: float, tokens: int) -> None:
        self.per_token.append(seconds / max(tokens, 1))
        self.seconds.append(seconds)
        if self.at_start is None and len(self.per_token) == PACE_STEPS:
            self.at_start = self.now()

    def now(self) -> float | None:
        """Seconds per token of recent steps, None before any."""
        return statistics.median(self.per_token) if self.per_token else None

    def next_step(self) -> float:
        """Seconds the next step is likely to take (0 before any)."""
        return statistics.median(self.seconds) if self.seconds else 0.0

    def since(self, then: float | None) -> float:
        """How many times slower the machine trains now than at the moment whose pace was `then` (1 when
        either is unknown)."""
        now = self.now()
        return now / then if now and then else 1.0


@dataclass
class Session:
    """What one invocation of the loop measures (a resumed run starts a new session)."""

    start: float  # clock() when the loop started
    next_eval_at: float  # seconds since start
    step_seconds: float = 0.0  # time in training steps only: chars/s
    chars: int = 0
    smoothed_loss: float | None = None

    def chars_per_sec(self) -> float:
        return self.chars / self.step_seconds if self.step_seconds else 0.0
