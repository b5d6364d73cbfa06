"""What a training run tells its caller: typed events while it runs (the trainer calls `report(event)` with
one of them), and the TrainResult that `train` returns.

The trainer only describes; the caller decides how to show each kind (`charlm train` draws a progress bar,
log lines and --json lines). Use them through the module (`events.Warning`), since `Warning` is also a
builtin name.
"""

from dataclasses import asdict, dataclass

# Weight of the newest step in the smoothed training loss that `Progress.loss` shows (an exponential moving
# average, so one noisy batch does not move the display); curves of a run's log smooth it alike.
LOSS_SMOOTHING = 0.02


@dataclass(frozen=True)
class Log:
    """A line of information: resumed, stopped, fine-tuning, which final score is used."""

    text: str


@dataclass(frozen=True)
class Warning:
    """Something the user may want to change (an empty validation split, too few batches per epoch)."""

    text: str


# A run whose validation loss rises at each of its first RISING_EVALS evaluations is warned that it memorises.
RISING_EVALS = 3


def memorising(val_losses: list[float]) -> Warning | None:
    """The warning for a run whose validation loss rose at each of its first RISING_EVALS evaluations (given
    all so far, once: when the last of those is in): the model fits its training data without learning
    anything that carries over to new data."""
    first = val_losses[:RISING_EVALS]
    if len(val_losses) != RISING_EVALS or any(a >= b for a, b in zip(first, first[1:], strict=False)):
        return None
    losses = " -> ".join(f"{v:.3f}" for v in first)
    return Warning(f"the validation loss rose at each of the first {RISING_EVALS} evaluations ({losses}): the "
                   f"model memorises its training data rather than learning from it; the data may be too small, "
                   f"or the model too large (--hidden, --dropout)")


@dataclass(frozen=True)
class Recipe:
    """The options the recipe chose, once at the start: a summary line, one reason per group of choices, and
    the choices (option name -> value); with the thread count the speed probe chose, when it ran (not an option
    of the run: the machine's load decides it, see `charlm.training.threads`)."""

    summary: str
    reasons: tuple[str, ...]
    choices: dict
    threads: int | None = None

    def to_dict(self) -> dict:
        return {"recipe": self.summary, "reasons": list(self.reasons), "choices": self.choices,
                "threads": self.threads}


@dataclass(frozen=True)
class Progress:
    """After every step: where the run is and how it goes."""

    fraction: float  # of the run done (steps, epochs or time budget)
    step: int
    epoch: float
    loss: float  # training loss, smoothed over recent steps (nats per token)
    lr: float
    val_loss: float | None  # the last evaluation's (nats per token), None before the first
    val_bpc: float | None  # the same in bits per character of the original text
    chars_per_sec: float  # tokens trained on per second (characters, or words and marks)
    tokens: str = "char"  # the tokenizer kind: what a token is in the figures above


@dataclass(frozen=True)
class Evaluation:
    """A validation score during training; also the run's metrics record for it."""

    step: int
    epoch: float
    train_loss: float
    val_loss: float  # nats per token (a tagger's: nats per label, summed over its heads)
    val_bpc: float | None  # bits per character of the original text (None for a tagger)
    best_val_loss: float  # the kept checkpoint's validation loss (kept by loss, or by F1 for a tagger or classifier)
    lr: float
    chars_per_sec: float  # tokens per second
    train_seconds: float
    tokens: str = "char"  # the tokenizer kind, or "label" for a tagger
    val_f1: float | None = None  # a tagger's headline F1 (a classifier's macro-F1) on the validation documents
    val_accuracy: float | None = None  # a classifier's accuracy on the validation texts
    best_step: int | None = None  # the step of the kept (best) checkpoint after this evaluation
    best_f1: float | None = None  # its F1, the figure a tagger or classifier keeps its best checkpoint by

    def to_dict(self) -> dict:
        """Plain JSON types, in field order."""
        return asdict(self)


@dataclass(frozen=True)
class Sample:
    """A short text the model generated at `step` (--sample-every)."""

    step: int
    text: str


Event = Log | Warning | Recipe | Progress | Evaluation | Sample


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: what `train` returns (not reported: the caller shows it as it likes)."""

    best_val_loss: float | None  # nats per token of the run's kind
    best_val_bpc: float | None  # bits per character of the original text
    best_val_mode: str  # "exact", "streams", "sample" or "none"
    steps: int
    epochs: float
    train_seconds: float
    chars_per_sec: float  # tokens per second
    checkpoint: str
    stopped_by: str  # "steps", "epochs", "time", "patience" or "finished"
    tokens: str = "char"  # the tokenizer kind
    procs: int = 1  # processes that trained together (charlm.parallel)
    allreduce_seconds_per_step: float | None = None  # their gradient exchange, per step

    def to_dict(self) -> dict:
        return asdict(self)
