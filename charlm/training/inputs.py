"""What a training run starts from: the options in force, the model to start from and the text to train on."""

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError
from charlm.store.checkpoint import Checkpoint, load_checkpoint
from charlm.store.rundir import RunDir
from charlm.text.batching import split_train_val
from charlm.text.cache import Corpus, prepare_corpus
from charlm.training import events
from charlm.training.options import MODEL_OPTIONS, TrainOptions, merge_resumed_options, refuse_changes


@dataclass(frozen=True)
class RunInputs:
    """- opts: the options in force (a resume's are the run's saved ones, overridden by those given now)
    - corpus: the prepared training corpus; train_ids (N,) and val_ids (M,) or None: its split
    - base: the checkpoint whose model and vocabulary to start from, or None for a new model
    - resume: continue base's run exactly (optimiser, batcher, RNG, counters) rather than fine-tune it
    """

    opts: TrainOptions
    corpus: Corpus
    train_ids: np.ndarray
    val_ids: np.ndarray | None
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
    base = resume_from or init_from

    corpus = prepare_corpus(opts.corpus, eos_mode=opts.eos, encoding=opts.encoding, min_count=opts.min_count,
                            max_vocab=opts.max_vocab, vocab=base.vocab if base else None)
    if resume_from and resume_from.data.get("corpus_sha256") != corpus.sha256:
        raise CharlmError(f"{opts.corpus} is not the corpus this run was trained on (content differs); "
                          f"to train this checkpoint on new text use --init-from {run_dir.path} with a "
                          f"new --out")
    if init_from:
        report(events.Log(f"fine-tuning from {init_from.path}: {corpus.n_unk:,} of {corpus.n_chars:,} "
                          f"characters of the new corpus map to <UNK>"))
    if corpus.vocab.size <= 3:
        report(events.Warning("the corpus has only one distinct character"))

    if opts.val_file:
        val = prepare_corpus(opts.val_file, eos_mode=opts.eos, encoding=opts.encoding, vocab=corpus.vocab)
        train_ids, val_ids = corpus.ids, val.ids
    else:
        train_ids, val_ids = split_train_val(corpus, opts.val_fraction, opts.seed)
    if val_ids is not None and len(val_ids) < 2:
        val_ids = None
    if val_ids is None and (opts.val_fraction > 0 or opts.val_file):
        report(events.Warning("the validation split is empty; validation is off"))
    return RunInputs(opts, corpus, train_ids, val_ids, base, resume_from is not None)
