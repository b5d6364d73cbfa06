"""A task of its own, added through the public seam only: one Task class and one registry line, trained end to
end by the real Trainer (`charlm.tasks.registry.train`). It predicts each line's length bucket (short,
medium, long) with the classifier network, so it needs no new network and no change to the Trainer."""

import json

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.models import classifier
from charlm.models.config import MODEL_KINDS
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks import registry
from charlm.tasks.documents import DocumentTask, padded_lengths
from charlm.text.batching import pad_documents
from charlm.text.corpus import file_sha256, read_text
from charlm.text.tokenizer import Vocab
from charlm.training.options import TrainOptions
from charlm.training.task import Scores

BUCKETS = ("short", "medium", "long")


def bucket(text: str) -> int:
    return 0 if len(text) < 8 else 1 if len(text) < 16 else 2


class LengthData:
    def __init__(self, opts: TrainOptions):
        lines = [line for line in read_text(opts.corpus, opts.encoding).splitlines() if line]
        cut = len(lines) // 5
        self.train, self.val = lines[cut:], lines[:cut]
        self.vocab = Vocab.build({c: 1 for line in lines for c in line}, min_count=1, max_vocab=None)
        self.sha256 = file_sha256(opts.corpus)
        self.val_docs = self.val


class LengthBucketTask(DocumentTask):
    """Each line's length bucket, learned from its characters."""

    kind = "classifier"  # one label per text, as a classifier's network gives
    meta_key = "length_bucket"

    @staticmethod
    def load_data(opts, base, report, *, vocab=None):
        return LengthData(opts)

    def model_config(self):
        return self.opts.model_config(self.vocab.size, (len(BUCKETS),), pool="last")

    def documents(self):
        texts = self.data.train
        y = np.array([bucket(t) for t in texts])
        return [self.vocab.encode(t) for t in texts], padded_lengths(texts), lambda rows, lengths: (
            y[rows], lengths, None)

    def loss_and_grads(self, params, cfg, x, y, state, *, rng, workspace):
        labels, lengths, _ = y
        loss, grads = classifier.loss_and_grads(params, cfg, x, labels, lengths, rng=rng, workspace=workspace)
        return loss, grads, state

    def evaluate(self, params, cfg) -> Scores:
        texts = self.data.val
        y = np.array([bucket(t) for t in texts])
        x, lengths = pad_documents([self.vocab.encode(t) for t in texts])
        probs = classifier.predict(params, cfg, x, lengths)
        loss = float(-np.mean(np.log(probs[np.arange(len(y)), y])))
        return Scores(loss, accuracy=float(np.mean(probs.argmax(1) == y)))

    def data_meta(self) -> dict:
        return {**self.common_meta(sum(map(len, self.data.train)), "lines"),
                "length_bucket": {"task": "length-bucket", "labels": list(BUCKETS)}}

    def sample(self, params, cfg, step):
        return self.data.val[0]


@pytest.fixture
def length_bucket_task():
    registry.register_task("length-bucket", LengthBucketTask)  # the one registry line a new task needs
    yield
    del registry.TASKS["length-bucket"]


def test_a_task_registered_through_the_seam_trains_end_to_end(tmp_path, length_bucket_task):
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghij"))
    lines = ["".join(rng.choice(letters, rng.choice([3, 5, 11, 13, 19, 22]))) for _ in range(600)]
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(lines) + "\n")
    opts = TrainOptions(corpus=str(corpus), out=str(tmp_path / "run"), task="length-bucket", hidden=24, layers=1,
                        batch=16, steps=150, eval_every=50, lr=0.01, optimizer="adam", dropout=0.0, clip=1.0,
                        momentum=0.9, weight_decay=0.0, warmup=0, min_lr_ratio=0.1, patience=0)
    result = registry.train(opts)
    assert result.steps == 150 and result.tokens == "label"
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r.get("event") == "eval"]
    assert len(evals) == 3
    assert evals[-1]["val_loss"] < 0.5 * np.log(len(BUCKETS))  # far below guessing among three buckets
    assert evals[-1]["val_accuracy"] > 0.9
    best = load_checkpoint(tmp_path / "run")
    assert best.config.kind == LengthBucketTask.kind and best.data["length_bucket"]["task"] == "length-bucket"


def test_an_unknown_task_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'length-bucket'"):
        registry.train(TrainOptions(corpus=str(tmp_path / "x.txt"), task="length-bucket", steps=1))


def test_every_registered_task_names_a_kind_of_model():
    named = ("lm", "truecase", "tag", "classify")
    assert {name: registry.TASKS[name].kind for name in named} == {
        "lm": "lm", "truecase": "tagger", "tag": "tagger", "classify": "classifier"}
    assert all(task.kind in MODEL_KINDS for task in registry.TASKS.values())
