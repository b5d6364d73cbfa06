"""`charlm vocab FILE`: the characters of a corpus, their counts, and what would fold into `<UNK>`."""

import json
import unicodedata

import click
from rich.table import Table

from charlm.cli.console import result_console, status_console
from charlm.text.corpus import EOS_MODES, count_chars
from charlm.text.tokenizer import Vocab

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


@click.command()
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--eos", "eos_mode", type=click.Choice(EOS_MODES), default="file", show_default=True,
              help="Documents: the whole file, each line, or blank-line separated paragraphs.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus.")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Characters seen fewer times fold into <UNK>.")
@click.option("--max-vocab", type=click.IntRange(min=1), help="Keep only this many most frequent characters.")
@click.option("--top", type=click.IntRange(min=0), help="Show only the N most frequent characters.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No status messages.")
def vocab(corpus, eos_mode, encoding, min_count, max_vocab, top, json_output, quiet):
    """Count the characters of CORPUS and show the vocabulary charlm would build from it."""
    status_console(quiet).print(f"counting characters of {corpus}")
    stats = count_chars(corpus, eos_mode=eos_mode, encoding=encoding)
    built = Vocab.build(stats.counts, min_count=min_count, max_vocab=max_vocab)
    by_count = sorted(stats.counts.items(), key=lambda item: (-item[1], ord(item[0])))
    folded = [(c, n) for c, n in by_count if c not in built]
    shown = by_count if top is None else by_count[:top]
    if json_output:
        click.echo(json.dumps({
            "path": corpus, "eos": eos_mode, "encoding": encoding, "n_docs": stats.n_docs,
            "n_chars": stats.n_chars, "n_distinct": len(stats.counts), "vocab_size": built.size,
            "chars": [{"char": c, "codepoint": ord(c), "count": n, "share": n / stats.n_chars} for c, n in shown],
            "unk": {"chars": [c for c, _ in folded], "occurrences": sum(n for _, n in folded)},
            "vocab": built.to_dict(),
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
