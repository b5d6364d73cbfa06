"""`charlm plot`'s picture: the curves of one or more runs, drawn with matplotlib.

Losses (smoothed training loss, and validation loss with a marker at every evaluation) share one panel. Runs
that keep their best checkpoint by F1 (taggers, classifiers) get a second panel above it, their validation
F1 with a marker at every evaluation. Each run's kept checkpoint is a star on the curve it was kept by
(`charlm.viz.curves.kept_evaluation`), named in the legend.

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
    """Draw `runs` against step or training time (`x`) into `out` (.png, .svg or .pdf); returns the path."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {out}: the picture must be {', '.join(FORMATS)}")
    fig = draw_curves(runs, x=x)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix.lower()[1:], dpi=120)
    write_atomic(out, buffer.getvalue())
    return out


def draw_curves(runs: list[RunCurves], *, x: str = "step"):
    """The matplotlib Figure of `runs`: axes [F1 panel (only when a run is kept by F1), loss panel].

    Per run, one colour: the smoothed training loss as a thin line; the validation loss (and F1) as lines
    with a marker at each evaluation; the kept checkpoint as a star."""
    if x not in AXES:
        raise ConfigError(f"--x must be one of {', '.join(AXES)}, got {x!r}")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("charlm plot needs matplotlib: pip install 'charlm[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    by_f1 = [run for run in runs if run.kept_by == "val_f1"]
    fig = Figure(figsize=(9, 8 if by_f1 else 5), layout="constrained")
    axes = fig.subplots(2 if by_f1 else 1, 1, sharex=True, squeeze=False)[:, 0]
    loss_ax, f1_ax = axes[-1], axes[0] if by_f1 else None
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        train_x = run.steps if x == "step" else run.step_seconds
        val_x = run.eval_steps if x == "step" else run.eval_seconds
        loss_ax.plot(train_x, run.train_loss, color=colour, alpha=0.35, linewidth=1)
        loss_ax.plot(val_x, run.val_loss, color=colour, marker="o", markersize=4, linewidth=1.5,
                     label=f"{run.name} validation loss")
        if run.kept_by == "val_f1":
            scored = [(at, f1) for at, f1 in zip(val_x, run.val_f1, strict=True) if f1 is not None]
            f1_ax.plot([at for at, _ in scored], [f1 for _, f1 in scored], color=colour, marker="o", markersize=4,
                       linewidth=1.5, label=f"{run.name} {run.metric_label}")
        if run.best_step is not None and run.best_value is not None:
            at = run.best_step if x == "step" else run.best_seconds
            ax = f1_ax if run.kept_by == "val_f1" else loss_ax
            ax.plot([at], [run.best_value], color=colour, marker="*", markersize=15, markeredgecolor="white",
                    linestyle="none", zorder=5, label=kept_label(run))
    units = sorted({run.loss_label for run in runs})
    loss_ax.set_ylabel(f"loss ({' / '.join(units)})")
    loss_ax.set_title("validation loss (markers) and smoothed training loss (thin)")
    if f1_ax is not None:
        f1_ax.set_ylabel(" / ".join(sorted({run.metric_label for run in by_f1})))
        f1_ax.set_title("validation F1 (markers); the star: the kept checkpoint")
    loss_ax.set_xlabel("step" if x == "step" else "training seconds")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def kept_label(run: RunCurves) -> str:
    """The legend's words for a run's kept checkpoint: 'NAME kept: macro-F1 0.8851 at step 3,670'."""
    figure = run.metric_label.removeprefix("validation ")
    return f"{run.name} kept: {figure} {run.best_value:.4f} at step {run.best_step:,}"
