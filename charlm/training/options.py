"""`charlm train`'s options: every default, and the rules that check them and carry them across a resume.

Options left unset (None) are the recipe's to choose (`charlm.training.recipe`), once the corpus is read.
"""

import math
import numbers
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from charlm.errors import CharlmError, ConfigError
from charlm.models.config import ModelConfig
from charlm.text.tokenizer import KINDS

# The marks `--task punctuate` removes and restores, by default.
DEFAULT_MARKS = ",.?!:;"
# Seconds of training when no stopping rule (steps, epochs or a time budget) is given.
DEFAULT_TIME_BUDGET = 600.0


@dataclass(frozen=True)
class TrainOptions:
    """Every `charlm train` option that shapes the run; saved in each checkpoint and in config.json.

    Display choices (--json, --quiet) are not options of the run: they belong to the command that shows it.
    """

    corpus: str
    out: str | None = None
    cell: str = "lstm"
    # None, here and below: left to the recipe (charlm.training.recipe), which fills it before training
    hidden: int | None = None
    layers: int | None = None
    embed: int | None = None  # 0 (one-hot input) for characters, the hidden width for words
    tie: bool = False
    dropout: float | None = None
    activation: str = "tanh"
    dtype: str = "float32"
    seq_len: int | None = None
    batch: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str = "cosine"
    warmup: int | None = None
    min_lr_ratio: float | None = None  # where the cosine decay ends, a fraction of lr
    clip: float | None = None
    clip_mode: str = "norm"
    steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None  # None: DEFAULT_TIME_BUDGET unless steps or epochs (or a resume) say
    val_fraction: float = 0.1
    val_file: str | None = None
    eval_every: int = 0
    eval_streams: int = 64
    eval_chars: int = 262_144
    patience: int | None = None  # evaluations without improvement before stopping (0: never)
    sample_every: int = 0
    save_every: int = 0
    keep: int = 2
    tokens: str = "char"
    lowercase: bool = False
    eos: str = "file"
    encoding: str = "utf-8"
    min_count: int = 1
    max_vocab: int | None = None
    seed: int = 1337
    init_from: str | None = None
    resume: bool = False
    task: str = "lm"  # a task of charlm.tasks.registry.TASKS
    bidirectional: bool = False
    marks: str = DEFAULT_MARKS  # punctuate: the marks removed and restored
    max_len: int = 500  # taggers and classifiers: documents longer than this many characters are cut
    pool: str = "last"  # classify: how a text's states become one vector (charlm.models.config.POOLS)
    balance: bool = False  # classify: weigh the loss by inverse label frequency
    pretrain: bool | None = None  # classify: a language model on the texts first, its encoder the classifier's
    encoder_lr: float | None = None  # a pre-trained encoder's learning rate, a multiple of --lr; None: 1
    average: float | None = None  # decay of the weights' moving average, evaluated and kept; None or 0: off
    token_dropout: float | None = None  # classify: share of input tokens read as <UNK> in training; None or 0: off
    source_tokens: str | None = None  # translate: the source side's tokens (one of KINDS); None: --tokens
    target_tokens: str | None = None  # translate: the target side's tokens; None: --tokens
    attention: str | None = None  # translate: one of charlm.models.config.ATTENTIONS; None: the recipe's
    threads: int | None = None  # BLAS threads; None: the fastest now (charlm.training.threads)
    recipe: str = ""  # the recipe's account of the options it chose (charlm.training.recipe.Recipe.text)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / Path(self.corpus).stem

    def model_config(self, vocab_size: int, heads: tuple = (), *, pool: str = "", target_vocab: int = 0,
                     attention: str = "") -> ModelConfig:
        """The model these options describe, once the recipe has filled them; a tagger's `heads` are its label
        counts, a classifier's `pool` its pooling, an encoder–decoder's `target_vocab` its output vocabulary
        and `attention` its attention."""
        o = self
        return ModelConfig(cell=o.cell, vocab_size=vocab_size, hidden=o.hidden, layers=o.layers, embed=o.embed,
                           dropout=o.dropout, activation=o.activation, dtype=o.dtype, tie=o.tie,
                           bidirectional=o.bidirectional, heads=heads, pool=pool, target_vocab=target_vocab,
                           attention=attention)


OPTION_NAMES = frozenset(f.name for f in fields(TrainOptions))
# Options that are ModelConfig fields define the network. Dropout acts only while training, so a resume or a
# fine-tune may change it; every other one decides the shapes or meaning of the weights.
MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name in OPTION_NAMES and f.name != "dropout")
# Options that decide the shapes and meaning of an encoder's weights: what a pre-trained encoder fixes.
ENCODER_OPTIONS = ("cell", "hidden", "layers", "embed", "activation", "dtype")
# Options that decide the vocabulary: which character or word each id (each weight row) stands for, and
# for a tagger what its labels mean.
VOCAB_OPTIONS = ("tokens", "lowercase", "eos", "encoding", "min_count", "max_vocab", "task", "marks", "pool",
                 "source_tokens", "target_tokens")
