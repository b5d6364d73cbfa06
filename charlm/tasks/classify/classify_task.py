"""Training a classifier (`--task classify`): batches of whole labelled texts of similar length, one label per
text, the best checkpoint chosen by validation macro-F1.

Why macro-F1: labelled data is usually skewed (the surnames corpus has 9,408 Russian names and 72 Vietnamese),
and the validation loss and accuracy both improve by getting the large labels right while the small ones are
still guessed; macro-F1 weighs every label alike, so the kept model is the one that serves them all best.
"""

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from charlm.errors import ConfigError
from charlm.models import classifier
from charlm.models.config import POOLS
from charlm.tasks.classify.classifier_inference import Classifier, classify_texts, evaluate_texts
from charlm.tasks.classify.labelled_text import read_labelled, stratified_split
from charlm.tasks.documents import DocumentTask, documents_vocab, padded_lengths, report_cut, report_few_examples
from charlm.text.corpus import file_sha256
from charlm.text.tokenizer import Vocab
from charlm.text.vocab import KINDS, UNK
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import SENTENCE_MODEL
from charlm.training.task import Scores

# Labels named at most this many times in the warning about labels seen once.
SINGLES_SHOWN = 5
# Options that do not apply to a classifier (a tagger's, a language model's and an encoder–decoder's own).
NOT_FOR_CLASSIFIERS = ("eos", "marks", "seq_len", "tie", "sample_every", "eval_streams",
                       "eval_chars", "source_tokens", "target_tokens", "attention")


@dataclass(frozen=True)
class LabelledSplit:
    """Texts and their label ids, of one part of the data."""

    texts: list[str]
    y: np.ndarray


@dataclass(frozen=True)
class ClassifyData:
    """- labels: the label names (index = id); vocab: the tokens the classifier reads (--tokens)
    - train_docs, val_docs: the parts (val_docs None without validation)
    - weights: per label, the loss weight (inverse frequency with --balance, else None)"""

    labels: tuple[str, ...]
    vocab: Vocab
    train_docs: LabelledSplit
    val_docs: LabelledSplit | None
    weights: np.ndarray | None
    sha256: str


def load_classify_data(opts: TrainOptions, base, report, vocab=None) -> ClassifyData:
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
    report_cut(report, cut, len(texts), opts.max_len, "texts")
    per_label = np.bincount(train.y, minlength=len(labels))
    report_few_examples(report, dict(zip(labels, per_label.tolist(), strict=True)), corpus=opts.corpus,
                        noun="texts")
    vocab = documents_vocab(train.texts, opts, base, vocab)
    weights = None
    if opts.balance:
        # 1 for a label of average size
        weights = len(train.y) / (len(labels) * np.maximum(per_label.astype(np.float64), 1))
    return ClassifyData(labels, vocab, train, val, weights, file_sha256(opts.corpus))


class ClassifierTask(DocumentTask):
    """A classifier's run (`charlm.training.task.Task`); the best checkpoint has the best validation macro-F1."""

    kind = "classifier"
    meta_key = "classify"
    token_kinds = KINDS
    refused = NOT_FOR_CLASSIFIERS

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        super().check_options(opts, explicit)
        if opts.pool not in POOLS:
            raise ConfigError(f"--pool must be one of {', '.join(POOLS)}, got {opts.pool!r}")

    @classmethod
    def own_defaults(cls, opts: TrainOptions, explicit: frozenset, *, fresh: bool
                     ) -> tuple[TrainOptions, tuple[str, ...]]:
        """A classifier of words or symbols (sentences): SENTENCE_MODEL's table, directions and pooling where
        the user left them open; of characters, nothing beyond the recipe."""
        if opts.tokens == "char":
            return opts, ()
        model, reasons = SENTENCE_MODEL, []
        if opts.embed is None:
            opts = replace(opts, embed=model["embed"])
            reasons.append(f"--embed {model['embed']}: a learned table (one-hot rows of every gate would cost "
                           f"the optimiser vocabulary x gates updates a step)")
        if fresh and "bidirectional" not in explicit and opts.layers in (None, 1):
            opts = replace(opts, bidirectional=model["bidirectional"])
            reasons.append("--bidirectional: every state knows the words on both sides (\"not\" before, \"at "
                           "all\" after)")
        if fresh and "pool" not in explicit:
            opts = replace(opts, pool=model["pool"])
            reasons.append(f"--pool {model['pool']}: a phrase anywhere in the text can decide its label")
        return opts, tuple(reasons)

    @staticmethod
    def load_data(opts: TrainOptions, base, report, *, vocab=None) -> ClassifyData:
        return load_classify_data(opts, base, report, vocab)

    def model_config(self):
        return self.opts.model_config(self.vocab.size, (len(self.data.labels),), pool=self.opts.pool)

    def documents(self):
        train = self.data.train_docs
        inputs = [self.vocab.encode(t) for t in train.texts]
        y, label_weights = train.y, self.data.weights

        def targets(rows, lengths):  # labels (B,), lengths (B,), loss weights (B,) or None
            return y[rows], lengths, None if label_weights is None else label_weights[y[rows]]

        return inputs, padded_lengths(inputs), targets

    def loss_and_grads(self, params, cfg, x, y, state, *, rng, workspace):
        labels, lengths, weights = y
        if self.opts.token_dropout:
            # Each token read as <UNK> at this rate: the classifier cannot lean on a few words it has memorised
            # (the word dropout of Iyyer et al. 2015); padding past a text's length is never read.
            x = np.where(rng.random(x.shape) < self.opts.token_dropout, UNK, x)
        loss, grads = classifier.loss_and_grads(params, cfg, x, labels, lengths, weights=weights, rng=rng,
                                                workspace=workspace)
        return loss, grads, state

    def _as_classifier(self, params, cfg) -> Classifier:
        return Classifier(params, cfg, self.vocab, self.data.labels, self.opts.max_len)

    def evaluate(self, params, cfg) -> Scores:
        """Loss, macro-F1 and accuracy over every held-out text."""
        val = self.data.val_docs
        found = evaluate_texts(self._as_classifier(params, cfg), val.texts, [self.data.labels[i] for i in val.y])
        return Scores(found["loss"], f1=found["f1"], accuracy=found["accuracy"])

    def data_meta(self) -> dict:
        o = self.opts
        return {**self.common_meta(sum(len(t) for t in self.data.train_docs.texts), "lines"),
                "classify": {"task": "classify", "labels": list(self.data.labels), "pool": o.pool,
                             "max_len": o.max_len, "balance": o.balance}}

    def sample(self, params, cfg, step: int) -> str:
        part = self.data.val_docs or self.data.train_docs
        i = step % len(part.texts)
        [found] = classify_texts(self._as_classifier(params, cfg), [part.texts[i]], top_k=1)
        return (f"{found['text']!r} -> {found['label']} ({found['probability']:.2f}; true: "
                f"{self.data.labels[part.y[i]]})")
