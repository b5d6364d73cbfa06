"""`charlm perplexity` (files) and `charlm score` (candidate texts): how well a checkpoint predicts text."""

import json
import sys

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.console import result_console, status_console
from charlm.store.checkpoint import load_language_model
from charlm.tasks.lm.analysis import SURPRISAL_BINS, rank_candidates, score_summary, surprisal, surprisal_bin
from charlm.tasks.lm.sampling import unit_noun
from charlm.tasks.lm.scoring import ScoreResult, score_file, tokenization
from charlm.text.tokenizer import EOS

# the colour of each bin of `SURPRISAL_BINS`, the open last bin included, for --show
SURPRISAL_COLOURS = ("green", "yellow", "dark_orange", "red", "bold white on red")
EOS_GLYPH = "⏎"


def _load(checkpoint, console):
    return load_language_model(checkpoint, warn=lambda m: console.print(f"warning: {m}", markup=False))


def surprisal_style(bits: float) -> str:
    """The colour of a token predicted with `bits` of surprisal."""
    return SURPRISAL_COLOURS[surprisal_bin(bits)]


def legend(unit: str = "character") -> Text:
    text = Text(f"surprisal (bits per {unit}): ")
    for upper, style in zip(SURPRISAL_BINS, SURPRISAL_COLOURS[:-1], strict=True):
        text.append(f" <{upper:g} ", style=style)
    text.append(f" >={SURPRISAL_BINS[-1]:g} ", style=SURPRISAL_COLOURS[-1])
    text.append(f"  {EOS_GLYPH} = end of document")
    return text


def coloured(vocab, targets, nll, eos_text: str, decoder=None) -> Text:
    """The targets as text, each token styled by its surprisal; `<EOS>` shown as a glyph and eos_text.

    - decoder: see `surprisal` (a word vocabulary's tokens need it for the spacing between them)
    """
    text = Text()
    for record in surprisal(vocab, targets, nll, eos_text=eos_text, decoder=decoder):
        glyph = EOS_GLYPH if record["id"] == EOS else ""
        text.append(glyph + record["text"], style=surprisal_style(record["bits"]))
    return text


def _mode(streams: int, burn_in: int, noun: str) -> str:
    if streams == 1:
        return "exact (one stream over each whole file)"
    return f"{streams} parallel streams with {burn_in} {noun} of burn-in (approximate)"


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score B contiguous pieces of each file in parallel (fast, approximate); 1 = exact.")
@click.option("--burn-in", type=click.IntRange(min=0), default=128, show_default=True,
              help="With --streams: tokens (characters) each piece reads, unscored, before its first "
                   "target (training's validation uses --seq-len).")
@click.option("--chunk-len", type=click.IntRange(min=1), default=256, show_default=True,
              help="Time steps per forward call.")
@click.option("--show", is_flag=True,
              help="Print the text coloured by each token's (character's) surprisal, with a legend.")
