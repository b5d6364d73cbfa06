"""`charlm plot`: curves read from real runs of every kind, the kept checkpoint starred by the figure it was
kept by, pictures written by a real matplotlib, clear errors."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import CHARLM, invoke
from task_runs import train_classifier, train_tagger

from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.registry import train
from charlm.training.events import LOSS_SMOOTHING
from charlm.training.options import TrainOptions
from charlm.viz.curves import kept_evaluation, load_curves
from charlm.viz.plot import draw_curves


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short real runs on a small generated corpus, evaluated every 3 steps."""
    root = tmp_path_factory.mktemp("plot")
    rng = np.random.default_rng(0)
    corpus = root / "corpus.txt"
    corpus.write_text("".join(rng.choice(list("abcab cab\n"), 6000)), encoding="utf-8")
    made = []
    for name, hidden in (("small", 8), ("wider", 16)):
        out = root / name
        train(TrainOptions(corpus=str(corpus), out=str(out), hidden=hidden, layers=1, batch=4, seq_len=16, steps=9,
                           eval_every=3, warmup=1))
        made.append(out)
    return made


def test_curves_follow_the_metrics_file(runs):
    curves = load_curves(runs[0])
    records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "event" not in r]
    evals = [r for r in records if r.get("event") == "eval"]
    assert curves.name == "small" and curves.tokens == "char" and curves.skipped_lines == 0
    assert curves.steps == [r["step"] for r in steps] == list(range(1, 10))
    assert curves.eval_steps == [r["step"] for r in evals] and len(evals) >= 3
    assert curves.val_loss == [r["val_loss"] for r in evals]
    expected = steps[0]["loss"]
    for r in steps[1:]:
        expected = (1 - LOSS_SMOOTHING) * expected + LOSS_SMOOTHING * r["loss"]
    assert math.isclose(curves.train_loss[-1], expected)
    best = min(evals, key=lambda r: r["val_loss"])  # a language model keeps its lowest validation loss
    assert (curves.best_step, curves.best_value) == (best["step"], best["val_loss"])
    assert (curves.kind, curves.kept_by, curves.loss_label) == ("lm", "val_loss", "nats per char")
    # a step that was evaluated gets exactly the evaluation's training seconds; times never go back
    for step, seconds in zip(curves.eval_steps, curves.eval_seconds, strict=True):
        assert math.isclose(curves.step_seconds[curves.steps.index(step)], seconds, abs_tol=1e-9)
    assert all(b >= a for a, b in zip(curves.step_seconds, curves.step_seconds[1:], strict=False))


def test_a_torn_last_line_is_skipped_and_counted(runs, tmp_path):
    torn = tmp_path / "torn"
    torn.mkdir()
    text = (runs[0] / "metrics.jsonl").read_text()
    (torn / "metrics.jsonl").write_text(text + '{"step": 10, "lo')
    curves = load_curves(torn)
    assert curves.skipped_lines == 1 and curves.steps == load_curves(runs[0]).steps


