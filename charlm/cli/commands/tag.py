"""`charlm tag`: a thin wrapper over `charlm.tasks.tagging.tagger_inference.tag_docs`."""

import json

import click

from charlm.cli.console import input_texts, status_console
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.tagging.tagger_inference import as_tagger, tag_docs


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list: per text its input, output and per-token labels with probabilities.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def tag(checkpoint, texts, as_json, quiet):
    """Apply the tagger CHECKPOINT to TEXTS (stdin lines when none): print each text restored (truecase,
    punctuate) or as token/label pairs (tag), one per line."""
    tagger = as_tagger(load_checkpoint(checkpoint, warn=status_console(quiet).print))
    inputs = input_texts(texts)
    results = tag_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task, inputs,
                       marks=tagger.marks)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for record in results:
        click.echo(record["output"])
