"""The thread count: the user's when given, else the one that trains fastest now, chosen again as the load
changes. Timings are injected (a fake clock that a step moves by a time depending on the thread count and on
whether the machine is busy), so the tests check the choice, never this machine's speed."""

import pytest

import charlm.tasks.lm.lm_task as lm_task
import charlm.training.speed as speed
from charlm.tasks.registry import train
from charlm.training import events, start, threads
from charlm.training.options import TrainOptions

# Seconds per token at each thread count, on an idle machine and beside a busy process: a second thread pays
# when the machine is idle and waits for a taken core when it is busy.
IDLE = {1: 1.0e-5, 2: 0.6e-5}
BUSY = {1: 1.05e-5, 2: 3.0e-5}


class Machine:
    """The thread pools and the clock of a fake 2-core machine whose load can change."""

    def __init__(self, monkeypatch, cores=2):
        self.now, self.threads, self.load, self.set_calls, self.steps_at = 0.0, cores, IDLE, [], []
        for name in threads.USER_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(threads, "available_cores", lambda: cores)
        monkeypatch.setattr(threads, "set_threads", self.set_threads)
        monkeypatch.setattr(threads, "_announced", None)

    def set_threads(self, count):
        self.threads = count
        self.set_calls.append(count)

    def step(self, tokens: int) -> float:
        """Run a step of `tokens` tokens at the present count and load; -> its seconds."""
        seconds = tokens * self.load[self.threads]
        self.now += seconds
        self.steps_at.append(self.threads)
        return seconds

    def clock(self) -> float:
        return self.now


def test_more_threads_are_kept_only_when_clearly_faster():
    assert threads.fastest({1: 1.0, 2: 0.6}) == 2
    assert threads.fastest({1: 1.0, 2: 3.0}) == 1
    assert threads.fastest({1: 1.05, 2: 1.0}) == 1  # within THREAD_GAIN: the second core is left to others
    assert threads.fastest({1: 1.0, 2: 0.5, 4: 0.48}) == 2


def test_candidates_are_one_powers_of_two_and_all_cores():
    assert threads.candidates(1) == (1,)
    assert threads.candidates(2) == (1, 2)
    assert threads.candidates(6) == (1, 2, 4, 6)


@pytest.mark.parametrize("load, chosen", [(IDLE, 2), (BUSY, 1)])
def test_the_choice_follows_the_timing(monkeypatch, load, chosen):
    machine = Machine(monkeypatch)
    machine.load = load
    choice = threads.choose_threads(lambda count, give_up: machine.load[count])
    assert choice.threads == chosen == machine.threads and choice.chosen_by == "timing"
    assert choice.tokens_per_second == {count: 1 / s for count, s in load.items()}
    assert f"--threads {chosen}: the fastest now" in choice.describe()


def test_a_count_kept_for_a_small_gain_says_so():
    almost = threads.timed_choice({1: 1.05e-5, 2: 1.0e-5})  # two threads 5% faster: one is kept
    assert almost.threads == 1
    assert almost.describe().startswith("--threads 1: within 10% of the fastest now")
    assert "wait for cores" not in almost.describe()
    busy = threads.timed_choice(BUSY)
    assert busy.describe().startswith("--threads 1: the fastest now") and "wait for cores" in busy.describe()


def test_the_users_count_wins_and_nothing_is_timed(monkeypatch):
    machine = Machine(monkeypatch)
    timed = []
    choice = threads.choose_threads(lambda *args: timed.append(args), option=3)
    assert (choice.threads, choice.chosen_by, timed, machine.set_calls) == (3, "user", [], [3])
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # read by the BLAS library itself: charlm sets nothing
    choice = threads.choose_threads(lambda *args: timed.append(args))
    assert (choice.threads, choice.chosen_by, timed, machine.set_calls) == (2, "user", [], [3])
    governor = threads.ThreadGovernor()
    governor.before_step()
    governor.after_step(1.0, 100, 1e6)
    assert not governor.choosing and governor.threads == 2 and machine.set_calls == [3]


def run_steps(governor, machine, steps, tokens=1000):
    for _ in range(steps):
        governor.before_step()
        seconds = machine.step(tokens)
        governor.after_step(seconds, tokens, machine.now)