@pytest.mark.slow
@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<svg"), (".pdf", b"%PDF")])
def test_plot_writes_a_real_picture_of_several_runs(runs, tmp_path, suffix, magic):
    out = tmp_path / f"curves{suffix}"
    done = subprocess.run([*CHARLM, "plot", *map(str, runs), "-o", str(out), "--x", "time"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stderr and done.stdout == ""
    data = out.read_bytes()
    assert magic in data[:400] and len(data) > 5000
    if suffix == ".svg":  # both runs are named in the legend
        assert b"small" in data and b"wider" in data


@pytest.mark.slow
def test_plot_json_gives_the_data_instead(runs, tmp_path):
    done = subprocess.run([*CHARLM, "plot", *map(str, runs), "--json"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["x"] == "step" and [r["name"] for r in report["runs"]] == ["small", "wider"]
    assert report["runs"][1]["val_loss"] == load_curves(runs[1]).val_loss
    assert not (tmp_path / "curves.png").exists()


def test_plot_errors_are_one_line(runs, tmp_path):
    bad_suffix = invoke("plot", str(runs[0]), "-o", str(tmp_path / "c.jpg"))
    assert bad_suffix.exit_code == 2 and "-o" in bad_suffix.output and ".png" in bad_suffix.output
    not_a_run = invoke("plot", str(tmp_path))
    assert not_a_run.exit_code == 1 and "no metrics.jsonl" in not_a_run.output
    text = tmp_path / "notes.txt"
    text.write_text("hello\nworld\n")
    not_metrics = invoke("plot", str(text))
    assert not_metrics.exit_code == 1 and "not a charlm metrics file" in not_metrics.output
    no_dir = invoke("plot", str(runs[0]), "-o", str(tmp_path / "nodir" / "c.png"))
    assert no_dir.exit_code == 1 and str(tmp_path / "nodir" / "c.png") in no_dir.output and ".tmp" not in no_dir.output
    assert "Traceback" not in bad_suffix.output + not_a_run.output + not_metrics.output + no_dir.output


def test_without_matplotlib_plot_says_what_to_install(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    result = invoke("plot", str(runs[0]), "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 2
    assert "pip install 'charlm[plot]'" in result.output
    assert not (tmp_path / "c.png").exists()


def test_step_times_are_interpolated_between_evaluations_and_extended_after_the_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 3.0, "grad_norm": 1.0, "lr": 0.01} for s in range(1, 9)]
    lines.insert(4, {"event": "eval", "step": 4, "val_loss": 2.5, "train_seconds": 2.0, "tokens": "word"})
    lines.insert(7, {"event": "eval", "step": 6, "val_loss": 2.4, "train_seconds": 5.0, "tokens": "word"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    curves = load_curves(run)
    assert curves.tokens == "word" and curves.loss_label == "nats per token"
    assert (curves.best_step, curves.best_value) == (6, 2.4)  # no record of the kept step, no best file: the lowest
    # 0.5 s a step up to step 4 (from 0 at step 0), 1.5 s a step after it, and the last rate goes on
    assert curves.step_seconds == pytest.approx([0.5, 1.0, 1.5, 2.0, 3.5, 5.0, 6.5, 8.0])


# ---------------------------------------------------------------------------------------- the kept checkpoint


def evaluation(step, loss, f1=None, **kept):
    return {"event": "eval", "step": step, "val_loss": loss, "val_f1": f1, "train_seconds": step / 10, **kept}


# A tagger's or classifier's evaluations where the lowest loss (step 30) is not the best F1 (step 20).
F1_RUN = [evaluation(10, 1.0, 0.5), evaluation(20, 0.8, 0.9), evaluation(30, 0.7, 0.85)]
LM_RUN = [evaluation(10, 2.0), evaluation(20, 1.5), evaluation(30, 1.7)]


@pytest.mark.parametrize("kind", ["tagger", "classifier"])
def test_a_run_kept_by_f1_is_starred_at_its_kept_step_by_its_f1(kind):
    # the records say which evaluation was kept, whatever rule kept it (here each newer one, not the highest F1)
    recorded = [dict(r, best_step=r["step"], best_f1=r["val_f1"]) for r in F1_RUN]
    assert kept_evaluation(kind, recorded, {"step": 20}) == (30, 0.85)
    # an older run records no kept step: best.safetensors' own step says which evaluation it was
    assert kept_evaluation(kind, F1_RUN, {"step": 20, "best_f1": 0.9}) == (20, 0.9)
    assert kept_evaluation(kind, F1_RUN, {"step": 10}) == (10, 0.5)
    # with neither, the kind's rule: the highest F1, not the lowest loss
    assert kept_evaluation(kind, F1_RUN, None) == (20, 0.9)
    # a kept step whose evaluation was cut from the records keeps the figure saved with it
    assert kept_evaluation(kind, F1_RUN[2:], {"step": 20, "best_f1": 0.9}) == (20, 0.9)


def test_a_language_model_is_starred_at_its_kept_step_by_its_loss():
    recorded = [dict(r, best_step=10, best_val_loss=2.0) for r in LM_RUN]  # e.g. a resumed run's records
    assert kept_evaluation("lm", recorded, {"step": 20}) == (10, 2.0)
    assert kept_evaluation("lm", LM_RUN, {"step": 20, "best_val": 1.5}) == (20, 1.5)
    assert kept_evaluation("lm", LM_RUN, None) == (20, 1.5)
    assert kept_evaluation("lm", [], None) == (None, None)


@pytest.fixture(scope="module")
def kinds(runs, tmp_path_factory):
    """A real run of each kind: the language model above, a tagger and a classifier."""
    root = tmp_path_factory.mktemp("kinds")
    return {"lm": runs[0], "tagger": train_tagger(root), "classifier": train_classifier(root)}


FIGURES = {"lm": ("val_loss", "validation loss", "nats per char"),
           "tagger": ("val_f1", "validation F1", "nats per label"),
           "classifier": ("val_f1", "validation macro-F1", "nats per label")}


@pytest.mark.parametrize("kind", ["lm", "tagger", "classifier"])
def test_the_star_is_the_kept_checkpoint_of_every_kind(kinds, kind, tmp_path):
    run = kinds[kind]
    curves = load_curves(run)
    kept = load_checkpoint(run / "best.safetensors").train
    key, metric, unit = FIGURES[kind]
    assert (curves.kind, curves.kept_by, curves.metric_label, curves.loss_label) == (kind, key, metric, unit)
    assert curves.best_step == kept["step"]
    figures = curves.val_loss if key == "val_loss" else curves.val_f1
    assert curves.best_value == figures[curves.eval_steps.index(kept["step"])]
    assert curves.best_value == (kept["best_val"] if key == "val_loss" else kept["best_f1"])
    # a run from a charlm that did not record the kept step in its metrics: best.safetensors says it
    older = tmp_path / "older"
    shutil.copytree(run, older)
    records = [json.loads(line) for line in (older / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("best_step", None)
        record.pop("best_f1", None)
    (older / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert (load_curves(older).best_step, load_curves(older).best_value) == (curves.best_step, curves.best_value)


@pytest.mark.parametrize("kind", ["lm", "tagger", "classifier"])
def test_the_picture_marks_every_evaluation_and_stars_the_kept_checkpoint(kinds, kind):
    curves = load_curves(kinds[kind])
    fig = draw_curves([curves])
    axes = fig.get_axes()
    loss_ax = axes[-1]
    assert len(axes) == (1 if kind == "lm" else 2)
    assert loss_ax.get_ylabel() == f"loss ({FIGURES[kind][2]})"
    lines = {line.get_label(): line for ax in axes for line in ax.get_lines()}
    validation = lines[f"{curves.name} validation loss"]
    assert validation.get_marker() == "o" and list(validation.get_xdata()) == curves.eval_steps
    if kind != "lm":
        f1 = lines[f"{curves.name} {FIGURES[kind][1]}"]
        assert axes[0].get_ylabel() == FIGURES[kind][1]
        assert f1.get_marker() == "o" and list(f1.get_xdata()) == curves.eval_steps
    (star_label,) = [label for label in lines if " kept: " in label]
    star = lines[star_label]
    assert star.get_marker() == "*" and star in (axes[0] if kind != "lm" else loss_ax).get_lines()
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([curves.best_step], [curves.best_value])
    figure = {"lm": "loss", "tagger": "F1", "classifier": "macro-F1"}[kind]
    assert star_label == f"{curves.name} kept: {figure} {curves.best_value:.4f} at step {curves.best_step:,}"


def test_a_run_evaluated_twice_shows_both_evaluations(kinds):
    curves = load_curves(kinds["classifier"])
    assert len(curves.eval_steps) == 2
    (ax_f1, ax_loss) = draw_curves([curves]).get_axes()
    for ax in (ax_f1, ax_loss):
        marked = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert len(marked) == 1 and len(marked[0].get_xdata()) == 2


@pytest.mark.slow
def test_plot_draws_runs_of_every_kind_in_one_picture(kinds, tmp_path):
    out = tmp_path / "kinds.svg"
    done = subprocess.run([*CHARLM, "plot", *(str(kinds[k]) for k in ("lm", "tagger", "classifier")), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    picture = out.read_text()
    for kind in ("lm", "tagger", "classifier"):  # matplotlib keeps each text as a comment beside its glyphs
        curves = load_curves(kinds[kind])
        figure = {"lm": "loss", "tagger": "F1", "classifier": "macro-F1"}[kind]
        assert f"{curves.name} kept: {figure} {curves.best_value:.4f} at step {curves.best_step:,}" in picture
    assert "validation F1 / validation macro-F1" in picture and "loss (nats per char / nats per label)" in picture
