"""`charlm train`: a thin wrapper over `charlm.tasks.registry.train`."""

import json
import math
import sys

import click
from click.core import ParameterSource

from charlm.cli.console import silence, status_console
from charlm.cli.progress import TrainProgress
from charlm.engine.cells import CELLS
from charlm.engine.optim import OPTIMIZERS
from charlm.errors import ConfigError
from charlm.models.config import ACTIVATIONS, ATTENTIONS, DTYPES, POOLS
from charlm.parallel.environment import launched_rank, launched_size
from charlm.parallel.launch import announce, check_parallel_options, check_procs, launch
from charlm.tasks.registry import TASKS
from charlm.tasks.registry import train as run_training
from charlm.text.corpus import EOS_MODES
from charlm.text.tokenizer import KINDS
from charlm.training import events
from charlm.training.options import OPTION_NAMES, TrainOptions, parse_duration
from charlm.training.recipe_rules import (
    CHAR_TRAINING,
    LONG_CHUNK,
    LONG_CHUNK_WIDTH,
    MIN_EPOCHS,
    MIN_LR_RATIO_SETTLED,
    MIN_LR_RATIO_UNSETTLED,
    SHORT_CHUNK,
    TAGGER_RECIPE,
    TOKENS_PER_UPDATE,
    WORD_RECIPE,
)
from charlm.training.schedule import SCHEDULES


def train_distributed(opts, **kwargs):
    from charlm.parallel.trainer import train_distributed as run  # loads MPI: only under mpiexec

    return run(opts, **kwargs)

DEFAULTS = TrainOptions(corpus="")


def _by_kind(name: str) -> str:
    """The help text's default of a training option that the token kind's recipe sets."""
    return f"[default: {CHAR_TRAINING[name]} for characters, {WORD_RECIPE[name]} for words]"


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail("must be longer than zero", param, ctx)
        return seconds


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


@click.command()
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory [default: runs/<corpus name>].")
@click.option("--cell", type=click.Choice(CELLS), default=DEFAULTS.cell, show_default=True, help="Recurrent cell.")
@click.option("--hidden", type=click.IntRange(min=1),
              help=f"Hidden units per layer [default: the recipe's, by the corpus, the --time and the machine's "
                   f"speed; {WORD_RECIPE['hidden']} for words].")
@click.option("--layers", type=click.IntRange(min=1), help="Stacked recurrent layers [default: 2].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              help=f"Inverted dropout between layers and before the output [default: the recipe's, by the epochs "
                   f"the run affords and the model's size per corpus character; {WORD_RECIPE['dropout']} for "
                   f"words].")
@click.option("--embed", type=click.IntRange(min=0),
              help="Learned embedding width (0 = one-hot input, a row gather) [default: 0 for characters, "
                   "--hidden for words].")
@click.option("--tie/--no-tie", default=DEFAULTS.tie, show_default=True, help="Share the input embedding with the "
              "output layer (needs --embed equal to --hidden).")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=DEFAULTS.activation,
              show_default=True, help="Vanilla RNN activation.")
@click.option("--dtype", type=click.Choice(DTYPES), default=DEFAULTS.dtype, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1),
              help=f"Truncated BPTT length (tokens per chunk) [default for characters: {SHORT_CHUNK}, {LONG_CHUNK} "
                   f"from --hidden {LONG_CHUNK_WIDTH}; {WORD_RECIPE['seq_len']} for words].")
@click.option("--batch", type=click.IntRange(min=1),
              help=f"Parallel streams per batch [default for characters: {TOKENS_PER_UPDATE} / --seq-len; "
                   f"{WORD_RECIPE['batch']} for words].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help=_by_kind("optimizer"))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), callback=_finite,
              help=f"Peak learning rate {_by_kind('lr')}.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True),
              help=f"SGD momentum {_by_kind('momentum')}.")
@click.option("--weight-decay", type=click.FloatRange(min=0), callback=_finite,
              help="L2 (adam/sgd/...) or decoupled (adamw) weight decay on matrices [default: 0].")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=DEFAULTS.schedule,
              show_default=True, help="Learning-rate schedule; cosine fits --steps, --epochs or --time.")
@click.option("--min-lr-ratio", type=click.FloatRange(0, 1),
              help=f"Where the cosine schedule ends, as a fraction of --lr [default: for characters "
                   f"{MIN_LR_RATIO_SETTLED:g} when the budget buys {MIN_EPOCHS:g} passes over documents as long "
                   f"as a chunk, else "
                   f"{MIN_LR_RATIO_UNSETTLED:g}; {WORD_RECIPE['min_lr_ratio']:g} for words, "
                   f"{TAGGER_RECIPE['min_lr_ratio']:g} for taggers and classifiers].")
@click.option("--warmup", type=click.IntRange(min=0),
              help="Linear warm-up steps [default: 30, at most 5% of the updates the budget affords].")
@click.option("--clip", type=click.FloatRange(min=0), callback=_finite,
              help=f"Gradient clip threshold (0 = off) {_by_kind('clip')}.")
