"""The recipe's plan in words: a summary line on the corpus, the budget and the model, and one reason per
decision, "--flag value ...: why" (flags as the command line spells them).

`explain` reads only the plan (`charlm.training.recipe_plan`): its reason codes pick the sentence, its numbers
and the rules' constants fill it. The sentences state rules; docs/recipe.md has the evidence behind them.
"""

from charlm.training.recipe_plan import (
    CharPlan,
    Chunking,
    Dropout,
    FixedPlan,
    Patience,
    Run,
    Shortfall,
    Training,
    Warmup,
    Width,
)
from charlm.training.recipe_rules import (
    LONG_CHUNK,
    LONG_CHUNK_WIDTH,
    MAX_DROPOUT,
    MIN_BATCHES_PER_EPOCH,
    MIN_DROPOUT,
    MIN_EPOCHS,
    MIN_LR_RATIO_SETTLED,
    PARAMS_PER_CHAR,
    TOKENS_PER_UPDATE,
    WARMUP_SHARE,
)

# Width.reason -> why; {cap}: PARAMS_PER_CHAR, {max_dropout}: MAX_DROPOUT, {shortfall}: the Shortfall in words.
WIDTH = {
    "given": "the depth the recipe's rules are set for",
    "no_budget": "no time budget to size the model by; at most {cap:g} parameters per corpus character",
    "corpus_cap": ("the widest with at most {cap:g} parameters per corpus character (a wider one would need "
                   "dropout above {max_dropout:g}); the budget affords wider"),
    "narrowest": "the narrowest the recipe chooses from, though the budget shows it less than {shortfall}",
    "budget_cap": "the widest model the budget affords: a wider one would see less than {shortfall}",
    "widest": "the widest model the recipe chooses from, and the budget affords it",
}
# Shortfall.floor -> what the budget would not show the model, from the Shortfall's numbers.
SHORTFALL = {
    "updates": "{updates} updates",
    "passes": "{epochs:g} epochs and {per_param:g} characters per parameter",
    "per_param": "{per_param:g} characters per parameter",
}
# Chunking.reason -> why.
CHUNKING = {
    "stream_too_short": "the training stream's {tokens:,} tokens are too few for {min_batches} full updates an epoch",
    "long_chunks": ("chunks of {long_chunk}, as a model {long_width} or wider can use the longer context; "
                    "{update:,} characters an update"),
    "short_chunks": ("short chunks over many streams buy the most updates per second (chunks of {long_chunk} from "
                     "{long_width} units); {update:,} characters an update"),
}
# Training.reason -> where the cosine decay ends, after "the cosine decay ending at {ratio}".
DECAY_END = {
    "settled": " with the budget ({min_epochs:g} passes or more)",
    "short_documents": " of the peak (the rule over documents shorter than a chunk, whatever the passes)",
    "passes_unknown": " of the peak (the passes the run makes are not known)",
    "few_passes": (" of the peak (the rule below {min_epochs:g} passes; from {min_epochs:g} passes the decay ends at "
                   "{settled:g})"),
}
PATIENCE = {
    "asked_evaluations": ("evaluations every {eval_every} steps are as frequent as asked, so how many make 'long' "
                          "is not known; the run does not stop early"),
    "automatic": ("evaluations come about every {interval:.0f} s; a run whose validation loss has not improved "
                  "in {patience} of them stops early"),
}
# FixedPlan.recipe -> (summary, reason); {task}: the document task.
FIXED = {
    "word": ("recipe: the word-level recipe",
             "{flags}: the classic word-level recipe (2 x 200, dropout 0.2, clipped SGD at lr 20 over 20 streams x "
             "35 words; README \"Word-level models\")"),
    "documents": ("recipe: the {task} recipe (documents read whole)",
                  "a narrower model than a language model's, Adam at 3e-3"),
    "sentences": ("recipe: the classify recipe for sentences (texts of words read whole)",
                  "{flags}: one layer read both ways (with the table, bidirectional and max pooling below), "
                  "dropout against memorising short texts, Adam over batches of texts of similar lengths"),
    "translate": ("recipe: the translate recipe (pairs read whole)",
                  "{flags}: the encoder's and the decoder's width and depth (one layer each learns more in "
                  "the same minutes than two), dropout against memorising the pairs, Adam over batches of pairs "
                  "of similar lengths"),
}


def explain(plan: CharPlan | FixedPlan) -> tuple[str, tuple[str, ...]]:
    """(summary, reasons): the plan's summary line, and one line per decision, "--flag value ...: why"."""
    if isinstance(plan, FixedPlan):
        return explain_fixed(plan)
    return summary(plan.run), tuple(f"{flags(d.values)}: {why(d)}" for d in plan.decisions)


