"""A run's training curves, read from its `metrics.jsonl`: what `charlm plot` draws and prints.

The trainer appends one JSON object per step (`step`, `loss`, `grad_norm`, `lr`) and one per evaluation
(`"event": "eval"`, `step`, `val_loss`, `train_seconds`, `tokens`, ...). Step records carry no clock, so a
step's time is interpolated linearly between the evaluations around it (training seconds, as the trainer
counts them: evaluations and saves excluded). The training loss is smoothed as the progress display smooths
it. A line that does not parse (the last one after a crash) is skipped and counted.
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from charlm.engine.backend import np
from charlm.errors import CharlmError
from charlm.training.events import LOSS_SMOOTHING  # smoothed as the progress display smooths it


@dataclass(frozen=True)
class RunCurves:
    """Everything `charlm plot` shows of one run; lists of equal length pair up (step i, value i)."""

    name: str
    tokens: str  # "char" or "word": the unit of the losses (nats per character or per token)
    steps: list[int]
    train_loss: list[float]  # smoothed
    step_seconds: list[float]  # interpolated training seconds at each step
    eval_steps: list[int]
    val_loss: list[float]
    eval_seconds: list[float]
    best_step: int | None
    best_val_loss: float | None
    skipped_lines: int

    def to_dict(self) -> dict:
        return asdict(self)


def load_curves(run: str | Path) -> RunCurves:
    """The curves of the run directory `run` (or of a metrics.jsonl file itself)."""
    path = Path(run)
    metrics = path / "metrics.jsonl" if path.is_dir() else path
    name = (path if path.is_dir() else path.parent).name
    try:
        lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise CharlmError(f"{path}: no metrics.jsonl (is it a charlm run directory?)") from None
    except OSError as exc:
        raise CharlmError(f"{metrics}: cannot read ({exc.strerror or exc})") from None
    steps, losses, evals, skipped, tokens = [], [], [], 0, "char"
    for line in lines:
        try:
            record = json.loads(line)
            if record.get("event") == "eval":
                evals.append((int(record["step"]), float(record["val_loss"]), float(record["train_seconds"])))
                tokens = record.get("tokens", tokens)
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
    finite = [(v, s) for s, v, _ in evals if math.isfinite(v)]
    best_val, best_step = min(finite) if finite else (None, None)
    return RunCurves(
        name=name, tokens=tokens, steps=steps, train_loss=smoothed,
        step_seconds=_interpolate(steps, [(0, 0.0)] + [(s, t) for s, _, t in evals]),
        eval_steps=[s for s, _, _ in evals], val_loss=[v for _, v, _ in evals],
        eval_seconds=[t for _, _, t in evals], best_step=best_step, best_val_loss=best_val, skipped_lines=skipped)


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
