"""`charlm truecase`: restore the case of lowercased text with a character language model."""

import dataclasses
import json

import click

from charlm.cli.console import input_texts, status_console
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.lm.truecase import check_truecase_model
from charlm.tasks.lm.truecase import truecase as truecase_texts
from charlm.text.casing import lowercase


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--beam", type=click.IntRange(min=1), default=8, show_default=True,
              help="Casings kept per character while searching (1 = greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {input, text, logprob, changed}.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def truecase(checkpoint, texts, beam, as_json, quiet):
    """Restore the case of TEXTS (one per line from stdin if none given) with CHECKPOINT, a character
    language model (a run directory or a .safetensors file).

    Each text is lowered, then read as one document; every character may become itself or its upper-case
    form, and a beam search keeps the casing the model finds most likely. Prints one restored text per line.
    """
    console = status_console(quiet)

    def warn(message):
        console.print(f"warning: {message}", markup=False)

    texts = input_texts(texts)
    ckpt = load_checkpoint(checkpoint, warn=warn)
    check_truecase_model(ckpt.config, ckpt.vocab)
    unknown = sorted({c for text in texts for c in ckpt.vocab.unknown(lowercase(text))})
    if unknown:
        warn("characters outside the vocabulary are read as <UNK>: " + ", ".join(repr(c) for c in unknown))
    restored = truecase_texts(ckpt.params, ckpt.config, ckpt.vocab, texts, beam=beam,
                              eos_mode=ckpt.data.get("eos_mode") or "file")
    if as_json:
        records = [{"input": text, **dataclasses.asdict(r)} for text, r in zip(texts, restored, strict=True)]
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    for r in restored:
        click.echo(r.text)
