"""`charlm sample`: generate text from a checkpoint (N samples as one batch, or beam search)."""

import json
import secrets
import sys

import click

from charlm.cli.console import status_console
from charlm.store.checkpoint import load_language_model
from charlm.tasks.choosing import SamplingOptionError, check_sampling_options
from charlm.tasks.lm.analysis import novelty
from charlm.tasks.lm.sampling import OrderedStream, ends_at_eos, sample_model
from charlm.text.corpus import read_text

ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\"}


def _sampling_option(ctx, param, value):
    """The library's rule for this option (`check_sampling_options`; top-k's upper bound waits for the model),
    raised as a usage error."""
    try:
        check_sampling_options(None, **{param.name: value})
    except SamplingOptionError as exc:
        raise click.BadParameter(exc.reason) from None
    return value


def _unescape(ctx, param, values):
    out = []
    for value in values:
        text, i = "", 0
        while i < len(value):
            pair = value[i:i + 2]
            if pair in ESCAPES:
                text, i = text + ESCAPES[pair], i + 2
            else:
                text, i = text + value[i], i + 1
        if not text:
            raise click.BadParameter("a stop string cannot be empty")
        out.append(text)
    return tuple(out)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.option("--temperature", "-t", type=float, default=1.0, show_default=True, callback=_sampling_option,
              help="Softmax temperature; 0 = greedy argmax (deterministic).")
@click.option("--top-k", type=int, callback=_sampling_option,
              help="Sample only from the K most likely tokens.  [default: off]")
@click.option("--top-p", type=float, callback=_sampling_option,
              help="Nucleus sampling: the smallest set of tokens with probability mass >= P, in (0, 1].  "
                   "[default: off]")
@click.option("--num-samples", "-n", type=int, default=1, show_default=True, callback=_sampling_option,
              help="Samples generated together as one batch (with --beam: best hypotheses printed).")
@click.option("--length", "-l", type=int, default=500, show_default=True, callback=_sampling_option,
              help="Maximum tokens generated per sample (characters or words, as the model reads).")
@click.option("--prime", "-p", default="",
              help="Text the model reads first; it starts every sample.  [default: none]")
@click.option("--seed", type=int,
              help="Random seed; the same seed gives the same samples.  [default: random, shown]")
@click.option("--stop", multiple=True, callback=_unescape,
              help="End a sample when this string appears (repeatable; \\n, \\t and \\\\ are understood).")
@click.option("--stop-at-eos", is_flag=True,
              help="In file mode, end a sample at <EOS> (lines/paragraphs models always do).")
@click.option("--strict", "--strict-prime", "strict", is_flag=True,
              help="Prime tokens outside the vocabulary are an error instead of a warning.")
@click.option("--allow-unk", is_flag=True, help="Let samples contain <UNK> (by default it is never drawn).")
@click.option("--beam", type=click.IntRange(min=1),
              help="Beam search of width K for the most likely continuation of --prime.  [default: off]")
@click.option("--novelty", "novelty_corpus", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Say for each sample whether it occurs verbatim in this corpus.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {text, logprob, ended_at_eos}.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def sample(checkpoint, temperature, top_k, top_p, num_samples, length, prime, seed, stop, stop_at_eos, strict,
           allow_unk, beam, novelty_corpus, as_json, quiet):
    """Generate text from CHECKPOINT (a run directory or a .safetensors file).

    Samples start at the beginning of a document (<EOS>), read --prime, and end at <EOS> in lines and
    paragraphs mode. A word model's samples are tokens of its vocabulary, decoded with their spacing;
    --stop strings match that text. Only the generated text goes to stdout.
    """
    console = status_console(quiet)

    def warn(message):
        console.print(f"warning: {message}", markup=False)

    if beam is not None and not prime:
        raise click.BadParameter("beam search continues a prime; give --prime TEXT", param_hint="'--beam'")
    ckpt = load_language_model(checkpoint, warn=warn)
    try:
        check_sampling_options(ckpt.vocab.size, top_k=top_k)
    except SamplingOptionError as exc:
        raise click.BadParameter(exc.reason, param_hint="'--top-k'") from None
    eos_mode = ckpt.data.get("eos_mode", "file")
    eos_ends = ends_at_eos(ckpt.data, stop_at_eos)
    separator = "\n" if eos_mode == "lines" else "\n\n"
    stream = None
    if beam is None:
        if seed is None:
            seed = secrets.randbits(63)
            console.print(f"seed {seed}", markup=False)
        if sys.stdout.isatty() and not as_json:
            stream = OrderedStream(ckpt.vocab, num_samples, prime, _write_now, eos_ends=eos_ends,
                                   separator=separator)
    samples = sample_model(ckpt, num_samples=num_samples, beam=beam, temperature=temperature, top_k=top_k,
                           top_p=top_p, seed=seed, warn=warn, on_step=stream, prime=prime, length=length,
                           stop=stop, stop_at_eos=eos_ends, strict=strict, allow_unk=allow_unk)

    found = None
    if novelty_corpus is not None:
        corpus_text = read_text(novelty_corpus, ckpt.data.get("encoding", "utf-8"))
        found = novelty([s.text for s in samples], corpus_text, eos_mode)

    if as_json:
        records = [s.to_json() for s in samples]
        for record, f in zip(records, found or [None] * len(records), strict=True):
            if f is not None:
                record.update(f.to_json())
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
    elif stream is not None:
        stream.finish()
    elif any(s.text for s in samples):
        click.echo(separator.join(s.text for s in samples))
    sys.stdout.flush()
    if found is not None:
        for i, f in enumerate(found):
            status = "novel" if f.novel else "in the corpus"
            console.print(f"sample {i + 1}: {status} (longest shared substring: {f.longest_shared} chars)",
                          markup=False)
        novel = sum(f.novel for f in found)
        console.print(f"novel: {novel} of {len(found)} samples ({100.0 * novel / len(found):.1f}%) do not "
                      f"occur verbatim in {novelty_corpus}", markup=False)


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