def explain_fixed(plan: FixedPlan) -> tuple[str, tuple[str, ...]]:
    """A fixed recipe's summary and reason (none when the user gave every option), and the chunking fitted to a
    short stream."""
    heading, reason = FIXED[plan.recipe]
    reasons = [reason.format(flags=flags(plan.values))] if plan.values else []
    if plan.fitted is not None:
        reasons.append(f"{flags(plan.fitted.values)}: {why(plan.fitted)}")
    return heading.format(task=plan.task), tuple(reasons)


def why(decision: Width | Dropout | Chunking | Training | Warmup | Patience) -> str:
    """The reason for one decision, without its flags."""
    wording = {Width: width_why, Dropout: dropout_why, Chunking: chunking_why, Training: training_why,
               Warmup: warmup_why, Patience: patience_why}
    return wording[type(decision)](decision)


def width_why(width: Width) -> str:
    missed = shortfall_words(width.shortfall) if width.shortfall else ""
    return WIDTH[width.reason].format(cap=PARAMS_PER_CHAR, max_dropout=MAX_DROPOUT, shortfall=missed)


def shortfall_words(shortfall: Shortfall) -> str:
    words = SHORTFALL[shortfall.floor].format(updates=shortfall.updates, epochs=shortfall.epochs,
                                              per_param=shortfall.per_param)
    return words + (" (documents shorter than a chunk need more text)" if shortfall.short_documents else "")


def dropout_why(dropout: Dropout) -> str:
    if dropout.reason == "under_one_epoch":
        return "less than one epoch, every character is new"
    epochs = "an unknown number of" if dropout.epochs is None else f"about {dropout.epochs:.1f}"
    words = f"{dropout.params_per_token:.2f} parameters per corpus character over {epochs} epochs"
    if dropout.reason == "below_long_document_floor":
        words += (f" (below {MIN_DROPOUT:g}: documents shorter than a chunk give a model this small nothing long "
                  f"to memorise)")
    return words


def chunking_why(chunking: Chunking) -> str:
    return CHUNKING[chunking.reason].format(tokens=chunking.tokens, min_batches=MIN_BATCHES_PER_EPOCH,
                                           long_chunk=LONG_CHUNK, long_width=LONG_CHUNK_WIDTH,
                                           update=TOKENS_PER_UPDATE)


def training_why(training: Training) -> str:
    ending = ""
    if training.reason is not None and training.decays:  # a constant rate never reaches the decay's end
        where = DECAY_END[training.reason].format(min_epochs=MIN_EPOCHS, settled=MIN_LR_RATIO_SETTLED)
        ending = f", the cosine decay ending at {training.values['min_lr_ratio']:g}{where}"
    return f"Adam at a high rate with the global norm clipped{ending}; dropout, not weight decay, regularises"


def warmup_why(warmup: Warmup) -> str:
    share = f" (at most {WARMUP_SHARE:.0%} of the ~{warmup.updates:,.0f} updates)" if warmup.reason == "share" else ""
    return "Adam's first steps are noisy" + share


def patience_why(patience: Patience) -> str:
    return PATIENCE[patience.reason].format(eval_every=patience.eval_every, interval=patience.interval,
                                            patience=patience.values["patience"])


def summary(run: Run) -> str:
    """"recipe: <corpus>, <what the stopping rule buys>: <CELL> <hidden>x<layers>"."""
    stats = run.stats
    corpus = f"{count(stats.tokens)} chars" + (f" in {count(stats.documents)} documents" if stats.documents > 1
                                                else "")
    if run.tokens_per_second is not None:
        bought = f"{duration(run.seconds)} at ~{count(run.tokens_per_second)} chars/s = {run.epochs:.1f} epochs"
    elif run.epochs is not None:
        bought = f"{run.epochs:.1f} epochs"
    elif run.seconds:
        bought = duration(run.seconds)
    else:
        bought = "no time budget"
    return f"recipe: {corpus}, {bought}: {run.cell.upper()} {run.hidden}x{run.layers}"


def flags(values: dict) -> str:
    """Options as the command line spells them: "--seq-len 64 --lr 0.01"."""
    return " ".join(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                    f"--{name.replace('_', '-')} {value}" for name, value in values.items())


def count(n: float) -> str:
    """1234567 -> "1.2 M", 1234 -> "1.2 k", 12 -> "12"."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f}"


def duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
