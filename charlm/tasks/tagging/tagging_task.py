"""Training a tagger (`--task truecase|punctuate|truecase+punctuate|tag`): batches of whole documents of
similar length, one label per character and head, the tagger's loss and F1 on held-out documents; the best
checkpoint is the one with the highest validation F1 (`DocumentTask.improves`).
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError, ConfigError
from charlm.models import tagger
from charlm.tasks.documents import DocumentTask, documents_vocab, report_cut, report_few_examples
from charlm.tasks.tagging.tagged_text import (
    NO_LABEL,
    Head,
    TaggedDoc,
    check_task,
    make_doc,
    read_conll,
    tag_doc,
    task_heads,
)
from charlm.tasks.tagging.tagger_inference import evaluate_docs, tag_docs
from charlm.text.batching import held_out_mask
from charlm.text.corpus import file_sha256, read_text, split_documents
from charlm.text.tokenizer import Vocab
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.task import Scores

# Options that do not apply to a tagger (the classifier's own, a language model's streams' and an
# encoder–decoder's).
NOT_FOR_TAGGERS = ("token_dropout", "pool", "balance", "seq_len", "tie", "eval_streams", "eval_chars", "source_tokens",
                   "target_tokens", "attention")


@dataclass(frozen=True)
class TaggingData:
    """- heads: what the tagger labels; vocab: the characters it reads
    - train_docs, val_docs: tagged documents (val_docs None without validation)
    - sha256: of the training file"""

    heads: tuple[Head, ...]
    vocab: Vocab
    train_docs: list[TaggedDoc]
    val_docs: list[TaggedDoc] | None
    sha256: str


def tagging_meta(opts: TrainOptions, heads) -> dict:
    """What a tagger checkpoint says about its task (its `data["tagging"]`)."""
    return {"task": opts.task, "heads": [h.to_dict() for h in heads], "marks": opts.marks, "max_len": opts.max_len}


def heads_of(data: dict) -> tuple[Head, ...]:
    """The heads a tagger checkpoint's `data` describes."""
    return tuple(Head(h["name"], tuple(h["labels"])) for h in data["tagging"]["heads"])


def _docs(path, opts: TrainOptions, label_ids=None) -> tuple[list[TaggedDoc], list]:
    """Tagged documents of a file for the task, and for `tag` the sentences' labels."""
    if opts.task == "tag":
        sentences = read_conll(path, opts.encoding)
        if label_ids is None:
            return sentences, sentences
        unknown = sorted({lab for s in sentences for lab in s.labels} - set(label_ids))
        if unknown:
            first = next(s for s in sentences if set(s.labels) & set(unknown))
            raise ConfigError(f"{path}:{first.line}: labels the training data does not have: "
                              f"{', '.join(unknown)}")
        return [tag_doc(s.tokens, s.labels, label_ids) for s in sentences], sentences
    documents = [d for d in split_documents(read_text(path, opts.encoding), opts.eos) if d.strip()]
    if not documents:
        raise CharlmError(f"{path}: no documents with text in it (--eos {opts.eos})")
    return [make_doc(opts.task, d, opts.marks) for d in documents], documents


def _cut(docs: list[TaggedDoc], max_len: int) -> tuple[list[TaggedDoc], int]:
    cut = [d for d in docs if len(d.text) > max_len]
    if not cut:
        return docs, 0
    return [TaggedDoc(d.text[:max_len], tuple(y[:max_len] for y in d.labels), d.tokens) if len(d.text) > max_len
            else d for d in docs], len(cut)


