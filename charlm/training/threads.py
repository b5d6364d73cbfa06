"""How many threads the matrix products use: the user's number, or the count that trains fastest now.

A BLAS library starts a thread per core and spins its threads while they wait for one another. On a machine
that runs anything else, a thread whose core is taken holds up every product, and a run falls to a fraction of
what a single thread gives (bench/load.py measures it). So, unless the user chose:
- the count is chosen from measurements of the work itself: a few steps at each candidate count
  (`candidates`), the fastest kept unless fewer threads come within THREAD_GAIN of it (a run that gains
  little from a second core leaves it to the machine's other work);
- a count whose first step is ABANDON times slower per token than the best count so far is dropped after
  that one step: on a busy machine a thread count that waits for taken cores can be twenty times slower, and
  a full trial of it would cost more than the choice gains (and slow the neighbour down too);
- a training loop re-chooses when its steps slow down by DEGRADED (a neighbour started) and after
  RECHECK_SECONDS (a neighbour stopped: one thread never slows down when the machine frees up, so only a
  new measurement shows that more threads would now pay); each trial that keeps the count doubles the wait
  for the next, up to MAX_RECHECK_SECONDS.
The user's choice always wins: `--threads N`, or a thread count set in the environment (`USER_VARIABLES`,
which the BLAS library read when it started). numba's kernels are compiled without a thread pool, so BLAS's
threads are the only ones a run starts.
"""

import os
import statistics
from collections import deque
from dataclasses import dataclass

# The variables that set the thread pools of the libraries numpy and numba may load; any one set by the user
# fixes the count.
USER_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# Steps timed at each candidate count, after one untimed step that lets the pool settle at its new size.
TRIAL_STEPS = 3
# More threads are kept only when they are at least this much faster than fewer.
THREAD_GAIN = 1.1
# A loop whose recent steps are this many times slower than at the last choice chooses again.
DEGRADED = 1.4
RECENT_STEPS = 5
# A count whose first step is this many times slower per token than the best so far is not timed further.
ABANDON = 2.0
# A loop chooses again after RECHECK_SECONDS, doubled after every trial that keeps the count (at most
# MAX_RECHECK_SECONDS), and never sooner than RECHECK_COST times the last trial's seconds: a trial's steps at
# a worse count cost time, at most 1 / RECHECK_COST of the training between trials.
RECHECK_SECONDS = 30.0
MAX_RECHECK_SECONDS = 480.0
RECHECK_COST = 20


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def user_threads(option: int | None = None) -> int | None:
    """The count the user chose (`--threads`, else the environment's), None when charlm is to choose."""
    if option:
        return option
    for name in USER_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def candidates(cores: int) -> tuple[int, ...]:
    """The counts a choice times: one thread, every power of two below the core count, and all cores."""
    counts = {1, cores}
    count = 2
    while count < cores:
        counts.add(count)
        count *= 2
    return tuple(sorted(counts))


def set_threads(count: int) -> None:
    """Limit every thread pool loaded in this process (BLAS, and OpenMP if any) to `count` threads."""
    # Imported here: this module is read before numpy loads (`charlm.parallel.environment`), the backend loads it.
    from charlm.engine.backend import thread_pools

    thread_pools().limit(limits=count)


# The last count announced to the user is the process's, as its pools are.
_announced: int | None = None


def announce(choice: "ThreadChoice") -> bool:
    """Whether `choice` is news to the user (its count differs from the last one told), noting it."""
    global _announced
    news = choice.threads != _announced
    _announced = choice.threads
    return news


def fastest(seconds_by_count: dict[int, float]) -> int:
    """The count to keep, from seconds per token at each: the fastest, unless fewer threads come within
    THREAD_GAIN of it."""
    best = min(seconds_by_count, key=seconds_by_count.get)
    for count in sorted(seconds_by_count):
        if count < best and seconds_by_count[count] <= THREAD_GAIN * seconds_by_count[best]:
            return count
    return best


@dataclass(frozen=True)
class ThreadChoice:
    """A choice and its evidence: tokens per second at each count timed (empty when the user chose)."""

    threads: int
    tokens_per_second: dict
    chosen_by: str  # "user", "timing" or "one core"

    def describe(self) -> str:
        """'--threads 1: the fastest now, in tokens/s: 14,600 with 1, 7,400 with 2 (more threads wait ...)'."""
        if self.chosen_by == "user":
            return f"--threads {self.threads}: as set (--threads or the environment's thread count)"
        if self.chosen_by == "one core":
            return "--threads 1: this process may use one core"
        speeds = self.tokens_per_second
        timed = ", ".join(f"{speed:,.0f} with {count}" for count, speed in sorted(speeds.items()))
        fastest_count = max(speeds, key=speeds.get)
        if fastest_count != self.threads:
            return (f"--threads {self.threads}: within {THREAD_GAIN - 1:.0%} of the fastest now, in tokens/s: "
                    f"{timed} (more threads gain too little to take cores from the machine's other work)")
        why = "" if self.threads == max(speeds) else " (more threads wait for cores the machine's other work holds)"
        return f"--threads {self.threads}: the fastest now, in tokens/s: {timed}{why}"


