"""`charlm plot`: a thin wrapper over `charlm.viz.curves.load_curves` and `charlm.viz.plot.plot_curves`."""

import json

import click

from charlm.cli.console import status_console
from charlm.viz.curves import load_curves
from charlm.viz.plot import AXES, plot_curves


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--out", default="curves.png", show_default=True, type=click.Path(dir_okay=False),
              help="The picture: .png, .svg or .pdf.")
@click.option("--x", "x_axis", type=click.Choice(AXES), default="step", show_default=True,
              help="Against training steps or training seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the curves' data as JSON instead of drawing.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def plot(runs, out, x_axis, as_json, quiet):
    """Plot the curves of one or more RUNS (run directories): validation loss with a marker at every
    evaluation, smoothed training loss, a tagger's F1 or a classifier's macro-F1, and a star at the checkpoint
    each run kept, on the figure it was kept by."""
    curves = [load_curves(run) for run in runs]
    if as_json:
        click.echo(json.dumps({"x": x_axis, "runs": [c.to_dict() for c in curves]}))
        return
    path = plot_curves(curves, out, x=x_axis)
    status_console(quiet).print(f"wrote {path}", markup=False)
