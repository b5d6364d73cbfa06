"""`charlm gradcheck`: check the backward pass against finite differences on a small float64 model."""

import json

import click
from rich.table import Table

from charlm.cli.console import result_console
from charlm.engine.cells import CELLS
from charlm.engine.gradcheck import TOLERANCE
from charlm.errors import CharlmError
from charlm.models.config import ModelConfig
from charlm.models.gradcheck import check_model


@click.command()
@click.option("--cell", type=click.Choice(CELLS), default="lstm", show_default=True, help="Recurrent cell.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Stacked layers.")
@click.option("--hidden", type=click.IntRange(min=1), default=6, show_default=True,
              help="Hidden units per layer.")
@click.option("--seq-len", type=click.IntRange(min=1), default=5, show_default=True, help="Time steps T.")
@click.option("--batch", type=click.IntRange(min=1), default=3, show_default=True, help="Parallel streams B.")
@click.option("--vocab", type=click.IntRange(min=2), default=7, show_default=True, help="Vocabulary size V.")
@click.option("--embed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Embedding width (0 = one-hot input; with --tie, 0 means --hidden).")
@click.option("--tie", is_flag=True, help="Tie the head's weight to the embedding table (embed = hidden).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout probability (the masks are fixed for the check).")
@click.option("--activation", type=click.Choice(("tanh", "relu")), default="tanh", show_default=True,
              help="Vanilla RNN activation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, inputs and samples.")
@click.option("--coords", type=click.IntRange(min=1), default=30, show_default=True,
              help="Coordinates sampled from each larger tensor.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def gradcheck(cell, layers, hidden, seq_len, batch, vocab, embed, tie, dropout, activation, seed, coords,
              as_json):
    """Compare every parameter's and the initial state's gradient with float64 central differences.

    Exits 0 when every max relative error is below 1e-6, else 1.
    """
    if tie and not embed:
        embed = hidden  # a tied table's rows are the head's inputs, so it is hidden wide
    cfg = ModelConfig(cell=cell, vocab_size=vocab, hidden=hidden, layers=layers, embed=embed, dropout=dropout,
                      activation=activation, dtype="float64", tie=tie)
    results = check_model(cfg, seq_len=seq_len, batch=batch, seed=seed, max_coords=coords)
    failed = [r for r in results if not r.passed]
    if as_json:
        click.echo(json.dumps({
            "config": cfg.to_dict(), "seq_len": seq_len, "batch": batch, "seed": seed, "tolerance": TOLERANCE,
            "passed": not failed,
            "results": [{"name": r.name, "shape": list(r.shape), "checked": r.checked,
                         "max_rel_error": r.error, "passed": r.passed} for r in results],
        }, indent=2))
    else:
        table = Table(title=f"gradcheck: {layers}-layer {cell}, H={hidden}, T={seq_len}, B={batch}, "
                            f"V={vocab}, embed={embed}{', tied' if tie else ''}, dropout={dropout}")
        for column in ("parameter", "shape", "checked", "max rel error", "verdict"):
            table.add_column(column, justify="right" if column in ("checked", "max rel error") else "left")
        for r in results:
            table.add_row(r.name, "x".join(map(str, r.shape)), str(r.checked), f"{r.error:.2e}",
                          "ok" if r.passed else "FAIL")
        result_console().print(table)
    if failed:
        worst = max(failed, key=lambda r: r.error)
        raise CharlmError(f"gradient check failed for {len(failed)} of {len(results)} tensors "
                          f"(worst {worst.name}: {worst.error:.2e} >= {TOLERANCE:.0e})")
