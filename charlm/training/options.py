"""`charlm train`'s options and the learning-rate schedule they define.

The defaults are the recipe README documents under "Defaults, and why"; `bench/quality.py` measures it.
"""

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from charlm.models.config import ModelConfig

# Options that define the model or its vocabulary: a resume must not change them.
ARCHITECTURE_OPTIONS = ("cell", "hidden", "layers", "embed", "activation", "dtype",
                        "eos", "encoding", "min_count", "max_vocab")


@dataclass(frozen=True)
class TrainOptions:
    """Every `charlm train` option; the defaults are the recipe documented in README."""

    corpus: str
    out: str | None = None
    cell: str = "lstm"
    hidden: int | None = None  # None: scaled to the --time budget (with_budget_defaults)
    layers: int = 2
    embed: int = 0
    dropout: float | None = None  # None: scaled to the --time budget
    activation: str = "tanh"
    dtype: str = "float32"
    seq_len: int = 32
    batch: int = 64
    optimizer: str = "adam"
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 30
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    clip_mode: str = "norm"
    steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None
    val_fraction: float = 0.1
    val_file: str | None = None
    eval_every: int = 0
    eval_streams: int = 64
    eval_chars: int = 262_144
    patience: int = 0
    sample_every: int = 0
    save_every: int = 0
    keep: int = 2
    eos: str = "file"
    encoding: str = "utf-8"
    min_count: int = 1
    max_vocab: int | None = None
    seed: int = 1337
    init_from: str | None = None
    resume: bool = False
    json: bool = False
    quiet: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / Path(self.corpus).stem

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model these options describe (hidden and dropout left unset are filled from the budget)."""
        o = with_budget_defaults(self)
        return ModelConfig(cell=o.cell, vocab_size=vocab_size, hidden=o.hidden, layers=o.layers, embed=o.embed,
                           dropout=o.dropout, activation=o.activation, dtype=o.dtype)


# A longer budget affords a wider model, which then needs more dropout (README "Defaults, and why"):
# on tinyshakespeare 256 units with dropout 0.1 won at 5 minutes and 384 with 0.2 at 10 minutes.
LARGE_BUDGET_SECONDS = 450.0
SMALL_MODEL = {"hidden": 256, "dropout": 0.1}
LARGE_MODEL = {"hidden": 384, "dropout": 0.2}


def with_budget_defaults(opts: TrainOptions) -> TrainOptions:
    """Fill the options left to the budget (None): the large model for a --time of 7.5 minutes or more,
    else the small one (also for runs stopped by --steps or --epochs)."""
    recipe = LARGE_MODEL if (opts.time_budget or 0) >= LARGE_BUDGET_SECONDS else SMALL_MODEL
    chosen = {name: value for name, value in recipe.items() if getattr(opts, name) is None}
    return replace(opts, **chosen) if chosen else opts


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 2h or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def learning_rate(opts: TrainOptions, step: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then constant or cosine decay to min_lr_ratio * lr at progress 1."""
    lr = opts.lr
    if opts.schedule == "cosine":
        p = min(max(progress, 0.0), 1.0)
        floor = opts.lr * opts.min_lr_ratio
        lr = floor + 0.5 * (opts.lr - floor) * (1 + math.cos(math.pi * p))
    if opts.warmup and step < opts.warmup:
        lr *= (step + 1) / opts.warmup
    return lr
