"""Tagging: tasks made from text and CoNLL files, the metrics, document batches, and real runs of
`charlm train --task`, `charlm tag` and `charlm evaluate` (with every kind of bad input)."""

import json

import numpy as np
import pytest
from helpers import run_charlm as run

from charlm.errors import ConfigError, CorpusError
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.label_scores import label_scores
from charlm.tasks.registry import train
from charlm.tasks.tagging.tag_metrics import bio_chunks, entity_scores, truecase_word_scores
from charlm.tasks.tagging.tagged_text import NO_LABEL, lowercase, make_doc, read_conll, restore, task_heads
from charlm.tasks.tagging.tagger_inference import as_tagger, tag_docs
from charlm.text.batching import DocumentBatcher
from charlm.training.options import TrainOptions

NAMES = ["Alice", "Bob", "Carol", "Dan"]
WORDS = ["met", "saw", "the", "cat", "in", "a", "park", "and", "then", "left"]


def sentences(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [str(rng.choice(NAMES))] + [str(w) for w in rng.choice(WORDS, 4)] + [str(rng.choice(NAMES))]
        mark = "?" if words[1] == "saw" else "."  # the mark follows from the words, so it can be learned
        out.append(" ".join(words[:3]) + ", " + " ".join(words[3:]) + mark)
    return out


# ---------------------------------------------------------------------------------------- tasks


def test_truecase_labels_every_character():
    doc = make_doc("truecase", "Hi NASA, ok.")
    assert doc.text == "hi nasa, ok."
    np.testing.assert_array_equal(doc.labels[0], [1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    assert lowercase("İx") == "İx"  # its lowercase is two characters: kept, so positions still match


def test_punctuate_labels_word_ends_and_keeps_inner_marks():
    doc = make_doc("punctuate", 'Wait?! e.g. this, "quoted," end', ",.?!")
    labels = dict(enumerate(task_heads("punctuate", ",.?!")[0].labels))
    assert doc.text == 'Wait e.g this "quoted," end'
    words = doc.text.split()
    ends = np.cumsum([len(w) + 1 for w in words]) - 2
    assert [labels.get(int(doc.labels[0][e])) for e in ends] == ["?", ".", ",", "none", "none"]
    assert (doc.labels[0] != NO_LABEL).sum() == len(words)


@pytest.mark.parametrize("text", ["Alice met Bob, then left. Did she?", "One; two: three!", "x"])
def test_restore_inverts_make_doc(text):
    for task in ("truecase", "punctuate", "truecase+punctuate"):
        doc = make_doc(task, text, ",.?!:;")
        assert restore(task, doc.text, list(doc.labels), task_heads(task, ",.?!:;")) == text


def test_bad_marks_and_tasks_are_config_errors():
    for task, marks in (("punctuate", "a"), ("punctuate", ",,"), ("punctuate", ""), ("translate", ",")):
        with pytest.raises(ConfigError):
            task_heads(task, marks)


def test_read_conll(tmp_path):
    path = tmp_path / "tags.tsv"
    path.write_text("# a comment\nJohn\tB-PER\nlives\tO\n\n\nin\tO\nParis\tx\tB-LOC\n", encoding="utf-8")
    found = read_conll(path)
    assert [(s.tokens, s.labels, s.line) for s in found] == [
        (("John", "lives"), ("B-PER", "O"), 2), (("in", "Paris"), ("O", "B-LOC"), 6)]
    path.write_text("John\tB-PER\nlives O\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"tags.tsv:2: expected token<TAB>label"):
        read_conll(path)
    path.write_text("just some text\n\nwithout tags\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="tags.tsv:1"):
        read_conll(path)


# ---------------------------------------------------------------------------------------- metrics


def test_label_scores_by_hand():
    gold = np.array([0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 2, 2, 2, 1])
    s = label_scores(gold, predicted, ["none", "a", "b"], ignore=("none",))
    assert s["labels"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert s["labels"]["b"]["precision"] == pytest.approx(2 / 3) and s["labels"]["b"]["recall"] == pytest.approx(2 / 3)
    assert s["micro"]["precision"] == pytest.approx(3 / 5) and s["micro"]["support"] == 5
    assert s["macro"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_bio_chunks_follow_conlleval():
    assert bio_chunks(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-PER"]) == {
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("PER", 5, 6)}
    s = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert s["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert s["labels"]["LOC"]["f1"] == 1.0 and s["labels"]["PER"]["f1"] == 0.0


def test_truecase_word_scores_count_words_that_are_not_all_lowercase():
    s = truecase_word_scores(["Alice met BOB in paris"], ["Alice Met Bob in paris"])
    # gold capitalised: Alice, BOB; predicted capitalised: Alice, Met, Bob; right: Alice
    assert s == pytest.approx({"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "support": 2})


# ---------------------------------------------------------------------------------------- batches


def test_document_batches_cover_each_epoch_with_similar_lengths_and_resume():
    lengths = np.random.default_rng(0).integers(1, 400, 1000)
    batcher = DocumentBatcher(lengths, 16, seed=3)
    epoch = [batcher.next_batch() for _ in range(batcher.batches_per_epoch)]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(1000)) and batcher.cursor == {"epoch": 1, "batch": 0}
    spread = np.mean([np.ptp(lengths[b]) for b in epoch])
    assert spread < 0.2 * np.ptp(lengths)  # sorted windows: little padding
    later = [batcher.next_batch() for _ in range(5)]
    resumed = DocumentBatcher.restore(lengths, 16, 3, {"epoch": 1, "batch": 0})
    for expected in later:
        np.testing.assert_array_equal(resumed.next_batch(), expected)
    assert not all(np.array_equal(a, b) for a, b in zip(epoch[:5], later, strict=True))  # a new order


# ---------------------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def truecaser(tmp_path_factory):
    root = tmp_path_factory.mktemp("truecase")
    corpus = root / "train.txt"
    corpus.write_text("\n".join(sentences(400, 0)) + "\n", encoding="utf-8")
    heldout = root / "heldout.txt"
    heldout.write_text("\n".join(sentences(40, 1)) + "\n", encoding="utf-8")
    out = root / "run"
    done = run("train", corpus, "--task", "truecase+punctuate", "--bidirectional", "--hidden", 32, "--steps", 300,
               "--eval-every", 100, "--out", out, "--json", "-q")
    assert done.returncode == 0, done.stderr
    return out, heldout, done


@pytest.mark.slow
def test_train_reports_f1_and_writes_a_tagger(truecaser):
    out, _, done = truecaser
    records = [json.loads(line) for line in done.stdout.splitlines()]
    evals = [r for r in records if "val_f1" in r]
    assert len(evals) == 3 and evals[-1]["tokens"] == "label" and evals[-1]["val_f1"] > 0.8
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    ckpt = load_checkpoint(out)
    assert ckpt.config.bidirectional and ckpt.config.heads == (2, 7)
    assert ckpt.data["tagging"]["task"] == "truecase+punctuate" and ckpt.data["eos_mode"] == "lines"
    described = json.loads(run("info", out, "--json").stdout)["task"]
    assert described["task"] == "truecase+punctuate" and described["bidirectional"] is True
    assert [h["name"] for h in described["heads"]] == ["case", "punct"] and described["best_val_f1"] > 0.8
    shown = run("info", out).stdout
    assert "nats/label" in shown and "bits/" not in shown and "labels (punct)" in shown


@pytest.mark.slow
def test_tag_restores_case_and_marks(truecaser):
    out, heldout, _ = truecaser
    gold = heldout.read_text().splitlines()[:10]
    plain = [lowercase(s).replace(",", "").replace(".", "").replace("?", "").replace("!", "") for s in gold]
    done = run("tag", out, input="\n".join(plain) + "\n")
    assert done.returncode == 0, done.stderr
    restored = done.stdout.splitlines()
    assert len(restored) == 10
    assert sum(r == g for r, g in zip(restored, gold, strict=True)) >= 7
    as_json = json.loads(run("tag", out, plain[0], "--json").stdout)
    assert as_json[0]["input"] == plain[0] and as_json[0]["output"] == restored[0]
    first = as_json[0]["tokens"][0]
    assert first["case"] == "Title" and 0.5 < first["case_probability"] <= 1 and first["punct"] == "none"


@pytest.mark.slow
def test_evaluate_a_tagger(truecaser):
    out, heldout, _ = truecaser
    done = run("evaluate", out, heldout, "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["task"] == "truecase+punctuate" and 0.8 < found["f1"] <= 1
    assert found["f1"] == pytest.approx((found["heads"]["case"]["f1"] + found["heads"]["punct"]["f1"]) / 2)
    assert found["labels"]["punct:,"]["support"] == 40 and found["labels"]["case:upper"]["support"] == 80
    table = run("evaluate", out, heldout)
    assert table.returncode == 0 and "(micro)" in table.stdout and "truecase+punctuate: F1" in table.stdout


@pytest.mark.slow
def test_a_bidirectional_tag_run_on_a_conll_file(tmp_path):
    rng = np.random.default_rng(2)
    lines = []
    for _ in range(300):
        for _ in range(rng.integers(3, 7)):
            if rng.random() < 0.3:
                name = rng.choice(NAMES)
                lines += [f"{name}\tB-PER", f"{name[::-1].lower()}\tI-PER"]
            else:
                lines.append(f"{rng.choice(WORDS)}\tO")
        lines.append("")
    corpus = tmp_path / "train.tsv"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    done = run("train", corpus, "--task", "tag", "--bidirectional", "--hidden", 16, "--steps", 300, "--out", out,
               "-q")
    assert done.returncode == 0, done.stderr
    found = json.loads(run("evaluate", out, corpus, "--json").stdout)
    assert found["task"] == "tag" and found["f1"] > 0.9 and set(found["labels"]) == {"PER"}
    tagged = run("tag", out, "the cat met Bob bob").stdout.strip()
    assert tagged == "the/O cat/O met/O Bob/B-PER bob/I-PER"
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("the\tO\n\nBob\tB-ORG\n", encoding="utf-8")
    bad = run("evaluate", out, unseen)
    assert bad.returncode == 2 and f"{unseen}:3: labels the tagger was not trained on: B-ORG" in bad.stderr


def test_a_tagger_resumes_exactly(tmp_path):
    corpus = tmp_path / "train.txt"
    corpus.write_text("\n".join(sentences(80, 3)) + "\n", encoding="utf-8")
    # constant schedule: a cosine one depends on the total steps, which the first part does not know
    common = dict(corpus=str(corpus), task="truecase", bidirectional=True, hidden=8, layers=1, batch=8,
                  eval_every=5, warmup=2, dropout=0.3, schedule="constant")
    train(TrainOptions(out=str(tmp_path / "whole"), steps=12, **common))
    train(TrainOptions(out=str(tmp_path / "split"), steps=6, **common))
    train(TrainOptions(out=str(tmp_path / "split"), steps=12, resume=True, **common), explicit=frozenset({"steps"}))
    whole = load_checkpoint(tmp_path / "whole", prefer="latest")
    split = load_checkpoint(tmp_path / "split", prefer="latest")
    assert whole.train["step"] == split.train["step"] == 12
    assert whole.train["epoch"] > 1  # crosses an epoch boundary (a new document order)
    for name in whole.params:
        np.testing.assert_array_equal(whole.params[name], split.params[name])
    for name in whole.optim:
        np.testing.assert_array_equal(whole.optim[name], split.optim[name])
    assert whole.rng == split.rng


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "message"), [
    (["--task", "tag"], 1, "is this untagged text?"),
    (["--bidirectional"], 2, "--bidirectional needs a tagging --task"),
    (["--task", "truecase", "--eos", "file"], 2, "reads whole documents"),
    (["--task", "punctuate", "--marks", "a,"], 2, "--marks must be distinct punctuation"),
    (["--task", "truecase", "--tokens", "word"], 2, "reads char tokens"),
])
def test_bad_training_requests(tmp_path, args, code, message):
    corpus = tmp_path / "plain.txt"
    corpus.write_text("\n".join(sentences(20, 4)) + "\n", encoding="utf-8")
    done = run("train", corpus, "--steps", 2, "--out", tmp_path / "run", *args)
    assert done.returncode == code and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run" / "best.safetensors").exists()


@pytest.mark.slow
def test_long_documents_are_cut_with_a_warning(tmp_path):
    corpus = tmp_path / "plain.txt"
    corpus.write_text("\n".join(sentences(30, 5) + ["a" * 100, "b" * 90]) + "\n", encoding="utf-8")
    done = run("train", corpus, "--task", "truecase", "--max-len", 64, "--steps", 2, "--hidden", 4, "--out",
               tmp_path / "run", "-q")
    assert done.returncode == 0 and "2 of 32 documents are longer than --max-len 64" in done.stderr


@pytest.mark.slow
def test_taggers_and_language_models_refuse_each_others_commands(truecaser, tmp_path):
    out, heldout, _ = truecaser
    lm = tmp_path / "lm"
    assert run("train", heldout, "--steps", 2, "--hidden", 4, "--batch", 4, "--seq-len", 16, "--out", lm,
               "-q").returncode == 0
    for args in (["tag", lm, "x"], ["sample", out], ["perplexity", out, heldout]):
        done = run(*args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    empty_line = run("tag", out, input="alice met bob\n\ndan\n")
    assert empty_line.returncode == 2 and "<stdin>:2: empty line" in empty_line.stderr and not empty_line.stdout
    lm_evaluate = json.loads(run("evaluate", lm, heldout, "--json").stdout)
    assert lm_evaluate["total"]["bits_per_char"] > 0  # a language model's evaluation is its perplexity


@pytest.mark.slow
def test_the_lectures_case_needs_the_bidirectional_truecaser(tmp_path):
    """'teddy' is a name ("Teddy Roosevelt") or not ("teddy bears") by the word after it alone: the
    bidirectional truecaser learns it, the left-to-right one can do no better than chance on it."""
    rng = np.random.default_rng(6)
    verbs = ["was here", "is great", "sat down", "went home"]

    def line(named):
        return ("Teddy Roosevelt " if named else "teddy bears ") + str(rng.choice(verbs))

    corpus = tmp_path / "teddy.txt"
    corpus.write_text("\n".join(line(rng.random() < 0.5) for _ in range(600)) + "\n", encoding="utf-8")
    tests = [line(named) for named in [True] * 20 + [False] * 20]
    right = {}
    for bidirectional in (False, True):
        out = tmp_path / f"run-{bidirectional}"
        train(TrainOptions(corpus=str(corpus), out=str(out), task="truecase", bidirectional=bidirectional,
                           hidden=16, layers=1, steps=800, eval_every=800, warmup=5))
        t = as_tagger(load_checkpoint(out))
        restored = tag_docs(t.params, t.cfg, t.vocab, t.heads, t.task, [lowercase(s) for s in tests])
        right[bidirectional] = np.mean([r["output"].split()[0] == s.split()[0]
                                        for r, s in zip(restored, tests, strict=True)])
        later = np.mean([r["output"].split()[1:] == s.split()[1:] for r, s in zip(restored, tests, strict=True)])
        assert later == 1.0  # the words after "teddy" are easy either way: both taggers learned something
    assert right[True] >= 0.95
    assert right[False] <= 0.6
