"""What the document tasks (taggers and classifiers) share: batches of whole documents of similar lengths
instead of carried streams, their options, and how a run finds the data and checkpoint it starts from."""

from abc import abstractmethod
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np

from charlm.errors import ConfigError
from charlm.models.encoder import copy_encoder
from charlm.text.batching import DocumentBatcher, pad_documents
from charlm.text.cache import texts_vocab
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.start import (
    check_same_corpus,
    is_pretrained_encoder,
    keep_checkpoint_model,
    starting_point,
    with_recipe,
)
from charlm.training.task import Scores, Task

# Below this many training examples of a label, a run warns that the data is too small to learn from.
MIN_EXAMPLES_PER_LABEL = 10
FEW_SHOWN = 3


class DocumentBatches:
    """A `DocumentBatcher`'s batches as the loop takes them: `next_batch()` -> (x (T, B), targets), where
    `targets(rows, lengths)` builds what the model learns for the batch's documents (rows) of those lengths."""

    def __init__(self, batcher: DocumentBatcher, inputs, targets):
        self.batcher, self.inputs, self.targets = batcher, inputs, targets

    @property
    def batches_per_epoch(self) -> int:
        return self.batcher.batches_per_epoch

    @property
    def new_epoch(self) -> bool:
        return self.batcher.new_epoch

    @property
    def cursor(self) -> dict:
        return self.batcher.cursor

    def next_batch(self):
        rows = self.batcher.next_batch()
        x, lengths = pad_documents([self.inputs[i] for i in rows])
        return x, self.targets(rows, lengths)


class DocumentTask(Task):
    """A task over whole documents: `open` loads the data with the subclass's `load_data(opts, base, report)`
    (its `.vocab`, `.sha256` and `.val_docs`, None without validation), and the batches come from
    `documents()` -> (input ids per document, lengths (N,), targets(rows, lengths)).

    Class attributes of a subclass: `meta_key`, the checkpoint's `data` entry that says what the model does
    (a checkpoint to resume or fine-tune must have it, for the same --task); `refused` (the Task's)."""

    unit = "label"
    meta_key = ""
    token_kinds = ("char",)  # what the task's documents may be read as (--tokens)

    def __init__(self, opts: TrainOptions, data, *, base=None, resume: bool = False, report=None, encoder=None):
        """encoder: a language model's checkpoint whose embedding and recurrent layers start a new model
        (--init-from a language model), or None."""
        self.opts, self.data, self.base, self.resume = opts, data, base, resume
        self.report = report or (lambda event: None)
        self.vocab = data.vocab
        self.encoder = encoder

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        cls.refuse_given(opts, explicit)
        if opts.tokens not in cls.token_kinds:
            raise ConfigError(f"--task {opts.task} reads {' or '.join(cls.token_kinds)} tokens, not --tokens "
                              f"{opts.tokens}")
        if opts.tie:
            raise ConfigError("--tie shares the embedding with a language model's output layer; a tagger has none")
        if opts.max_len < 1:
            raise ConfigError(f"--max-len must be at least 1, got {opts.max_len}")

    @classmethod
    def open(cls, opts: TrainOptions, run_dir, *, explicit: frozenset, report) -> "DocumentTask":
        opts, base, resume = starting_point(opts, run_dir, explicit=explicit, report=report)
        encoder = None
        if base is not None and not resume and is_pretrained_encoder(base, opts):
            encoder, base = base, None
            opts = keep_checkpoint_model(encoder, opts, explicit)
            cls.check_options(opts, explicit)
            if opts.bidirectional and opts.layers > 1:
                raise ConfigError(f"--init-from {encoder.path} has {opts.layers} layers, each reading "
                                  f"{opts.hidden} features from the one below; bidirectional layers give twice "
                                  f"that: leave out --bidirectional or pre-train one layer")
        if base is not None:
            meta = base.data.get(cls.meta_key)
            if not meta or meta.get("task") != opts.task:
                raise ConfigError(f"{base.path} is not a --task {opts.task} model or a language model; start a "
                                  f"new run")
        opts, chosen = cls.own_defaults(opts, explicit, fresh=base is None)
        opts, recipe = with_recipe(opts, None)
        data = cls.load_data(opts, base, report, vocab=encoder.vocab if encoder else None)
        if resume:
            check_same_corpus(base, data.sha256, opts, run_dir)
        if recipe is not None:
            report(replace(recipe, reasons=(*recipe.reasons, *chosen)))
        return cls(opts, data, base=base, resume=resume, report=report, encoder=encoder)

    @classmethod
    def own_defaults(cls, opts: TrainOptions, explicit: frozenset, *, fresh: bool
                     ) -> tuple[TrainOptions, tuple[str, ...]]:
        """The task's own choices among the options the user left open, beyond the recipe's, and one reason
        line for each (`fresh`: a new model, not one resumed or fine-tuned). By default none."""
        return opts, ()

    def rates(self, params: dict) -> dict | None:
        """With a pre-trained encoder and --encoder-lr: that multiple of the rate for the arrays it gave."""
        if self.encoder is None or self.opts.encoder_lr in (None, 1.0):
            return None
        return {name: self.opts.encoder_lr for name in params if name in self.encoder.params}

    def init_params(self, cfg, rng) -> dict:
        """A new model's parameters; with a pre-trained encoder, its embedding and recurrent layers copied in."""
        params = super().init_params(cfg, rng)
        if self.encoder is not None:
            copied = copy_encoder(params, self.encoder.params, str(self.encoder.path))
            self.report(events.Log(f"encoder from {self.encoder.path}: {len(copied)} arrays copied"))
        return params

    @staticmethod
    @abstractmethod
    def load_data(opts: TrainOptions, base, report, *, vocab=None):
        """The task's data: an object with `vocab` (`vocab` when given: a pre-trained encoder's), `sha256` (of
        the training file) and `val_docs` (None without validation)."""

    @abstractmethod
    def documents(self):
        """-> (input ids per training document, their lengths (N,), targets(rows, lengths))"""

    @cached_property
    def _encoded(self):
        """The training documents encoded once, for the batches from the start and from a cursor alike."""
        return self.documents()

    def batches(self) -> DocumentBatches:
        inputs, lengths, targets = self._encoded
        return DocumentBatches(DocumentBatcher(lengths, self.opts.batch, self.opts.seed), inputs, targets)

    def restore_batches(self, cursor: dict) -> DocumentBatches:
        inputs, lengths, targets = self._encoded
        return DocumentBatches(DocumentBatcher.restore(lengths, self.opts.batch, self.opts.seed, cursor), inputs,
                               targets)

    @property
    def has_validation(self) -> bool:
        return self.data.val_docs is not None

    def improves(self, scores: Scores, best: Scores | None) -> bool:
        """By F1 (a classifier's macro-F1, a tagger's headline F1): the figure a user reads, which a lower
        loss can worsen when the model grows surer of its mistakes; an equal F1 with a lower loss also counts.
        A task whose evaluations have no F1 keeps the lower loss."""
        if scores.f1 is None:
            return super().improves(scores, best)
        if best is None or best.f1 is None:
            return True
        return scores.f1 > best.f1 or (scores.f1 == best.f1 and scores.loss < best.loss)

    def common_meta(self, corpus_chars: int, eos_mode: str) -> dict:
        """The `data` metadata every task records about its training file."""
        o = self.opts
        meta = {"eos_mode": eos_mode, "encoding": o.encoding, "min_count": o.min_count, "max_vocab": o.max_vocab,
                "corpus_name": Path(o.corpus).name, "corpus_sha256": self.data.sha256, "corpus_chars": corpus_chars}
        if self.encoder is not None:
            meta["encoder_from"] = str(self.encoder.path)
        return meta