def settled_choice(option: int | None = None) -> ThreadChoice | None:
    """The count when there is nothing to time, set: the user's (charlm sets only `--threads`; a variable
    the BLAS library has read itself), or one on one core. None when the count is to be timed."""
    fixed = user_threads(option)
    if fixed is not None:
        if option:
            set_threads(fixed)
        return ThreadChoice(fixed, {}, "user")
    if available_cores() == 1:
        set_threads(1)
        return ThreadChoice(1, {}, "one core")
    return None


def timed_choice(seconds_by_count: dict[int, float]) -> ThreadChoice:
    """The `fastest` count of those timed (seconds per token at each), with its evidence."""
    return ThreadChoice(fastest(seconds_by_count), {count: 1 / s for count, s in seconds_by_count.items()},
                        "timing")


def choose_threads(seconds_per_token, *, option: int | None = None) -> ThreadChoice:
    """Set and return the thread count: `settled_choice`, else the fastest by `seconds_per_token(count,
    give_up)`, a function that times the work to be done at `count` threads (`set_threads` is called before
    it) and may stop after one step slower than `give_up` seconds per token (None: time it fully)."""
    if settled := settled_choice(option):
        return settled
    seconds = {}
    for count in candidates(available_cores()):
        set_threads(count)
        seconds[count] = seconds_per_token(count, ABANDON * min(seconds.values()) if seconds else None)
    choice = timed_choice(seconds)
    set_threads(choice.threads)
    announce(choice)
    return choice


class ThreadGovernor:
    """Keeps a training loop at the fastest thread count as the machine's load changes.

    The loop calls `before_step()` before each step and `after_step(seconds, tokens, now)` after it; a trial
    times TRIAL_STEPS steps at each candidate count (real training steps: nothing is thrown away but their
    speed), then keeps the fastest. `on_change(choice)` hears every choice whose count the user has not been
    told (by the recipe's account or an earlier change).
    """

    def __init__(self, option: int | None = None, *, on_change=None):
        self.settled = settled_choice(option)  # the count when nothing is timed (the user's, or one core)
        self.on_change = on_change or (lambda choice: None)
        self.counts = candidates(available_cores())
        self.threads = None
        self.reference = None  # seconds per token at the last choice
        self.recent = deque(maxlen=RECENT_STEPS)
        self.next_check = 0.0
        self.chosen = None  # the count the last trial kept
        self.wait = RECHECK_SECONDS  # seconds from a trial to the next (doubled when a trial keeps the count)
        self._trial: list[int] = []
        self._timed: dict[int, list[float]] = {}
        self._trial_seconds = 0.0
        if self.settled:
            self.threads = self.settled.threads
        else:
            self._start_trial()

    @property
    def choosing(self) -> bool:
        return bool(self._trial)

    def _start_trial(self) -> None:
        # The count in use first: it is warm, and the others are judged against it.
        current = self.threads if self.threads in self.counts else self.counts[0]
        self._trial = [current, *(count for count in self.counts if count != current)]
        self._timed = {count: [] for count in self.counts}
        self._trial_seconds = 0.0
        self.recent.clear()

    def before_step(self) -> None:
        if self._trial and self._trial[0] != self.threads:
            self.threads = self._trial[0]
            set_threads(self.threads)

    def after_step(self, seconds: float, tokens: int, now: float) -> None:
        """Count a step of `tokens` tokens that took `seconds`, ended at `now` (the loop's clock)."""
        if self.settled:
            return
        per_token = seconds / max(tokens, 1)
        if self._trial:
            self._trial_seconds += seconds
            timed = self._timed[self._trial[0]]
            timed.append(per_token)
            best = min((statistics.median(t[1:]) for t in self._timed.values() if len(t) > 1), default=None)
            hopeless = len(timed) == 1 and best is not None and per_token > ABANDON * best
            if hopeless or len(timed) > TRIAL_STEPS:  # the first step at a new count is not timed
                self._trial.pop(0)
                if not self._trial:
                    self._finish_trial(now)
            return
        self.recent.append(per_token)
        slowed = (len(self.recent) == RECENT_STEPS
                  and statistics.median(self.recent) > DEGRADED * self.reference)
        if slowed or now >= self.next_check:
            self._start_trial()

    def _finish_trial(self, now: float) -> None:
        # A count dropped after its first step is judged by that step.
        seconds = {count: statistics.median(timed[1:] or timed) for count, timed in self._timed.items() if timed}
        choice = timed_choice(seconds)
        threads = choice.threads
        self.reference = seconds[threads]
        kept = threads == self.chosen
        self.wait = min(2 * self.wait, MAX_RECHECK_SECONDS) if kept else RECHECK_SECONDS
        self.chosen = threads
        self.next_check = now + max(self.wait, RECHECK_COST * self._trial_seconds)
        if threads != self.threads:
            self.threads = threads
            set_threads(threads)
        if announce(choice):
            self.on_change(choice)
