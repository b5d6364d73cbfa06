"""`charlm classify`: a thin wrapper over `charlm.tasks.classify.classifier_inference.classify_texts`."""

import json

import click
from rich.text import Text

from charlm.cli.console import input_texts, result_console, status_console
from charlm.errors import ConfigError
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts

# The tokens named after an explained text: this many that speak most for its label and most against it.
NAMED = 3


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Show the K most likely labels of each text.")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON list of {"text", "label", "probability", "top": [[label, probability], ...]}.')
@click.option("--explain", is_flag=True,
              help="Show each token's part in the label: the change in its probability when the token is replaced "
                   "by <UNK> (green for, red against; --json adds \"tokens\": [[token, change], ...]).")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def classify(checkpoint, texts, top_k, as_json, explain, quiet):
    """Label TEXTS (stdin lines when none) with the classifier CHECKPOINT: per text the top label and its
    probability (tab-separated), with --top-k the K most likely."""
    c = as_classifier(load_checkpoint(checkpoint, warn=status_console(quiet).print))
    if explain:
        if top_k != 1:
            raise ConfigError("--explain explains the top label; leave out --top-k")
        found = classify_texts(c, input_texts(texts), explain=True)
        if as_json:
            click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        else:
            _draw_explained(found)
        return
    found = classify_texts(c, input_texts(texts), top_k=top_k)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for record in found:
        guesses = "\t".join(f"{label}\t{p:.3f}" for label, p in record["top"])
        click.echo(f"{guesses}\t{record['text']}")


def _draw_explained(found) -> None:
    """Per text: its label and probability, the text as written with each token shaded by its effect (green
    for the label, red against, stronger for more), then the tokens that count most, with their effects."""
    console = result_console()
    for record in found:
        tokens = [(token, effect) for token, effect in record["tokens"] if token.strip()]
        largest = max((abs(effect) for _, effect in tokens), default=0.0) or 1.0
        line = Text(f"{record['label']}  {record['probability']:.3f}  ")
        written, at = record["text"], 0
        lowered = written.lower()  # a lowercasing vocabulary's tokens are found too
        for token, effect in tokens:
            shade = int(40 + 160 * abs(effect) / largest)
            colour = f"rgb(0,{shade},0)" if effect > 0 else f"rgb({shade},0,0)"
            start = lowered.find(token.lower(), at)
            if start < 0:  # not as written (the ids' own text): set apart
                line.append(" ")
                piece = token
            else:
                line.append(written[at:start])  # the text between tokens, as written
                piece, at = written[start:start + len(token)], start + len(token)
            line.append(piece, style=f"bold white on {colour}" if abs(effect) >= largest / 4 else None)
        line.append(written[at:])  # past --max-len, read by no token
        console.print(line, soft_wrap=True)
        ranked = sorted(tokens, key=lambda te: te[1])
        against = [f"{t!r} {e:+.3f}" for t, e in ranked[:NAMED] if e < 0]
        supports = [f"{t!r} {e:+.3f}" for t, e in reversed(ranked[-NAMED:]) if e > 0]
        console.print(Text(f"  for: {', '.join(supports) or '-'}; against: {', '.join(against) or '-'}"),
                      soft_wrap=True)
