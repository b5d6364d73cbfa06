"""The recipe's rules: the constants every choice follows, the small pure functions that apply them to one
model (its parameters, its dropout, its chunking over a stream), and what the rules are applied to: the corpus
statistics, the stopping rule and the machine's speed.

docs/recipe.md states each rule with the evidence for it; `charlm.training.recipe_plan` applies the rules to a
corpus and a budget. Callers import these names from `charlm.training.recipe`.
"""

import math
from dataclasses import dataclass, replace

from charlm.models.config import ModelConfig
from charlm.models.lm import param_shapes

# The share of a time budget the recipe expects in training steps; the rest is setup, evaluations and the final
# score (docs/recipe.md, "The speed that sizes the model").
TRAIN_SHARE = 0.9
# Widths the recipe chooses from (multiples of 64 keep the matrix products on the fast path), all LAYERS deep;
# WIDTH_WITHOUT_BUDGET when no time budget says what the run can afford.
WIDTHS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024)
LAYERS = 2
WIDTH_WITHOUT_BUDGET = 256
# A width is affordable when its budget shows it enough text (docs/recipe.md, "Width"): MIN_EPOCHS passes over
# the corpus or CHARS_PER_PARAM tokens per parameter, whichever is less text (the second binds on a corpus too
# large for the passes); never fewer than MIN_CHARS_PER_PARAM tokens per parameter, however many passes that
# makes, as the text a model needs grows with its size; and MIN_UPDATES updates. The recipe takes the widest
# affordable width: a wider one is undertrained when the budget ends, a narrower one learns less.
# MIN_CHARS_PER_PARAM lies between a width too wide for its budget and one wide enough, with room on both sides
# for the error of the measured speed (up to a fifth either way).
MIN_EPOCHS = 2.5
CHARS_PER_PARAM = 3.0
MIN_CHARS_PER_PARAM = 0.8
MIN_UPDATES = 500
# Documents shorter than a chunk (word lists, names) are short contexts, memorised before they generalise: both
# floors are higher over them, and the weaker of the two binds, as over long documents (docs/recipe.md,
# "Documents shorter than a chunk").
MIN_EPOCHS_SHORT_DOCUMENTS = 6.0
CHARS_PER_PARAM_SHORT_DOCUMENTS = 6.0
# Dropout (docs/recipe.md, "Dropout"): DROPOUT_BASE + DROPOUT_PER_DOUBLING * log2(parameters per corpus token),
# within [MIN_DROPOUT, MAX_DROPOUT], rounded to 0.05; none below one epoch (every token is new). Past
# PARAMS_PER_CHAR parameters per corpus token a model would need more dropout than MAX_DROPOUT, so no wider one
# is chosen. A long document overfits even a model smaller than it (it repeats its own idioms, which a long
# context memorises), so MIN_DROPOUT holds there; documents shorter than a chunk give a small model nothing long
# to memorise, and dropout only slows it, so over them the rule runs down to MIN_DROPOUT_SHORT_DOCUMENTS.
DROPOUT_BASE = 0.1
DROPOUT_PER_DOUBLING = 0.1
MIN_DROPOUT = 0.1
MIN_DROPOUT_SHORT_DOCUMENTS = 0.0
MAX_DROPOUT = 0.5
PARAMS_PER_CHAR = 2 ** ((MAX_DROPOUT - DROPOUT_BASE) / DROPOUT_PER_DOUBLING)
# Updates of TOKENS_PER_UPDATE tokens, in SHORT_CHUNK-token chunks over many streams (the most updates per
# second); from LONG_CHUNK_WIDTH units, LONG_CHUNK-token chunks over fewer streams: the truncated gradient
# reaches back one chunk, and a wide model can use the longer context a narrow one cannot (docs/recipe.md,
# "Chunks").
TOKENS_PER_UPDATE = 2048
SHORT_CHUNK = 32
LONG_CHUNK = 64
LONG_CHUNK_WIDTH = 512
# An epoch of fewer updates than this learns little from each pass (the trainer warns of one); the recipe
# shrinks the update of a short corpus to keep this many (`fit_to_stream`).
MIN_BATCHES_PER_EPOCH = 10
# Adam at a high rate with the global norm clipped at 1; dropout, not weight decay, regularises
# (docs/recipe.md, "Optimiser and where the decay ends").
CHAR_TRAINING = {"optimizer": "adam", "lr": 1e-2, "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0}
# The cosine decay ends at MIN_LR_RATIO_SETTLED (the last updates settle the weights) when the budget buys
# MIN_EPOCHS passes over documents at least a chunk long; at MIN_LR_RATIO_UNSETTLED, a tenth of the peak, on
# fewer passes (a corpus too large for the budget) and over documents shorter than a chunk (docs/recipe.md,
# "Optimiser and where the decay ends").
MIN_LR_RATIO_SETTLED = 0.0
MIN_LR_RATIO_UNSETTLED = 0.1
# Adam's first steps are noisy: a warm-up of WARMUP updates, but at most WARMUP_SHARE of those the budget buys.
WARMUP = 30
WARMUP_SHARE = 0.05
# A run whose validation loss has not improved in PATIENCE automatic evaluations stops early.
PATIENCE = 4
# The fixed recipes, of word models and of the document tasks, end the cosine decay at a tenth of the peak: the
# end at 0 is a rule of character language models only.
# Words: the classic word-level recipe (pytorch/examples word_language_model): 2 x 200 with separate input
# and output matrices, dropout 0.2, plain SGD at lr 20 with the global norm clipped at 0.25, 20 streams x 35
# words. A word's rows get updates only where the word occurs, and Adam's per-coordinate steps at any rate
# that also trains the LSTM quickly let the carried cell state run away; clipped SGD bounds every step
# (docs/recipe.md, "Word models"). Symbols are whole units too, and this is the recipe their published
# figures (Penn Treebank, WikiText) were trained with, so they take it as well.
WORD_RECIPE = {"hidden": 200, "layers": 2, "dropout": 0.2, "seq_len": 35, "batch": 20, "optimizer": "sgd",
               "lr": 20.0, "momentum": 0.0, "clip": 0.25, "weight_decay": 0.0, "min_lr_ratio": 0.1,
               "warmup": WARMUP, "patience": 0}
# Taggers and classifiers read whole documents (a batch of similar lengths, padded): a narrower model than a
# language model's (two directions double its output), Adam at a moderate rate.
TAGGER_RECIPE = {"hidden": 128, "layers": 2, "dropout": 0.1, "batch": 32, "optimizer": "adam", "lr": 3e-3,
                 "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0, "min_lr_ratio": 0.1, "warmup": WARMUP,
                 "patience": 0}
# Classifiers of texts in words or symbols (sentences, not names): one bidirectional layer of 128 (the model
# peaks in a few passes over SST-2's phrases; 256 was no better over two runs and 2.5 times slower), Adam at
# 3e-3 (docs/recipe.md#classifiers-of-sentences---task-classify---tokens-word-or-symbols).
SENTENCE_RECIPE = {"hidden": 128, "layers": 1, "dropout": 0.3, "batch": 32, "optimizer": "adam", "lr": 3e-3,
                   "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0, "min_lr_ratio": 0.1, "warmup": WARMUP,
                   "patience": 0}
# Their model beyond the recipe's options: a learned table (a one-hot row of 4H gates per word would cost the
# optimiser V x 4H updates a step), read both ways and max-pooled. Token dropout and weight averaging stay off:
# both lost on SST-2.
SENTENCE_MODEL = {"embed": 128, "bidirectional": True, "pool": "max"}
# --pretrain gives the language model this share of the time budget, the classifier the rest.
PRETRAIN_SHARE = 0.4
# Encoder–decoders read pairs whole: a wider model than a tagger's (the decoder writes a whole sequence from
# what the encoder kept), one layer each (within the same minutes one layer learned more than two on G2P and
# on French to English: more passes at less cost a pass), dropout against memorising small parallel corpora,
# Adam at 2e-3 decayed to 5% (docs/recipe.md#encoderdecoders---task-translate).
TRANSLATE_RECIPE = {"hidden": 256, "layers": 1, "dropout": 0.2, "batch": 64, "optimizer": "adam", "lr": 2e-3,
                    "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0, "min_lr_ratio": 0.05, "warmup": WARMUP,
                    "patience": 0}
# The attention an encoder–decoder gets by default: the form that measured best on grapheme-to-phoneme
# (docs/recipe.md#encoderdecoders---task-translate).
TRANSLATE_ATTENTION = "additive"
# Vocabularies up to this size are read as one-hot rows (a gather of Wx); larger ones through a learned table
# of TRANSLATE_EMBED columns, which costs far fewer parameters than V rows of 4H gates.
TRANSLATE_ONE_HOT_MAX = 512
TRANSLATE_EMBED = 256
# The options a recipe may choose (those the user left as None).
RECIPE_OPTIONS = ("hidden", "layers", "dropout", "seq_len", "batch", "optimizer", "lr", "momentum", "clip",
                  "weight_decay", "min_lr_ratio", "warmup", "patience")


@dataclass(frozen=True)
class CorpusStats:
    """What the trainer knows of its training text: `tokens` ids, in `documents` documents (1 for a whole
    file), over a vocabulary of `vocab`; `kind` the tokenizer kind, "char", "word" or "symbols"."""

    tokens: int
    documents: int
    vocab: int
    kind: str = "char"


@dataclass(frozen=True)
class Speed:
    """The machine's measured training speed: a step costs `fixed` seconds per token whatever the width (the
    per-time-step work of small models) plus `per_param` seconds per token and parameter (the matrix
    products of wide ones)."""

    fixed: float
    per_param: float
    # (parameters, seconds per token) of the widths timed directly, each at the chunking the recipe gives it:
    # where the choice of width is made, a measurement, not the model's extrapolation from two small widths.
    measured: tuple[tuple[int, float], ...] = ()

    def tokens_per_second(self, params: int) -> float:
        seconds = dict(self.measured).get(params, self.fixed + self.per_param * params)
        return 1.0 / seconds

    def with_measured(self, params: int, seconds_per_token: float) -> "Speed":
        """This speed with one width's measured cost added (or replaced)."""
        points = dict(self.measured) | {params: seconds_per_token}
        return replace(self, measured=tuple(sorted(points.items())))


@dataclass(frozen=True)
class Budget:
    """How the run stops: a time budget in seconds, a number of steps or epochs (any may be None), the
    machine's measured `speed` (None when not measured), and how often it evaluates."""

    seconds: float | None = None
    steps: int | None = None
    epochs: float | None = None
    speed: Speed | None = None
    eval_every: int = 0  # steps between evaluations; 0: automatic, by time (charlm.training.budget)


def parameters(cell: str, hidden: int, layers: int, vocab: int) -> int:
    """Parameters of a language model with one-hot input (the recipe's character models)."""
    cfg = ModelConfig(cell=cell, vocab_size=vocab, hidden=hidden, layers=layers, embed=0)
    return sum(math.prod(shape) for shape in param_shapes(cfg).values())


def dropout_for(epochs: float | None, params_per_char: float, *, short_documents: bool = False) -> float:
    """Dropout for a model of `params_per_char` parameters per corpus token trained for `epochs` (None:
    unknown) over a corpus of long documents or (short_documents) of documents shorter than a chunk, rounded
    to 0.05."""
    if epochs is not None and epochs < 1:
        return 0.0
    pressure = DROPOUT_BASE + DROPOUT_PER_DOUBLING * math.log2(params_per_char)
    floor = MIN_DROPOUT_SHORT_DOCUMENTS if short_documents else MIN_DROPOUT
    return round(min(max(pressure, floor), MAX_DROPOUT) * 20) / 20


def chunking(hidden: int, given: dict, tokens: int) -> tuple[int, int]:
    """(batch, seq_len) of a character model `hidden` wide over a training stream of `tokens` ids, the given
    ones kept."""
    return fit_to_stream(*full_update(hidden, given), given, tokens)


def full_update(hidden: int, given: dict) -> tuple[int, int]:
    """(batch, seq_len) of a character model `hidden` wide over a stream long enough for them: TOKENS_PER_UPDATE
    tokens in chunks of SHORT_CHUNK, or LONG_CHUNK from LONG_CHUNK_WIDTH units, the given ones kept."""
    seq_len = given.get("seq_len", LONG_CHUNK if hidden >= LONG_CHUNK_WIDTH else SHORT_CHUNK)
    return given.get("batch", TOKENS_PER_UPDATE // seq_len), seq_len


def fit_to_stream(batch: int, seq_len: int, given: dict, tokens: int) -> tuple[int, int]:
    """(batch, seq_len), those not given reduced until an epoch over a stream of `tokens` ids holds
    MIN_BATCHES_PER_EPOCH updates (one more update's worth of ids is left for the batcher's offset of up to a
    chunk), or, in a stream too short for that many, one (batch x seq_len + 1 ids, the batcher's rule): a
    chunk no longer than an update's share, then as many streams as it holds. A corpus too short for the
    usual update still trains; one too short for what the user gave is the batcher's error, which names the
    largest that fits."""
    room = (tokens - 1) // (MIN_BATCHES_PER_EPOCH + 1) or max(tokens - 1, 1)
    if "seq_len" not in given:
        seq_len = max(1, min(seq_len, room // given.get("batch", 1)))
    if "batch" not in given:
        batch = max(1, min(batch, room // seq_len))
    return batch, seq_len
