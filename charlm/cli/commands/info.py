"""`charlm info`: what a checkpoint holds (model, vocabulary, training summary, format and integrity)."""

import json

import click
from rich.table import Table
from rich.text import Text

from charlm.cli.console import result_console, status_console
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.description import describe


def _visible(c: str) -> str:
    return c if (c.isprintable() and not c.isspace()) or c == " " else repr(c)[1:-1]


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, readable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def info(checkpoint, as_json, quiet):
    """Describe CHECKPOINT (a run directory's best checkpoint, or a .safetensors file)."""
    console = status_console(quiet)
    ckpt = load_checkpoint(checkpoint, warn=lambda m: console.print(f"warning: {m}", markup=False))
    d = describe(ckpt)
    if as_json:
        click.echo(json.dumps(d, ensure_ascii=False, indent=2))
        return
    m, v, t, task = d["model"], d["vocab"], d["training"], d["task"]
    unit = "token" if task["task"] == "translate" else "label" if task["task"] != "lm" else \
        "char" if v["kind"] == "char" else "token"
    translate = task["task"] == "translate"
    rows = [
        ("file", d["path"]),
        ("format", f"version {d['format_version']}, written by charlm {d['charlm_version']}"),
        ("integrity", d["integrity"]),
        ("model", f"{m['cell']}, {m['layers']} layer(s) x {m['hidden']} hidden"
                  f"{', bidirectional' if m.get('bidirectional') else ''}, "
                  f"{'embedding ' + str(m['embed']) if m['embed'] else 'one-hot input'}, {m['dtype']}"),
        ("parameters", f"{m['parameters']:,}" + (" (" + ", ".join(f"{part} {n:,}" for part, n in
                                                                   task["parameters"].items()) + ")"
                                                  if translate else "")),
        *_vocabulary_rows(v, "source " if translate else ""),
        *(_vocabulary_rows(task["target_vocab"], "target ") if translate else []),
        ("training", f"step {_fmt(t['step'])}, epoch {_fmt(t['epoch'])}, "
                     f"{_duration(t['seconds'])} of training"),
        *_task_rows(task),
        ("best val", f"{_fmt(t['best_val_nats'])} nats/{unit}"
                     + (f", {_fmt(t['best_val_bits'])} bits/{unit}" if task["task"] == "lm" else "")
                     + (f", F1 {_fmt(task['best_val_f1'])}" if task.get("best_val_f1") is not None else "")
                     + f" (step {_fmt(t['best_step'])}); final score of the best checkpoint: "
                     f"{_fmt(t['final_val_nats'])} nats/{unit} ({t['final_val_mode'] or '-'})"),
        ("corpus", f"{_fmt(t['corpus'])} (sha256 {_fmt(t['corpus_sha256'])})"),
    ]
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, Text(value))
    result_console().print(table)


def _task_rows(task: dict) -> list[tuple[str, str]]:
    """A tagger's task and each head's labels, a classifier's labels and pooling (and either's pre-trained
    encoder), an encoder–decoder's kind, attention and tokens; nothing for a LM."""
    if task["task"] == "lm":
        return []
    if task["task"] == "translate":
        direction = "bidirectional encoder" if task["bidirectional"] else "encoder"
        return [("task", f"translate: {task['kind']} ({direction}), attention {task['attention']}; tokens: "
                         f"{task['source_tokens']} -> {task['target_tokens']}")]
    encoder = [("encoder", f"pre-trained: {task['encoder_from']}")] if task.get("encoder_from") else []
    if task["task"] == "classify":
        return [("task", f"classify ({len(task['labels'])} labels, pool {task['pool']})"),
                ("labels", ", ".join(task["labels"])), *encoder]
    return [("task", task["task"]), *[(f"labels ({h['name']})", " ".join(_visible_token(lab) for lab in h["labels"]))
                                      for h in task["heads"]], *encoder]


def _vocabulary_rows(v: dict, side: str = "") -> list[tuple[str, str]]:
    """A char vocabulary's size and characters; a word vocabulary's size, case rule and first tokens (`side`:
    "source " or "target " before each row's name, an encoder–decoder having two vocabularies)."""
    specials = ", ".join(v["specials"])
    kept = v["size"] - len(v["specials"])
    where = f"documents: {v['eos_mode']}; encoding: {v['encoding']}"
    if v["kind"] == "char":
        return [(side + "vocabulary", f"{v['size']} ids: {specials} and {kept} characters; {where}"),
                (side + "characters", "".join(_visible(c) for c in v["chars"]))]
    case = "lowercased" if v["lowercase"] else "case kept"
    return [(side + "vocabulary", f"{v['size']} ids: {specials} and {kept} tokens; tokenizer: {v['kind']} "
                                  f"({case}); {where}"),
            (side + "most frequent", "  ".join(_visible_token(tok) for tok in v["tokens"]))]


def _visible_token(token: str) -> str:
    """A token as shown in a list: quoted with escapes when it holds whitespace (a separator token)."""
    return repr(token) if any(c.isspace() or not c.isprintable() for c in token) else token
