"""`charlm classify`: a thin wrapper over `charlm.tasks.classify.classifier_inference.classify_texts`."""

import json

import click

from charlm.cli.console import input_texts, status_console
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Show the K most likely labels of each text.")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON list of {"text", "label", "probability", "top": [[label, probability], ...]}.')
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def classify(checkpoint, texts, top_k, as_json, quiet):
    """Label TEXTS (stdin lines when none) with the classifier CHECKPOINT: per text the top label and its
    probability (tab-separated), with --top-k the K most likely."""
    c = as_classifier(load_checkpoint(checkpoint, warn=status_console(quiet).print))
    found = classify_texts(c, input_texts(texts), top_k=min(top_k, len(c.labels)))
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for record in found:
        guesses = "\t".join(f"{label}\t{p:.3f}" for label, p in record["top"])
        click.echo(f"{guesses}\t{record['text']}")
