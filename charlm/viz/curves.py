"""A run's training curves, read from its `metrics.jsonl`: what `charlm plot` draws and prints.

The trainer appends one JSON object per step (`step`, `loss`, `grad_norm`, `lr`) and one per evaluation
(`"event": "eval"`, `step`, `val_loss`, `train_seconds`, `tokens`, a tagger's or classifier's `val_f1`, and the
kept checkpoint so far, `best_step` and `best_f1`). Step records carry no clock, so a step's time is
interpolated linearly between the evaluations around it (training seconds, as the trainer counts them:
evaluations and saves excluded). The training loss is smoothed as the progress display smooths it. A line
that does not parse (the last one after a crash) is skipped and counted.

The kept checkpoint (best.safetensors) is marked by the figure it was kept by: a language model's validation
loss, a tagger's F1, a classifier's macro-F1 (`kept_evaluation`).
"""

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from charlm.engine.backend import np
from charlm.errors import CharlmError
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.registry import TASKS
from charlm.training.events import LOSS_SMOOTHING  # smoothed as the progress display smooths it

# What a loss is per, by the eval records' `tokens`.
LOSS_UNITS = {"char": "nats per char", "word": "nats per token", "symbols": "nats per token", "label": "nats per label"}
# The figure each kind of model keeps its best checkpoint by: the eval records' key and its name.
KEPT_BY = {"lm": ("val_loss", "validation loss"), "tagger": ("val_f1", "validation F1"),
           "classifier": ("val_f1", "validation macro-F1"), "seq2seq": ("val_loss", "validation loss")}


@dataclass(frozen=True)
class RunCurves:
    """Everything `charlm plot` shows of one run; lists of equal length pair up (step i, value i)."""

    name: str
    kind: str  # "lm", "tagger" or "classifier"
    tokens: str  # "char", "word", "symbols" or "label": what the losses are per
    loss_label: str  # "nats per char", "nats per token" or "nats per label"
    steps: list[int]
    train_loss: list[float]  # smoothed
    step_seconds: list[float]  # interpolated training seconds at each step
    eval_steps: list[int]
    val_loss: list[float]
    val_f1: list[float | None]  # a tagger's F1 or a classifier's macro-F1 at each evaluation; None for an lm
    eval_seconds: list[float]
    kept_by: str  # "val_loss" or "val_f1": the curve the kept checkpoint is marked on
    metric_label: str  # that curve's name: "validation loss", "validation F1" or "validation macro-F1"
    best_step: int | None  # the kept checkpoint's step (None before one is kept)
    best_value: float | None  # its figure on the `kept_by` curve
    best_seconds: float | None  # its training seconds
    skipped_lines: int

    def to_dict(self) -> dict:
        return asdict(self)


