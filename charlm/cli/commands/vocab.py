"""`charlm vocab FILE`: the characters (or words, or symbols) of a corpus, their counts, and what would fold
into `<UNK>`.

With `--tokens word` or `symbols` it also reports the `<UNK>` rate of the corpus and of the held-out part `charlm train`
would validate on (the same vocabulary, split and seed).
"""

import json
import unicodedata

import click
import numpy as np
from rich.table import Table

from charlm.cli.console import result_console, status_console
from charlm.errors import ConfigError
from charlm.text.batching import split_train_val
from charlm.text.cache import prepare_corpus
from charlm.text.corpus import EOS_MODES, count_chars
from charlm.text.tokenizer import KINDS, UNK, Vocab
from charlm.text.units import DEFAULT_MAX_VOCAB
from charlm.text.words import JOIN, JOIN_TEXT
from charlm.training.options import TrainOptions

_NAMED = {" ": "space", "\n": "\\n", "\t": "\\t"}


def shown_char(char: str) -> str:
    """A character as a table cell: whitespace and control characters escaped, marks on a dotted circle."""
    if char in _NAMED:
        return _NAMED[char]
    if not char.isprintable() or char.isspace():
        return repr(char)[1:-1]  # e.g. \x0b, \xa0, \u3000
    if unicodedata.category(char).startswith("M"):
        return "\u25cc" + char
    return char


def shown_token(token: str) -> str:
    """A token as a table cell: the join as `<join>`, one character as `shown_char`, a whitespace run quoted
    with escapes (e.g. ' \\n')."""
    if token == JOIN:
        return JOIN_TEXT
    if len(token) == 1:
        return shown_char(token)
    return repr(token) if token.isspace() else token


@click.command()
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--eos", "eos_mode", type=click.Choice(EOS_MODES), default="file", show_default=True,
              help="Documents: the whole file, each line, or blank-line separated paragraphs.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus.")
@click.option("--tokens", type=click.Choice(KINDS), default="char", show_default=True,
              help="Characters, words and punctuation, or whitespace-separated symbols.")
@click.option("--lowercase", is_flag=True, help="Lowercase every word or symbol (--tokens word or symbols).")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokens seen fewer times fold into <UNK>.")
@click.option("--max-vocab", type=click.IntRange(min=1),
              help=f"Keep only this many most frequent tokens.  [default: {DEFAULT_MAX_VOCAB:,} for words and "
                   "symbols, every character]")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True),
              help=f"Held-out share whose <UNK> rate to report, split as charlm train does.  "
                   f"[default: {TrainOptions.val_fraction} for words and symbols, none for characters]")
@click.option("--top", type=click.IntRange(min=0), help="Show only the N most frequent tokens.  [default: all]")
@click.option("--json", "json_output", is_flag=True, help="One JSON object on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No status messages.")
def vocab(corpus, eos_mode, encoding, tokens, lowercase, min_count, max_vocab, val_fraction, top, json_output,
          quiet):
    """Count the characters (or words, or symbols) of CORPUS and show the vocabulary charlm would build from it."""
    if lowercase and tokens == "char":
        raise click.BadParameter("lowercasing applies to word tokens and symbols only (add --tokens word or "
                                 "symbols)", param_hint="--lowercase")
    if tokens != "char":
        _token_report(corpus, tokens=tokens, eos_mode=eos_mode, encoding=encoding, lowercase=lowercase,
                      min_count=min_count, max_vocab=max_vocab, top=top, json_output=json_output, quiet=quiet,
                      val_fraction=TrainOptions.val_fraction if val_fraction is None else val_fraction)
        return
    status_console(quiet).print(f"counting characters of {corpus}")
    stats = count_chars(corpus, eos_mode=eos_mode, encoding=encoding)
    built = Vocab.build(stats.counts, min_count=min_count, max_vocab=max_vocab)
    by_count = sorted(stats.counts.items(), key=lambda item: (-item[1], ord(item[0])))
    folded = [(c, n) for c, n in by_count if c not in built]
    shown = by_count if top is None else by_count[:top]
    held_out = None if not val_fraction else _held_out(
        prepare_corpus(corpus, eos_mode=eos_mode, encoding=encoding, min_count=min_count, max_vocab=max_vocab),
        val_fraction)
    if json_output:
        click.echo(json.dumps({
            "path": corpus, "eos": eos_mode, "encoding": encoding, "n_docs": stats.n_docs,
            "n_chars": stats.n_chars, "n_distinct": len(stats.counts), "vocab_size": built.size,
            "chars": [{"char": c, "codepoint": ord(c), "count": n, "share": n / stats.n_chars} for c, n in shown],
            "unk": {"chars": [c for c, _ in folded], "occurrences": sum(n for _, n in folded)},
            "vocab": built.to_dict(), "kind": "char", **({"held_out": held_out} if held_out else {}),
        }, ensure_ascii=False))
        return
    table = Table()
    for column in ("char", "code point", "count", "share"):
        table.add_column(column, justify="left" if column == "char" else "right")
    for c, n in shown:
        table.add_row(shown_char(c), f"U+{ord(c):04X}", f"{n:,}", f"{n / stats.n_chars:.4%}")
    out = result_console()
    out.print(table)
    out.print(f"{corpus}: {stats.n_chars:,} characters in {stats.n_docs:,} document(s), {len(stats.counts)} distinct",
              markup=False, soft_wrap=True)
    out.print(f"vocabulary: {built.size} ids (<EOS>, <UNK> and {len(built.chars)} characters)")
    if folded:
        listed = " ".join(shown_char(c) for c, _ in folded[:40]) + (" ..." if len(folded) > 40 else "")
        out.print(f"folded into <UNK> by --min-count {min_count}"
                  f"{f' --max-vocab {max_vocab}' if max_vocab else ''}: {len(folded)} characters, "
                  f"{sum(n for _, n in folded):,} occurrences: {listed}", markup=False, soft_wrap=True)
    else:
        out.print("nothing folds into <UNK>")
    if held_out:
        out.print(_held_out_line(held_out), markup=False, soft_wrap=True)


