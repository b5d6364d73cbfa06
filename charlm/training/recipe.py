"""The recipe: every training option the user left unset, chosen from what the trainer knows before it starts.

A pure function of the corpus statistics (`CorpusStats`), the stopping rule (`Budget`) and the machine's measured
speed (`Speed`: seconds per token, a fixed part plus a part per parameter, and the widths timed directly: those
the choice turns on, `deciding_widths`). The trainer measures the speed (`charlm.training.speed`), calls
`apply_recipe`, prints the recipe's account once and saves it in the run's options, so a resumed run keeps the
recipe it started with. Options the user gave are never changed.

The recipe is made in three steps, each in its own module; this one holds the entry points:
- `charlm.training.recipe_rules`: the rules, as constants and the small functions that apply them to one model
  (docs/recipe.md states each rule and the evidence for it). Character language models size the model by the
  budget and the corpus, then dropout, chunking, the decay's end, the warm-up and patience by what the model
  costs; word and symbol models and the document tasks (taggers, classifiers) have fixed recipes.
- `charlm.training.recipe_plan.plan`: the choices, each decision with a reason code and the numbers its wording
  needs.
- `charlm.training.recipe_explain.explain`: the plan in words, a summary line and one reason per decision.
"""

from dataclasses import dataclass, replace

from charlm.training.options import TrainOptions
from charlm.training.recipe_explain import explain
from charlm.training.recipe_plan import plan, plan_width
from charlm.training.recipe_rules import RECIPE_OPTIONS, WIDTHS, Budget, CorpusStats, Speed, chunking, parameters


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
    characters, an embedding as wide as the hidden layer for words and symbols; a tagger reads whole lines
    by default."""
    unset = [name for name in RECIPE_OPTIONS if getattr(opts, name) is None]
    recipe = None
    if unset:
        budget, given = _budget_and_given(opts, speed)
        recipe = choose_recipe(stats, budget, task=opts.task, cell=opts.cell, given=given, schedule=opts.schedule,
                               tokens=opts.tokens)
        opts = replace(opts, **recipe.choices, recipe=recipe.text())
    if opts.embed is None:
        opts = replace(opts, embed=opts.hidden if opts.tokens != "char" and opts.task == "lm" else 0)
    if opts.task != "lm":
        opts = replace(opts, seq_len=opts.max_len, eos="lines" if opts.eos == "file" else opts.eos)
    return opts, recipe


def _budget_and_given(opts: TrainOptions, speed: Speed | None) -> tuple[Budget, dict]:
    """The run's stopping rule with the machine's speed, and the recipe's options the user set."""
    budget = Budget(seconds=opts.time_budget, steps=opts.steps, epochs=opts.epochs, speed=speed,
                    eval_every=opts.eval_every)
    return budget, {name: getattr(opts, name) for name in RECIPE_OPTIONS if getattr(opts, name) is not None}


def choose_recipe(stats: CorpusStats | None, budget: Budget, *, task: str = "lm", cell: str = "lstm",
                  given: dict | None = None, schedule: str = "cosine", tokens: str = "char") -> Recipe:
    """The options left to the recipe, and its account of them (`plan`, worded by `explain`). `given` maps
    option names to the values the user set (None or absent = unset); the result sets only unset ones, and
    takes the given width and depth into account. `schedule` is the run's learning-rate schedule: the reasons
    name a decay's end only for a cosine one. `tokens`: what the run reads (a classifier of words or symbols has
    its own recipe)."""
    chosen = plan(stats, budget, task=task, cell=cell, given=given, schedule=schedule, tokens=tokens)
    summary, reasons = explain(chosen)
    return Recipe(chosen.choices, summary, reasons)


def deciding_widths(opts: TrainOptions, stats: CorpusStats, speed: Speed) -> list[tuple[int, int, int]]:
    """(hidden, batch, seq_len) of the widths whose speed decides the recipe's choice and that `speed` has not
    measured directly: the width it would choose and the next wider one. Empty when the recipe does not size
    the model by the speed (`needs_speed`) or the width is given."""
    if not needs_speed(opts) or opts.hidden is not None:
        return []
    budget, given = _budget_and_given(opts, speed)
    width = plan_width(stats, budget, opts.cell, given)
    measured = dict(speed.measured)
    return [(hidden, *chunking(hidden, given, stats.tokens)) for hidden in WIDTHS[WIDTHS.index(width.hidden):][:2]
            if parameters(opts.cell, hidden, width.layers, stats.vocab) not in measured]
