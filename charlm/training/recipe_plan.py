"""The recipe as a plan: every option the user left unset, chosen from the corpus statistics, the stopping rule
and the machine's measured speed, each decision with a reason code and the numbers its wording needs.

`plan` is pure (the same inputs give the same plan) and says nothing in words: `charlm.training.recipe_explain`
words a plan, and `charlm.training.recipe` is the public face of both. The rules it applies, and the types of
its inputs, are `charlm.training.recipe_rules`'s (docs/recipe.md states the rules).
"""

import math
from dataclasses import dataclass
from typing import Literal

from charlm.training.budget import eval_interval
from charlm.training.recipe_rules import (
    CHAR_TRAINING,
    CHARS_PER_PARAM,
    CHARS_PER_PARAM_SHORT_DOCUMENTS,
    LAYERS,
    LONG_CHUNK_WIDTH,
    MIN_CHARS_PER_PARAM,
    MIN_DROPOUT,
    MIN_EPOCHS,
    MIN_EPOCHS_SHORT_DOCUMENTS,
    MIN_LR_RATIO_SETTLED,
    MIN_LR_RATIO_UNSETTLED,
    MIN_UPDATES,
    PARAMS_PER_CHAR,
    PATIENCE,
    SENTENCE_RECIPE,
    SHORT_CHUNK,
    TAGGER_RECIPE,
    TRAIN_SHARE,
    TRANSLATE_RECIPE,
    WARMUP,
    WARMUP_SHARE,
    WIDTH_WITHOUT_BUDGET,
    WIDTHS,
    WORD_RECIPE,
    Budget,
    CorpusStats,
    chunking,
    dropout_for,
    fit_to_stream,
    full_update,
    parameters,
)

# Every decision below holds `values`, the options it set (option name -> value, those the user gave left
# out), a `reason` code, and the numbers the reason's wording needs.


@dataclass(frozen=True)
class Shortfall:
    """The first floor of text a width's budget misses: "updates" (`updates` of them), "passes" (`epochs`
    passes or `per_param` tokens per parameter, whichever is less text; higher over `short_documents`) or
    "per_param" (`per_param` tokens per parameter, however many passes)."""

    floor: Literal["updates", "passes", "per_param"]
    updates: int = 0
    epochs: float = 0.0
    per_param: float = 0.0
    short_documents: bool = False


@dataclass(frozen=True)
class Width:
    """The model's size, `hidden` units x `layers` (set or given). `reason`: "given" (the width was given; the
    depth, if not, is LAYERS); "no_budget" (no time budget to size it by: WIDTH_WITHOUT_BUDGET at most, within
    PARAMS_PER_CHAR parameters per corpus token); "corpus_cap" (the widest within PARAMS_PER_CHAR, narrower than
    the budget affords); "budget_cap" (the widest the budget affords: `shortfall` is what the next wider one
    would miss); "narrowest" (the budget affords none: `shortfall` is what the narrowest misses); "widest" (the
    widest of WIDTHS, which the budget affords)."""

    hidden: int
    layers: int
    values: dict
    reason: Literal["given", "no_budget", "corpus_cap", "budget_cap", "narrowest", "widest"]
    shortfall: Shortfall | None = None


@dataclass(frozen=True)
class Dropout:
    """Dropout by `dropout_for`, from the model's `params_per_token` parameters per corpus token and the
    `epochs` it trains (None: unknown). `reason`: "under_one_epoch" (none: every token is new), "capacity" (the
    rule), "below_long_document_floor" (the rule below MIN_DROPOUT, over documents shorter than a chunk)."""

    values: dict
    reason: Literal["under_one_epoch", "capacity", "below_long_document_floor"]
    params_per_token: float
    epochs: float | None


@dataclass(frozen=True)
class Chunking:
    """The chunk (seq_len) and the streams (batch) of an update. `reason`: "stream_too_short" (the stream's
    `tokens` are too few for MIN_BATCHES_PER_EPOCH full updates an epoch: a smaller update), "long_chunks"
    (LONG_CHUNK tokens, for a model LONG_CHUNK_WIDTH or wider), "short_chunks" (SHORT_CHUNK tokens over many
    streams)."""

    values: dict
    reason: Literal["stream_too_short", "long_chunks", "short_chunks"]
    tokens: int