@click.option("--json", "as_json", is_flag=True, help="Print {files: [...], total: {...}} as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def perplexity(checkpoint, files, streams, burn_in, chunk_len, show, as_json, quiet):
    """Bits per character and perplexity of CHECKPOINT on FILES.

    Each file is read with the checkpoint's vocabulary, encoding and document mode; by default every
    token is predicted from all the text before it in its file (exact). Bits per character count the
    characters of the file, so models of any tokenizer kind compare; a word or symbol model also shows
    nats per token and the perplexity per token, and every model says what its tokens are (--json:
    "tokens", the tokenizer kind, and "tokenization", in words).
    """
    console = status_console(quiet)
    ckpt = _load(checkpoint, console)
    vocab = ckpt.vocab
    words = vocab.kind != "char"
    noun = unit_noun(vocab)
    eos_mode, encoding = ckpt.data.get("eos_mode", "file"), ckpt.data.get("encoding", "utf-8")
    out = result_console()
    eos_text = "\n\n" if eos_mode == "paragraphs" else "\n"
    if show and not as_json:
        out.print(legend("token" if words else "character"))

    per_file = []
    for path in files:
        on_scored = None
        if show and not as_json:
            # a word's text depends on the token before it: one decoder reads the whole file
            decoder = vocab.decoder(context=[EOS]) if words else None

            def on_scored(targets, nll, decoder=decoder):
                out.print(coloured(vocab, targets, nll, eos_text, decoder), end="", soft_wrap=True)

        result = score_file(ckpt.params, ckpt.config, vocab, path, eos_mode=eos_mode, encoding=encoding,
                            streams=streams, burn_in=burn_in, chunk_len=chunk_len, on_scored=on_scored)
        per_file.append((path, result))
        if result.streams != streams or (streams > 1 and result.burn_in != burn_in):
            console.print(f"{path}: used {result.streams} stream(s) with {result.burn_in} {noun} of "
                          f"burn-in (the file is short)", markup=False)

    total = ScoreResult(sum(r.nll_sum for _, r in per_file), sum(r.n_scored for _, r in per_file),
                        sum(r.n_unk for _, r in per_file), n_chars=sum(r.n_chars for _, r in per_file))
    mode = _mode(streams, burn_in, noun)
    tokens = tokenization(vocab.kind, eos_mode)
    if as_json:
        records = [{"file": str(p), **score_summary(r), "streams": r.streams, "burn_in": r.burn_in}
                   for p, r in per_file]
        click.echo(json.dumps({"mode": "exact" if streams == 1 else "streams", "streams": streams,
                               "burn_in": burn_in if streams > 1 else 0, "tokens": vocab.kind,
                               "tokenization": tokens, "files": records, "total": score_summary(total)}, indent=2))
        return
    console.print(f"mode: {mode}", markup=False)
    console.print(f"tokens: {tokens}", markup=False)
    out.print(_table(per_file + ([("all files", total)] if len(per_file) > 1 else []), vocab.kind))


def _table(rows, kind: str) -> Table:
    """One row per file: a char model's per-character figures; a word or symbol model's per-token figures
    (the word or symbol perplexity) and bits per character of the original text."""
    words = kind != "char"
    if words:
        perplexity = "word perplexity" if kind == "word" else "symbol perplexity"
        columns = ("file", "tokens", "chars", "<UNK>", "<UNK> %", "nats/token", perplexity, "bits/char")
    else:
        columns = ("file", "chars", "<UNK>", "<UNK> %", "nats/char", "bits/char", "perplexity")
    table = Table(title=None, show_edge=False)
    for name in columns:
        table.add_column(name, justify="left" if name == "file" else "right")
    for path, r in rows:
        s = score_summary(r)
        unk = (f"{s['unk']:,}", f"{100 * s['unk_rate']:.2f}")
        if words:
            table.add_row(Text(str(path)), f"{s['tokens']:,}", f"{s['chars']:,}", *unk,
                          f"{s['nats_per_token']:.4f}", f"{s['perplexity']:.3f}", f"{s['bits_per_char']:.4f}")
        else:
            table.add_row(Text(str(path)), f"{s['chars']:,}", *unk, f"{s['nats_per_char']:.4f}",
                          f"{s['bits_per_char']:.4f}", f"{s['perplexity']:.3f}")
    return table


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
    words = ckpt.vocab.kind != "char"
    table = Table(show_edge=False)
    for name in ("rank", "log-prob (nats)", *(("nats/token",) if words else ()), "nats/char", "bits/char",
                 "text"):
        table.add_column(name, justify="left" if name == "text" else "right")
    for r in records:
        per_token = (f"{r['nats_per_token']:.4f}",) if words else ()
        table.add_row(str(r["rank"]), f"{r['logprob']:.3f}", *per_token, f"{r['nats_per_char']:.4f}",
                      f"{r['bits_per_char']:.4f}", Text(r["text"]))
    result_console().print(table)
