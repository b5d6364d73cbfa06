"""The seam between the Trainer and what it trains.

The Trainer (`charlm.training.trainer`) owns the loop, the gradient path, the evaluation cadence, checkpoints,
the time budget, signals and resume. Everything that differs between kinds of model is a `Task`: reading and
splitting the data, the batches, the loss, the evaluation and which way is better, what a checkpoint records
about the data, and what the progress shows as a sample. A task lives in its own folder under
`charlm.tasks` and is registered by name in `charlm.tasks.registry`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.networks import network
from charlm.training.options import TrainOptions


@dataclass(frozen=True)
class Scores:
    """One evaluation on held-out data: the loss (nats per token, or per label for a document task) and,
    where the task measures them, its headline F1 and accuracy."""

    loss: float
    f1: float | None = None
    accuracy: float | None = None


class Task(ABC):
    """What the Trainer trains. A task is built by its `open` classmethod, which loads what the options point to
    (the data, and a checkpoint to resume or fine-tune) and settles the options in force.

    Attributes every task sets:
    - opts: the options in force (the recipe's choices filled in; a resume's saved options merged)
    - base: the checkpoint to start from (`charlm.store.checkpoint.Checkpoint`), or None for a new model
    - resume: continue `base`'s run exactly rather than fine-tune it
    - vocab: the tokenizer the model reads
    Class attributes:
    - kind: the kind of model the task trains (`charlm.models.config.MODEL_KINDS`), which its
      `model_config` says too
    - unit: what the losses are per, as events and results name it ("char", "word", "label")
    - carries_state: batches continue streams, so the Trainer carries the hidden state from one batch to the
      next (reset at each epoch) and saves it in step checkpoints
    - refused: the options (TrainOptions field names) that do not apply to the task: usage errors when given
    """

    kind: str
    unit = "label"
    carries_state = False
    refused: tuple[str, ...] = ()
    opts: TrainOptions
    base = None
    resume = False
    vocab = None

    # ------------------------------------------------------------------ options and data
    @classmethod
    def refuse_given(cls, opts: TrainOptions, explicit: frozenset) -> None:
        """A usage error (ConfigError) naming the options of `cls.refused` the user gave (`explicit`)."""
        given = [name for name in cls.refused if name in explicit]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{flags} {'does' if len(given) == 1 else 'do'} not apply to --task {opts.task}")

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        """Refuse, as usage errors (ConfigError), options that do not apply to this task or values it cannot
        use; `explicit` names the options the user gave. By default: the options of `refused`."""
        cls.refuse_given(opts, explicit)

    @classmethod
    @abstractmethod
    def open(cls, opts: TrainOptions, run_dir, *, explicit: frozenset, report) -> "Task":
        """Load the run to resume or the checkpoint to fine-tune, then the data, and fill the options the user
        left to the recipe. `report(event)` gets warnings, notes and the recipe."""

    # ------------------------------------------------------------------ the model and its batches
    @abstractmethod
    def model_config(self) -> ModelConfig:
        """The configuration of a new model (a run that starts from a checkpoint keeps that one's)."""

    def init_params(self, cfg: ModelConfig, rng) -> dict:
        """A new model's parameters, drawn from `rng`."""
        return network(cfg).init_params(cfg, rng)

    def rates(self, params: dict) -> dict | None:
        """A multiple of the learning rate for some parameters (name -> multiple), or None: one rate for all."""
        return None

    @abstractmethod
    def batches(self):
        """The training batches from the start: an object with `next_batch()` -> (x (T, B) ids, targets),
        `new_epoch` (the batch just drawn began an epoch), `batches_per_epoch` and a JSON `cursor`."""

    @abstractmethod
    def restore_batches(self, cursor: dict):
        """The training batches continuing from a saved `cursor`."""

    def new_state(self, cfg: ModelConfig, batch: int) -> list | None:
        """The zero carried state of `batch` streams (tasks that carry state)."""
        return None

    @abstractmethod
    def loss_and_grads(self, params, cfg: ModelConfig, x, y, state, *, rng, workspace):
        """Loss and gradients of one batch from `next_batch()`. -> (loss, grads, the state to carry on)"""

    # ------------------------------------------------------------------ evaluation
    @property
    def has_validation(self) -> bool:
        """Whether there is held-out data to evaluate on."""
        return False

    def start_validation(self, params, cfg: ModelConfig, clock) -> None:
        """Called before training and after the first evaluation: time what the final score will cost at the
        machine's present speed."""
        return  # by default nothing to time: the final score is the best evaluation's

    def first_evaluation_took(self, seconds: float) -> None:  # noqa: B027 (a hook: most tasks need nothing)
        """The run's first evaluation took `seconds` (a task may size the later ones by them)."""

    @abstractmethod
    def evaluate(self, params, cfg: ModelConfig) -> Scores:
        """An evaluation during training."""

    def improves(self, scores: Scores, best: Scores | None) -> bool:
        """Whether `scores` is the best evaluation so far (by default: the lower loss)."""
        return best is None or scores.loss < best.loss

    def reserved_seconds(self, eval_seconds: float | None, slowdown: float = 1.0) -> float:
        """Seconds of a time budget to keep for the closing evaluation and the final score; `eval_seconds`:
        what the last evaluation would take at the machine's present speed (None before the first);
        `slowdown`: how many times slower the machine trains than when `start_validation` last timed its work."""
        return 1.5 * eval_seconds if eval_seconds else 0.0

    def final_score(self, best_ckpt, best: Scores, *, train_seconds: float, report, slowdown: float = 1.0,
                    seconds_left: float | None = None) -> tuple[Scores, str]:
        """The best checkpoint's figures on the held-out data and how they were measured ("exact" or
        "streams"), fitting the `seconds_left` of the time budget (None without one). By default the best
        evaluation's, when every evaluation scores all held-out data."""
        return best, "exact"

    def bits_per_char(self, loss: float | None) -> float | None:
        """A loss in bits per character of the original text, where the task's losses have one."""
        return None

    # ------------------------------------------------------------------ what runs record and show
    @abstractmethod
    def data_meta(self) -> dict:
        """What a checkpoint says about the data and the task (its `data` metadata)."""

    @abstractmethod
    def sample(self, params, cfg: ModelConfig, step: int) -> str:
        """A short text that shows what the model does now (--sample-every)."""