def load_tagging_data(opts: TrainOptions, base, report, vocab=None) -> TaggingData:
    """The task's heads, vocabulary and training / validation documents (cut at --max-len, with one warning
    counting the cut ones); a base checkpoint's vocabulary and heads when fine-tuning or resuming."""
    if opts.task == "tag":
        sentences, _ = _docs(opts.corpus, opts)
        if base:
            tag_labels = heads_of(base.data)[0].labels
        else:
            counts = Counter(lab for s in sentences for lab in s.labels)
            tag_labels = tuple(sorted(counts, key=lambda lab: (lab != "O", lab)))
        heads = task_heads("tag", tag_labels=tag_labels)
        if len(tag_labels) < 2:
            raise ConfigError(f"{opts.corpus}: every token has the label {tag_labels[0]!r}; a tagger needs two "
                              f"labels at least")
        label_ids = {lab: i for i, lab in enumerate(tag_labels)}
        docs, _ = _docs(opts.corpus, opts, label_ids)
    else:
        heads = task_heads(opts.task, opts.marks)
        docs, _ = _docs(opts.corpus, opts)
        label_ids = None
    if opts.val_file:
        train_docs, (val_docs, _) = docs, _docs(opts.val_file, opts, label_ids)
    elif opts.val_fraction > 0 and len(docs) >= 2:
        held = held_out_mask(len(docs), opts.val_fraction, opts.seed)
        train_docs = [d for d, h in zip(docs, held, strict=True) if not h]
        val_docs = [d for d, h in zip(docs, held, strict=True) if h]
    else:
        if opts.val_fraction > 0:
            report(events.Warning("one document cannot be split for validation; validation is off"))
        train_docs, val_docs = docs, None
    train_docs, cut = _cut(train_docs, opts.max_len)
    if val_docs is not None:
        val_docs, val_cut = _cut(val_docs, opts.max_len)
        cut += val_cut
    report_cut(report, cut, len(train_docs) + len(val_docs or []), opts.max_len, "documents")
    if opts.task == "tag":  # the other taggers' labels come from any text, and rare marks are no fault of the data
        tags = np.concatenate([d.labels[0] for d in train_docs])
        per_label = np.bincount(tags[tags != NO_LABEL], minlength=len(heads[0].labels))
        report_few_examples(report, dict(zip(heads[0].labels, per_label.tolist(), strict=True)),
                            corpus=opts.corpus, noun="tokens")
    vocab = documents_vocab([d.text for d in train_docs], opts, base, vocab)
    return TaggingData(heads, vocab, train_docs, val_docs, file_sha256(opts.corpus))


class TaggingTask(DocumentTask):
    """A tagger's run (`charlm.training.task.Task`)."""

    kind = "tagger"
    meta_key = "tagging"
    refused = NOT_FOR_TAGGERS

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        super().check_options(opts, explicit)
        if opts.task != "tag" and "eos" in explicit and opts.eos == "file":
            raise ConfigError(f"--task {opts.task} reads whole documents: use --eos lines or --eos paragraphs "
                              f"(lines is the default)")
        check_task(opts.task, opts.marks)

    @staticmethod
    def load_data(opts: TrainOptions, base, report, *, vocab=None) -> TaggingData:
        return load_tagging_data(opts, base, report, vocab)

    def model_config(self):
        return self.opts.model_config(self.vocab.size, tuple(len(h.labels) for h in self.data.heads))

    def documents(self):
        docs = self.data.train_docs
        inputs = [self.vocab.encode(d.text) for d in docs]
        lengths = np.array([len(d.text) for d in docs])
        labels = [d.labels for d in docs]

        def targets(rows, lengths):  # labels per head (T, B), lengths (B,)
            return pad_labels([labels[i] for i in rows], int(lengths.max())), lengths

        return inputs, lengths, targets

    def loss_and_grads(self, params, cfg, x, y, state, *, rng, workspace):
        labels, lengths = y
        loss, grads = tagger.loss_and_grads(params, cfg, x, labels, lengths, rng=rng, workspace=workspace)
        return loss, grads, state

    def evaluate(self, params, cfg) -> Scores:
        """Loss (nats per label) and headline F1 over every held-out document."""
        found = evaluate_docs(params, cfg, self.vocab, self.data.heads, self.opts.task, self.data.val_docs)
        return Scores(found["loss"], f1=found["f1"])

    def data_meta(self) -> dict:
        o = self.opts
        return {**self.common_meta(sum(len(d.text) for d in self.data.train_docs), o.eos),
                "tagging": tagging_meta(o, self.data.heads)}

    def sample(self, params, cfg, step: int) -> str:
        val = self.data.val_docs
        doc = val[step % len(val)] if val else self.data.train_docs[0]
        tagged = tag_docs(params, cfg, self.vocab, self.data.heads, self.opts.task, [doc.text],
                          marks=self.opts.marks, tokens=[doc.tokens] if doc.tokens else None)
        return tagged[0]["output"]


def pad_labels(labels, T: int) -> list[np.ndarray]:
    """Documents' labels (per document a tuple of per-head (n_b,) arrays) as one (T, B) array per head,
    padded with NO_LABEL."""
    heads = []
    for k in range(len(labels[0])):
        y = np.full((T, len(labels)), tagger.NO_LABEL, dtype=np.int64)
        for b, doc_labels in enumerate(labels):
            y[:len(doc_labels[k]), b] = doc_labels[k]
        heads.append(y)
    return heads