@dataclass(frozen=True)
class Training:
    """The optimiser's options (CHAR_TRAINING) and the cosine decay's end (min_lr_ratio). `reason`: where the
    decay ends and why (None: the end was given): "settled" (MIN_LR_RATIO_SETTLED: MIN_EPOCHS passes or more
    over documents a chunk long), or MIN_LR_RATIO_UNSETTLED over "short_documents" (shorter than a chunk),
    when the passes are not known ("passes_unknown"), or below MIN_EPOCHS passes ("few_passes"). `decays`:
    whether the run's schedule decays at all (a constant rate never reaches the end)."""

    values: dict
    reason: Literal["settled", "short_documents", "passes_unknown", "few_passes"] | None
    decays: bool


@dataclass(frozen=True)
class Warmup:
    """The warm-up's updates. `reason`: "share" (WARMUP, but at most WARMUP_SHARE of the `updates` the run
    buys) or "fixed" (WARMUP: the updates are not known)."""

    values: dict
    reason: Literal["share", "fixed"]
    updates: float | None


@dataclass(frozen=True)
class Patience:
    """How many evaluations without improvement stop the run. `reason`: "asked_evaluations" (0, never:
    evaluations come every `eval_every` steps, as the user asked, so how many make a long wait is not known)
    or "automatic" (PATIENCE, of evaluations about `interval` seconds apart)."""

    values: dict
    reason: Literal["asked_evaluations", "automatic"]
    eval_every: int = 0
    interval: float = 0.0


@dataclass(frozen=True)
class Run:
    """What the summary line says: the corpus, the model, and what the stopping rule buys it: `seconds` of time
    budget (None: none), at `tokens_per_second` (None unless a budget and a measured speed), for `epochs`
    and `updates` (None: not known before the run)."""

    stats: CorpusStats
    cell: str
    hidden: int
    layers: int
    seconds: float | None
    tokens_per_second: float | None
    epochs: float | None
    updates: float | None


@dataclass(frozen=True)
class CharPlan:
    """A character language model's plan: what the run buys, and a decision per group of options (None: the
    user gave all of its options)."""

    run: Run
    width: Width
    dropout: Dropout | None
    chunking: Chunking | None
    training: Training | None
    warmup: Warmup | None
    patience: Patience | None

    @property
    def decisions(self) -> tuple:
        return tuple(d for d in (self.width, self.dropout, self.chunking, self.training, self.warmup,
                                 self.patience) if d is not None)

    @property
    def choices(self) -> dict:
        """Option name -> value for every option the plan sets, in the order of its decisions."""
        return {name: value for decision in self.decisions for name, value in decision.values.items()}


@dataclass(frozen=True)
class FixedPlan:
    """A fixed recipe's unset options: `recipe` "word" (WORD_RECIPE, for word and symbol language models),
    "documents" (TAGGER_RECIPE, for `task`), "sentences" (SENTENCE_RECIPE, classifiers of words or symbols) or
    "translate" (TRANSLATE_RECIPE); `fitted` the chunking of a stream too short for the recipe's
    (None: the recipe's holds)."""

    recipe: Literal["word", "documents", "translate", "sentences"]
    task: str
    values: dict
    fitted: Chunking | None

    @property
    def choices(self) -> dict:
        return dict(self.values)


def plan(stats: CorpusStats | None, budget: Budget, *, task: str = "lm", cell: str = "lstm",
         given: dict | None = None, schedule: str = "cosine", tokens: str = "char") -> CharPlan | FixedPlan:
    """The options left to the recipe, and why. `given` maps option names to the values the user set (None or
    absent = unset); the plan sets only unset ones, and takes the given width and depth into account.
    `schedule` is the run's learning-rate schedule; `tokens` what it reads. `stats` may be None for a document
    task."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if task == "translate":
        return fixed_plan("translate", task, TRANSLATE_RECIPE, given)
    if task == "classify" and tokens != "char":
        return fixed_plan("sentences", task, SENTENCE_RECIPE, given)
    if task != "lm":
        return fixed_plan("documents", task, TAGGER_RECIPE, given)
    if stats.kind != "char":  # words and symbols: a vocabulary of whole units
        return fixed_plan("word", task, WORD_RECIPE, given, tokens=stats.tokens)
    return char_plan(stats, budget, cell, given, schedule)


def fixed_plan(recipe: Literal["word", "documents", "translate", "sentences"], task: str, options: dict, given: dict,
               tokens: int | None = None) -> FixedPlan:
    """A fixed recipe's unset `options`; with `tokens` (a language model's stream), its chunking fitted to the
    stream (`fit_to_stream`)."""
    values = {name: value for name, value in options.items() if name not in given}
    fitted = None
    if tokens is not None:
        batch, seq_len = fit_to_stream(given.get("batch", options["batch"]), given.get("seq_len", options["seq_len"]),
                                       given, tokens)
        changed = {name: value for name, value in (("batch", batch), ("seq_len", seq_len))
                   if name in values and value != values[name]}
        if changed:
            values |= changed
            fitted = Chunking(changed, "stream_too_short", tokens)
    return FixedPlan(recipe, task, values, fitted)


def char_plan(stats: CorpusStats, budget: Budget, cell: str, given: dict, schedule: str) -> CharPlan:
    """A character language model's plan: the width first, as every other choice follows what it costs."""
    tokens = max(stats.tokens, 1)
    short = short_documents(stats, given)
    width = plan_width(stats, budget, cell, given)
    params = parameters(cell, width.hidden, width.layers, stats.vocab)
    batch, seq_len = chunking(width.hidden, given, tokens)
    run = plan_run(stats, budget, cell, width, params, batch * seq_len)
    return CharPlan(
        run, width,
        dropout=None if "dropout" in given else plan_dropout(run.epochs, params / tokens, short),
        chunking=plan_chunking(width.hidden, given, tokens, batch, seq_len),
        training=plan_training(given, run.epochs, short, schedule),
        warmup=None if "warmup" in given else plan_warmup(run.updates),
        patience=None if "patience" in given else plan_patience(budget))


