"""The recipe as a plan and its wording (charlm.training.recipe_plan.plan, charlm.training.recipe_explain.explain):
the same choices over a grid of inputs as the fixture tests/data/recipe_choices.json records, and a plan that
says why by reason codes and numbers, worded only by `explain`.

Regenerate the fixture (only when a rule of the recipe is meant to change) with
`python tests/test_recipe_plan.py --write`."""

import itertools
import json
import sys
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import pytest

from charlm.training import recipe_explain
from charlm.training.options import TrainOptions
from charlm.training.recipe import apply_recipe, choose_recipe, deciding_widths
from charlm.training.recipe_explain import explain
from charlm.training.recipe_plan import (
    CharPlan,
    Chunking,
    Dropout,
    FixedPlan,
    Patience,
    Shortfall,
    Training,
    Warmup,
    Width,
    plan,
)
from charlm.training.recipe_rules import WIDTHS, Budget, CorpusStats, Speed, parameters

FIXTURE = Path(__file__).parent / "data" / "recipe_choices.json"
ENTRIES = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else []
SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
BUDGETS = (None, 5.0, 30.0, 120.0, 600.0, 7200.0)
# Seconds per token: (fixed, per parameter); "measured" adds two widths timed directly, cheaper than the model;
# "none": a time budget with the speed not measured (the recipe does not size the model by it).
SPEEDS = {"machine": (2e-6, 5e-11), "fast": (5e-7, 1.2e-11), "measured": (2e-6, 5e-11), "none": None}
GIVEN = ({"hidden": 128}, {"hidden": 1024}, {"dropout": 0.2}, {"batch": 16}, {"seq_len": 100},
         {"batch": 8, "seq_len": 16}, {"layers": 3}, {"min_lr_ratio": 0.05}, {"warmup": 10}, {"patience": 2},
         {"lr": 3e-3, "optimizer": "sgd"}, {"schedule": "constant"}, {"eval_every": 50},
         {"hidden": 96, "dropout": 0.0, "lr": 3e-3, "patience": 0})


def case(tokens, documents, **settings):
    """One input: the corpus's `tokens` in `documents` documents, and the settings that differ from DEFAULTS
    (the case records only those, so the fixture stays small)."""
    return {"tokens": tokens, "documents": documents,
            **{name: value for name, value in settings.items() if value != DEFAULTS[name]}}


DEFAULTS = {"kind": "char", "task": "lm", "seconds": None, "speed": "machine", "steps": None, "epochs": None,
            "cell": "lstm", "given": {}}
# The options each case records, in this order.
OPTIONS = ("hidden", "layers", "embed", "dropout", "seq_len", "batch", "optimizer", "lr", "momentum", "clip",
           "weight_decay", "min_lr_ratio", "warmup", "patience", "eos")


