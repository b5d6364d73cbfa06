"""`charlm translate`: a thin wrapper over `charlm.tasks.translate.translate_inference.translate_texts`."""

import json

import click

from charlm.cli.console import input_texts, status_console
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.translate.translate_inference import as_translator, capped_note, translate_texts


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--beam", type=int, default=1, show_default=True,
              help="Beam search with this many hypotheses per input, scored per token (1 = greedy).")
@click.option("--nbest", type=int, default=1, show_default=True,
              help="Print the N best outputs of the beam per input.")
@click.option("-n", "samples", type=int, default=1, show_default=True,
              help="Draw this many outputs per input (sampling: one-to-many models such as a label -> a name).")
@click.option("--temperature", type=float, help="Sample at this temperature (0 = greedy) [default: 1 when sampling].")
@click.option("--top-k", type=int, help="Sample among the K most likely tokens only.")
@click.option("--top-p", type=float, help="Sample among the most likely tokens holding this much probability.")
@click.option("--seed", type=int, help="Seed of the sampling [default: a fresh one].")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON list of {"source", "output", "logprob", "score", "capped", "nbest": [...]}.')
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def translate(checkpoint, texts, beam, nbest, samples, temperature, top_k, top_p, seed, as_json, quiet):
    """Write the output of the encoder–decoder CHECKPOINT for each of TEXTS (stdin lines when none), one
    output per line (with --nbest or -n, each input's outputs one per line, a blank line between inputs)."""
    console = status_console(quiet)
    translator = as_translator(load_checkpoint(checkpoint, warn=console.print))
    found = translate_texts(translator, input_texts(texts), beam=beam, nbest=nbest, samples=samples,
                            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    note = capped_note(found)
    if note:
        console.print(note, markup=False, highlight=False)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    several = nbest > 1 or samples > 1
    for i, record in enumerate(found):
        if several:
            click.echo(("\n" if i else "") + "\n".join(o["output"] for o in record["nbest"]))
        else:
            click.echo(record["output"])
