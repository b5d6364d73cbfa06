"""What every task's run starts from: the options in force, the checkpoint to resume or fine-tune, and the
recipe's choices for the options left unset. One home for these rules, so every task answers alike."""

from dataclasses import replace

from charlm.errors import CharlmError, ConfigError
from charlm.store.checkpoint import Checkpoint, load_checkpoint
from charlm.store.rundir import RunDir
from charlm.training import events
from charlm.training.options import (
    ENCODER_OPTIONS,
    MODEL_OPTIONS,
    TrainOptions,
    check_options,
    merge_resumed_options,
    refuse_changes,
)
from charlm.training.recipe import apply_recipe, needs_speed
from charlm.training.recipe_rules import CorpusStats
from charlm.training.speed import measure_recipe_speed


def starting_point(opts: TrainOptions, run_dir: RunDir, *, explicit: frozenset, report
                   ) -> tuple[TrainOptions, Checkpoint | None, bool]:
    """-> (the options in force, the checkpoint to start from or None, whether to resume it exactly).

    With --resume: the run directory's newest valid checkpoint, its saved options overridden by those given
    now (`merge_resumed_options`). Otherwise a run directory that holds checkpoints is refused, and --init-from
    loads the checkpoint to fine-tune, refusing another architecture given explicitly. `explicit` names the
    options the user gave; `report(event)` gets a warning when a damaged newer checkpoint is skipped."""
    if opts.resume:
        base = load_checkpoint(run_dir.path, prefer="latest", warn=lambda m: report(events.Warning(m)))
        return merge_resumed_options(base, opts, explicit), base, True
    if run_dir.checkpoints():
        raise CharlmError(f"{run_dir.path} already holds checkpoints; add --resume to continue that "
                          f"run or choose another --out")
    if opts.init_from:
        base = load_checkpoint(opts.init_from)
        keys = ENCODER_OPTIONS if is_pretrained_encoder(base, opts) else MODEL_OPTIONS
        # a model the flags contradict: a usage error, as any flag that cannot apply
        refuse_changes(base, opts, explicit, what="--init-from checkpoint", keys=keys, error=ConfigError)
        return opts, base, False
    return opts, None, False


def is_pretrained_encoder(base: Checkpoint, opts: TrainOptions) -> bool:
    """Whether --init-from gives another task a language model's encoder (its embedding and recurrent layers,
    the ULMFiT recipe) rather than a model of the task's own kind to fine-tune."""
    return base.config.kind == "lm" and opts.task != "lm"


def keep_checkpoint_model(init_from: Checkpoint, opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """A run from --init-from keeps the checkpoint's vocabulary, so also its tokenizer kind: asking for another
    is an error, not a silent switch. It keeps the encoder too (a different one given explicitly was refused),
    so the options say the width and depth it trains, and the recipe fills only the rest."""
    kind = init_from.vocab.kind
    if "tokens" in explicit and opts.tokens != kind:
        raise ConfigError(f"--init-from {init_from.path} is a {kind}-level model; it cannot be trained with "
                          f"--tokens {opts.tokens} (its vocabulary is kept)")
    model = init_from.config
    return replace(opts, tokens=kind, lowercase=init_from.vocab.lowercase, hidden=model.hidden,
                   layers=model.layers, embed=model.embed, cell=model.cell, activation=model.activation)


def check_same_corpus(base: Checkpoint, sha256: str, opts: TrainOptions, run_dir: RunDir) -> None:
    """A resumed run trains on the text it was trained on (by content)."""
    if base.data.get("corpus_sha256") != sha256:
        raise CharlmError(f"{opts.corpus} is not the corpus this run was trained on (content differs); "
                          f"to train this checkpoint on new text use --init-from {run_dir.path} with a "
                          f"new --out")


def with_recipe(opts: TrainOptions, stats: CorpusStats | None) -> tuple[TrainOptions, events.Recipe | None]:
    """The options with those left unset filled by the recipe (`charlm.training.recipe`), checked, and the
    event that gives the recipe's account (None when the user set them all), for the caller to report once
    its data has loaded. The machine's speed is measured first when the recipe sizes the model by it."""
    speed, threads = (measure_recipe_speed(opts, stats) if stats is not None and needs_speed(opts)
                      else (None, None))
    opts, recipe = apply_recipe(opts, stats, speed)
    check_options(opts)
    if recipe is None:
        return opts, None
    if threads is None:
        return opts, events.Recipe(summary=recipe.summary, reasons=recipe.reasons, choices=recipe.choices)
    return opts, events.Recipe(summary=recipe.summary, reasons=(*recipe.reasons, threads.describe()),
                               choices=recipe.choices, threads=threads.threads)