# Options that the saved batcher cursor, RNG stream and optimiser slots are valid for.
STATE_OPTIONS = ("seq_len", "batch", "seed", "optimizer", "average")


def with_time_budget(opts: TrainOptions) -> TrainOptions:
    """A run given no stopping rule (and not resuming, which keeps its own) trains for DEFAULT_TIME_BUDGET."""
    if opts.steps is None and opts.epochs is None and opts.time_budget is None and not opts.resume:
        return replace(opts, time_budget=DEFAULT_TIME_BUDGET)
    return opts


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 2h or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


# Whole-number options and their least value, as the CLI's flag types have them; None (the recipe's) passes.
INTEGER_MINIMUMS = {"hidden": 1, "layers": 1, "embed": 0, "seq_len": 1, "batch": 1, "warmup": 0, "steps": 1,
                    "eval_every": 0, "eval_streams": 1, "eval_chars": 2, "patience": 0, "sample_every": 0,
                    "save_every": 0, "keep": 1, "min_count": 1, "max_vocab": 3, "max_len": 1, "threads": 1}
# Real options that must be finite and above 0 (epochs, the time budget) or at least 0 (the rest).
POSITIVE_REALS = ("epochs", "time_budget")
NON_NEGATIVE_REALS = ("weight_decay", "clip")


def check_options(o: TrainOptions) -> None:
    """Values the library refuses however the options were built (the CLI's flag types refuse them first,
    `charlm.train` meets them here); options still left to the recipe (None) pass."""
    for name, low in INTEGER_MINIMUMS.items():
        value = getattr(o, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low):
            raise ConfigError(f"--{_flag(name)} must be a whole number >= {low}, got {value!r}")
    for name in POSITIVE_REALS + NON_NEGATIVE_REALS:
        value = getattr(o, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or value < 0 or (value == 0 and name in POSITIVE_REALS):
            bound = "> 0" if name in POSITIVE_REALS else ">= 0"
            raise ConfigError(f"--{_flag(name)} must be a finite number {bound}, got {value!r}")
    if o.dropout is not None and not 0 <= o.dropout < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {o.dropout}")
    if o.encoder_lr is not None and not (math.isfinite(o.encoder_lr) and o.encoder_lr >= 0):
        raise ConfigError(f"--encoder-lr must be a number >= 0 (0 freezes the encoder), got {o.encoder_lr}")
    if o.average is not None and not 0 <= o.average < 1:
        raise ConfigError(f"--average must be in [0, 1) (0: off), got {o.average}")
    if o.token_dropout is not None and not 0 <= o.token_dropout < 1:
        raise ConfigError(f"--token-dropout must be in [0, 1), got {o.token_dropout}")
    if not 0 <= o.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {o.val_fraction}")
    if o.lr is not None and not (math.isfinite(o.lr) and o.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {o.lr}")
    if o.tokens not in KINDS:
        raise ConfigError(f"--tokens must be one of {', '.join(KINDS)}, got {o.tokens!r}")
    if o.tie and None not in (o.embed, o.hidden) and o.embed != o.hidden:
        raise ConfigError(f"--tie shares the input embedding with the output layer, so it needs --embed equal to "
                          f"--hidden (got --embed {o.embed}, --hidden {o.hidden})")


def _flag(name: str) -> str:
    """The CLI flag of an option: `seq_len` -> `seq-len`, `time_budget` -> `time` (given in seconds here)."""
    return "time" if name == "time_budget" else name.replace("_", "-")


def merge_resumed_options(ckpt, opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """The run's saved options (from checkpoint `ckpt`), overridden by those the user gave now (never the
    model, vocabulary or saved-state options). Saved keys that are no longer options are ignored."""
    saved = ckpt.train.get("options")
    if not saved:
        raise CharlmError(f"{ckpt.path} has no training state to resume (is it a best.safetensors copy?)")
    refuse_changes(ckpt, opts, explicit, what="the run being resumed",
                   keys=MODEL_OPTIONS + VOCAB_OPTIONS + STATE_OPTIONS)
    merged = {k: v for k, v in saved.items() if k in OPTION_NAMES}
    for name in explicit:
        merged[name] = getattr(opts, name)
    # The thread count belongs to the machine and the moment, not to the run: a resume chooses afresh.
    merged.update(corpus=opts.corpus, out=str(opts.run_dir), resume=True, init_from=None, threads=opts.threads)
    return TrainOptions(**merged)


def refuse_changes(ckpt, opts: TrainOptions, explicit: frozenset, *, what: str, keys, error=CharlmError) -> None:
    """Raise `error` when an option in `keys` given explicitly differs from checkpoint `ckpt`'s value."""
    saved = (ckpt.train.get("options") or {}) | {name: getattr(ckpt.config, name) for name in MODEL_OPTIONS}
    diffs = [f"--{k.replace('_', '-')} {getattr(opts, k)} (was {saved[k]})"
             for k in keys if k in explicit and k in saved and saved[k] != getattr(opts, k)]
    if diffs:
        raise error(f"cannot change {what}: {'; '.join(diffs)}")
