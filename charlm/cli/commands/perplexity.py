"""`charlm perplexity` (files) and `charlm score` (candidate texts): how well a checkpoint predicts text."""

import json
import sys

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.console import result_console, status_console
from charlm.inference.analysis import SURPRISAL_BINS, rank_candidates, score_summary, surprisal, surprisal_bin
from charlm.inference.scoring import ScoreResult, score_file
from charlm.store.checkpoint import load_checkpoint
from charlm.text.tokenizer import EOS

# the colour of each bin of `SURPRISAL_BINS`, the open last bin included, for --show
SURPRISAL_COLOURS = ("green", "yellow", "dark_orange", "red", "bold white on red")
EOS_GLYPH = "⏎"


def _load(checkpoint, console):
    return load_checkpoint(checkpoint, warn=lambda m: console.print(f"warning: {m}", markup=False))


def surprisal_style(bits: float) -> str:
    """The colour of a character predicted with `bits` of surprisal."""
    return SURPRISAL_COLOURS[surprisal_bin(bits)]


def legend() -> Text:
    text = Text("surprisal (bits per character): ")
    for upper, style in zip(SURPRISAL_BINS, SURPRISAL_COLOURS[:-1], strict=True):
        text.append(f" <{upper:g} ", style=style)
    text.append(f" >={SURPRISAL_BINS[-1]:g} ", style=SURPRISAL_COLOURS[-1])
    text.append(f"  {EOS_GLYPH} = end of document")
    return text


def coloured(vocab, targets, nll, eos_text: str) -> Text:
    """The targets as text, each character styled by its surprisal; `<EOS>` shown as a glyph and eos_text."""
    text = Text()
    for record in surprisal(vocab, targets, nll, eos_text=eos_text):
        glyph = EOS_GLYPH if record["id"] == EOS else ""
        text.append(glyph + record["text"], style=surprisal_style(record["bits"]))
    return text


def _mode(streams: int, burn_in: int) -> str:
    if streams == 1:
        return "exact (one stream over each whole file)"
    return f"{streams} parallel streams with {burn_in} characters of burn-in (approximate)"


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score B contiguous pieces of each file in parallel (fast, approximate); 1 = exact.")
@click.option("--burn-in", type=click.IntRange(min=0), default=128, show_default=True,
              help="With --streams: characters each piece reads, unscored, before its first target "
                   "(training's validation uses --seq-len).")
@click.option("--chunk-len", type=click.IntRange(min=1), default=256, show_default=True,
              help="Time steps per forward call.")
@click.option("--show", is_flag=True,
              help="Print the text coloured by each character's surprisal, with a legend.")
@click.option("--json", "as_json", is_flag=True, help="Print {files: [...], total: {...}} as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def perplexity(checkpoint, files, streams, burn_in, chunk_len, show, as_json, quiet):
    """Bits per character and perplexity of CHECKPOINT on FILES.

    Each file is read with the checkpoint's vocabulary, encoding and document mode; by default every
    character is predicted from all the text before it in its file (exact).
    """
    console = status_console(quiet)
    ckpt = _load(checkpoint, console)
    eos_mode, encoding = ckpt.data.get("eos_mode", "file"), ckpt.data.get("encoding", "utf-8")
    out = result_console()
    eos_text = "\n\n" if eos_mode == "paragraphs" else "\n"
    if show and not as_json:
        out.print(legend())

    def print_coloured(targets, nll):
        out.print(coloured(ckpt.vocab, targets, nll, eos_text), end="", soft_wrap=True)

    on_scored = print_coloured if show and not as_json else None
    per_file = []
    for path in files:
        result = score_file(ckpt.params, ckpt.config, ckpt.vocab, path, eos_mode=eos_mode, encoding=encoding,
                            streams=streams, burn_in=burn_in, chunk_len=chunk_len, on_scored=on_scored)
        per_file.append((path, result))
        if result.streams != streams or (streams > 1 and result.burn_in != burn_in):
            console.print(f"{path}: used {result.streams} stream(s) with {result.burn_in} characters of "
                          f"burn-in (the file is short)", markup=False)

    total = ScoreResult(sum(r.nll_sum for _, r in per_file), sum(r.n_scored for _, r in per_file),
                        sum(r.n_unk for _, r in per_file))
    mode = _mode(streams, burn_in)
    if as_json:
        records = [{"file": str(p), **score_summary(r), "streams": r.streams, "burn_in": r.burn_in}
                   for p, r in per_file]
        click.echo(json.dumps({"mode": "exact" if streams == 1 else "streams", "streams": streams,
                               "burn_in": burn_in if streams > 1 else 0, "files": records,
                               "total": score_summary(total)}, indent=2))
        return
    console.print(f"mode: {mode}", markup=False)
    table = Table(title=None, show_edge=False)
    for name in ("file", "chars", "<UNK>", "<UNK> %", "nats/char", "bits/char", "perplexity"):
        table.add_column(name, justify="left" if name == "file" else "right")
    rows = per_file + ([("all files", total)] if len(per_file) > 1 else [])
    for path, r in rows:
        s = score_summary(r)
        table.add_row(Text(str(path)), f"{s['chars']:,}", f"{s['unk']:,}", f"{100 * s['unk_rate']:.2f}",
                      f"{s['nats_per_char']:.4f}", f"{s['bits_per_char']:.4f}", f"{s['perplexity']:.3f}")
    out.print(table)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("texts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the ranked candidates as a JSON list.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def score(checkpoint, texts, as_json, quiet):
    """Rank candidate TEXTS by their probability under CHECKPOINT (one per line from stdin if none given).

    Each candidate is scored as one document: read from <EOS>, including its closing <EOS>.
    """
    console = status_console(quiet)
    if not texts:
        texts = tuple(line for line in sys.stdin.read().splitlines() if line.strip())
        if not texts:
            raise click.UsageError("no candidates: give TEXT arguments or lines on stdin")
    ckpt = _load(checkpoint, console)
    records = rank_candidates(ckpt.params, ckpt.config, ckpt.vocab, texts,
                              warn=lambda m: console.print(f"warning: {m}", markup=False))
    if as_json:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    table = Table(show_edge=False)
    for name in ("rank", "log-prob (nats)", "nats/char", "bits/char", "text"):
        table.add_column(name, justify="left" if name == "text" else "right")
    for r in records:
        table.add_row(str(r["rank"]), f"{r['logprob']:.3f}", f"{r['nats_per_char']:.4f}",
                      f"{r['bits_per_char']:.4f}", Text(r["text"]))
    result_console().print(table)
