"""`charlm plot`'s picture: validation and smoothed training loss of one or more runs, drawn with matplotlib.

matplotlib is an optional extra (`pip install 'charlm[plot]'`); without it, plotting is a usage error that
says what to install. The figure is rendered off-screen (the Agg backend) and written atomically.
"""

import io
from pathlib import Path

from charlm.atomic import write_atomic
from charlm.errors import ConfigError
from charlm.viz.curves import RunCurves

FORMATS = (".png", ".svg", ".pdf")
AXES = ("step", "time")


def plot_curves(runs: list[RunCurves], out: str | Path, *, x: str = "step") -> Path:
    """Draw `runs` against step or training time (`x`) into `out` (.png, .svg or .pdf); returns the path.

    Per run, one colour: the smoothed training loss as a thin line, the validation loss as a line with a
    marker at each evaluation, and the best evaluation as a star, named in the legend."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {out}: the picture must be {', '.join(FORMATS)}")
    if x not in AXES:
        raise ConfigError(f"--x must be one of {', '.join(AXES)}, got {x!r}")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("charlm plot needs matplotlib: pip install 'charlm[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    units = sorted({run.tokens for run in runs})
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        train_x = run.steps if x == "step" else run.step_seconds
        val_x = run.eval_steps if x == "step" else run.eval_seconds
        ax.plot(train_x, run.train_loss, color=colour, alpha=0.35, linewidth=1)
        ax.plot(val_x, run.val_loss, color=colour, marker="o", markersize=3, linewidth=1.5,
                label=f"{run.name} (validation)")
        if run.best_step is not None:
            at = val_x[run.eval_steps.index(run.best_step)]
            ax.plot([at], [run.best_val_loss], color=colour, marker="*", markersize=14, linestyle="none",
                    label=f"{run.name} best {run.best_val_loss:.4f} at step {run.best_step:,}")
    ax.set_xlabel("step" if x == "step" else "training seconds")
    ax.set_ylabel(f"loss (nats per {' / '.join('character' if u == 'char' else 'token' for u in units)})")
    ax.set_title("validation (markers) and smoothed training loss (thin)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix.lower()[1:], dpi=120)
    write_atomic(out, buffer.getvalue())
    return out
