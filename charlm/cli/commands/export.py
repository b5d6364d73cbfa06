"""`charlm export`: a thin wrapper over `charlm.export.exporting.export_model`."""

import json

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.console import result_console, status_console
from charlm.export.exporting import FORMATS, export_model


@click.command()
@click.argument("run", type=click.Path(exists=True, readable=True))
@click.option("--output", "-o", "out", type=click.Path(dir_okay=False), required=True,
              help="The file to write (e.g. model.onnx, or model.safetensors with --format torch).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True,
              help="onnx: a standard ONNX graph (opset 17) of ONNX's LSTM / GRU / RNN operators; torch: a safetensors "
                   "file of a PyTorch state dict (nn.Embedding, nn.LSTM / nn.GRU / nn.RNN, nn.Linear).")
@click.option("--json", "as_json", is_flag=True,
              help="Print what was written as JSON: path, format, bytes, kind, and the graph's inputs and outputs "
                   "(onnx) or the module's arguments and tensors (torch).")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def export(run, out, fmt, as_json, quiet):
    """Export the model of RUN (a run directory's best checkpoint, or a .safetensors file) for another runtime:
    a language model, a tagger or a classifier; an encoder–decoder as two ONNX graphs, FILE's name with .encoder
    and .decoder before its suffix. docs/export.md gives the contract (inputs, outputs, metadata)."""
    written = export_model(run, out, fmt=fmt, warn=status_console(quiet).print)
    if as_json:
        click.echo(json.dumps(written, indent=2, ensure_ascii=False))
        return
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", Text(f"{written['kind']}, {written['cell']}, from {written['source']}"))
    if fmt == "onnx":
        for part in written.get("files", [written]):  # an encoder–decoder writes an encoder and a decoder
            name = f"{part['part']} " if "part" in part else ""
            table.add_row(f"{name}file", Text(f"{part['path']} (onnx, {part['bytes']:,} bytes)"))
            for role in ("inputs", "outputs"):
                table.add_row(f"{name}{role}", Text(", ".join(_signature(v) for v in part[role])))
    else:
        table.add_row("file", Text(f"{written['path']} (torch, {written['bytes']:,} bytes)"))
        m = written["module"]
        table.add_row("module", Text(f"nn.{m['mode']}(input_size={m['input_size']}, hidden_size={m['hidden_size']}, "
                                     f"num_layers={m['num_layers']}, bidirectional={m['bidirectional']})"
                                     + (", one-hot input" if m["one_hot"] else f", nn.Embedding({m['vocab_size']}, "
                                                                               f"{m['embedding_dim']})")))
        table.add_row("tensors", Text(f"{len(written['tensors'])}, named as the module's state dict (--json lists "
                                      f"them)"))
    result_console().print(table)


def _signature(value: dict) -> str:
    """`name dtype (dims)`, `optional` when a caller may leave it out."""
    dims = ", ".join(map(str, value["shape"]))
    return f"{value['name']} {value['dtype']} ({dims})" + (" optional" if value["optional"] else "")
