"""Training a tagger (`--task truecase|punctuate|truecase+punctuate|tag`): the language model's loop, run
directory, checkpoints, signals and time budget (`charlm.training.trainer.Trainer`), over batches of whole
documents of similar length instead of carried streams, with the tagger's loss and F1 on held-out documents.
"""

import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from charlm.engine.optim import make_optimizer
from charlm.errors import CharlmError, CheckpointError, ConfigError
from charlm.inference.tagging import evaluate_docs, tag_docs
from charlm.models import tagger
from charlm.models.encoder import init_state
from charlm.store.checkpoint import load_checkpoint
from charlm.store.rundir import RunDir
from charlm.text.batching import DocumentBatcher, pad_documents
from charlm.text.corpus import file_sha256, read_text, split_documents
from charlm.text.tagging import Head, TaggedDoc, make_doc, read_conll, tag_doc, task_heads
from charlm.text.tokenizer import Vocab
from charlm.training import events
from charlm.training.inputs import with_recipe
from charlm.training.options import MODEL_OPTIONS, TrainOptions, merge_resumed_options, refuse_changes
from charlm.training.trainer import Trainer
from charlm.training.writer import RunWriter

# Documents tagged together at an evaluation (padded to the longest of each group).
EVAL_BATCH = 64


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


def load_tagging_data(opts: TrainOptions, base, report) -> TaggingData:
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
        n_val = min(max(1, round(opts.val_fraction * len(docs))), len(docs) - 1)
        held = np.zeros(len(docs), dtype=bool)
        held[np.random.default_rng(opts.seed).choice(len(docs), n_val, replace=False)] = True
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
    if cut:
        total = len(train_docs) + len(val_docs or [])
        report(events.Warning(f"{cut:,} of {total:,} documents are longer than --max-len {opts.max_len} "
                              f"characters and were cut there"))
    if base:
        vocab = base.vocab
    else:
        vocab = Vocab.build(Counter(c for d in train_docs for c in d.text), min_count=opts.min_count,
                            max_vocab=opts.max_vocab)
    return TaggingData(heads, vocab, train_docs, val_docs, file_sha256(opts.corpus))