@click.option("--clip-mode", type=click.Choice(("norm", "value")), default=DEFAULTS.clip_mode,
              show_default=True, help="Global norm, or the lecture's elementwise clip.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after this many steps in all (counts the whole run).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Stop after this many epochs.")
@click.option("--time", "time_budget", type=Duration(),
              help="Wall-clock budget of this invocation: 90s, 10m, 2h [default: 10m when neither --steps nor "
                   "--epochs is given].")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS.val_fraction,
              show_default=True, help="Held-out share: the tail (file mode) or random documents.")
@click.option("--val-file", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Validate on this file instead.")
@click.option("--eval-every", type=click.IntRange(min=0), default=0,
              help="Evaluate every N steps [default: about once a minute].")
@click.option("--eval-chars", type=click.IntRange(min=2), default=DEFAULTS.eval_chars, show_default=True,
              help="Held-out characters scored at each evaluation (all of them at the end).")
@click.option("--patience", type=click.IntRange(min=0), help="Stop after N evaluations without improvement "
              "(0 = never) [default: 4 for character language models, else 0].")
@click.option("--sample-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Show a short sample every N steps (0 = never).")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also checkpoint every N steps (checkpoints are always written at each evaluation).")
@click.option("--tokens", type=click.Choice(KINDS), default=DEFAULTS.tokens, show_default=True,
              help="What the model reads and predicts: characters, words and punctuation marks, or "
                   "whitespace-separated symbols (pre-tokenized text, phonemes); translate: both sides.")
@click.option("--lowercase", is_flag=True, help="Lowercase the text before tokenizing (words).")
@click.option("--eos", type=click.Choice(EOS_MODES), default=DEFAULTS.eos, show_default=True,
              help="Documents: the whole file, each line, or blank-line separated paragraphs.")
@click.option("--encoding", default=DEFAULTS.encoding, show_default=True, help="Corpus text encoding.")
@click.option("--min-count", type=click.IntRange(min=1), default=DEFAULTS.min_count, show_default=True,
              help="Tokens seen fewer times become <UNK>.")
@click.option("--max-vocab", type=click.IntRange(min=3), help="Keep only the most frequent tokens [default: all "
              "characters; 10,000 words].")
@click.option("--task", type=click.Choice(tuple(TASKS)), default=DEFAULTS.task, show_default=True,
              help="What to learn: a language model; a tagger: restore case (truecase), restore punctuation "
                   "marks (punctuate), both on one encoder, or the labels of a CoNLL-style file (tag); or a "
                   "classifier of label<TAB>text lines (classify); or an encoder–decoder of source<TAB>target "
                   "pairs (translate).")
@click.option("--bidirectional/--no-bidirectional", default=DEFAULTS.bidirectional, show_default=True,
              help="Taggers, classifiers and translate's encoder: every layer also reads each document "
                   "backwards (sees the words after) [default for translate: on].")
@click.option("--source-tokens", type=click.Choice(KINDS),
              help="translate: the source side's tokens [default: --tokens].")
@click.option("--target-tokens", type=click.Choice(KINDS),
              help="translate: the target side's tokens [default: --tokens].")
@click.option("--attention", type=click.Choice(ATTENTIONS),
              help="translate: how the decoder reads the encoder's states: not at all (none), Luong's dot or "
                   "general score, Bahdanau's additive score [default: the recipe's, additive].")
@click.option("--marks", default=DEFAULTS.marks, show_default=True,
              help="punctuate: the marks removed from the input and restored.")
@click.option("--max-len", type=click.IntRange(min=1), default=DEFAULTS.max_len, show_default=True,
              help="Taggers and classifiers: documents longer than this many characters are cut (with a "
                   "warning).")
@click.option("--pool", type=click.Choice(POOLS), default=DEFAULTS.pool, show_default=True,
              help="classify: a text's states become one vector by the last (each direction's final state), "
                   "their mean or their max.")
@click.option("--balance", is_flag=True, help="classify: weigh the loss by inverse label frequency.")
@click.option("--encoder-lr", type=click.FloatRange(min=0), metavar="MULTIPLE",
              help="With a pre-trained encoder (--init-from LM, --pretrain): its learning rate as a multiple of "
                   "--lr; 0 freezes it [default: 1].")
@click.option("--average", type=click.FloatRange(0, 1, max_open=True), metavar="DECAY",
              help="Evaluate and keep a moving average of the weights, each step average <- DECAY x average + "
                   "(1 - DECAY) x weights [default: off].")
@click.option("--token-dropout", type=click.FloatRange(0, 1, max_open=True),
              help="classify: the share of input tokens read as <UNK> while training [default: 0].")
@click.option("--pretrain/--no-pretrain", default=None,
              help="classify: first train a language model on the file's texts (labels ignored) in "
                   "OUT/pretrain, then the classifier from its encoder, within the one --time budget "
                   "[default: on for words or symbols within a --time budget].")
@click.option("--procs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train as this many processes on this machine (data-parallel over MPI; needs charlm[mpi]). "
                   "On a cluster use its own launcher: mpiexec -n P charlm train ...")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads of the matrix products [default: OMP_NUM_THREADS if set, else the count that trains "
                   "fastest now, timed at the start and again as the machine's load changes].")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--init-from", type=click.Path(exists=True), help="Fine-tune from this checkpoint or run "
              "(keeps its vocabulary).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest checkpoint.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per evaluation and a final one.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.pass_context
def train(ctx, corpus, json_output, quiet, procs, **options):
    """Train a character- or word-level language model on CORPUS (a UTF-8 text file), or a character tagger
    (--task): truecase and punctuate learn from any text, tag from a CoNLL-style file."""
    explicit = frozenset(name for name in ctx.params if name in OPTION_NAMES
                         and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE)
    opts = TrainOptions(corpus=corpus, **options)
    started = (ctx.obj or {}).get("started")  # the process's start, under the console script
    ranks, rank = launched_size(), launched_rank()
    if procs > 1:
        if ranks > 1:
            error = ConfigError("--procs starts its own mpiexec; under mpiexec leave it out")
            error.quiet = rank != 0  # rank 0 says it
            raise error
        check_procs(procs)
        check_parallel_options(opts, procs)
        hint = f"resume with: charlm train {corpus} --out {opts.run_dir} --procs {procs} --resume"
        ctx.exit(launch(procs, sys.argv[1:], run_dir=opts.run_dir, resume_hint=hint))
    if ranks > 1:
        announce(rank)
        quiet = quiet or rank != 0
        json_output = json_output and rank == 0
    console = status_console(quiet=quiet)
    warnings = status_console()
    with TrainProgress(console) as progress:
        def draw(event: events.Event) -> None:
            match event:
                case events.Progress():
                    progress.update(event)
                case events.Evaluation():
                    if json_output:
                        _echo(json.dumps(event.to_dict()))
                    f1 = f", F1 {event.val_f1:.4f}" if event.val_f1 is not None else ""
                    f1 += f", accuracy {event.val_accuracy:.4f}" if event.val_accuracy is not None else ""
                    progress.log(f"step {event.step}: val {_loss(event.val_loss, event.val_bpc, event.tokens)}"
                                 f"{f1}; {_kept(event)}")
                case events.Warning() if console.quiet:  # --quiet hides progress, not warnings
                    warnings.print(f"warning: {event.text}", markup=False, highlight=False)
                case events.Warning():
                    progress.log(f"warning: {event.text}")
                case events.Sample():
                    progress.log(f"--- sample at step {event.step} ---\n{event.text}\n---")
                case events.Recipe():
                    if json_output:
                        _echo(json.dumps(event.to_dict()))
                    progress.log("\n".join((event.summary, *("  " + reason for reason in event.reasons))))
                case events.Log():
                    progress.log(event.text)

        if ranks > 1:
            result = train_distributed(opts, explicit=explicit, report=draw, started=started)
        else:
            result = run_training(opts, explicit=explicit, report=draw, started=started)
    if result is None:  # a rank but 0 of a multi-process run: rank 0 reports
        return
    if json_output:
        _echo(json.dumps({"event": "done", **result.to_dict()}))
    else:
        console.print(_summary(result), markup=False, highlight=False)


def _echo(line: str) -> None:
    """A JSON line on stdout; if its reader went away, training goes on (and saves) with stdout silenced."""
    try:
        click.echo(line)
        sys.stdout.flush()
    except BrokenPipeError:
        silence(sys.stdout)


def _kept(event: events.Evaluation) -> str:
    """The kept checkpoint, by the figure it was kept by: F1 for taggers and classifiers, else the loss."""
    figure = f"F1 {event.best_f1:.4f}" if event.best_f1 is not None else f"{event.best_val_loss:.4f}"
    return f"best {figure} at step {event.best_step}"


def _loss(nats: float, bpc: float, tokens: str, mode: str = "") -> str:
    """'1.4640 nats/char (2.112 bits/char)', or for words '5.1234 nats/token (ppl 168.0, 1.712 bits/char)'."""
    mode = f", {mode}" if mode else ""
    if tokens == "label":
        return f"{nats:.4f} nats/label{' (' + mode[2:] + ')' if mode else ''}"
    if tokens == "char":
        return f"{nats:.4f} nats/char ({bpc:.3f} bits/char{mode})"
    chars = f", {bpc:.3f} bits/char" if bpc is not None else ""
    return f"{nats:.4f} nats/token (ppl {math.exp(min(nats, 700)):,.1f}{chars}{mode})"


def _summary(result) -> str:
    val = (f"best val {_loss(result.best_val_loss, result.best_val_bpc, result.tokens, result.best_val_mode)}"
           if result.best_val_loss is not None else "no validation")
    unit = "chars/s" if result.tokens == "char" else "tokens/s"
    return (f"done: {result.steps} steps, {result.epochs:.2f} epochs, {result.train_seconds:.0f}s, "
            f"{result.chars_per_sec:,.0f} {unit}; {val}; checkpoint {result.checkpoint}")
