"""`charlm tag` and `charlm evaluate`: thin wrappers over `charlm.inference.tagging`."""

import json

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.commands.perplexity import perplexity
from charlm.cli.console import input_texts, result_console, status_console
from charlm.inference.tagging import as_tagger, evaluate_docs, labelled_docs, tag_docs
from charlm.store.checkpoint import load_checkpoint


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


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
@click.pass_context
def evaluate(ctx, checkpoint, file, as_json, quiet):
    """Score CHECKPOINT on the labelled FILE: a tagger's precision, recall and F1 per label with micro and
    macro averages (truecasing also word-level over not-all-lowercase words); a language model's bits per
    character and perplexity (as `charlm perplexity`)."""
    ckpt = load_checkpoint(checkpoint, warn=status_console(quiet).print)
    if not ckpt.config.heads:
        ctx.invoke(perplexity, checkpoint=checkpoint, files=(file,), as_json=as_json, quiet=quiet)
        return
    tagger = as_tagger(ckpt)
    found = evaluate_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task,
                          labelled_docs(tagger, file))
    if as_json:
        click.echo(json.dumps(_for_scripts(found), indent=2))
        return
    out = result_console()
    for name, head in found["heads"].items():
        out.print(_table(name, head))
    out.print(f"{found['task']}: F1 {found['f1']:.4f} (precision {found['precision']:.4f}, recall "
              f"{found['recall']:.4f})", markup=False)


def _for_scripts(found: dict) -> dict:
    """task, f1, precision, recall, labels (per label; `head:label` when the tagger has two heads), heads."""
    heads = found["heads"]
    if len(heads) == 1:
        labels = next(iter(heads.values()))["labels"]
    else:
        labels = {f"{name}:{label}": s for name, head in heads.items() for label, s in head["labels"].items()}
    return {key: found[key] for key in ("task", "f1", "precision", "recall")} | {"labels": labels,
                                                                                  "loss": found["loss"],
                                                                                  "heads": heads}


def _table(name: str, head: dict) -> Table:
    titles = {"case": "truecasing: characters (word-level F1 below)", "punct": "punctuation marks",
              "tag": "tags"}
    table = Table(title=titles.get(name, name), show_edge=False, title_justify="left")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, s in head["labels"].items():
        table.add_row(Text(repr(label)[1:-1] if label.strip() != label or not label else label),
                      f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", f"{s['support']:,}")
    for average in ("micro", "macro"):
        s = head[average]
        table.add_row(Text(f"({average})"), f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
                      f"{s['support']:,}", style="bold")
    if name == "case":
        table.add_row(Text("(words)"), f"{head['precision']:.4f}", f"{head['recall']:.4f}", f"{head['f1']:.4f}", "",
                      style="bold")
    return table