class TaggerTrainer(Trainer):
    """A tagger's run: the Trainer's loop and checkpoints over `DocumentBatcher` batches.

    It is also the base of every trainer of whole documents (`charlm.training.classify.ClassifierTrainer`):
    a subclass sets `model`, `meta_key` and `load_data`, and overrides the hooks `new_config`, `new_batches`,
    `loss_and_grads`, `score`, `improves`, `data_meta` and `_show_sample`.
    """

    model = tagger  # the module with init_params and loss_and_grads
    meta_key = "tagging"  # the checkpoint's `data` entry that says what the model does

    def __init__(self, data, opts: TrainOptions, run_dir: RunDir, *, base=None, resume=False, report=None,
                 clock=time.perf_counter):
        self.opts, self.run_dir, self.writer = opts, run_dir, RunWriter(run_dir)
        self.report = report or (lambda event: None)
        self.clock = clock
        self.data, self.vocab, self.unit = data, data.vocab, "label"
        self.val_ids = data.val_docs  # the loop validates when this is set
        self.cfg = base.config if base else self.new_config(opts, data)
        if base and base.config.dropout != opts.dropout:
            self.cfg = replace(self.cfg, dropout=opts.dropout)
        self.rng = np.random.default_rng(opts.seed)
        self.params = base.params if base else self.model.init_params(self.cfg, self.rng)
        self.optimizer = make_optimizer(opts.optimizer, self.params, momentum=opts.momentum,
                                        weight_decay=opts.weight_decay)
        self.batcher = self.new_batches(data)
        self.state = init_state(self.cfg, 1)  # documents carry no state; the loop resets it at each epoch
        self.workspace = {}
        self.step, self.train_seconds, self.progress0 = 0, 0.0, 0.0
        self.best_val = self.best_step = self.last_val = self.last_f1 = self.best_f1 = self.last_accuracy = None
        self.evals_since_best = 0
        self.exact_seconds = self.eval_seconds = None
        self.tokens_per_char = 1.0
        if resume:
            try:
                self._restore(base)
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{base.path}: cannot resume, the training state is incomplete or "
                                      f"invalid ({type(exc).__name__}: {exc})") from None
        self.writer.write_config(asdict(opts))

    # ------------------------------------------------------------------ hooks
    @staticmethod
    def load_data(opts: TrainOptions, base, report) -> TaggingData:
        return load_tagging_data(opts, base, report)

    def new_config(self, opts: TrainOptions, data):
        return opts.model_config(data.vocab.size, tuple(len(h.labels) for h in data.heads))

    def new_batches(self, data):
        inputs = [data.vocab.encode(d.text) for d in data.train_docs]
        lengths = np.array([len(d.text) for d in data.train_docs])
        labels = [d.labels for d in data.train_docs]

        def targets(rows, lengths):  # labels per head (T, B), lengths (B,)
            return pad_labels([labels[i] for i in rows], int(lengths.max())), lengths

        return DocumentBatches(DocumentBatcher(lengths, self.opts.batch, self.opts.seed), inputs, targets)

    def loss_and_grads(self, x, y):
        labels, lengths = y
        return tagger.loss_and_grads(self.params, self.cfg, x, labels, lengths, rng=self.rng,
                                     workspace=self.workspace)

    def score(self, params) -> dict:
        """{"loss", "f1"} of `params` on every held-out document."""
        return evaluate_docs(params, self.cfg, self.vocab, self.data.heads, self.opts.task, self.val_ids)

    def improves(self, loss: float, f1: float) -> bool:
        """Whether an evaluation is the best so far: a tagger's by validation loss."""
        return self.best_val is None or loss < self.best_val

    def data_meta(self) -> dict:
        return {"eos_mode": self.opts.eos, "encoding": self.opts.encoding, "min_count": self.opts.min_count,
                "max_vocab": self.opts.max_vocab, "corpus_name": Path(self.opts.corpus).name,
                "corpus_sha256": self.data.sha256, "corpus_chars": sum(len(d.text) for d in self.data.train_docs),
                "tagging": tagging_meta(self.opts, self.data.heads)}

    def _show_sample(self) -> None:
        doc = self.val_ids[self.step % len(self.val_ids)] if self.val_ids else self.data.train_docs[0]
        tagged = tag_docs(self.params, self.cfg, self.vocab, self.data.heads, self.opts.task, [doc.text],
                          marks=self.opts.marks, tokens=[doc.tokens] if doc.tokens else None)
        self.report(events.Sample(step=self.step, text=tagged[0]["output"]))

    # ------------------------------------------------------------------ the run
    @classmethod
    def open(cls, opts: TrainOptions, run_dir: RunDir, *, explicit: frozenset = frozenset(), report=None,
             clock=time.perf_counter) -> "TaggerTrainer":
        report = report or (lambda event: None)
        base, resume = None, False
        if opts.resume:
            base = load_checkpoint(run_dir.path, prefer="latest", warn=lambda m: report(events.Warning(m)))
            opts, resume = merge_resumed_options(base, opts, explicit), True
        elif run_dir.checkpoints():
            raise CharlmError(f"{run_dir.path} already holds checkpoints; add --resume to continue that "
                              f"run or choose another --out")
        elif opts.init_from:
            base = load_checkpoint(opts.init_from)
            refuse_changes(base, opts, explicit, what="--init-from checkpoint", keys=MODEL_OPTIONS)
        if base is not None:
            meta = base.data.get(cls.meta_key)
            if not meta or meta.get("task") != opts.task:
                raise ConfigError(f"{base.path} is not a --task {opts.task} model; start a new run")
        opts, recipe = with_recipe(opts, None)
        data = cls.load_data(opts, base, report)
        if resume and base.data.get("corpus_sha256") != data.sha256:
            raise CharlmError(f"{opts.corpus} is not the corpus this run was trained on (content differs)")
        if recipe is not None:
            report(recipe)
        return cls(data, opts, run_dir, base=base, resume=resume, report=report, clock=clock)

    def _restore(self, ckpt) -> None:
        t = ckpt.train
        self.optimizer.load_state_arrays(ckpt.optim, t["optimizer_steps"])
        self.batcher.batcher = DocumentBatcher.restore(self.batcher.batcher.lengths, self.opts.batch,
                                                       self.opts.seed, t["cursor"])
        self.rng.bit_generator.state = ckpt.rng
        self.step, self.train_seconds, self.progress0 = t["step"], t["train_seconds"], t["progress"]
        self.best_val, self.best_step, self.best_f1 = t.get("best_val"), t.get("best_step"), t.get("best_f1")
        self.evals_since_best, self.last_val = t.get("evals_since_best", 0), t.get("last_val")
        self.writer.truncate_metrics(self.step)
        self.report(events.Log(f"resumed {ckpt.path.name} at step {self.step}"))

    def train_state(self, progress: float) -> dict:
        return {**super().train_state(progress), "best_f1": self.best_f1}

    def train_step(self, x, y, progress: float):
        loss, grads = self.loss_and_grads(x, y)
        loss, norm, lr = self.apply_gradients(loss, grads, progress)
        self.step += 1
        return loss, norm, lr

    def reserved_seconds(self) -> float:
        """The closing evaluation scores every held-out document once, as each evaluation does (the final
        score reuses it)."""
        return 1.5 * self.eval_seconds if self.eval_seconds else 0.0

    def bits_per_char(self, nats_per_token):
        return None

    def evaluate(self, params=None, *, max_ids=None) -> float:
        """Validation loss (nats per label) over every held-out document; the headline F1 is kept in
        last_f1."""
        found = self.score(self.params if params is None else params)
        self.last_f1 = found["f1"]
        return found["loss"]

    def validate(self, session, lr) -> tuple[bool, bool]:
        """Loss and headline F1 on every held-out document; the best by `improves`."""
        val = self.evaluate()
        self.last_val = val
        improved = self.improves(val, self.last_f1)
        if improved:
            self.best_val, self.best_f1, self.best_step, self.evals_since_best = val, self.last_f1, self.step, 0
        else:
            self.evals_since_best += 1
        record = events.Evaluation(
            step=self.step, epoch=round(self.epochs_done(), 4), train_loss=session.smoothed_loss, val_loss=val,
            val_bpc=None, best_val_loss=self.best_val, lr=lr, chars_per_sec=session.chars_per_sec(),
            train_seconds=round(self.train_seconds, 3), tokens=self.unit, val_f1=self.last_f1,
            val_accuracy=self.last_accuracy)
        self.writer.append_metrics({"event": "eval", **record.to_dict()})
        self.report(record)
        return improved, bool(self.opts.patience) and self.evals_since_best >= self.opts.patience

    def _final_eval(self):
        """The best checkpoint's loss and F1 on every held-out document. Every evaluation scores all of them,
        deterministically, so these are the best evaluation's figures: recorded into best.safetensors, not
        scored again."""
        if self.val_ids is None or not self.run_dir.best_path.exists():
            return None, "none"
        best = load_checkpoint(self.run_dir.best_path)
        self.writer.save_best(params=best.params, config=best.config, vocab=best.vocab, data=best.data,
                              train=dict(best.train, best_val_final=self.best_val, best_val_final_mode="exact",
                                         best_val_f1=self.best_f1))
        return self.best_val, "exact"


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
