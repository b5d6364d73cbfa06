"""The recipe (charlm.training.recipe): a pure choice of the options a user left unset, from corpus statistics,
the stopping rule and the machine's speed; and how a run applies, prints, saves and keeps it."""

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.registry import train
from charlm.training import events, recipe, speed
from charlm.training import recipe_rules as rules
from charlm.training.options import TrainOptions
from charlm.training.recipe import apply_recipe, choose_recipe
from charlm.training.recipe_rules import (
    MAX_DROPOUT,
    MIN_DROPOUT,
    RECIPE_OPTIONS,
    WIDTHS,
    WORD_RECIPE,
    Budget,
    CorpusStats,
    Speed,
    parameters,
)

# A machine of the speed the rules are set for: 2 us per token plus 0.05 ns per token and parameter.
MACHINE = Speed(fixed=2e-6, per_param=5e-11)
SHAKESPEARE = CorpusStats(tokens=1_000_000, documents=1, vocab=67)
NAMES = CorpusStats(tokens=150_000, documents=19_000, vocab=90)
WORD_LIST = CorpusStats(tokens=975_000, documents=103_000, vocab=60)
HUGE = CorpusStats(tokens=500_000_000, documents=1, vocab=200)
TINY = CorpusStats(tokens=2_000, documents=40, vocab=30)


def budget(seconds, machine=MACHINE):
    return Budget(seconds=seconds, speed=machine)


def test_the_speed_model_adds_a_fixed_and_a_per_parameter_cost():
    assert Speed(fixed=1e-6, per_param=0.0).tokens_per_second(10**6) == pytest.approx(1e6)
    assert MACHINE.tokens_per_second(10**6) == pytest.approx(1 / (2e-6 + 5e-5))


def test_the_probe_recovers_both_parts_of_the_speed(monkeypatch):
    # A fake clock that a step moves by (fixed + per_param * P) seconds per token: the probe must find both.
    fixed, per_param = 3e-6, 7e-11
    now = [0.0]
    real = speed.loss_and_grads

    def step(params, cfg, x, y, state, **kwargs):
        p = sum(a.size for a in params.values())
        now[0] += x.size * (fixed + per_param * p)
        return real(params, cfg, x, y, state, **kwargs)

    monkeypatch.setattr(speed, "loss_and_grads", step)
    measured, _ = speed.measure_speed("lstm", 1, 20, clock=lambda: now[0])
    assert measured.fixed == pytest.approx(fixed, rel=1e-6)
    assert measured.per_param == pytest.approx(per_param, rel=1e-6)


def test_a_measured_width_replaces_the_models_extrapolation_for_that_width_only():
    p256, p512 = (parameters("lstm", w, 2, 67) for w in (256, 512))
    measured = MACHINE.with_measured(p512, 1e-4)
    assert measured.tokens_per_second(p512) == pytest.approx(1e4)
    assert measured.tokens_per_second(p256) == MACHINE.tokens_per_second(p256)
    assert measured.with_measured(p512, 2e-4).measured == ((p512, 2e-4),)  # a new figure replaces the old


def test_the_widths_the_choice_turns_on_are_timed_at_their_own_chunking(monkeypatch):
    # A machine on which matrices past 256 units cost half as much per parameter as the two reference
    # widths say: the model alone would choose too narrow a width; timing the chosen width and the next
    # wider (at the chunking each trains with) must find the width that a full table of speeds gives.
    layers, stats = 2, SHAKESPEARE
    knee = parameters("lstm", 256, layers, stats.vocab)

    def true_seconds_per_token(params):
        return 2e-6 + 5e-11 * min(params, knee) + 2.5e-11 * max(params - knee, 0)

    now, timed = [0.0], []

    def step(params, cfg, x, y, state, **kwargs):
        p = sum(a.size for a in params.values())
        now[0] += x.size * true_seconds_per_token(p)
        timed.append((cfg.hidden, x.shape))
        return 0.0, {k: np.zeros_like(v) for k, v in params.items()}, state

    monkeypatch.setattr(speed, "loss_and_grads", step)
    opts = TrainOptions(corpus="c.txt", time_budget=900.0)
    measured, _ = speed.measure_recipe_speed(opts, stats, clock=lambda: now[0])
    truth = Speed(fixed=1.0, per_param=1.0, measured=tuple(
        (parameters("lstm", w, layers, stats.vocab), true_seconds_per_token(parameters("lstm", w, layers, stats.vocab)))
        for w in WIDTHS))
    coarse = Speed(fixed=2e-6, per_param=5e-11)
    chosen = choose_recipe(stats, budget(900, measured)).choices
    assert chosen["hidden"] == choose_recipe(stats, budget(900, truth)).choices["hidden"]
    assert chosen["hidden"] > choose_recipe(stats, budget(900, coarse)).choices["hidden"]
    assert recipe.deciding_widths(opts, stats, measured) == []  # the chosen width and the next wider: measured
    for hidden, shape in timed:
        if hidden not in speed.PROBE_WIDTHS:
            batch, seq_len = rules.chunking(hidden, {}, stats.tokens)
            assert shape == (seq_len, batch), hidden