def grid() -> list[dict]:
    """A few hundred inputs: character language models over every size, kind of document and budget, with
    each flag a user may give over a coarser grid; words, taggers and classifiers over a few."""
    cases = []
    for tokens, short in itertools.product(SIZES, (False, True)):
        documents = tokens // 20 if short else 1  # 20 tokens a document: shorter than a chunk
        cases += [case(tokens, documents, seconds=s) for s in BUDGETS]
        cases += [case(tokens, documents, seconds=s, speed="fast") for s in (30.0, 600.0, 7200.0)]
        cases += [case(tokens, documents, steps=2000), case(tokens, documents, epochs=3.0)]
    for given, tokens, short, seconds in itertools.product(GIVEN, (1_000, 100_000, 10_000_000), (False, True),
                                                           (120.0, 7200.0)):
        cases.append(case(tokens, tokens // 20 if short else 1, seconds=seconds, given=given))
    for tokens, seconds in itertools.product((100_000, 1_000_000, 10_000_000), (120.0, 600.0)):
        cases.append(case(tokens, 1, seconds=seconds, speed="measured"))
        cases.append(case(tokens, tokens // 40, seconds=seconds, given={"seq_len": 64}))  # 40 a document: short for 64
    for given in ({}, {"hidden": 256, "dropout": 0.1, "warmup": 30, "min_lr_ratio": 0.1}):
        cases.append(case(1_000_000, 1, seconds=600.0, speed="none", given=given))
    for cell, seconds in itertools.product(("gru", "rnn"), (None, 120.0, 7200.0)):
        cases.append(case(1_000_000, 1, seconds=seconds, cell=cell))
    for tokens, given in itertools.product(SIZES, ({}, {"batch": 64}, {"seq_len": 10, "hidden": 400})):
        cases.append(case(tokens, 1, kind="word", seconds=600.0, given=given))
    for task, given, seconds in itertools.product(("truecase", "classify", "translate"),
                                                  ({}, {"hidden": 64}, {"batch": 8}),
                                                  (None, 600.0)):
        cases.append(case(100_000, 1_000, task=task, seconds=seconds, given=given))
    for given in ({}, {"hidden": 64}):  # a classifier of sentences in words
        cases.append(case(100_000, 1_000, task="classify", kind="word", seconds=600.0, given=given))
    return cases


def speed_of(c: dict) -> Speed | None:
    if c["seconds"] is None or SPEEDS[c["speed"]] is None:
        return None
    fixed, per_param = SPEEDS[c["speed"]]
    speed = Speed(fixed=fixed, per_param=per_param)
    if c["speed"] == "measured":
        for width in (256, 512):
            params = parameters(c["cell"], width, 2, c["vocab"])
            speed = speed.with_measured(params, 0.7 * (fixed + per_param * params))
    return speed


class Inputs(NamedTuple):
    """A case as the entry points take it."""

    opts: TrainOptions
    stats: CorpusStats
    speed: Speed | None
    budget: Budget
    given: dict
    schedule: str


def inputs(settings: dict) -> Inputs:
    c = DEFAULTS | {"vocab": 5_000 if settings.get("kind") == "word" else 80} | settings
    given = dict(c["given"])
    flags = {name: given.pop(name) for name in ("schedule", "eval_every") if name in given}
    stats = CorpusStats(tokens=c["tokens"], documents=c["documents"], vocab=c["vocab"], kind=c["kind"])
    opts = TrainOptions(corpus="c.txt", tokens=c["kind"], task=c["task"], cell=c["cell"], time_budget=c["seconds"],
                        steps=c["steps"], epochs=c["epochs"], **flags, **given)
    speed = speed_of(c)
    budget = Budget(seconds=c["seconds"], steps=c["steps"], epochs=c["epochs"], speed=speed,
                    eval_every=flags.get("eval_every", 0))
    return Inputs(opts, stats, speed, budget, given, flags.get("schedule", "cosine"))


def plan_of(i: Inputs):
    return plan(i.stats, i.budget, task=i.opts.task, cell=i.opts.cell, given=i.given, schedule=i.schedule,
                tokens=i.opts.tokens)


def outcome(settings: dict) -> dict:
    """What the public entry points choose for a case: apply_recipe's options (in OPTIONS order), the names
    the recipe set (choose_recipe's, which apply_recipe's recipe must equal) and the widths deciding_widths
    would time."""
    i = inputs(settings)
    filled, recipe = apply_recipe(i.opts, i.stats, i.speed)
    chosen = choose_recipe(i.stats, i.budget, task=i.opts.task, cell=i.opts.cell, given=i.given, schedule=i.schedule,
                           tokens=i.opts.tokens)
    assert recipe is not None and recipe.choices == chosen.choices
    return {"options": [getattr(filled, name) for name in OPTIONS], "chosen": " ".join(chosen.choices),
            "widths": [list(w) for w in deciding_widths(i.opts, i.stats, i.speed)] if i.speed else []}


def record() -> list[dict]:
    return [{"case": c, "outcome": outcome(c)} for c in grid()]


def test_the_fixture_covers_the_grid():
    assert [entry["case"] for entry in ENTRIES] == grid()
    assert 200 <= len(ENTRIES) <= 400
    widths = {entry["outcome"]["options"][OPTIONS.index("hidden")] for entry in ENTRIES}
    assert {WIDTHS[0], 256, 512}.issubset(widths)  # the grid reaches narrow and wide choices


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: json.dumps(entry["case"]))
def test_the_recipe_chooses_what_the_fixture_records(entry):
    # Compared as JSON text, so an int that becomes a float (or the reverse) is a difference too.
    assert json.dumps(outcome(entry["case"]), sort_keys=True) == json.dumps(entry["outcome"], sort_keys=True)


def codes(kind: type, field: str = "reason") -> set[str]:
    """The reason codes a decision's `field` may hold (its Literal annotation)."""
    annotation = kind.__annotations__[field]
    literals = [a for a in (annotation, *get_args(annotation)) if getattr(a, "__origin__", None) is Literal]
    return {code for literal in literals for code in get_args(literal)}


def reasons_over_the_grid() -> dict[tuple[type, str], set]:
    """(decision type, field) -> the codes the plans of the grid's cases give it."""
    seen = {}
    for settings in grid():
        chosen = plan_of(inputs(settings))
        decisions = chosen.decisions if isinstance(chosen, CharPlan) else (chosen.fitted,)
        for decision in decisions:
            if decision is not None:
                seen.setdefault((type(decision), "reason"), set()).add(decision.reason)
            if isinstance(decision, Width) and decision.shortfall is not None:
                seen.setdefault((Shortfall, "floor"), set()).add(decision.shortfall.floor)
        seen.setdefault((type(chosen), "recipe"), set()).add(getattr(chosen, "recipe", "char"))
    return seen


def test_the_grid_reaches_every_reason_code_of_every_decision():
    seen = reasons_over_the_grid()
    for kind in (Width, Dropout, Chunking, Training, Warmup, Patience):
        assert seen[kind, "reason"] - {None} == codes(kind), kind.__name__
    assert seen[Shortfall, "floor"] == codes(Shortfall, "floor")
    assert seen[FixedPlan, "recipe"] == codes(FixedPlan, "recipe")


def test_every_reason_code_has_its_wording():
    assert set(recipe_explain.WIDTH) == codes(Width)
    assert set(recipe_explain.SHORTFALL) == codes(Shortfall, "floor")
    assert set(recipe_explain.CHUNKING) == codes(Chunking)
    assert set(recipe_explain.DECAY_END) == codes(Training)
    assert set(recipe_explain.PATIENCE) == codes(Patience)
    assert set(recipe_explain.FIXED) == codes(FixedPlan, "recipe")


@pytest.mark.parametrize("settings", grid()[::7], ids=lambda settings: json.dumps(settings))
def test_the_recipe_is_the_plan_and_its_wording(settings):
    i = inputs(settings)
    chosen = plan_of(i)
    assert chosen == plan_of(i)  # pure: no hidden state
    recipe = choose_recipe(i.stats, i.budget, task=i.opts.task, cell=i.opts.cell, given=i.given,
                           schedule=i.schedule, tokens=i.opts.tokens)
    assert (recipe.choices, (recipe.summary, recipe.reasons)) == (chosen.choices, explain(chosen))
    assert not set(chosen.choices) & set(i.given)  # what the user gave is kept


def test_a_plan_holds_codes_and_numbers_and_its_wording_follows_them():
    stats = CorpusStats(tokens=1_000_000, documents=1, vocab=67)
    chosen = plan(stats, Budget(seconds=1200, speed=Speed(fixed=2e-6, per_param=5e-11)))
    assert (chosen.width.reason, chosen.width.shortfall) == ("budget_cap", Shortfall("per_param", per_param=0.8))
    assert chosen.training.reason == "settled" and chosen.training.values["min_lr_ratio"] == 0.0
    assert chosen.warmup.reason == "share" and chosen.patience.reason == "automatic"
    # The wording reads only the plan: another shortfall in the same plan changes the words, not the choices.
    other = CharPlan(**{**vars(chosen), "width": Width(chosen.width.hidden, 2, chosen.width.values, "budget_cap",
                                                       Shortfall("updates", updates=500))})
    assert other.choices == chosen.choices
    assert "a wider one would see less than 0.8 characters per parameter" in explain(chosen)[1][0]
    assert "a wider one would see less than 500 updates" in explain(other)[1][0]


def test_a_fixed_recipe_plans_its_chunking_to_the_stream():
    words = plan(CorpusStats(tokens=1_000, documents=1, vocab=100, kind="word"), Budget(steps=10))
    assert isinstance(words, FixedPlan) and words.recipe == "word"
    assert words.fitted == Chunking({"batch": 2}, "stream_too_short", 1_000)
    assert words.choices["batch"] == 2 and words.choices["seq_len"] == 35
    assert explain(words)[1][-1] == ("--batch 2: the training stream's 1,000 tokens are too few for 10 full "
                                     "updates an epoch")
    tagger = plan(None, Budget(steps=10), task="truecase", given={"hidden": 64})
    assert tagger.fitted is None and "hidden" not in tagger.choices
    assert explain(tagger)[0] == "recipe: the truecase recipe (documents read whole)"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(record(), indent=None, separators=(",", ":")).replace('{"case"', '\n{"case"')
                       + "\n")
