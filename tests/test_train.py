"""`charlm train`: learning, checkpoints, exact resume, faults and their exit codes."""

import json
import os
import signal
import subprocess
import time
from dataclasses import replace

import numpy as np
import pytest
from helpers import CHARLM, charlm_env, invoke, run_charlm

import charlm.tasks.lm.lm_task as train_module
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.store.rundir import RunDir
from charlm.tasks.lm.lm_task import LanguageModelTask
from charlm.tasks.registry import open_trainer, train
from charlm.training import budget, events
from charlm.training.options import DEFAULT_TIME_BUDGET, TrainOptions, parse_duration, with_time_budget

SMALL = ["--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "16", "--quiet"]


def _losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_learns_a_periodic_sequence(tmp_path):
    corpus = tmp_path / "periodic.txt"
    corpus.write_text("abcdefghij" * 1000, encoding="utf-8")  # long: the unpredictable final <EOS> is 1 target of 1000
    opts = TrainOptions(corpus=str(corpus), out=str(tmp_path / "run"), cell="lstm", hidden=32, layers=1,
                        batch=8, seq_len=20, lr=1e-2, steps=250, eval_every=125, warmup=10)
    result = train(opts)
    assert result.best_val_loss < 0.05
    assert result.best_val_mode == "exact"
    assert result.steps == 250


def test_json_output_and_run_dir_contents(tmp_path, text_corpus):
    out = tmp_path / "run"
    result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "30", "--eval-every", "15",
                    "--json", *SMALL)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert "recipe" in records[0] and "dropout" in records[0]["choices"]  # what the recipe chose, first
    assert [r["step"] for r in records[1:-1]] == [15, 30]
    final = records[-1]
    for key in ("best_val_loss", "best_val_bpc", "steps", "epochs", "train_seconds", "chars_per_sec",
                "checkpoint"):
        assert key in final
    assert final["steps"] == 30
    assert final["best_val_bpc"] == pytest.approx(final["best_val_loss"] / np.log(2))
    assert (out / "best.safetensors").exists() and (out / "config.json").exists()
    assert len(_losses(out)) == 30
    assert sorted(p.name for p in out.glob("ckpt-*")) == ["ckpt-00000015.safetensors", "ckpt-00000030.safetensors"]
    assert load_checkpoint(final["checkpoint"]).train["best_val_final"] == pytest.approx(final["best_val_loss"])


def test_min_lr_ratio_sets_where_the_cosine_decay_ends(tmp_path, text_corpus):
    last_lr = {}
    for ratio in ("0", "0.5"):
        out = tmp_path / f"run-{ratio}"
        result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "20", "--eval-every", "20",
                        "--lr", "0.01", "--warmup", "0", "--min-lr-ratio", ratio, "--json", *SMALL)
        assert result.exit_code == 0, result.output
        evaluation = [json.loads(line) for line in result.stdout.splitlines() if '"val_loss"' in line][0]
        last_lr[ratio] = evaluation["lr"]
        assert json.loads((out / "config.json").read_text())["min_lr_ratio"] == float(ratio)
    # The last of 20 updates is near the end of the decay: near the floor, 0 or half the peak.
    assert last_lr["0"] < 1e-4 and last_lr["0.5"] == pytest.approx(0.005, rel=0.01)