def short_documents(stats: CorpusStats, given: dict) -> bool:
    """Whether the corpus's documents are shorter than a chunk (word lists, names)."""
    return max(stats.tokens, 1) / max(stats.documents, 1) < given.get("seq_len", SHORT_CHUNK)


def training_seconds(budget: Budget) -> float | None:
    """Seconds of the budget the recipe expects in training steps (None: no budget or no measured speed)."""
    return budget.seconds * TRAIN_SHARE if budget.seconds and budget.speed else None


def plan_width(stats: CorpusStats, budget: Budget, cell: str, given: dict) -> Width:
    """The width the recipe chooses (the depth given or LAYERS), or the one given, and why."""
    layers = given.get("layers", LAYERS)
    if "hidden" in given:
        hidden, reason, shortfall = given["hidden"], "given", None
    else:
        hidden, reason, shortfall = choose_width(stats, budget, cell, layers, given)
    values = {name: value for name, value in (("hidden", hidden), ("layers", layers)) if name not in given}
    return Width(hidden, layers, values, reason, shortfall)


def choose_width(stats: CorpusStats, budget: Budget, cell: str, layers: int, given: dict
                 ) -> tuple[int, str, Shortfall | None]:
    """(hidden, reason, shortfall): the widest of WIDTHS within PARAMS_PER_CHAR parameters per corpus token
    that the budget's training seconds afford (no `shortfall`), or without a budget to size by, the widest up
    to WIDTH_WITHOUT_BUDGET within that cap; WIDTHS[0] when none qualifies."""
    tokens = max(stats.tokens, 1)
    sizes = {width: parameters(cell, width, layers, stats.vocab) for width in WIDTHS}
    cap = PARAMS_PER_CHAR * tokens
    seconds = training_seconds(budget)
    if seconds is None:
        hidden = max([w for w in WIDTHS if w <= WIDTH_WITHOUT_BUDGET and sizes[w] <= cap], default=WIDTHS[0])
        return hidden, "no_budget", None
    short = short_documents(stats, given)
    shortfalls = {w: shortfall(seconds * budget.speed.tokens_per_second(sizes[w]), sizes[w],
                               update=math.prod(chunking(w, given, tokens)), corpus=tokens, short=short)
                  for w in WIDTHS}
    fed = [w for w in WIDTHS if shortfalls[w] is None]
    hidden = max([w for w in fed if sizes[w] <= cap], default=WIDTHS[0])
    return hidden, *width_reason(hidden, fed, shortfalls)


def width_reason(hidden: int, fed: list[int], shortfalls: dict) -> tuple[str, Shortfall | None]:
    """Why `hidden` was chosen of the widths the budget affords (`fed`), and what bound it: the next wider
    width's shortfall, or the narrowest's when none is fed."""
    wider = WIDTHS[WIDTHS.index(hidden) + 1:]
    if fed and hidden < max(fed):
        return "corpus_cap", None
    if not fed:
        return "narrowest", shortfalls[hidden]
    if wider:
        return "budget_cap", shortfalls[wider[0]]
    return "widest", None