def load_curves(run: str | Path) -> RunCurves:
    """The curves of the run directory `run` (or of a metrics.jsonl file itself, its run directory around it)."""
    path = Path(run)
    metrics = path / "metrics.jsonl" if path.is_dir() else path
    run_dir = path if path.is_dir() else path.parent
    try:
        lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise CharlmError(f"{path}: no metrics.jsonl (is it a charlm run directory?)") from None
    except OSError as exc:
        raise CharlmError(f"{metrics}: cannot read ({exc.strerror or exc})") from None
    steps, losses, evals, skipped = [], [], [], 0
    for line in lines:
        try:
            record = json.loads(line)
            if record.get("event") == "eval":
                evals.append({**record, "step": int(record["step"]), "val_loss": float(record["val_loss"]),
                              "train_seconds": float(record["train_seconds"])})
            else:
                steps.append(int(record["step"]))
                losses.append(float(record["loss"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            skipped += 1
    if not steps and not evals:
        if skipped:
            raise CharlmError(f"{metrics}: not a charlm metrics file (none of its {skipped:,} lines is a record); "
                              f"give a run directory")
        raise CharlmError(f"{metrics}: no training steps recorded yet")
    smoothed, value = [], None
    for loss in losses:
        value = loss if value is None else (1 - LOSS_SMOOTHING) * value + LOSS_SMOOTHING * loss
        smoothed.append(value)
    kind = run_kind(run_dir, evals)
    tokens = evals[-1].get("tokens", "char") if evals else ("label" if kind != "lm" else "char")
    eval_steps = [r["step"] for r in evals]
    eval_seconds = [r["train_seconds"] for r in evals]
    clock = [(0, 0.0)] + list(zip(eval_steps, eval_seconds, strict=True))
    needs_file = not any(r.get("best_step") is not None for r in evals)
    best_step, best_value = kept_evaluation(kind, evals, _kept_train_state(run_dir) if needs_file else None)
    best_seconds = None if best_step is None else _interpolate([best_step], clock)[0]
    kept_by, metric_label = KEPT_BY[kind]
    return RunCurves(
        name=run_dir.name, kind=kind, tokens=tokens, loss_label=LOSS_UNITS.get(tokens, f"nats per {tokens}"),
        steps=steps, train_loss=smoothed, step_seconds=_interpolate(steps, clock), eval_steps=eval_steps,
        val_loss=[r["val_loss"] for r in evals], val_f1=[_figure(r.get("val_f1")) for r in evals],
        eval_seconds=eval_seconds, kept_by=kept_by, metric_label=metric_label, best_step=best_step,
        best_value=best_value, best_seconds=best_seconds, skipped_lines=skipped)


def kept_evaluation(kind: str, evals: list[dict], kept_state: dict | None) -> tuple[int | None, float | None]:
    """(step, figure) of the checkpoint a run kept, the figure the one it was kept by (`KEPT_BY[kind]`).

    Inputs:
    - kind: "lm", "tagger" or "classifier"
    - evals: the run's eval records in order (dicts with `step`, `val_loss`, perhaps `val_f1`, `best_step`,
      `best_f1`, `best_val_loss`)
    - kept_state: the `train` state of the run's best.safetensors (`step`, `best_val`, `best_f1`), or None

    The step is the last eval record's `best_step`; a run from a charlm that did not record it falls back to
    best.safetensors' `step`; without either, to the evaluation the kind's rule picks (lowest loss for a
    language model, highest F1 for the others). The figure is that evaluation's, or when it is not in the
    records (cut off on a resume), the one saved with the kept checkpoint. (None, None) when nothing is kept.
    """
    key = KEPT_BY[kind][0]
    recorded = [r for r in evals if r.get("best_step") is not None]
    saved = None  # the kept checkpoint's figure as saved with it
    if recorded:
        last = recorded[-1]
        step = int(last["best_step"])
        saved = last.get("best_f1") if key == "val_f1" else last.get("best_val_loss")
    elif kept_state and kept_state.get("step") is not None:
        step = int(kept_state["step"])
        saved = kept_state.get("best_f1") if key == "val_f1" else kept_state.get("best_val")
    else:
        scored = [(int(r["step"]), _figure(r.get(key))) for r in evals]
        scored = [(s, v) for s, v in scored if v is not None]
        if not scored:
            return None, None
        pick = min if key == "val_loss" else max
        return pick(scored, key=lambda e: e[1])  # the first of equals, as the trainer keeps the first
    at_step = [_figure(r.get(key)) for r in evals if int(r["step"]) == step]
    value = at_step[-1] if at_step and at_step[-1] is not None else _figure(saved)
    return step, value


def run_kind(run_dir: Path, evals: list[dict]) -> str:
    """The kind of model a run trains: its config.json's task's (`Task.kind`) when it names one charlm knows,
    else what its eval records show (a loss per label is a tagger's or, with an accuracy, a classifier's; any
    other a language model's)."""
    try:
        task = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError, AttributeError):
        task = None
    if task in TASKS:
        return TASKS[task].kind
    if not evals or evals[-1].get("tokens") != "label":
        return "lm"
    return "classifier" if any(r.get("val_accuracy") is not None for r in evals) else "tagger"


def _kept_train_state(run_dir: Path) -> dict | None:
    """The `train` state of the run's best.safetensors, or None when there is none (or it does not load)."""
    best = run_dir / "best.safetensors"
    try:
        stat = best.stat()
    except OSError:
        return None
    return _train_state(best, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _train_state(path: Path, size: int, mtime_ns: int) -> dict | None:
    """Cached by the file's size and time: the explorer asks for a run's curves every few seconds."""
    try:
        return dict(load_checkpoint(path).train)
    except CharlmError:
        return None


def _figure(value) -> float | None:
    """A record's figure as a float, None when absent or not finite."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _interpolate(steps: list[int], known: list[tuple[int, float]]) -> list[float]:
    """Seconds at each step, linear between the (step, seconds) points of `known` (sorted by step) and
    extended past the last one at the last segment's rate."""
    at, seconds = np.array([k[0] for k in known], float), np.array([k[1] for k in known])
    out = np.interp(steps, at, seconds)
    if len(known) > 1 and at[-1] > at[-2]:
        rate = (seconds[-1] - seconds[-2]) / (at[-1] - at[-2])
        beyond = np.asarray(steps) > at[-1]
        out[beyond] = seconds[-1] + rate * (np.asarray(steps)[beyond] - at[-1])
    return out.tolist()
