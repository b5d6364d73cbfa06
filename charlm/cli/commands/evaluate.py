"""`charlm evaluate`: a model's figures on a labelled file, whatever the model (thin wrappers over
`charlm.tasks.tagging.tagger_inference`, `charlm.tasks.classify.classifier_inference` and, for language
models, `charlm perplexity`)."""

import json

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.commands.perplexity import perplexity
from charlm.cli.console import result_console, status_console
from charlm.errors import ConfigError
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, evaluate_texts
from charlm.tasks.classify.labelled_text import read_labelled
from charlm.tasks.tagging.tagger_inference import as_tagger, evaluate_docs, labelled_docs
from charlm.tasks.translate.translate_inference import as_translator, evaluate_pairs

# Confusion matrices wider than this many labels show only the most confused pairs.
MATRIX_LABELS = 25


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--beam", type=click.IntRange(min=1), default=1, show_default=True,
              help="translate models: decode each source by beam search with this many hypotheses (1 = greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
@click.pass_context
def evaluate(ctx, checkpoint, file, beam, as_json, quiet):
    """Score CHECKPOINT on the labelled FILE: a tagger's precision, recall and F1 per label with micro and
    macro averages (truecasing also word-level over not-all-lowercase words); a classifier's accuracy,
    macro-F1, per-label figures and confusion matrix; an encoder–decoder's exact match, WER, TER, BLEU, chrF
    and nats per target token against every reference of each source; a language model's bits per character
    and perplexity (as `charlm perplexity`)."""
    ckpt = load_checkpoint(checkpoint, warn=status_console(quiet).print)
    if ckpt.config.kind == "lm":
        ctx.invoke(perplexity, checkpoint=checkpoint, files=(file,), as_json=as_json, quiet=quiet)
        return
    if ckpt.config.kind == "classifier":
        _evaluate_classifier(ckpt, file, as_json)
        return
    if ckpt.config.kind == "seq2seq":
        _evaluate_translator(ckpt, file, beam, as_json)
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


def _evaluate_classifier(ckpt, file, as_json: bool) -> None:
    c = as_classifier(ckpt)
    found = read_labelled(file, ckpt.data.get("encoding") or "utf-8")
    unknown = [(label, line) for label, line in zip(found.labels, found.lines, strict=True) if label not in c.labels]
    if unknown:
        raise ConfigError(f"{file}:{unknown[0][1]}: label {unknown[0][0]!r} is not one the classifier was trained on")
    result = evaluate_texts(c, found.texts, found.labels)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    out = result_console()
    table = Table(title="labels", show_edge=False, title_justify="left")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, s in result["labels"].items():
        table.add_row(Text(label), f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
                      f"{s['support']:,}")
    out.print(table)
    labels, matrix = result["confusion"]["labels"], result["confusion"]["matrix"]
    if len(labels) <= MATRIX_LABELS:
        confusion = Table(title="confusion (rows: true, columns: predicted)", show_edge=False, title_justify="left")
        confusion.add_column("")
        for label in labels:
            confusion.add_column(Text(label[:4]), justify="right")
        for label, row in zip(labels, matrix, strict=True):
            confusion.add_row(Text(label), *[str(n) if n else "." for n in row])
        out.print(confusion)
    pairs = Table(title="most confused (true -> predicted)", show_edge=False, title_justify="left")
    for column in ("true", "predicted", "count"):
        pairs.add_column(column, justify="right" if column == "count" else "left")
    for true, predicted, n in result["most_confused"][:10]:
        pairs.add_row(Text(true), Text(predicted), f"{n:,}")
    out.print(pairs)
    out.print(f"classify: accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} "
              f"({len(found.texts):,} texts)", markup=False)


def _evaluate_translator(ckpt, file, beam: int, as_json: bool) -> None:
    found = evaluate_pairs(as_translator(ckpt), file, beam=beam, encoding=ckpt.data.get("encoding") or "utf-8")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"{found['n']:,} sources ({found['pairs']:,} pairs), beam {found['beam']}", show_edge=False,
                  title_justify="left")
    for column in ("exact match", "WER", "TER", "BLEU", "chrF", "nats/token"):
        table.add_column(column, justify="right")
    table.add_row(f"{found['exact_match']:.4f}", f"{found['wer']:.4f}", f"{found['ter']:.4f}", f"{found['bleu']:.2f}",
                  f"{found['chrf']:.2f}", f"{found['nats_per_token']:.4f}")
    result_console().print(table)
