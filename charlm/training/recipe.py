"""The recipe: every training option the user left unset, chosen from what the trainer knows before it starts.

A pure function of the corpus statistics (`CorpusStats`), the stopping rule and the machine's measured speed
(`Speed`: seconds per token, a fixed part plus a part per parameter, and the widths timed directly: those the
choice turns on, `deciding_widths`). The trainer measures the speed
(`charlm.training.speed`), calls `choose_recipe`, prints the recipe's account once and saves it in the
run's options, so a resumed run keeps the recipe it started with. Options the user gave are never changed.

Character language models follow rules measured on a suite of corpora (README "Defaults, and why"):
- Width: a time budget buys a number of tokens, fewer for a wider model. The width is the widest of WIDTHS
  that still sees MIN_EPOCHS passes over the corpus (or, on a corpus too large for that, CHARS_PER_PARAM
  tokens per parameter; over documents shorter than a chunk, MIN_EPOCHS_SHORT_DOCUMENTS passes or
  CHARS_PER_PARAM_SHORT_DOCUMENTS tokens per parameter), at least
  MIN_CHARS_PER_PARAM tokens per parameter and at least MIN_UPDATES updates: a wider model that sees less is
  undertrained when the budget ends, a narrower one would have learned less. The token floor grows with the
  model, as compute-optimal scaling has it: a long budget on a small corpus buys epochs of a model that can
  still learn from them, not one so wide it has barely started. Small corpora get wide models with strong
  dropout, up to PARAMS_PER_CHAR parameters per corpus token, where the dropout rule reaches MAX_DROPOUT.
- Dropout grows with the model's capacity per token of corpus (P / N), by DROPOUT_PER_DOUBLING for each
  doubling, from MIN_DROPOUT (over documents shorter than a chunk, from MIN_DROPOUT_SHORT_DOCUMENTS); none
  for less than one epoch.
- Updates of TOKENS_PER_UPDATE tokens: 64 streams x 32 tokens buy the most updates per second on 2 cores;
  from LONG_CHUNK_WIDTH units, 32 streams x 64 tokens (a wide model learns from the longer context). Adam at
  1e-2 with the global norm clipped at 1; the warm-up is 30 updates, but at most WARMUP_SHARE of the updates
  the budget buys. The cosine decay ends at a rate of 0 (MIN_LR_RATIO_SETTLED) when the budget buys
  MIN_EPOCHS passes: the last updates settle the weights instead of stirring them at a tenth of the peak;
  on a corpus too large for that, and over documents shorter than a chunk, at MIN_LR_RATIO_UNSETTLED, which
  did better there. A corpus too short for MIN_BATCHES_PER_EPOCH full updates an epoch gets fewer streams,
  then a shorter chunk (`fit_to_stream`; also the word recipe's): defaults must train on any text.
- Patience: a run whose validation loss has not improved for PATIENCE automatic evaluations stops early and
  says so (with evaluations every N steps, asked for by the user, it trains on).
Word-level models and the document tasks (taggers, classifiers) have fixed recipes (WORD_RECIPE,
TAGGER_RECIPE): the suite's rules were measured on characters.
"""

import math
from dataclasses import dataclass, replace

from charlm.models.config import ModelConfig
from charlm.models.lm import param_shapes
from charlm.training.budget import eval_interval
from charlm.training.options import TrainOptions

