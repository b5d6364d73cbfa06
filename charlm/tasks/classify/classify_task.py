"""Training a classifier (`--task classify`): the document trainer (`charlm.training.tagging.TaggerTrainer`)
over labelled texts, one label per text, the best checkpoint chosen by validation macro-F1.

Why macro-F1: labelled data is usually skewed (the surnames corpus has 9,408 Russian names and 72 Vietnamese),
and the validation loss and accuracy both improve by getting the large labels right while the small ones are
still guessed; macro-F1 weighs every label alike, so the kept model is the one that serves them all best.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import ConfigError
from charlm.inference.classify import Classifier, classify_texts, evaluate_texts
from charlm.models import classifier
from charlm.text.batching import DocumentBatcher
from charlm.text.classify import read_labelled, stratified_split
from charlm.text.corpus import file_sha256
from charlm.text.tokenizer import Vocab
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.tagging import DocumentBatches, TaggerTrainer

# Labels named at most this many times in the warning about labels seen once.
SINGLES_SHOWN = 5


@dataclass(frozen=True)
class LabelledSplit:
    """Texts and their label ids, of one part of the data."""

    texts: list[str]
    y: np.ndarray


@dataclass(frozen=True)
class ClassifyData:
    """- labels: the label names (index = id); vocab: the characters the classifier reads
    - train_docs, val_docs: the parts (val_docs None without validation)
    - weights: per label, the loss weight (inverse frequency with --balance, else None)"""

    labels: tuple[str, ...]
    vocab: Vocab
    train_docs: LabelledSplit
    val_docs: LabelledSplit | None
    weights: np.ndarray | None
    sha256: str


def load_classify_data(opts: TrainOptions, base, report) -> ClassifyData:
    """Read the labelled file, warn about labels seen once, split it (stratified, or --val-file), cut texts at
    --max-len, and build the vocabulary (a base checkpoint's when fine-tuning or resuming)."""
    found = read_labelled(opts.corpus, opts.encoding)
    if found.fasttext:
        report(events.Log(f"{opts.corpus}: fastText format (__label__name text), from its first line"))
    counts = Counter(found.labels)
    singles = [(label, line) for label, line in zip(found.labels, found.lines, strict=True) if counts[label] == 1]
    if singles:
        named = ", ".join(f"{label!r} ({opts.corpus}:{line})" for label, line in singles[:SINGLES_SHOWN])
        more = f" and {len(singles) - SINGLES_SHOWN} more" if len(singles) > SINGLES_SHOWN else ""
        report(events.Warning(f"{len(singles)} label(s) occur once, too rare to validate or learn well: "
                              f"{named}{more}"))
    labels = tuple(base.data["classify"]["labels"]) if base else tuple(sorted(counts))
    if len(labels) < 2:
        raise ConfigError(f"{opts.corpus}: every example has the label {labels[0]!r}; a classifier needs two "
                          f"labels at least")
    ids = {name: i for i, name in enumerate(labels)}
    unknown = [(label, line) for label, line in zip(found.labels, found.lines, strict=True) if label not in ids]
    if unknown:
        raise ConfigError(f"{opts.corpus}:{unknown[0][1]}: label {unknown[0][0]!r} is not one the checkpoint knows")
    y = np.array([ids[name] for name in found.labels])
    texts = [t[:opts.max_len] for t in found.texts]
    cut = sum(len(t) > opts.max_len for t in found.texts)
    if opts.val_file:
        held = read_labelled(opts.val_file, opts.encoding)
        strange = [(label, line) for label, line in zip(held.labels, held.lines, strict=True) if label not in ids]
        if strange:
            raise ConfigError(f"{opts.val_file}:{strange[0][1]}: label {strange[0][0]!r} does not occur in "
                              f"{opts.corpus}")
        train = LabelledSplit(texts, y)
        val = LabelledSplit([t[:opts.max_len] for t in held.texts], np.array([ids[n] for n in held.labels]))
    elif opts.val_fraction > 0:
        train_rows, val_rows = stratified_split(y, opts.val_fraction, opts.seed)
        train = LabelledSplit([texts[i] for i in train_rows], y[train_rows])
        val = LabelledSplit([texts[i] for i in val_rows], y[val_rows]) if len(val_rows) else None
    else:
        train, val = LabelledSplit(texts, y), None
    if cut:
        report(events.Warning(f"{cut:,} of {len(texts):,} texts are longer than --max-len {opts.max_len} "
                              f"characters and were cut there"))
    vocab = base.vocab if base else Vocab.build(Counter(c for t in train.texts for c in t),
                                                min_count=opts.min_count, max_vocab=opts.max_vocab)
    weights = None
    if opts.balance:
        per_label = np.bincount(train.y, minlength=len(labels)).astype(np.float64)
        weights = len(train.y) / (len(labels) * np.maximum(per_label, 1))  # 1 for a label of average size
    return ClassifyData(labels, vocab, train, val, weights, file_sha256(opts.corpus))


class ClassifierTrainer(TaggerTrainer):
    """A classifier's run; the best checkpoint is the one with the best validation macro-F1."""

    model = classifier
    meta_key = "classify"

    @staticmethod
    def load_data(opts: TrainOptions, base, report) -> ClassifyData:
        return load_classify_data(opts, base, report)

    def new_config(self, opts: TrainOptions, data: ClassifyData):
        return opts.model_config(data.vocab.size, (len(data.labels),))

    def new_batches(self, data: ClassifyData):
        inputs = [data.vocab.encode(t) for t in data.train_docs.texts]
        lengths = np.array([max(len(t), 1) for t in data.train_docs.texts])
        y, label_weights = data.train_docs.y, data.weights

        def targets(rows, lengths):  # labels (B,), lengths (B,), loss weights (B,) or None
            return y[rows], lengths, None if label_weights is None else label_weights[y[rows]]

        return DocumentBatches(DocumentBatcher(lengths, self.opts.batch, self.opts.seed), inputs, targets)

    def loss_and_grads(self, x, y):
        labels, lengths, weights = y
        return classifier.loss_and_grads(self.params, self.cfg, x, labels, lengths, weights=weights, rng=self.rng,
                                         workspace=self.workspace)

    def _as_classifier(self, params) -> Classifier:
        return Classifier(params, self.cfg, self.vocab, self.data.labels, self.opts.max_len)

    def score(self, params) -> dict:
        val = self.data.val_docs
        found = evaluate_texts(self._as_classifier(params), val.texts, [self.data.labels[i] for i in val.y])
        self.last_accuracy = found["accuracy"]
        return found

    def improves(self, loss: float, f1: float) -> bool:
        """By macro-F1 (see the module docstring); an equal F1 with a lower loss also counts."""
        if self.best_f1 is None:
            return True
        return f1 > self.best_f1 or (f1 == self.best_f1 and loss < self.best_val)

    def data_meta(self) -> dict:
        return {"eos_mode": "lines", "encoding": self.opts.encoding, "min_count": self.opts.min_count,
                "max_vocab": self.opts.max_vocab, "corpus_name": Path(self.opts.corpus).name,
                "corpus_sha256": self.data.sha256, "corpus_chars": sum(len(t) for t in self.data.train_docs.texts),
                "classify": {"task": "classify", "labels": list(self.data.labels), "pool": self.opts.pool,
                             "max_len": self.opts.max_len, "balance": self.opts.balance}}

    def _show_sample(self) -> None:
        part = self.data.val_docs or self.data.train_docs
        i = self.step % len(part.texts)
        [found] = classify_texts(self._as_classifier(self.params), [part.texts[i]], top_k=1)
        self.report(events.Sample(step=self.step, text=f"{found['text']!r} -> {found['label']} "
                                                       f"({found['probability']:.2f}; true: "
                                                       f"{self.data.labels[part.y[i]]})"))
