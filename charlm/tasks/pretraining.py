"""`--pretrain`: a language model on the classifier's own texts first (labels ignored), then the classifier
with that model's embedding and recurrent layers as its encoder (ULMFiT's recipe: a language model learns
what the words do from the texts before any label is read), both inside the one time budget. Left unset, it
is on for a new classifier of words or symbols within a time budget (`with_pretraining`).

The language model's run lives in `<run dir>/pretrain/` beside the classifier's (its texts one per line in
`texts.txt`), and the classifier records it as `encoder_from`, which `charlm info` shows. A resumed run
continues where it stopped: the classifier's run when it has checkpoints, else the language model's.
"""

from dataclasses import replace
from pathlib import Path

from charlm.atomic import write_atomic
from charlm.errors import CharlmError, ConfigError, TrainingInterrupted
from charlm.store.checkpoint import checkpoint_files, load_checkpoint
from charlm.tasks.classify.labelled_text import read_labelled
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import PRETRAIN_SHARE, SENTENCE_MODEL, SENTENCE_RECIPE

PRETRAIN_DIR = "pretrain"


def with_pretraining(opts: TrainOptions) -> TrainOptions:
    """`opts` with --pretrain settled: when left unset, the recipe's choice (on for a new classifier of words
    or symbols within a time budget: it measured better on SST-2, docs/recipe.md); when given, checked: only a
    classifier has it, it replaces --init-from, and it splits a time budget."""
    if opts.pretrain is None:
        run_dir = Path(opts.run_dir)
        if opts.resume:  # a run stopped while pre-training continues there
            chosen = not checkpoint_files(run_dir) and bool(checkpoint_files(run_dir / PRETRAIN_DIR))
        else:
            chosen = (opts.task == "classify" and opts.tokens != "char" and bool(opts.time_budget)
                      and opts.steps is None and opts.epochs is None and not opts.init_from)
        return replace(opts, pretrain=chosen)
    if not opts.pretrain:
        return opts
    if opts.task != "classify":
        raise ConfigError(f"--pretrain trains a classifier's encoder first; it does not apply to --task {opts.task}")
    if opts.init_from:
        raise ConfigError("--pretrain trains the encoder that --init-from would give: use one or the other")
    if not opts.time_budget or opts.steps is not None or opts.epochs is not None:
        raise ConfigError("--pretrain shares a --time budget between the language model and the classifier: give "
                          "--time, not --steps or --epochs")
    return opts


def pretrained(opts: TrainOptions, explicit: frozenset, *, train, report, clock, started: float
               ) -> tuple[TrainOptions, frozenset]:
    """Train (or resume, or find finished) the language model of a --pretrain run, and return the classifier's
    options and explicit names with --init-from pointing at it. `train(opts, explicit=, report=, clock=,
    started=)` trains one run (`charlm.tasks.registry.train`)."""
    run_dir = Path(opts.run_dir)
    lm_dir = run_dir / PRETRAIN_DIR
    classifier_began, lm_began = bool(checkpoint_files(run_dir)), bool(checkpoint_files(lm_dir))
    if not opts.resume and (classifier_began or lm_began):
        raise CharlmError(f"{run_dir} already holds checkpoints; add --resume to continue that run or choose "
                          f"another --out")
    if opts.resume and classifier_began:
        return opts, explicit  # the classifier's own run resumes; its encoder is in its checkpoint
    resuming_lm = opts.resume and lm_began
    if resuming_lm and not opts.time_budget:  # the whole run's budget, from the share the language model saved
        saved = load_checkpoint(lm_dir, prefer="latest").train.get("options", {}).get("time_budget")
        opts = replace(opts, time_budget=saved / PRETRAIN_SHARE if saved else None)
    lm_opts, lm_explicit = language_model_options(opts, lm_dir, resume=resuming_lm)
    if not resuming_lm:
        _write_texts(opts, lm_dir / "texts.txt")
    report(events.Log(f"pre-training a language model ({lm_opts.layers} x {lm_opts.hidden}, the classifier's "
                      f"encoder) on the texts of {opts.corpus} in {lm_dir} for {PRETRAIN_SHARE:.0%} of the time, "
                      f"then the classifier from it"))
    try:
        train(lm_opts, explicit=lm_explicit, report=report, clock=clock, started=started)
    except TrainingInterrupted as stop:  # the resume command is the classifier's, which resumes both
        resume = f"charlm train {opts.corpus} --task classify --out {run_dir} --resume"
        raise TrainingInterrupted(f"{stop.saved} (pre-training)", stop.signum, resume=resume) from None
    explicit = explicit | {"init_from"}
    return replace(opts, init_from=str(lm_dir), resume=False), explicit


def language_model_options(opts: TrainOptions, lm_dir: Path, *, resume: bool) -> tuple[TrainOptions, frozenset]:
    """The pre-training run's options: the classifier's tokens, vocabulary rules, cell and width (the
    sentence recipe's when not given: the encoder the classifier keeps), one text per line, PRETRAIN_SHARE of
    the budget; the recipe of word language models for the rest."""
    embed = 0 if opts.tokens == "char" else opts.embed or SENTENCE_MODEL["embed"]
    lm = TrainOptions(corpus=str(lm_dir / "texts.txt"), out=str(lm_dir), task="lm", tokens=opts.tokens,
                      lowercase=opts.lowercase, eos="lines", min_count=opts.min_count, max_vocab=opts.max_vocab,
                      cell=opts.cell, hidden=opts.hidden or SENTENCE_RECIPE["hidden"],
                      layers=opts.layers or SENTENCE_RECIPE["layers"], embed=embed,
                      time_budget=PRETRAIN_SHARE * opts.time_budget if opts.time_budget else None,
                      seed=opts.seed, threads=opts.threads, dtype=opts.dtype, resume=resume, keep=opts.keep)
    budget = {"time_budget"} if opts.time_budget else set()  # a resume given no --time keeps the saved one
    given = {"tokens", "lowercase", "eos", "min_count", "max_vocab", "cell", "hidden", "layers", "embed",
             "seed", "dtype", "keep"} | budget | ({"threads"} if opts.threads else set())
    return lm, frozenset(given if not resume else {"resume"} | budget)


def _write_texts(opts: TrainOptions, path: Path) -> None:
    """The labelled file's texts, one per line (what the language model reads)."""
    found = read_labelled(opts.corpus, opts.encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(text + "\n" for text in found.texts).encode("utf-8"))
