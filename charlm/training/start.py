"""What a training run starts from: the options in force, the model to start from and the text to train on."""

from dataclasses import dataclass, replace

import numpy as np

from charlm.errors import CharlmError, ConfigError
from charlm.store.checkpoint import Checkpoint, load_checkpoint
from charlm.store.rundir import RunDir
from charlm.text.batching import split_train_val
from charlm.text.cache import Corpus, prepare_corpus
from charlm.text.tokenizer import EOS
from charlm.training import events
from charlm.training.options import (
    MODEL_OPTIONS,
    TrainOptions,
    check_options,
    merge_resumed_options,
    refuse_changes,
)
from charlm.training.recipe import CorpusStats, apply_recipe, needs_speed
from charlm.training.speed import measure_recipe_speed


@dataclass(frozen=True)
class RunInputs:
    """- opts: the options in force (a resume's are the run's saved ones, overridden by those given now)
    - corpus: the prepared training corpus; train_ids (N,) and val_ids (M,) or None: its split
    - val_chars: characters of the original text that val_ids[1:] stand for (for bits/char; equal to M - 1
      for characters, estimated for the <UNK>s of a word split: see `held_out_chars`)
    - base: the checkpoint whose model and vocabulary to start from, or None for a new model
    - resume: continue base's run exactly (optimiser, batcher, RNG, counters) rather than fine-tune it
    """

    opts: TrainOptions
    corpus: Corpus
    train_ids: np.ndarray
    val_ids: np.ndarray | None
    val_chars: float | None
    base: Checkpoint | None
    resume: bool


def load_inputs(opts: TrainOptions, run_dir: RunDir, *, explicit: frozenset, report) -> RunInputs:
    """Load the run to resume (opts.resume) or the checkpoint to fine-tune (opts.init_from), then the corpus
    and its training/validation split. `explicit` as for `train`; `report(event)` gets warnings and notes."""
    resume_from = None
    if opts.resume:
        resume_from = load_checkpoint(run_dir.path, prefer="latest", warn=lambda m: report(events.Warning(m)))
        opts = merge_resumed_options(resume_from, opts, explicit)
    elif run_dir.checkpoints():
        raise CharlmError(f"{run_dir.path} already holds checkpoints; add --resume to continue that "
                          f"run or choose another --out")
    init_from = load_checkpoint(opts.init_from) if opts.init_from and not resume_from else None
    if init_from:
        refuse_changes(init_from, opts, explicit, what="--init-from checkpoint", keys=MODEL_OPTIONS)
        opts = _tokens_of(init_from, opts, explicit)
    base = resume_from or init_from

    corpus = prepare_corpus(opts.corpus, tokens=opts.tokens, lowercase=opts.lowercase, eos_mode=opts.eos,
                            encoding=opts.encoding, min_count=opts.min_count, max_vocab=opts.max_vocab,
                            vocab=base.vocab if base else None)
    unit = "characters" if corpus.vocab.kind == "char" else "tokens"
    if resume_from and resume_from.data.get("corpus_sha256") != corpus.sha256:
        raise CharlmError(f"{opts.corpus} is not the corpus this run was trained on (content differs); "
                          f"to train this checkpoint on new text use --init-from {run_dir.path} with a "
                          f"new --out")
    if init_from:
        report(events.Log(f"fine-tuning from {init_from.path}: {corpus.n_unk:,} of {len(corpus.ids) - 1:,} "
                          f"{unit} of the new corpus map to <UNK>"))
    if corpus.vocab.size <= 3:
        report(events.Warning(f"the corpus has only one distinct {unit[:-1]}"))

    if opts.val_file:
        val = prepare_corpus(opts.val_file, eos_mode=opts.eos, encoding=opts.encoding, vocab=corpus.vocab)
        train_ids, val_ids = corpus.ids, val.ids
        val_chars = val.n_chars + val.n_docs  # exact: each document's characters and its end
    else:
        train_ids, val_ids = split_train_val(corpus, opts.val_fraction, opts.seed)
        val_chars = held_out_chars(corpus, val_ids) if val_ids is not None else None
    if val_ids is not None and len(val_ids) < 2:
        val_ids = val_chars = None
    if val_ids is None and (opts.val_fraction > 0 or opts.val_file):
        report(events.Warning("the validation split is empty; validation is off"))
    documents = 1 if opts.eos == "file" else max(1, int(np.count_nonzero(train_ids == EOS)))
    stats = CorpusStats(tokens=len(train_ids), documents=documents, vocab=corpus.vocab.size,
                        kind=corpus.vocab.kind)
    opts, recipe = with_recipe(opts, stats)
    if recipe is not None:
        report(recipe)
    return RunInputs(opts, corpus, train_ids, val_ids, val_chars, base, resume_from is not None)


def with_recipe(opts: TrainOptions, stats: CorpusStats | None) -> tuple[TrainOptions, events.Recipe | None]:
    """The options with those left unset filled by the recipe (`charlm.training.recipe`), checked, and the
    event that gives the recipe's account (None when the user set them all), for the caller to report once
    its data has loaded. The machine's speed is measured first when the recipe sizes the model by it."""
    speed = measure_recipe_speed(opts, stats) if stats is not None and needs_speed(opts) else None
    opts, recipe = apply_recipe(opts, stats, speed)
    check_options(opts)
    if recipe is None:
        return opts, None
    return opts, events.Recipe(summary=recipe.summary, reasons=recipe.reasons, choices=recipe.choices)


def held_out_chars(corpus: Corpus, val_ids: np.ndarray) -> float:
    """Characters of the original text that a held-out part of `corpus` stands for (val_ids[1:]).

    Exact for characters and for every word-mode token but `<UNK>`, whose text the ids no longer hold: each
    counts as the mean length of the corpus's out-of-vocabulary text.
    """
    unk_length = corpus.unk_chars / corpus.n_unk if corpus.n_unk else 1.0
    return corpus.vocab.char_count(val_ids, unk_length=unk_length)


def _tokens_of(init_from: Checkpoint, opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """A fine-tune keeps the checkpoint's vocabulary, so also its tokenizer kind: asking for another is an
    error, not a silent switch. It keeps the model too (a different one given explicitly was refused), so the
    options say the width and depth it trains, and the recipe fills only the rest."""
    kind = init_from.vocab.kind
    if "tokens" in explicit and opts.tokens != kind:
        raise ConfigError(f"--init-from {init_from.path} is a {kind}-level model; it cannot be fine-tuned with "
                          f"--tokens {opts.tokens} (its vocabulary is kept)")
    model = init_from.config
    return replace(opts, tokens=kind, lowercase=init_from.vocab.lowercase, hidden=model.hidden,
                   layers=model.layers, embed=model.embed, cell=model.cell)