def padded_lengths(documents) -> np.ndarray:
    """Lengths (N,) of documents (texts or their ids) as batches pad them (an empty one is one step long)."""
    return np.array([max(len(d), 1) for d in documents])


def report_cut(report, cut: int, total: int, max_len: int, noun: str) -> None:
    """One warning counting the `noun`s (documents, texts) cut at --max-len, when any were."""
    if cut:
        report(events.Warning(f"{cut:,} of {total:,} {noun} are longer than --max-len {max_len} characters and "
                              f"were cut there"))


def report_few_examples(report, counts: dict[str, int], *, corpus: str, noun: str) -> None:
    """One warning when a label has fewer than MIN_EXAMPLES_PER_LABEL training `noun`s (counts: label -> how
    many): a model cannot learn a label from a handful of examples, it memorises them, and its validation loss
    climbs while its training loss falls."""
    few = sorted((n, label) for label, n in counts.items() if n < MIN_EXAMPLES_PER_LABEL)
    if few:
        fewest = ", ".join(f"{label!r} {n}" for n, label in few[:FEW_SHOWN])
        report(events.Warning(
            f"{corpus}: {len(few)} of {len(counts)} labels have fewer than {MIN_EXAMPLES_PER_LABEL} training "
            f"{noun} (fewest: {fewest}); too few to learn from: expect the validation loss to climb as the model "
            f"memorises them. More labelled {noun} help most"))


def documents_vocab(texts, opts: TrainOptions, base, vocab=None):
    """The tokens a document task reads: a base checkpoint's vocabulary when fine-tuning or resuming, `vocab`
    when given (a pre-trained encoder's), else those of the training texts (--tokens, --lowercase,
    --min-count, --max-vocab)."""
    if base:
        return base.vocab
    if vocab is not None:
        return vocab
    return texts_vocab(opts.tokens, texts, min_count=opts.min_count, max_vocab=opts.max_vocab,
                       lowercase=opts.lowercase)