def _held_out(corpus, val_fraction: float) -> dict:
    """The `<UNK>` count and rate of the part `charlm train` holds out (the same vocabulary, split and default
    seed); a corpus too small to split says why instead."""
    try:
        _, val_ids = split_train_val(corpus, val_fraction, TrainOptions.seed)
    except ConfigError as exc:
        return {"val_fraction": val_fraction, "tokens": 0, "unk": 0, "unk_rate": None, "note": str(exc),
                "unit": _unit(corpus)}
    targets = val_ids[1:]  # every held-out token and document end, as validation scores them
    n_unk = int(np.count_nonzero(targets == UNK))
    return {"val_fraction": val_fraction, "tokens": len(targets), "unk": n_unk,
            "unk_rate": n_unk / len(targets) if len(targets) else None, "unit": _unit(corpus)}


def _unit(corpus) -> str:
    return "characters" if corpus.vocab.kind == "char" else "tokens"


def _held_out_line(held_out: dict) -> str:
    if held_out["unk_rate"] is None:
        return f"held-out part (--val-fraction {held_out['val_fraction']}): none" + (
            f" ({held_out['note']})" if "note" in held_out else "")
    return (f"<UNK> in the held-out part (--val-fraction {held_out['val_fraction']}): {held_out['unk']:,} of "
            f"{held_out['tokens']:,} {held_out['unit']} ({held_out['unk_rate']:.2%})")


def _token_report(path, *, tokens, eos_mode, encoding, lowercase, min_count, max_vocab, top, json_output, quiet,
                  val_fraction):
    """The tokens of a corpus with their counts (`tokens` "word": words, punctuation and separator tokens;
    "symbols": whitespace-separated symbols), what folds into `<UNK>`, and the `<UNK>` rate of the corpus and
    of the held-out part."""
    status_console(quiet).print(f"counting {'words' if tokens == 'word' else 'symbols'} of {path}")
    corpus = prepare_corpus(path, tokens=tokens, lowercase=lowercase, eos_mode=eos_mode, encoding=encoding,
                            min_count=min_count, max_vocab=max_vocab)
    built, counts = corpus.vocab, corpus.counts
    n_tokens = sum(counts.values())
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    folded = [(t, n) for t, n in by_count if t not in built]
    shown = by_count if top is None else by_count[:top]
    n_targets = len(corpus.ids) - 1  # every token and document end, as scoring counts them
    held_out = _held_out(corpus, val_fraction) if val_fraction else None
    if json_output:
        click.echo(json.dumps({
            "path": path, "eos": eos_mode, "encoding": encoding, "kind": tokens, "lowercase": lowercase,
            "n_docs": corpus.n_docs, "n_chars": corpus.n_chars, "n_tokens": n_tokens, "n_distinct": len(counts),
            "vocab_size": built.size,
            "tokens": [{"token": t, "shown": shown_token(t), "count": n, "share": n / n_tokens} for t, n in shown],
            "unk": {"tokens": [t for t, _ in folded], "occurrences": sum(n for _, n in folded),
                    "ids": corpus.n_unk, "rate": corpus.n_unk / n_targets, "chars": corpus.unk_chars},
            "held_out": held_out, "vocab": built.to_dict(),
        }, ensure_ascii=False))
        return
    table = Table()
    for column in ("token", "count", "share"):
        table.add_column(column, justify="left" if column == "token" else "right")
    for t, n in shown:
        table.add_row(shown_token(t), f"{n:,}", f"{n / n_tokens:.4%}")
    out = result_console()
    out.print(table)
    # a symbol stream ends every line with <EOS>, so its n_docs counts lines (and n_chars leaves their ends out)
    parts = "line(s)" if tokens == "symbols" else "document(s)"
    out.print(f"{path}: {corpus.n_chars:,} characters, {n_tokens:,} tokens in {corpus.n_docs:,} {parts}, "
              f"{len(counts):,} distinct{' (lowercased)' if lowercase else ''}", markup=False, soft_wrap=True)
    out.print(f"vocabulary: {built.size:,} ids (<EOS>, <UNK> and {len(built.tokens):,} tokens)")
    if folded:
        listed = " ".join(shown_token(t) for t, _ in folded[:40]) + (" ..." if len(folded) > 40 else "")
        out.print(f"folded into <UNK> by --min-count {min_count} --max-vocab {max_vocab or DEFAULT_MAX_VOCAB}: "
                  f"{len(folded):,} tokens, {sum(n for _, n in folded):,} occurrences: {listed}",
                  markup=False, soft_wrap=True)
    else:
        out.print("nothing folds into <UNK>")
    out.print(f"<UNK> in the corpus: {corpus.n_unk:,} of {n_targets:,} tokens ({corpus.n_unk / n_targets:.2%}), "
              f"standing for {corpus.unk_chars:,} characters", markup=False, soft_wrap=True)
    if held_out:
        out.print(_held_out_line(held_out), markup=False, soft_wrap=True)
