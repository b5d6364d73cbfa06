"""`charlm plot`: curves read from real runs, pictures written by a real matplotlib, clear errors."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import CHARLM, invoke

from charlm.tasks.registry import train
from charlm.training.events import LOSS_SMOOTHING
from charlm.training.options import TrainOptions
from charlm.viz.curves import load_curves


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
    best = min(evals, key=lambda r: r["val_loss"])
    assert (curves.best_step, curves.best_val_loss) == (best["step"], best["val_loss"])
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
    assert curves.tokens == "word" and (curves.best_step, curves.best_val_loss) == (6, 2.4)
    # 0.5 s a step up to step 4 (from 0 at step 0), 1.5 s a step after it, and the last rate goes on
    assert curves.step_seconds == pytest.approx([0.5, 1.0, 1.5, 2.0, 3.5, 5.0, 6.5, 8.0])