def test_a_run_gives_up_the_second_thread_when_a_neighbour_starts_and_takes_it_back_when_it_stops(monkeypatch):
    machine = Machine(monkeypatch)
    changes = []
    governor = threads.ThreadGovernor(on_change=changes.append)
    run_steps(governor, machine, 2 * (threads.TRIAL_STEPS + 1))
    assert governor.threads == 2 and not governor.choosing and [c.threads for c in changes] == [2]

    machine.load = BUSY  # two threads slow down 5x: within RECENT_STEPS steps the run notices and re-times
    run_steps(governor, machine, threads.RECENT_STEPS + 2 * (threads.TRIAL_STEPS + 1))
    assert governor.threads == 1 and [c.threads for c in changes] == [2, 1]
    assert changes[-1].tokens_per_second[1] > changes[-1].tokens_per_second[2]

    machine.load = IDLE  # one thread is no faster when the neighbour stops: only the periodic re-check finds it
    run_steps(governor, machine, 50)
    assert governor.threads == 1
    steps_to_recheck = int(threads.RECHECK_SECONDS / (1000 * IDLE[1])) + 1
    run_steps(governor, machine, steps_to_recheck + 2 * (threads.TRIAL_STEPS + 1))
    assert governor.threads == 2 and [c.threads for c in changes] == [2, 1, 2]


def test_a_count_that_waits_for_taken_cores_costs_one_step(monkeypatch):
    # Beside a busy process two threads are 3x slower: after one step at two, the trial drops them, and the
    # periodic re-checks that keep one thread come further and further apart.
    machine = Machine(monkeypatch)
    machine.load = BUSY
    governor = threads.ThreadGovernor()
    run_steps(governor, machine, threads.TRIAL_STEPS + 2)
    assert not governor.choosing and governor.threads == 1 and machine.steps_at.count(2) == 1
    waits = []
    for _ in range(4):
        run_steps(governor, machine, int(governor.wait / (1000 * BUSY[1])) + threads.TRIAL_STEPS + 3)
        waits.append(governor.wait)
    assert machine.steps_at.count(2) == 5 and governor.threads == 1
    assert waits == [min(threads.RECHECK_SECONDS * 2 ** k, threads.MAX_RECHECK_SECONDS) for k in range(1, 5)]


def test_a_trial_costs_a_small_share_of_a_runs_steps(monkeypatch):
    machine = Machine(monkeypatch)
    governor = threads.ThreadGovernor()
    run_steps(governor, machine, 10_000)
    trial_steps = 2 * (threads.TRIAL_STEPS + 1)
    trials = (len(machine.set_calls) + 1) // 2  # each trial sets 1, then 2 (and keeps 2)
    assert trials * trial_steps < 0.05 * 10_000


def test_a_training_run_starts_at_the_probes_choice_and_says_it(monkeypatch, tmp_path, text_corpus):
    # The recipe's speed probe and the training steps both run on the fake busy machine: the probe must
    # choose one thread, the recipe's account must say so, and the run must not announce it twice.
    machine = Machine(monkeypatch)
    machine.load = BUSY

    def timed(real):
        def step(params, cfg, x, y, state, **kwargs):
            machine.step(x.size)
            return real(params, cfg, x, y, state, **kwargs)
        return step

    monkeypatch.setattr(speed, "loss_and_grads", timed(speed.loss_and_grads))
    probe = speed.measure_recipe_speed
    monkeypatch.setattr(start, "measure_recipe_speed", lambda opts, stats: probe(opts, stats, clock=machine.clock))
    monkeypatch.setattr(lm_task, "loss_and_grads", timed(lm_task.loss_and_grads))
    seen = []
    opts = TrainOptions(corpus=str(text_corpus), out=str(tmp_path / "run"), layers=1, time_budget=30.0)
    train(opts, report=seen.append, clock=machine.clock)
    [recipe] = [e for e in seen if isinstance(e, events.Recipe)]
    assert recipe.threads == 1 and recipe.to_dict()["threads"] == 1
    assert any(reason.startswith("--threads 1: the fastest now") for reason in recipe.reasons)
    assert not [e for e in seen if isinstance(e, events.Log) and e.text.startswith("the machine's load changed")]
    assert machine.threads == 1