def _train_process(args, env_extra=None):
    return run_charlm("train", *args, env=charlm_env(**(env_extra or {})), timeout=300)


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_exact(tmp_path, text_corpus):
    # A cosine schedule depends on the total, so stopping with --steps 20 then extending to 40 is only
    # the same run under a constant schedule (interrupted cosine runs are covered by the kill tests).
    common = [str(text_corpus), *SMALL, "--dropout", "0.2", "--eval-every", "10", "--seed", "3",
              "--seq-len", "32", "--batch", "8", "--schedule", "constant", "--warmup", "30"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train_process([*common, "--out", str(straight), "--steps", "40"]).returncode == 0
    first = _train_process([*common, "--out", str(split), "--steps", "20"])
    assert first.returncode == 0, first.stderr
    second = _train_process([str(text_corpus), "--out", str(split), "--resume", "--steps", "40", "--quiet"])
    assert second.returncode == 0, second.stderr
    # The corpus is short: 40 steps cross several epoch boundaries (new offsets, state resets).
    assert load_checkpoint(split / "ckpt-00000040.safetensors", prefer="latest").train["epoch"] > 2
    a = load_checkpoint(straight / "ckpt-00000040.safetensors")
    b = load_checkpoint(split / "ckpt-00000040.safetensors")
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    for name in a.optim:
        assert np.array_equal(a.optim[name], b.optim[name]), name
    assert a.rng == b.rng
    assert _losses(straight) == _losses(split)


def test_resume_of_a_finished_run_says_so(tmp_path, text_corpus):
    out = tmp_path / "run"
    assert invoke("train", str(text_corpus), "--out", str(out), "--steps", "10", *SMALL).exit_code == 0
    result = invoke("train", str(text_corpus), "--out", str(out), "--resume")
    assert result.exit_code == 0
    assert "already at step 10 of 10" in result.stderr
    more = invoke("train", str(text_corpus), "--out", str(out), "--resume", "--steps", "14", "--json")
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout.splitlines()[-1])["steps"] == 14


def test_existing_run_needs_resume(tmp_path, text_corpus):
    out = tmp_path / "run"
    assert invoke("train", str(text_corpus), "--out", str(out), "--steps", "5", *SMALL).exit_code == 0
    result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "5", *SMALL)
    assert result.exit_code == 1
    assert "--resume" in result.stderr and "Traceback" not in result.output


def test_resume_refuses_another_corpus_and_other_architecture(tmp_path, text_corpus):
    out = tmp_path / "run"
    assert invoke("train", str(text_corpus), "--out", str(out), "--steps", "5", *SMALL).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text(text_corpus.read_text() + "more text\n", encoding="utf-8")
    result = invoke("train", str(other), "--out", str(out), "--resume", "--steps", "10")
    assert result.exit_code == 1 and "not the corpus this run was trained on" in result.stderr
    result = invoke("train", str(text_corpus), "--out", str(out), "--resume", "--steps", "10", "--hidden", "32",
                    "--cell", "gru")
    assert result.exit_code == 1
    assert "--hidden 32 (was 16)" in result.stderr and "--cell gru (was lstm)" in result.stderr


def test_second_trainer_on_a_locked_run_dir_is_refused(tmp_path, text_corpus):
    out = tmp_path / "run"
    with RunDir(out):
        result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "5", *SMALL)
    assert result.exit_code == 1
    assert f"in use by another charlm train (pid {os.getpid()})" in result.stderr
    assert not list(out.glob("*.safetensors"))


def test_divergence_exits_3_and_keeps_the_checkpoint(tmp_path, text_corpus, monkeypatch):
    out = tmp_path / "run"
    real = train_module.loss_and_grads
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, grads, state = real(*args, **kwargs)
        calls["n"] += 1
        return (float("nan") if calls["n"] > 12 else loss), grads, state

    monkeypatch.setattr(train_module, "loss_and_grads", poisoned)
    result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "50", "--save-every", "5",
                    "--val-fraction", "0", *SMALL)
    assert result.exit_code == 3, result.output
    assert "diverged at step 13" in result.stderr and "--lr" in result.stderr
    assert "ckpt-00000010" in result.stderr
    assert load_checkpoint(out, prefer="latest").train["step"] == 10