def shortfall(tokens: float, params: int, *, update: int, corpus: int, short: bool) -> Shortfall | None:
    """The first floor of text that the `tokens` a model of `params` parameters sees (in updates of `update`
    tokens, over a corpus of `corpus` tokens, of documents shorter than a chunk when `short`) fall short of;
    None when they reach every floor (the width is affordable)."""
    epochs, per_param = ((MIN_EPOCHS_SHORT_DOCUMENTS, CHARS_PER_PARAM_SHORT_DOCUMENTS) if short
                         else (MIN_EPOCHS, CHARS_PER_PARAM))
    if tokens < MIN_UPDATES * update:
        return Shortfall("updates", updates=MIN_UPDATES)
    if tokens < min(epochs * corpus, per_param * params):
        return Shortfall("passes", epochs=epochs, per_param=per_param, short_documents=short)
    if tokens < MIN_CHARS_PER_PARAM * params:
        return Shortfall("per_param", per_param=MIN_CHARS_PER_PARAM)
    return None


def plan_run(stats: CorpusStats, budget: Budget, cell: str, width: Width, params: int, update: int) -> Run:
    """What the stopping rule buys a model of `params` parameters trained `update` tokens an update: by time
    at its measured speed, or by epochs, or by steps."""
    tokens = max(stats.tokens, 1)
    seconds = training_seconds(budget)
    speed = budget.speed.tokens_per_second(params) if seconds is not None else None
    if seconds is not None:
        seen = seconds * speed
    elif budget.epochs is not None:
        seen = budget.epochs * tokens
    elif budget.steps is not None:
        seen = budget.steps * update
    else:
        seen = None
    return Run(stats, cell, width.hidden, width.layers, budget.seconds, speed,
               epochs=None if seen is None else seen / tokens, updates=None if seen is None else seen / update)


def plan_dropout(epochs: float | None, params_per_token: float, short: bool) -> Dropout:
    """Dropout for a model of `params_per_token` parameters per corpus token over `epochs` (None: unknown), over
    documents shorter than a chunk when `short`."""
    value = dropout_for(epochs, params_per_token, short_documents=short)
    if epochs is not None and epochs < 1:
        reason = "under_one_epoch"
    elif short and value < MIN_DROPOUT:
        reason = "below_long_document_floor"
    else:
        reason = "capacity"
    return Dropout({"dropout": value}, reason, params_per_token, epochs)


def plan_chunking(hidden: int, given: dict, tokens: int, batch: int, seq_len: int) -> Chunking | None:
    """The chunking (batch, seq_len) of a model `hidden` wide over `tokens`, as chosen, and why."""
    values = {name: value for name, value in (("seq_len", seq_len), ("batch", batch)) if name not in given}
    if not values:
        return None
    if (batch, seq_len) != full_update(hidden, given):
        return Chunking(values, "stream_too_short", tokens)
    return Chunking(values, "long_chunks" if hidden >= LONG_CHUNK_WIDTH else "short_chunks", tokens)


def plan_training(given: dict, epochs: float | None, short: bool, schedule: str) -> Training | None:
    """The optimiser's options and the decay's end not given (None: all given), for a run of `epochs`."""
    values = {name: value for name, value in CHAR_TRAINING.items() if name not in given}
    reason = None
    if "min_lr_ratio" not in given:
        reason = decay_end(short, epochs)
        values["min_lr_ratio"] = MIN_LR_RATIO_SETTLED if reason == "settled" else MIN_LR_RATIO_UNSETTLED
    return Training(values, reason, decays=schedule == "cosine") if values else None


def decay_end(short: bool, epochs: float | None) -> str:
    """Why the cosine decay ends where it does: "settled" from MIN_EPOCHS passes over documents as long as a
    chunk; otherwise the reason it ends at MIN_LR_RATIO_UNSETTLED."""
    if short:
        return "short_documents"
    if epochs is None:
        return "passes_unknown"
    return "few_passes" if epochs < MIN_EPOCHS else "settled"


def plan_warmup(updates: float | None) -> Warmup:
    """The warm-up of a run of `updates` updates (None: unknown)."""
    value = WARMUP if updates is None else max(1, min(WARMUP, int(updates * WARMUP_SHARE)))
    return Warmup({"warmup": value}, "share" if updates else "fixed", updates)


def plan_patience(budget: Budget) -> Patience:
    """Early stopping: by PATIENCE automatic evaluations, none when the user set how often to evaluate."""
    if budget.eval_every:
        return Patience({"patience": 0}, "asked_evaluations", eval_every=budget.eval_every)
    return Patience({"patience": PATIENCE}, "automatic", interval=eval_interval(budget.seconds))