def test_no_width_is_timed_when_the_recipe_does_not_choose_it():
    assert recipe.deciding_widths(TrainOptions(corpus="c.txt", time_budget=300.0, hidden=128), SHAKESPEARE,
                                  MACHINE) == []
    assert recipe.deciding_widths(TrainOptions(corpus="c.txt", steps=100), SHAKESPEARE, MACHINE) == []
    widths = recipe.deciding_widths(TrainOptions(corpus="c.txt", time_budget=300.0, seq_len=100), SHAKESPEARE,
                                    MACHINE)
    chosen = choose_recipe(SHAKESPEARE, budget(300), given={"seq_len": 100}).choices["hidden"]
    assert [w for w, _, _ in widths] == [chosen, WIDTHS[WIDTHS.index(chosen) + 1]]
    assert all((batch, seq_len) == (rules.TOKENS_PER_UPDATE // 100, 100) for _, batch, seq_len in widths)


@pytest.mark.parametrize("stats", [SHAKESPEARE, NAMES, WORD_LIST, HUGE, TINY], ids=lambda s: f"{s.tokens}")
@pytest.mark.parametrize("seconds", [5.0, 120.0, 300.0, 1200.0, 36000.0])
def test_every_choice_is_in_a_sane_range_and_stable(stats, seconds):
    chosen = choose_recipe(stats, budget(seconds)).choices
    assert set(chosen) == set(RECIPE_OPTIONS)
    assert chosen["hidden"] in WIDTHS and chosen["layers"] == 2
    assert 0.0 <= chosen["dropout"] <= MAX_DROPOUT
    assert 1 <= chosen["warmup"] <= 30 and chosen["patience"] >= 1
    assert 8 <= chosen["seq_len"] <= 256 and 1 <= chosen["batch"] <= 256 and 0 < chosen["lr"] <= 0.1
    assert choose_recipe(stats, budget(seconds)) == choose_recipe(stats, budget(seconds))  # no hidden state


def test_a_longer_budget_or_a_faster_machine_buys_a_wider_model():
    widths = [choose_recipe(SHAKESPEARE, budget(s)).choices["hidden"] for s in (60, 300, 1200, 7200, 36000)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    twice = Speed(fixed=MACHINE.fixed / 2, per_param=MACHINE.per_param / 2)
    assert (choose_recipe(SHAKESPEARE, budget(300, twice)).choices["hidden"]
            == choose_recipe(SHAKESPEARE, budget(600)).choices["hidden"])  # the same work, the same model


def test_a_small_corpus_caps_the_width_where_dropout_can_no_longer_regularise_it():
    small = choose_recipe(NAMES, budget(36000)).choices
    large = choose_recipe(HUGE, budget(36000)).choices
    assert parameters("lstm", small["hidden"], 2, NAMES.vocab) <= rules.PARAMS_PER_CHAR * NAMES.tokens
    wider = WIDTHS[WIDTHS.index(small["hidden"]) + 1]
    assert parameters("lstm", wider, 2, NAMES.vocab) > rules.PARAMS_PER_CHAR * NAMES.tokens
    assert small["hidden"] < large["hidden"] and small["dropout"] > large["dropout"]
    assert rules.dropout_for(10.0, rules.PARAMS_PER_CHAR) == MAX_DROPOUT
    assert choose_recipe(TINY, budget(36000)).choices["hidden"] == WIDTHS[0]


def test_a_width_is_chosen_only_when_the_budget_feeds_it():
    for stats in (SHAKESPEARE, NAMES, HUGE):
        for seconds in (120, 300, 1200):
            chosen = choose_recipe(stats, budget(seconds)).choices
            tokens = seconds * rules.TRAIN_SHARE * MACHINE.tokens_per_second(
                parameters("lstm", chosen["hidden"], 2, stats.vocab))
            if chosen["hidden"] > WIDTHS[0]:
                params = parameters("lstm", chosen["hidden"], 2, stats.vocab)
                assert tokens >= rules.MIN_UPDATES * 64 * 32
                assert tokens >= min(rules.MIN_EPOCHS * stats.tokens, rules.CHARS_PER_PARAM * params)
                assert tokens >= rules.MIN_CHARS_PER_PARAM * params


def test_a_long_budget_on_a_small_corpus_buys_epochs_not_a_model_too_wide_to_train():
    # Past MIN_EPOCHS, a wider model would see too few characters for its parameters: the width stops
    # growing with the budget and the epochs grow instead, and the reason names the rule that stopped it.
    chosen = choose_recipe(SHAKESPEARE, budget(1200))
    hidden = chosen.choices["hidden"]
    wider = WIDTHS[WIDTHS.index(hidden) + 1]
    tokens = 1200 * rules.TRAIN_SHARE * MACHINE.tokens_per_second(parameters("lstm", wider, 2, SHAKESPEARE.vocab))
    assert tokens >= rules.MIN_EPOCHS * SHAKESPEARE.tokens  # the epochs rule alone would have taken it
    assert tokens < rules.MIN_CHARS_PER_PARAM * parameters("lstm", wider, 2, SHAKESPEARE.vocab)
    assert f"--hidden {hidden} --layers 2: " in chosen.text()
    assert f"{rules.MIN_CHARS_PER_PARAM:g} characters per parameter" in chosen.text()


def test_a_wide_model_learns_from_longer_chunks_with_the_same_characters_an_update():
    for seconds in (60, 300, 1200, 36000):
        chosen = choose_recipe(HUGE, budget(seconds)).choices
        long = chosen["hidden"] >= rules.LONG_CHUNK_WIDTH
        assert chosen["seq_len"] == (rules.LONG_CHUNK if long else rules.SHORT_CHUNK)
        assert chosen["batch"] * chosen["seq_len"] == rules.TOKENS_PER_UPDATE
    wide = choose_recipe(HUGE, budget(36000))
    assert wide.choices["hidden"] >= rules.LONG_CHUNK_WIDTH and "--seq-len 64 --batch 32: chunks of 64" in wide.text()
    mine = choose_recipe(HUGE, budget(36000), given={"seq_len": 100}).choices
    assert "seq_len" not in mine and mine["batch"] == rules.TOKENS_PER_UPDATE // 100
    assert choose_recipe(HUGE, budget(36000), given={"hidden": 128}).choices["seq_len"] == rules.SHORT_CHUNK


@settings(max_examples=200, deadline=None)
@given(tokens=st.integers(2, 10**7), seconds=st.sampled_from([None, 3.0, 300.0]),
       batch=st.sampled_from([None, 1, 8, 64]), seq_len=st.sampled_from([None, 1, 16, 100]),
       kind=st.sampled_from(["char", "word"]))
def test_the_chosen_chunking_fits_any_corpus_and_only_a_short_one_changes_it(tokens, seconds, batch, seq_len,
                                                                             kind):
    given_options = {name: value for name, value in (("batch", batch), ("seq_len", seq_len)) if value}
    stats = CorpusStats(tokens, max(1, tokens // 50), 40, kind=kind)
    chosen = choose_recipe(stats, Budget(seconds=seconds, speed=MACHINE if seconds else None, epochs=None if
                                         seconds else 1.0), given=given_options)
    picked = {**chosen.choices, **given_options}
    assert not set(given_options) & set(chosen.choices)  # what the user gave is kept
    if kind == "word":
        usual_seq_len = given_options.get("seq_len", WORD_RECIPE["seq_len"])
        usual = given_options.get("batch", WORD_RECIPE["batch"]), usual_seq_len
    else:
        chunk = rules.LONG_CHUNK if picked["hidden"] >= rules.LONG_CHUNK_WIDTH else rules.SHORT_CHUNK
        usual_seq_len = given_options.get("seq_len", chunk)
        usual = given_options.get("batch", rules.TOKENS_PER_UPDATE // usual_seq_len), usual_seq_len
    epoch_share = (tokens - 1) // (rules.MIN_BATCHES_PER_EPOCH + 1)  # an update's ids, an offset left over
    if usual[0] * usual[1] <= epoch_share or set(given_options) == {"batch", "seq_len"}:
        assert (picked["batch"], picked["seq_len"]) == usual and "too few" not in chosen.text()
    elif picked["batch"] * picked["seq_len"] < tokens:  # fitted: the update shrinks, and says why
        assert picked["batch"] * picked["seq_len"] <= (epoch_share or tokens - 1) or given_options
        assert picked["batch"] <= usual[0] and picked["seq_len"] <= usual[1]
        assert f"{tokens:,} tokens are too few" in chosen.text()
    else:  # what the user gave does not fit even with one stream or a one-token chunk: the batcher's error
        assert given_options.get("batch", 1) * given_options.get("seq_len", 1) >= tokens


def test_a_corpus_too_short_for_a_full_update_trains_with_defaults(tmp_path):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("the owl and the pussy-cat went to sea in a beautiful pea-green boat.\n" * 8)
    result = invoke("train", corpus, "--out", tmp_path / "run", "--steps", 3, "--json", "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [chosen] = [r for r in records if "recipe" in r]
    assert chosen["choices"]["batch"] * chosen["choices"]["seq_len"] < len(corpus.read_text())
    assert records[-1]["steps"] == 3 and "per epoch" not in result.output  # enough updates an epoch: no warning
    mine = invoke("train", corpus, "--out", tmp_path / "mine", "--steps", 1, "--batch", 64, "--seq-len", 32)
    assert mine.exit_code == 2 and "too short for --batch 64 x --seq-len 32" in mine.output


def test_short_documents_need_more_epochs_before_a_wider_model_pays():
    as_lines = choose_recipe(WORD_LIST, budget(300))
    as_one_text = choose_recipe(CorpusStats(WORD_LIST.tokens, 1, WORD_LIST.vocab), budget(300))
    assert as_lines.choices["hidden"] < as_one_text.choices["hidden"]
    assert "documents shorter than a chunk" in as_lines.text()
    assert "documents shorter than a chunk" not in as_one_text.text()


def test_dropout_is_off_below_one_epoch_and_grows_with_the_parameters_per_corpus_character():
    assert choose_recipe(HUGE, budget(300)).choices["dropout"] == 0.0  # every character is new
    dropouts = [rules.dropout_for(4.0, params_per_char) for params_per_char in (0.25, 1, 4, 16, 64)]
    assert dropouts == sorted(dropouts) and dropouts[0] == rules.MIN_DROPOUT and dropouts[-1] == MAX_DROPOUT
    assert choose_recipe(NAMES, budget(300)).choices["dropout"] > choose_recipe(SHAKESPEARE, budget(300)
                                                                              ).choices["dropout"]


def test_over_short_documents_a_model_smaller_than_its_corpus_gets_less_dropout_than_the_long_document_floor():
    assert rules.dropout_for(5.0, 0.5, short_documents=True) == 0.0 < rules.dropout_for(5.0, 0.5) == MIN_DROPOUT
    for params_per_char in (1, 4, 16):  # above the floor the kind of document changes nothing
        assert rules.dropout_for(5.0, params_per_char, short_documents=True) == rules.dropout_for(5.0,
                                                                                                    params_per_char)
    as_lines = choose_recipe(WORD_LIST, budget(120), given={"hidden": 192})
    as_one_text = choose_recipe(CorpusStats(WORD_LIST.tokens, 1, WORD_LIST.vocab), budget(120),
                                given={"hidden": 192})
    assert as_lines.choices["dropout"] < MIN_DROPOUT == as_one_text.choices["dropout"]
    assert "nothing long to memorise" in as_lines.text()
    assert "nothing long to memorise" not in as_one_text.text()


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(10, 10**9), seconds=st.floats(1, 10**5), fixed=st.floats(1e-8, 1e-4),
       per_param=st.floats(1e-13, 1e-9))
def test_the_warm_up_is_a_small_share_of_the_updates_the_budget_buys(tokens, seconds, fixed, per_param):
    machine = Speed(fixed=fixed, per_param=per_param)
    chosen = choose_recipe(CorpusStats(tokens, 1, 80), budget(seconds, machine)).choices
    updates = (seconds * rules.TRAIN_SHARE * machine.tokens_per_second(parameters("lstm", chosen["hidden"], 2, 80))
               / (chosen["batch"] * chosen["seq_len"]))
    assert chosen["warmup"] == max(1, min(30, int(updates * rules.WARMUP_SHARE)))


@pytest.mark.parametrize("given_options", [{}, {"hidden": 96}, {"layers": 3}, {"lr": 0.003, "eval_every": 5}])
def test_the_printed_reasons_name_every_choice_with_its_value_and_nothing_given(given_options):
    chosen = choose_recipe(NAMES, Budget(seconds=300, speed=MACHINE, eval_every=given_options.pop("eval_every", 0)),
                           given=given_options)
    text = chosen.text()
    for name, value in chosen.choices.items():
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"--{name.replace('_', '-')} {shown}" in text, name
    for name in given_options:
        assert f"--{name.replace('_', '-')} " not in text, name
    hidden, layers = given_options.get("hidden", chosen.choices.get("hidden")), given_options.get("layers", 2)
    assert f"LSTM {hidden}x{layers}" in chosen.summary and "epochs" in chosen.summary


def test_explicit_options_win_and_are_not_reported_as_choices():
    given_options = {"hidden": 100, "dropout": 0.0, "lr": 3e-3, "patience": 0}
    chosen = choose_recipe(SHAKESPEARE, budget(300), given=given_options)
    assert not set(given_options) & set(chosen.choices)
    assert "--hidden" not in chosen.text() and "--dropout" not in chosen.text()
    opts, _ = apply_recipe(TrainOptions(corpus="c.txt", time_budget=300.0, **given_options), SHAKESPEARE, MACHINE)
    assert (opts.hidden, opts.dropout, opts.lr, opts.patience) == (100, 0.0, 3e-3, 0)
    everything = TrainOptions(corpus="c.txt", time_budget=300.0, embed=0, **{n: WORD_RECIPE[n] for n in RECIPE_OPTIONS})
    assert apply_recipe(everything, SHAKESPEARE, MACHINE) == (everything, None)  # a resumed run's options


def test_words_and_document_tasks_take_their_fixed_recipes():
    words = choose_recipe(CorpusStats(10**6, 1, 10_000, kind="word"), budget(300)).choices
    assert words == WORD_RECIPE
    tagger, _ = apply_recipe(TrainOptions(corpus="c.txt", task="truecase", steps=10), None)
    assert (tagger.hidden, tagger.embed, tagger.seq_len, tagger.eos) == (128, 0, 500, "lines")


def passes(stats, seconds, hidden, layers=2, machine=MACHINE):
    """The epochs a time budget buys a model `hidden` wide, as the recipe reckons them."""
    params = parameters("lstm", hidden, layers, stats.vocab)
    return seconds * rules.TRAIN_SHARE * machine.tokens_per_second(params) / stats.tokens


@pytest.mark.parametrize("stats", [SHAKESPEARE, HUGE, CorpusStats(tokens=20_000_000, documents=1, vocab=100)])
@pytest.mark.parametrize("seconds", [30, 120, 300, 1200, 7200])
def test_the_decay_ends_at_zero_from_enough_passes_and_at_a_tenth_below_them(stats, seconds):
    chosen = choose_recipe(stats, budget(seconds))
    settles = passes(stats, seconds, chosen.choices["hidden"]) >= rules.MIN_EPOCHS
    assert chosen.choices["min_lr_ratio"] == (0.0 if settles else rules.MIN_LR_RATIO_UNSETTLED)
    assert ("ending at 0 with the budget" in chosen.text()) == settles
    assert (f"the rule below {rules.MIN_EPOCHS:g} passes" in chosen.text()) == (not settles)


def test_both_decay_ends_occur_and_documents_shorter_than_a_chunk_keep_a_tenth_and_a_given_end_wins():
    assert choose_recipe(SHAKESPEARE, budget(300)).choices["min_lr_ratio"] == 0.0
    assert choose_recipe(HUGE, budget(300)).choices["min_lr_ratio"] == rules.MIN_LR_RATIO_UNSETTLED > 0
    # A width given too wide for the budget makes fewer passes, and the decay stops at a tenth.
    too_wide = choose_recipe(SHAKESPEARE, budget(60), given={"hidden": 1024})
    assert passes(SHAKESPEARE, 60, 1024) < rules.MIN_EPOCHS
    assert too_wide.choices["min_lr_ratio"] == rules.MIN_LR_RATIO_UNSETTLED
    names = choose_recipe(NAMES, budget(300))  # documents shorter than a chunk, however many passes
    assert names.choices["min_lr_ratio"] == rules.MIN_LR_RATIO_UNSETTLED
    assert "the rule over documents shorter than a chunk, whatever the passes" in names.text()
    kept = choose_recipe(SHAKESPEARE, budget(300), given={"min_lr_ratio": 0.1})
    assert "min_lr_ratio" not in kept.choices and "cosine decay ending" not in kept.text()
    constant = choose_recipe(SHAKESPEARE, budget(300), schedule="constant")  # no decay, so no end to explain
    assert "min_lr_ratio" in constant.choices and "decay ending" not in constant.text()
    # The decay's end follows the passes, so a time budget measures the speed while it is left to the recipe.
    chosen_but_the_end = TrainOptions(corpus="c.txt", time_budget=60, hidden=256, dropout=0.1, warmup=30)
    assert recipe.needs_speed(chosen_but_the_end)
    assert not recipe.needs_speed(replace(chosen_but_the_end, min_lr_ratio=0.1))
    # The word and document recipes end the decay at a tenth.
    assert WORD_RECIPE["min_lr_ratio"] == 0.1
    tagger, _ = apply_recipe(TrainOptions(corpus="c.txt", task="classify", steps=10), None)
    assert tagger.min_lr_ratio == 0.1


def test_without_a_time_budget_the_width_is_the_default_and_the_epochs_decide_dropout():
    by_epochs = choose_recipe(SHAKESPEARE, Budget(epochs=0.5)).choices
    assert by_epochs["hidden"] == rules.WIDTH_WITHOUT_BUDGET and by_epochs["dropout"] == 0.0
    by_steps = choose_recipe(NAMES, Budget(steps=10_000)).choices
    assert by_steps["dropout"] > choose_recipe(SHAKESPEARE, Budget(steps=10_000)).choices["dropout"]


def test_a_run_prints_saves_and_keeps_its_recipe_across_a_resume(tmp_path, text_corpus):
    out = tmp_path / "run"
    seen = []
    train(TrainOptions(corpus=str(text_corpus), out=str(out), time_budget=3.0, batch=4, seq_len=16),
          report=seen.append)
    [chosen] = [e for e in seen if isinstance(e, events.Recipe)]
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"].startswith(chosen.summary)
    assert {name: config[name] for name in chosen.choices} == chosen.choices
    assert "batch" not in chosen.choices and "seq_len" not in chosen.choices  # given, so not chosen
    step = load_checkpoint(out, prefer="latest").train["step"]
    resumed = invoke("train", text_corpus, "--out", out, "--resume", "--steps", step + 3, "--json", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert not any(line.startswith('{"recipe"') for line in resumed.stdout.splitlines())  # not chosen again
    again = json.loads((out / "config.json").read_text())
    assert again["recipe"] == config["recipe"] and again["hidden"] == config["hidden"]
    assert load_checkpoint(out).config.hidden == config["hidden"]


def test_the_cli_prints_the_recipe_once_and_json_carries_it(tmp_path, text_corpus):
    result = invoke("train", text_corpus, "--out", tmp_path / "run", "--time", "3s", "--json", "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [record] = [r for r in records if "recipe" in r]
    assert record["recipe"].startswith("recipe: ") and record["choices"]["hidden"] in WIDTHS
    shown = invoke("train", text_corpus, "--out", tmp_path / "shown", "--time", "3s", "--hidden", "16")
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("recipe: ") == 1 and "--hidden" not in shown.output.split("recipe: ")[1].split("\n")[1]