@pytest.mark.slow
def test_sigint_saves_then_exits_130_and_resume_continues(tmp_path, text_corpus):
    out = tmp_path / "run"
    env = charlm_env()
    proc = subprocess.Popen([*CHARLM, "train", str(text_corpus), "--out", str(out),
                             "--time", "2m", "--save-every", "5", *SMALL], stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 60
    while not list(out.glob("ckpt-*.safetensors")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "resume with: charlm train" in stderr and "Traceback" not in stderr
    newest = load_checkpoint(out, prefer="latest")
    assert newest.train["step"] >= 5
    resumed = invoke("train", str(text_corpus), "--out", str(out), "--resume", "--steps",
                     str(newest.train["step"] + 3), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.splitlines()[-1])["steps"] == newest.train["step"] + 3


def test_corpus_shorter_than_the_given_batch_is_a_usage_error(tmp_path):
    # Left unset, the batch and chunk fit the corpus (tests/test_recipe.py); given, they are kept.
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("hello there\n", encoding="utf-8")
    result = invoke("train", str(corpus), "--out", str(tmp_path / "run"), "--steps", "5", "--batch", "4",
                    "--seq-len", "8")
    assert result.exit_code == 2
    assert "--seq-len" in result.stderr and "Traceback" not in result.output


def test_fine_tune_reports_unknown_characters(tmp_path, text_corpus):
    base = tmp_path / "base"
    assert invoke("train", str(text_corpus), "--out", str(base), "--steps", "5", *SMALL).exit_code == 0
    new = tmp_path / "new.txt"
    new.write_text(text_corpus.read_text().replace("cat", "cäť"), encoding="utf-8")
    result = invoke("train", str(new), "--out", str(tmp_path / "tuned"), "--init-from", str(base), "--steps", "5",
                    "--batch", "4", "--seq-len", "16")
    assert result.exit_code == 0, result.output
    n_changed = text_corpus.read_text().count("cat") * 2
    assert f"{n_changed:,} of" in result.stderr and "map to <UNK>" in result.stderr
    tuned = load_checkpoint(tmp_path / "tuned")
    assert tuned.vocab.to_dict() == load_checkpoint(base).vocab.to_dict()
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())  # the model it trains, not a recipe's
    assert (config["hidden"], config["layers"], tuned.config.hidden) == (16, 1, 16)


def test_bad_option_values_are_usage_errors(tmp_path, text_corpus):
    for args in (["--lr", "0"], ["--lr", "nan"], ["--hidden", "0"], ["--cell", "transformer"], ["--time", "soon"],
                 ["--dropout", "1"]):
        result = invoke("train", str(text_corpus), "--out", str(tmp_path / "r"), "--steps", "5", *args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_parse_duration():
    assert parse_duration("90s") == 90 and parse_duration("10m") == 600 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ValueError):
        parse_duration("10 minutes")


def test_reported_val_loss_equals_perplexity_of_the_val_file(tmp_path, text_corpus):
    val = tmp_path / "val.txt"
    val.write_text("the dog sat on the mat\nand the cat ran to it\n" * 20, encoding="utf-8")
    out = tmp_path / "run"
    trained = invoke("train", str(text_corpus), "--out", str(out), "--val-file", str(val), "--steps", "30",
                     "--eval-every", "10", "--json", *SMALL)
    assert trained.exit_code == 0, trained.output
    reported = json.loads(trained.stdout.splitlines()[-1])["best_val_loss"]
    scored = invoke("perplexity", str(out), str(val), "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["total"]["nats_per_char"] == pytest.approx(reported, abs=1e-4)


class StepClock:
    """A clock that moves only when a training step runs: each step takes `seconds`, everything else none."""

    def __init__(self, monkeypatch, seconds: float):
        self.now = 0.0
        real = train_module.loss_and_grads

        def timed(*args, **kwargs):
            self.now += seconds
            return real(*args, **kwargs)

        monkeypatch.setattr(train_module, "loss_and_grads", timed)

    def __call__(self) -> float:
        return self.now


def test_time_budget_keeps_room_for_the_closing_evaluations(tmp_path, text_corpus, monkeypatch):
    # Exact scoring of the validation text is said to take 1 s and steps take 1/8 s. The closing evaluation
    # (instant by this clock), the exact final score with its margin (budget.ESTIMATE_MARGIN) and the seconds
    # kept for the process's start and exit (budget.EXIT_SECONDS) leave 3.3 s of a 6.4 s budget to train:
    # 26 steps, as a 27th would end past it.
    monkeypatch.setattr(LanguageModelTask, "probe_exact_seconds", lambda self, params, cfg, clock, **kwargs: 1.0)
    clock = StepClock(monkeypatch, 0.125)
    seconds = 1.0 * (1 + budget.ESTIMATE_MARGIN) + budget.EXIT_SECONDS + 3.3
    opts = TrainOptions(corpus=str(text_corpus), out=str(tmp_path / "run"), cell="lstm", hidden=16, layers=1,
                        batch=4, seq_len=16, time_budget=seconds)
    result = train(opts, clock=clock)
    assert result.stopped_by == "time"
    assert result.best_val_mode == "exact"
    assert result.train_seconds == 3.25 and result.steps == 26


def test_the_time_budget_counts_from_when_the_invocation_started(tmp_path, text_corpus, monkeypatch):
    # As above, but the invocation began 1 s before train() was called (imports, start-up): 1 s less training
    # (the reserve is capped at budget.MAX_RESERVE_SHARE of the 6 s, leaving 2 s: 16 steps).
    monkeypatch.setattr(LanguageModelTask, "probe_exact_seconds", lambda self, params, cfg, clock, **kwargs: 1.0)
    clock = StepClock(monkeypatch, 0.125)
    opts = TrainOptions(corpus=str(text_corpus), out=str(tmp_path / "run"), cell="lstm", hidden=16, layers=1,
                        batch=4, seq_len=16, time_budget=6.0)
    result = train(opts, clock=clock, started=-1.0)
    assert result.stopped_by == "time" and result.train_seconds == 2.0 and result.steps == 16


def test_library_train_without_a_stopping_rule_uses_the_default_budget(tmp_path, text_corpus, monkeypatch):
    clock = StepClock(monkeypatch, DEFAULT_TIME_BUDGET / 8)
    out = tmp_path / "run"
    result = train(TrainOptions(corpus=str(text_corpus), out=str(out), hidden=16, layers=1, batch=4, seq_len=16),
                   clock=clock)
    assert result.stopped_by == "time" and result.steps == 7  # an 8th would end past the reserve
    assert json.loads((out / "config.json").read_text())["time_budget"] == DEFAULT_TIME_BUDGET
    assert with_time_budget(TrainOptions(corpus="x", steps=5)).time_budget is None  # --steps alone: no budget


def test_the_trainer_reports_typed_events(tmp_path, text_corpus):
    seen = []
    opts = TrainOptions(corpus=str(text_corpus), out=str(tmp_path / "run"), hidden=16, layers=1, batch=4,
                        seq_len=16, steps=6, eval_every=3, sample_every=6)
    train(opts, report=seen.append)
    progress = [e for e in seen if isinstance(e, events.Progress)]
    evaluations = [e for e in seen if isinstance(e, events.Evaluation)]
    assert [e.step for e in progress] == [1, 2, 3, 4, 5, 6] and progress[-1].fraction == 1.0
    assert [e.step for e in evaluations] == [3, 6] and progress[3].val_loss == evaluations[0].val_loss
    assert [e.step for e in seen if isinstance(e, events.Sample)] == [6]
    assert isinstance(seen[-1], events.Log) and seen[-1].text.startswith("stopped by steps at step 6")


def test_warnings_show_under_quiet_and_display_flags_are_not_saved(tmp_path, text_corpus):
    out = tmp_path / "run"
    result = invoke("train", str(text_corpus), "--out", str(out), "--steps", "4", "--json", "--batch", "64",
                    "--seq-len", "16", "--hidden", "16", "--layers", "1", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: only ") and "batch(es) per epoch" in result.stderr
    saved = load_checkpoint(out, prefer="latest").train["options"]
    config = json.loads((out / "config.json").read_text())
    for key in ("json", "quiet"):
        assert key not in saved and key not in config


def test_a_checkpoint_that_saved_display_flags_still_resumes(tmp_path, text_corpus):
    out = tmp_path / "run"
    assert invoke("train", str(text_corpus), "--out", str(out), "--steps", "4", *SMALL).exit_code == 0
    old = load_checkpoint(out, prefer="latest")
    options = dict(old.train["options"], json=True, quiet=True)  # as older versions saved them
    save_checkpoint(old.path, params=old.params, config=old.config, vocab=old.vocab, data=old.data,
                    train=dict(old.train, options=options), optim=old.optim, state=old.state, rng=old.rng)
    resumed = invoke("train", str(text_corpus), "--out", str(out), "--resume", "--steps", "6", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.splitlines()[-1])["steps"] == 6


def test_fine_tuning_refuses_another_architecture(tmp_path, text_corpus):
    base = tmp_path / "base"
    assert invoke("train", str(text_corpus), "--out", str(base), "--steps", "3", *SMALL).exit_code == 0
    result = invoke("train", str(text_corpus), "--out", str(tmp_path / "tuned"), "--init-from", str(base),
                    "--steps", "3", "--embed", "8", "--dtype", "float64", "--dropout", "0.3")
    assert result.exit_code == 2
    # dropout acts only in training, so a fine-tune may change it
    assert "cannot change --init-from checkpoint: --embed 8 (was 0); --dtype float64 (was float32)" in result.stderr


def test_streams_final_score_reuses_the_best_evaluation_when_it_covered_all_validation_text(
        tmp_path, text_corpus, monkeypatch):
    # exact scoring: too slow
    monkeypatch.setattr(LanguageModelTask, "probe_exact_seconds", lambda self, params, cfg, clock, **kwargs: 1e9)
    scored = []
    score = LanguageModelTask.score_streams
    monkeypatch.setattr(LanguageModelTask, "score_streams",
                        lambda self, *a, **k: scored.append(1) or score(self, *a, **k))
    opts = TrainOptions(corpus=str(text_corpus), out=str(tmp_path / "run"), cell="lstm", hidden=16, layers=1,
                        batch=4, seq_len=16, steps=20, eval_every=10)
    result = train(opts)
    assert result.best_val_mode == "streams"
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r.get("event") == "eval"]
    assert len(scored) == len(evals) == 2  # no third pass over the validation text for the final score
    assert result.best_val_loss == min(r["val_loss"] for r in evals)
    # ... and that score is the trainer's own evaluation of the best checkpoint over all validation text
    best = load_checkpoint(result.checkpoint)
    with RunDir(opts.run_dir) as run_dir:
        trainer = open_trainer(replace(opts, resume=True), run_dir)
        assert result.best_val_loss == trainer.task.score_streams(best.params, best.config)


def test_a_validation_loss_rising_from_the_first_evaluations_is_warned_once():
    assert events.memorising([0.48, 0.9]) is None  # too early to tell
    warning = events.memorising([0.48, 0.9, 5.3])
    assert isinstance(warning, events.Warning) and "0.480 -> 0.900 -> 5.300" in warning.text
    assert "memorises" in warning.text
    assert events.memorising([0.48, 0.9, 5.3, 6.0]) is None  # said once
    assert events.memorising([0.9, 0.48, 5.3]) is None  # it fell once: learning, then perhaps over-fitting


def test_a_tiny_classifier_run_warns_that_it_memorises(tmp_path, monkeypatch):
    # A trainer whose evaluations give rising losses reports the warning through its report callback.
    seen = []
    losses = iter([0.5, 1.0, 2.0, 3.0])
    corpus = tmp_path / "c.tsv"
    corpus.write_text("".join(f"{label}\t{label} {i}\n" for i in range(20) for label in ("a", "b")),
                      encoding="utf-8")
    from charlm.tasks.classify.classify_task import ClassifierTask

    real = ClassifierTask.evaluate
    monkeypatch.setattr(ClassifierTask, "evaluate",
                        lambda self, params, cfg: replace(real(self, params, cfg), loss=next(losses)))
    opts = TrainOptions(corpus=str(corpus), out=str(tmp_path / "run"), task="classify", hidden=8, steps=4,
                        eval_every=1)
    train(opts, report=seen.append)
    warnings = [e.text for e in seen if isinstance(e, events.Warning) and "memorises" in e.text]
    assert len(warnings) == 1 and "0.500 -> 1.000 -> 2.000" in warnings[0]
