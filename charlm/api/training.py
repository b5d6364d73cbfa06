"""`charlm.train`: what `charlm train` runs (`charlm.tasks.registry.train`), called from Python with the flags
as keywords; quiet unless given a `report`."""

import contextlib
import difflib
import signal
import warnings

from charlm.errors import ConfigError
from charlm.tasks.registry import train as run_training
from charlm.training import events
from charlm.training.events import TrainResult
from charlm.training.options import OPTION_NAMES, TrainOptions

# The keywords `train` takes: every option of a run but the corpus (its first argument) and the recipe's own
# account of what it chose.
KEYWORDS = OPTION_NAMES - {"corpus", "recipe"}
# The signals a run turns into a clean stop (`charlm.training.signals.StopSignals`).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A flag of `charlm train` whose keyword is another word.
RENAMED = {"time": "time_budget"}


def train(corpus, *, report=None, **options) -> TrainResult:
    """Train a model on `corpus` (a file) as `charlm train CORPUS` does, and return how the run ended.

    options: `charlm train`'s flags as keywords, `-` written `_` (`out="runs/x"`, `seq_len=64`,
    `task="classify"`, `resume=True`), except `--time`, here `time_budget` in seconds; `--procs` has no keyword
    (several processes start from the command line). What is not given the recipe chooses, as on the command
    line, and what is given counts as given there: a resume keeps the run's own values of the rest.
    report: called with each event of `charlm.training.events` (the recipe, progress after every step, each
    evaluation, warnings); without it the run is silent but for its warnings, which go to Python's `warnings`.

    Returns the TrainResult: `checkpoint` (the best checkpoint's path, what `charlm.load` opens),
    `best_val_loss`, `steps`, `stopped_by`, ... An unknown keyword is a ConfigError naming it; the run's own
    failures are charlm's exceptions with `charlm train`'s messages (TrainingInterrupted after Ctrl-C, once
    the run is saved).
    """
    unknown = sorted(set(options) - KEYWORDS)
    if unknown:
        raise ConfigError(_unknown_option(unknown[0]))
    opts = TrainOptions(corpus=str(corpus), **options)
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        return run_training(opts, explicit=frozenset(options), report=report or _warnings_only)
    finally:
        _restore(handlers)


def _restore(handlers: dict) -> None:
    """Give the caller its own SIGINT/SIGTERM handlers back: a run that stops after a clean save ignores
    further signals, which a process about to exit wants and a notebook that goes on does not."""
    for sig, handler in handlers.items():
        if handler is not None:  # None: a handler not installed from Python, which cannot be put back
            with contextlib.suppress(ValueError):  # not the main thread: the run installed none either
                signal.signal(sig, handler)


def _unknown_option(name: str) -> str:
    close = [RENAMED[name]] if name in RENAMED else difflib.get_close_matches(name, KEYWORDS, n=1, cutoff=0.8)
    return f"unknown training option {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")


def _warnings_only(event: events.Event) -> None:
    if isinstance(event, events.Warning):
        warnings.warn(event.text, stacklevel=2)