# The share of a time budget spent in training steps (the rest: setup, evaluations, the final score); the
# suite's runs spent 0.85-0.96 of theirs, more the less validation text there is to score.
TRAIN_SHARE = 0.9
# Widths the recipe chooses from (multiples of 64 keep the matrix products on the fast path).
WIDTHS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024)
# A width is affordable when the budget shows it enough text: MIN_EPOCHS passes over a small corpus, or
# CHARS_PER_PARAM tokens per parameter when the corpus is too large for that; never fewer tokens than
# MIN_CHARS_PER_PARAM per parameter, however many epochs that makes; and MIN_UPDATES updates.
MIN_EPOCHS = 2.5
CHARS_PER_PARAM = 3.0
# A corpus of documents shorter than a chunk (word lists, names) needs more text for each parameter: its
# documents are short contexts, memorised before they generalise. Both floors are higher than a long
# document's, and the weaker of the two binds, as there (README "Defaults, and why" has the runs).
MIN_EPOCHS_SHORT_DOCUMENTS = 6.0
CHARS_PER_PARAM_SHORT_DOCUMENTS = 6.0
# Between 0.5 (a model too wide for its budget, on the suite) and 1.3 (wide enough), with room on both sides
# for the error of the measured speed (up to a fifth either way).
MIN_CHARS_PER_PARAM = 0.8
MIN_UPDATES = 500
# Dropout: DROPOUT_BASE + DROPOUT_PER_DOUBLING * log2(parameters per corpus token), within [MIN_DROPOUT,
# MAX_DROPOUT]; none below one epoch (every token is new). Past PARAMS_PER_CHAR parameters per corpus token
# a model would need more dropout than MAX_DROPOUT, so no wider one is chosen. A long document overfits even
# a model smaller than it (it repeats its own idioms, which a long context memorises), so MIN_DROPOUT holds
# there; documents shorter than a chunk give a small model nothing long to memorise, and dropout only slows
# it (README "Defaults, and why"), so the rule runs down to none.
DROPOUT_BASE = 0.1
DROPOUT_PER_DOUBLING = 0.1
MIN_DROPOUT = 0.1
MIN_DROPOUT_SHORT_DOCUMENTS = 0.0
MAX_DROPOUT = 0.5
PARAMS_PER_CHAR = 2 ** ((MAX_DROPOUT - DROPOUT_BASE) / DROPOUT_PER_DOUBLING)
# The width when no time budget says what the run can afford.
WIDTH_WITHOUT_BUDGET = 256
LAYERS = 2
WARMUP = 30
WARMUP_SHARE = 0.05
PATIENCE = 4
# An epoch of fewer updates than this learns little from each pass (the trainer warns of one); the recipe
# shrinks the update of a short corpus to keep this many.
MIN_BATCHES_PER_EPOCH = 10
# Characters: TOKENS_PER_UPDATE tokens an update, in SHORT_CHUNK-token chunks over many streams (the most
# updates per second); from LONG_CHUNK_WIDTH units, chunks twice as long over half the streams: the truncated
# gradient reaches back one chunk, and a wide model can use the longer context a narrow one cannot. Adam at a
# high rate with the global norm clipped at 1.
TOKENS_PER_UPDATE = 2048
SHORT_CHUNK = 32
LONG_CHUNK = 64
LONG_CHUNK_WIDTH = 512
CHAR_TRAINING = {"optimizer": "adam", "lr": 1e-2, "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0}
# The cosine decay ends at MIN_LR_RATIO_SETTLED (the last updates settle the weights) when the budget buys
# MIN_EPOCHS passes, and at MIN_LR_RATIO_UNSETTLED where that did better on the suite: a run of fewer passes
# (a corpus too large for the budget) and documents shorter than a chunk (README "Defaults, and why" has the
# runs; why was not measured).
MIN_LR_RATIO_SETTLED = 0.0
MIN_LR_RATIO_UNSETTLED = 0.1
# Words: the classic word-level recipe (pytorch/examples word_language_model): 2 x 200 with separate input
# and output matrices, dropout 0.2, plain SGD at lr 20 with the global norm clipped at 0.25, 20 streams x 35
# words. A word's rows get updates only where the word occurs, and Adam's per-coordinate steps at any rate
# that also trains the LSTM quickly let the carried cell state run away (README "Word-level models" has the
# runs); clipped SGD bounds every step.
WORD_RECIPE = {"hidden": 200, "layers": 2, "dropout": 0.2, "seq_len": 35, "batch": 20, "optimizer": "sgd",
               "lr": 20.0, "momentum": 0.0, "clip": 0.25, "weight_decay": 0.0, "min_lr_ratio": 0.1,
               "warmup": WARMUP, "patience": 0}
# Taggers read whole documents (a batch of similar lengths, padded) and label characters: a narrower model
# than a language model's (two directions double its output), Adam at a moderate rate.
TAGGER_RECIPE = {"hidden": 128, "layers": 2, "dropout": 0.1, "batch": 32, "optimizer": "adam", "lr": 3e-3,
                 "momentum": 0.9, "clip": 1.0, "weight_decay": 0.0, "min_lr_ratio": 0.1, "warmup": WARMUP,
                 "patience": 0}
# Both fixed recipes were measured with the cosine decay ending at a tenth of the peak; the end at 0 of the
# character recipe was measured on the character suite only.
# The options a recipe may choose (those the user left as None).
RECIPE_OPTIONS = ("hidden", "layers", "dropout", "seq_len", "batch", "optimizer", "lr", "momentum", "clip",
                  "weight_decay", "min_lr_ratio", "warmup", "patience")


@dataclass(frozen=True)
class CorpusStats:
    """What the trainer knows of its training text: `tokens` ids, in `documents` documents (1 for a whole
    file), over a vocabulary of `vocab`; `kind` "char" or "word"."""

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


@dataclass(frozen=True)
class Recipe:
    """`choices`: option name -> value for every option the recipe set; `summary`: one line on the corpus,
    the budget and the model; `reasons`: one line per group of choices, saying why."""

    choices: dict
    summary: str
    reasons: tuple[str, ...]

    def text(self) -> str:
        return "\n".join((self.summary, *("  " + reason for reason in self.reasons)))


def needs_speed(opts: TrainOptions) -> bool:
    """Whether the recipe sizes this run by the machine's speed: a character language model with a time
    budget, whose width, dropout, warm-up or decay end (all follow the passes the budget buys) is left to the
    recipe."""
    return (opts.task == "lm" and opts.tokens == "char" and bool(opts.time_budget)
            and None in (opts.hidden, opts.dropout, opts.warmup, opts.min_lr_ratio))


def apply_recipe(opts: TrainOptions, stats: CorpusStats | None, speed: Speed | None = None
                 ) -> tuple[TrainOptions, Recipe | None]:
    """`opts` with every option left unset filled (`choose_recipe`), and the recipe (None when the user set
    them all: a resumed run's options are all set). The input width follows the choice: one-hot rows for
    characters, an embedding as wide as the hidden layer for words; a tagger reads whole lines by default."""
    unset = [name for name in RECIPE_OPTIONS if getattr(opts, name) is None]
    recipe = None
    if unset:
        budget, given = _budget_and_given(opts, speed)
        recipe = choose_recipe(stats, budget, task=opts.task, cell=opts.cell, given=given, schedule=opts.schedule)
        opts = replace(opts, **recipe.choices, recipe=recipe.text())
    if opts.embed is None:
        opts = replace(opts, embed=opts.hidden if opts.tokens == "word" and opts.task == "lm" else 0)
    if opts.task != "lm":
        opts = replace(opts, seq_len=opts.max_len, eos="lines" if opts.eos == "file" else opts.eos)
    return opts, recipe


def _budget_and_given(opts: TrainOptions, speed: Speed | None) -> tuple[Budget, dict]:
    """The run's stopping rule with the machine's speed, and the recipe's options the user set."""
    budget = Budget(seconds=opts.time_budget, steps=opts.steps, epochs=opts.epochs, speed=speed,
                    eval_every=opts.eval_every)
    return budget, {name: getattr(opts, name) for name in RECIPE_OPTIONS if getattr(opts, name) is not None}


def parameters(cell: str, hidden: int, layers: int, vocab: int) -> int:
    """Parameters of a language model with one-hot input (the recipe's character models)."""
    cfg = ModelConfig(cell=cell, vocab_size=vocab, hidden=hidden, layers=layers, embed=0)
    return sum(math.prod(shape) for shape in param_shapes(cfg).values())


def choose_recipe(stats: CorpusStats, budget: Budget, *, task: str = "lm", cell: str = "lstm",
                  given: dict | None = None, schedule: str = "cosine") -> Recipe:
    """The options left to the recipe. `given` maps option names to the values the user set (None or absent
    = unset); the result sets only unset ones, and takes the given width and depth into account. `schedule`
    is the run's learning-rate schedule: the reasons name a decay's end only for a cosine one."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if task != "lm":
        return _fixed(TAGGER_RECIPE, given, f"recipe: the {task} recipe (documents read whole)",
                      "a narrower model than a language model's, Adam at 3e-3")
    if stats.kind == "word":
        return _fixed(WORD_RECIPE, given, "recipe: the word-level recipe",
                      "2 x 200, dropout 0.2, clipped SGD at lr 20 over 20 streams x 35 words "
                      "(README \"Word-level models\")", tokens=stats.tokens)
    return _characters(stats, budget, cell, given, schedule)


def _fixed(recipe: dict, given: dict, summary: str, reason: str, tokens: int | None = None) -> Recipe:
    """A fixed recipe's unset options; with `tokens` (a language model's stream), its chunking fitted to the
    stream (`fit_to_stream`)."""
    choices = {name: value for name, value in recipe.items() if name not in given}
    reasons = [reason] if choices else []
    if tokens is not None:
        batch, seq_len = fit_to_stream(given.get("batch", recipe["batch"]), given.get("seq_len", recipe["seq_len"]),
                                       given, tokens)
        fitted = {name: value for name, value in (("batch", batch), ("seq_len", seq_len))
                  if name in choices and value != choices[name]}
        if fitted:
            choices |= fitted
            reasons.append(_flags(fitted) + f": {_too_short(tokens)}")
    return Recipe(choices, summary, tuple(reasons))


def _too_short(tokens: int) -> str:
    return (f"the training stream's {tokens:,} tokens are too few for {MIN_BATCHES_PER_EPOCH} full updates an "
            f"epoch")


def chunking(hidden: int, given: dict, tokens: int) -> tuple[int, int]:
    """(batch, seq_len) of a character model `hidden` wide over a training stream of `tokens` ids, the given
    ones kept."""
    return fit_to_stream(*_full_update(hidden, given), given, tokens)


def _full_update(hidden: int, given: dict) -> tuple[int, int]:
    """(batch, seq_len) of a character model `hidden` wide over a stream long enough for them."""
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


def _characters(stats: CorpusStats, budget: Budget, cell: str, given: dict, schedule: str) -> Recipe:
    layers = given.get("layers", LAYERS)
    n = max(stats.tokens, 1)
    short_documents = _short_documents(stats, given)
    reasons = []
    depth = "" if "layers" in given else f" --layers {layers}"
    if "hidden" in given:
        hidden = given["hidden"]
        if depth:
            reasons.append(f"--layers {layers}: the depth the recipe was measured with")
    else:
        hidden, why = _width(stats, budget, cell, given)
        reasons.append(f"--hidden {hidden}{depth}: {why}")
    params = parameters(cell, hidden, layers, stats.vocab)
    batch, seq_len = chunking(hidden, given, n)
    seconds = _training_seconds(budget)

    if seconds is not None:
        tokens_seen = seconds * budget.speed.tokens_per_second(params)
    elif budget.epochs is not None:
        tokens_seen = budget.epochs * n
    elif budget.steps is not None:
        tokens_seen = budget.steps * batch * seq_len
    else:
        tokens_seen = None
    epochs = tokens_seen / n if tokens_seen is not None else None
    updates = tokens_seen / (batch * seq_len) if tokens_seen is not None else None

    choices = {name: value for name, value in (("hidden", hidden), ("layers", layers)) if name not in given}
    if "dropout" not in given:
        choices["dropout"] = dropout_for(epochs, params / n, short_documents=short_documents)
        below_floor = short_documents and choices["dropout"] < MIN_DROPOUT
        reasons.append(f"--dropout {choices['dropout']:g}: " + (
            "less than one epoch, every character is new" if epochs is not None and epochs < 1 else
            f"{params / n:.2f} parameters per corpus character over "
            f"{'about ' + format(epochs, '.1f') if epochs is not None else 'an unknown number of'} epochs" +
            (f" (below {MIN_DROPOUT:g}: documents shorter than a chunk give a model this small nothing long to "
             f"memorise)" if below_floor else "")))
    chunk = {name: value for name, value in (("seq_len", seq_len), ("batch", batch)) if name not in given}
    if chunk:
        choices.update(chunk)
        reasons.append(_flags(chunk) + (
            f": {_too_short(n)}" if (batch, seq_len) != _full_update(hidden, given) else
            f": chunks of {LONG_CHUNK}, as a model {LONG_CHUNK_WIDTH} or wider can use the longer context; "
            f"{TOKENS_PER_UPDATE:,} characters an update" if hidden >= LONG_CHUNK_WIDTH else
            f": short chunks over many streams buy the most updates per second (chunks of {LONG_CHUNK} from "
            f"{LONG_CHUNK_WIDTH} units); {TOKENS_PER_UPDATE:,} characters an update"))
    trained = {name: value for name, value in CHAR_TRAINING.items() if name not in given}
    ending = ""
    if "min_lr_ratio" not in given:
        trained["min_lr_ratio"], ending = _decay_end(short_documents, epochs)
        if schedule != "cosine":
            ending = ""  # set all the same (every recipe option is), but a constant rate never reaches it
    if trained:
        choices.update(trained)
        reasons.append(_flags(trained) + f": Adam at a high rate with the global norm clipped{ending}; dropout, "
                       "not weight decay, regularises")
    if "warmup" not in given:
        choices["warmup"] = WARMUP if updates is None else max(1, min(WARMUP, int(updates * WARMUP_SHARE)))
        reasons.append(f"--warmup {choices['warmup']}: Adam's first steps are noisy"
                       + (f" (at most {WARMUP_SHARE:.0%} of the ~{updates:,.0f} updates)" if updates else ""))
    if "patience" not in given and budget.eval_every:
        choices["patience"] = 0
        reasons.append(f"--patience 0: evaluations every {budget.eval_every} steps are as frequent as asked, "
                       f"so how many make 'long' is not known; the run does not stop early")
    elif "patience" not in given:
        choices["patience"] = PATIENCE
        every = eval_interval(budget.seconds)
        reasons.append(f"--patience {PATIENCE}: evaluations come about every {every:.0f} s; a run whose "
                       f"validation loss has not improved in {PATIENCE} of them stops early")
    return Recipe(choices, _summary(stats, budget, cell, hidden, layers, epochs), tuple(reasons))


def _decay_end(short_documents: bool, epochs: float | None) -> tuple[float, str]:
    """(min_lr_ratio, the reason's words on it): MIN_LR_RATIO_SETTLED when the run makes MIN_EPOCHS passes
    over documents as long as a chunk (not short_documents), MIN_LR_RATIO_UNSETTLED otherwise."""
    unsettled = f", the cosine decay ending at {MIN_LR_RATIO_UNSETTLED:g} of the peak"
    if short_documents:
        return MIN_LR_RATIO_UNSETTLED, unsettled + " (over documents shorter than a chunk, a decay to 0 did worse)"
    if epochs is None:
        return MIN_LR_RATIO_UNSETTLED, unsettled + " (the passes the run makes are not known)"
    if epochs < MIN_EPOCHS:
        return MIN_LR_RATIO_UNSETTLED, unsettled + f" (below {MIN_EPOCHS:g} passes, a decay to 0 did worse)"
    return MIN_LR_RATIO_SETTLED, (f", the cosine decay ending at {MIN_LR_RATIO_SETTLED:g} with the budget "
                                  f"({MIN_EPOCHS:g} passes or more)")


def _short_documents(stats: CorpusStats, given: dict) -> bool:
    """Whether the corpus's documents are shorter than a chunk (word lists, names)."""
    return max(stats.tokens, 1) / max(stats.documents, 1) < given.get("seq_len", SHORT_CHUNK)


def _training_seconds(budget: Budget) -> float | None:
    """Seconds of the budget the recipe expects in training steps (None: no budget or no measured speed)."""
    return budget.seconds * TRAIN_SHARE if budget.seconds and budget.speed else None


def _width(stats: CorpusStats, budget: Budget, cell: str, given: dict) -> tuple[int, str]:
    """The width the recipe chooses (the depth given or LAYERS) and why."""
    layers = given.get("layers", LAYERS)
    n = max(stats.tokens, 1)

    def size(width: int) -> int:
        return parameters(cell, width, layers, stats.vocab)

    data_cap = PARAMS_PER_CHAR * n
    seconds = _training_seconds(budget)
    if seconds is None:
        hidden = max([w for w in WIDTHS if w <= WIDTH_WITHOUT_BUDGET and size(w) <= data_cap], default=WIDTHS[0])
        return hidden, (f"no time budget to size the model by; at most {PARAMS_PER_CHAR:g} parameters per corpus "
                        f"character")
    short_documents = _short_documents(stats, given)
    min_epochs, chars_per_param = ((MIN_EPOCHS_SHORT_DOCUMENTS, CHARS_PER_PARAM_SHORT_DOCUMENTS) if short_documents
                                   else (MIN_EPOCHS, CHARS_PER_PARAM))

    def shortfall(width: int) -> str | None:
        """What the budget would not show a model of `width` (None: it is affordable)."""
        tokens = seconds * budget.speed.tokens_per_second(size(width))
        if tokens < MIN_UPDATES * math.prod(chunking(width, given, n)):
            return f"{MIN_UPDATES} updates"
        if tokens < min(min_epochs * n, chars_per_param * size(width)):
            return (f"{min_epochs:g} epochs and {chars_per_param:g} characters per parameter"
                    + (" (documents shorter than a chunk need more text)" if short_documents else ""))
        if tokens < MIN_CHARS_PER_PARAM * size(width):
            return f"{MIN_CHARS_PER_PARAM:g} characters per parameter"
        return None

    fed = [w for w in WIDTHS if shortfall(w) is None]
    hidden = max([w for w in fed if size(w) <= data_cap], default=WIDTHS[0])
    wider = WIDTHS[WIDTHS.index(hidden) + 1:]
    if fed and hidden < max(fed):
        return hidden, (f"the widest with at most {PARAMS_PER_CHAR:g} parameters per corpus character (a wider "
                        f"one would need dropout above {MAX_DROPOUT:g}); the budget affords wider")
    if not fed:
        return hidden, (f"the narrowest the recipe chooses from, though the budget shows it less than "
                        f"{shortfall(hidden)}")
    if wider:
        return hidden, f"the widest model the budget affords: a wider one would see less than {shortfall(wider[0])}"
    return hidden, "the widest model the recipe chooses from, and the budget affords it"


def deciding_widths(opts: TrainOptions, stats: CorpusStats, speed: Speed) -> list[tuple[int, int, int]]:
    """(hidden, batch, seq_len) of the widths whose speed decides the recipe's choice and that `speed` has not
    measured directly: the width it would choose and the next wider one. Empty when the recipe does not size
    the model by the speed (`needs_speed`) or the width is given."""
    if not needs_speed(opts) or opts.hidden is not None:
        return []
    budget, given = _budget_and_given(opts, speed)
    hidden, _ = _width(stats, budget, opts.cell, given)
    layers = given.get("layers", LAYERS)
    measured = dict(speed.measured)
    return [(width, *chunking(width, given, stats.tokens)) for width in WIDTHS[WIDTHS.index(hidden):][:2]
            if parameters(opts.cell, width, layers, stats.vocab) not in measured]


def _flags(choices: dict) -> str:
    return " ".join(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                    f"--{name.replace('_', '-')} {value}" for name, value in choices.items())


def dropout_for(epochs: float | None, params_per_char: float, *, short_documents: bool = False) -> float:
    """Dropout for a model of `params_per_char` parameters per corpus token trained for `epochs` (None:
    unknown) over a corpus of long documents or (short_documents) of documents shorter than a chunk, rounded
    to 0.05."""
    if epochs is not None and epochs < 1:
        return 0.0
    pressure = DROPOUT_BASE + DROPOUT_PER_DOUBLING * math.log2(params_per_char)
    floor = MIN_DROPOUT_SHORT_DOCUMENTS if short_documents else MIN_DROPOUT
    return round(min(max(pressure, floor), MAX_DROPOUT) * 20) / 20


def _summary(stats: CorpusStats, budget: Budget, cell: str, hidden: int, layers: int, epochs: float | None
             ) -> str:
    corpus = f"{_count(stats.tokens)} chars" + (f" in {_count(stats.documents)} documents"
                                                 if stats.documents > 1 else "")
    if budget.seconds and budget.speed:
        speed = budget.speed.tokens_per_second(parameters(cell, hidden, layers, stats.vocab))
        run = f"{_duration(budget.seconds)} at ~{_count(speed)} chars/s = {epochs:.1f} epochs"
    elif epochs is not None:
        run = f"{epochs:.1f} epochs"
    elif budget.seconds:
        run = _duration(budget.seconds)
    else:
        run = "no time budget"
    return f"recipe: {corpus}, {run}: {cell.upper()} {hidden}x{layers}"


def _count(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
