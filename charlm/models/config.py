"""The model's configuration: everything needed to rebuild the network, saved in every checkpoint."""

import numbers
from dataclasses import asdict, dataclass

from charlm.engine.cells import CELLS
from charlm.errors import ConfigError

ACTIVATIONS = ("tanh", "relu")
POOLS = ("last", "mean", "max")
# How an encoder–decoder's decoder reads the encoder's states: not at all (only its initial state comes from
# them), Luong's dot and general scores, Bahdanau's additive score.
ATTENTIONS = ("none", "dot", "general", "additive")
DTYPES = ("float32", "float64")
# What a network computes, saved in every checkpoint: "lm" predicts the next token, "tagger" labels every
# token (one head per kind of label), "classifier" pools a text into one label, "seq2seq" writes an output
# sequence of its own vocabulary and length from an input sequence.
MODEL_KINDS = ("lm", "tagger", "classifier", "seq2seq")


def kind_of(heads, pool, target_vocab: int = 0) -> str:
    """The kind a config's fields describe (checkpoints written before kinds were stored have no other
    word for it): a model with a target vocabulary is an encoder–decoder, a pooled one a classifier, one with
    heads a tagger, any other a language model."""
    return "seq2seq" if target_vocab else "classifier" if pool else "tagger" if heads else "lm"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; saved in checkpoints as a plain dict."""

    cell: str  # one of "rnn", "gru", "gru-simple", "lstm"
    vocab_size: int  # V, the number of token ids (specials included)
    hidden: int  # H, units per recurrent layer
    layers: int = 1  # L, stacked recurrent layers
    embed: int = 0  # E, learned embedding width; 0 = one-hot input (a row gather of layer 0's Wx)
    dropout: float = 0.0  # inverted dropout between layers and before the head, training only
    activation: str = "tanh"  # rnn nonlinearity: "tanh" or "relu"
    dtype: str = "float32"  # "float32" (training) or "float64" (gradient checks)
    tie: bool = False  # the head's weight is embed.W transposed (no head.W); needs embed == hidden
    bidirectional: bool = False  # every layer also reads each document backwards (taggers only)
    heads: tuple = ()  # a tagger's heads, the number of labels of each; () is a language model
    pool: str = ""  # a classifier's pooling of a text's states (one of POOLS; its one head are the labels)
    kind: str = ""  # one of MODEL_KINDS; "" derives it from heads, pool and target_vocab (see kind_of)
    target_vocab: int = 0  # an encoder–decoder's output vocabulary (V_y, specials included); 0 for the others
    attention: str = ""  # an encoder–decoder's attention (one of ATTENTIONS); "" for the others

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name, low in (("vocab_size", 1), ("hidden", 1), ("layers", 1), ("embed", 0), ("target_vocab", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ConfigError(f"model {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
            raise ConfigError(f"model dropout must be a number in [0, 1), got {p!r}")
        object.__setattr__(self, "dropout", float(p))
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose tanh or relu")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model dtype must be float32 or float64, got {self.dtype!r}")
        heads = self.heads
        if not isinstance(heads, (list, tuple)) or not all(
                isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 2 for k in heads):
            raise ConfigError(f"model heads must be a list of label counts >= 2, got {heads!r}")
        object.__setattr__(self, "heads", tuple(int(k) for k in heads))
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.heads, self.pool, self.target_vocab))
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        if self.kind != kind_of(self.heads, self.pool, self.target_vocab):
            raise ConfigError(f"a model of kind {self.kind!r} cannot have heads {self.heads}, pool "
                              f"{self.pool!r} and target vocabulary {self.target_vocab}")
        if (self.kind == "seq2seq") != (self.attention != ""):
            raise ConfigError(f"only an encoder–decoder has attention, and it has one of {', '.join(ATTENTIONS)}; "
                              f"got {self.attention!r} for a model of kind {self.kind!r}")
        if self.attention and self.attention not in ATTENTIONS:
            raise ConfigError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTIONS)}")
        if self.kind == "seq2seq" and (self.heads or self.pool or self.tie):
            raise ConfigError("an encoder–decoder has no tagging heads, pooling or tied head")
        if self.attention == "dot" and self.bidirectional:
            raise ConfigError("--attention dot multiplies the decoder's state (H) by the encoder's (2H when "
                              "bidirectional) directly, so their widths must match: use --attention general or "
                              "additive with --bidirectional")
        if self.pool and (self.pool not in POOLS or len(self.heads) != 1):
            raise ConfigError(f"a classifier pools by one of {', '.join(POOLS)} into one head, got pool "
                              f"{self.pool!r} and heads {self.heads}")
        if self.tie and self.heads:
            raise ConfigError("--tie shares the embedding with a language model's head; a tagger has none")
        for name in ("tie", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model {name} must be true or false, got {getattr(self, name)!r}")
        if self.tie and self.embed != self.hidden:  # hidden >= 1, so this also refuses one-hot input (embed 0)
            raise ConfigError(f"--tie needs --embed equal to --hidden (got --embed {self.embed}, --hidden "
                              f"{self.hidden}): the tied head multiplies the top layer's output by the "
                              f"embedding table")

    def to_dict(self) -> dict:
        """Plain JSON types, for checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "ModelConfig":
        """Rebuild from `to_dict()` output; unknown or missing keys and bad values raise ConfigError. Optional
        fields missing from an older checkpoint's dict take their defaults (`tie`, `bidirectional` False,
        `heads` empty, `pool` none, `target_vocab` 0, `attention` none, `kind` derived from them)."""
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a mapping, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys: {', '.join(map(str, unknown))}")
        missing = [k for k in ("cell", "vocab_size", "hidden") if k not in d]
        if missing:
            raise ConfigError(f"model config lacks {', '.join(missing)}")
        return cls(**d)
