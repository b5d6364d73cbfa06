"""The time-budget policy (charlm.training.budget): each rule checked on chosen measurements."""

import pytest

from charlm.training import budget


def reserve(exact, evaluation=None, *, time_budget=100.0, val_ids=100, eval_chars=1000):
    return budget.reserved_seconds(time_budget, exact_seconds=exact, eval_seconds=evaluation, val_ids=val_ids,
                                   eval_chars=eval_chars)


def test_the_final_score_is_exact_when_it_costs_at_most_a_quarter_of_the_budget():
    assert budget.final_is_exact(25.0, time_budget=100.0, train_seconds=0.0)
    assert not budget.final_is_exact(25.1, time_budget=100.0, train_seconds=0.0)
    assert not budget.final_is_exact(None, time_budget=100.0, train_seconds=0.0)  # no validation text


def test_without_a_budget_the_exact_allowance_is_a_quarter_of_the_training_time_but_at_least_a_minute():
    assert budget.final_is_exact(60.0, time_budget=None, train_seconds=10.0)
    assert not budget.final_is_exact(61.0, time_budget=None, train_seconds=10.0)
    assert budget.final_is_exact(100.0, time_budget=None, train_seconds=400.0)


EXIT = budget.EXIT_SECONDS
MORE = 1 + budget.ESTIMATE_MARGIN


def test_the_reserve_is_the_closing_evaluation_plus_the_exact_final_score_and_the_exit():
    assert reserve(20.0, 3.0) == pytest.approx(23.0 * MORE + EXIT)


def test_before_the_first_evaluation_is_timed_its_cost_is_a_guess_below_an_exact_pass():
    guessed = (reserve(20.0) - EXIT) / MORE - 20.0  # the exact final score, plus the guessed evaluation
    assert 0.0 < guessed < 20.0
    assert reserve(20.0, 3.0) == pytest.approx(23.0 * MORE + EXIT)  # a measured evaluation replaces the guess


def test_a_streams_final_score_reuses_an_evaluation_that_covered_all_validation_text():
    # exact too slow, nothing more to score
    assert reserve(30.0, 3.0, val_ids=100, eval_chars=100) == pytest.approx(3.0 * MORE + EXIT)
    # an evaluation scores only its 50 ids: the final pass over all 100 costs twice as much
    assert reserve(30.0, 3.0, val_ids=100, eval_chars=50) == pytest.approx((3.0 + 6.0) * MORE + EXIT)


def test_the_reserve_is_at_most_half_the_budget_and_none_without_budget_or_validation():
    assert reserve(20.0, 80.0) == 50.0
    assert reserve(20.0, 3.0, time_budget=None) == 0.0
    assert reserve(None, 3.0) == 0.0


def test_the_exact_cost_scales_the_probe_to_all_validation_ids():
    assert budget.exact_seconds_estimate(0.5, 1000, 4000) == 2.0
    assert budget.PROBE_IDS > 1000  # enough ids that the per-id cost outweighs one call's fixed cost


def test_evaluations_come_every_minute_or_eighth_of_a_short_budget_and_never_take_over_the_run():
    assert budget.eval_interval(None) == 60.0
    assert budget.eval_interval(3600.0) == 60.0
    assert budget.eval_interval(80.0) == 10.0
    fast, slow = budget.eval_interval(3600.0, 0.5), budget.eval_interval(3600.0, 10.0)
    assert fast == 60.0
    assert slow > 10.0 * 20  # a slow evaluation spaces the next one out, so scoring stays a small share
    assert 10.0 / (10.0 + slow) < 0.05


def test_progress_is_the_further_of_steps_and_time():
    assert budget.progress_fraction(step=25, total_steps=100, time_budget=None, reserved=0.0, progress0=0.0,
                                    session_seconds=999.0) == 0.25
    by_time = budget.progress_fraction(step=1, total_steps=100, time_budget=100.0, reserved=20.0, progress0=0.0,
                                       session_seconds=40.0)
    assert by_time == 0.5  # 40 of the 80 seconds left for training
    resumed = budget.progress_fraction(step=1, total_steps=None, time_budget=100.0, reserved=0.0, progress0=0.5,
                                       session_seconds=50.0)
    assert resumed == 0.75  # a resumed run covers the rest of the schedule in its own budget
    assert budget.progress_fraction(step=5, total_steps=None, time_budget=None, reserved=0.0, progress0=0.0,
                                    session_seconds=5.0) == 0.0


def test_evaluations_are_sized_to_come_as_often_as_the_interval_says():
    # Exact scoring of 1e6 ids takes 50 s; an evaluation in streams is priced at STREAMS_COST_GUESS of that.
    # A 2-minute budget evaluates every 15 s, so an evaluation may take 15 / EVAL_SPACING s.
    per_id = budget.STREAMS_COST_GUESS * 50.0 / 1e6
    size = budget.eval_size(262_144, exact_seconds=50.0, val_ids=10**6, time_budget=120.0)
    assert size == int(budget.eval_interval(120.0) / budget.EVAL_SPACING / per_id)
    assert size * per_id <= budget.eval_interval(120.0) / budget.EVAL_SPACING
    # A long budget (60 s between evaluations) affords more, up to --eval-chars; never fewer than the floor.
    assert budget.eval_size(262_144, exact_seconds=50.0, val_ids=10**6, time_budget=3600.0) > size
    assert budget.eval_size(1_000, exact_seconds=50.0, val_ids=10**6, time_budget=3600.0) == 1_000
    assert budget.eval_size(262_144, exact_seconds=1e4, val_ids=10**6, time_budget=120.0) == budget.MIN_EVAL_IDS
    assert budget.eval_size(262_144, exact_seconds=None, val_ids=0, time_budget=120.0) == 262_144
