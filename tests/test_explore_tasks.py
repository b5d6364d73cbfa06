"""The explorer's API for taggers and classifiers over real HTTP (a server in a thread) on tiny real runs: each
view's answer against the library functions `charlm tag`, `charlm classify` and `charlm evaluate` call, the
views each kind gets, and the language model's endpoints refused with a readable line."""

import numpy as np
import pytest
from task_runs import train_classifier, train_tagger
from test_explore_api import call

from charlm.explore.runs import Explorer
from charlm.explore.server import start_in_thread
from charlm.models.encoder import encoder_activations, encoder_forward, init_state
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts, evaluate_texts
from charlm.tasks.classify.labelled_text import read_labelled
from charlm.tasks.registry import train
from charlm.tasks.tagging.tagged_text import make_doc
from charlm.tasks.tagging.tagger_inference import as_tagger, evaluate_docs, labelled_docs, predict_docs, tag_docs
from charlm.training.options import TrainOptions

TEXTS = ["alice saw the cat in a park bob", "carol met dan and then left"]
NAMES = ["Petrov", "Nakamuraki", "Papadoulos"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-tasks")
    return root, train_tagger(root), train_classifier(root)


@pytest.fixture(scope="module")
def server(runs):
    srv = start_in_thread(Explorer(runs[1:]))
    yield srv
    srv.shutdown()
    srv.server_close()


def test_each_kind_gets_its_views(server):
    _, tagger = call(server, "/api/model?run=0")
    _, classifier = call(server, "/api/model?run=1")
    assert (tagger["kind"], tagger["views"]) == ("tagger", ["tag", "evaluate", "curves", "model"])
    assert (classifier["kind"], classifier["views"]) == ("classifier", ["classify", "evaluate", "curves", "model"])


def test_tag_labels_each_character_as_the_tagger_does(server, runs):
    status, view = call(server, "/api/tag", {"run": 0, "text": "\n".join(TEXTS) + "\n\n"})
    assert status == 200 and view["task"] == "truecase+punctuate" and view["unit"] == "character"
    assert [(h["name"], h["null"]) for h in view["heads"]] == [("case", "lower"), ("punct", "none")]
    tagger = as_tagger(load_checkpoint(runs[1]))
    restored = tag_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task, TEXTS, marks=tagger.marks)
    assert [d["output"] for d in view["docs"]] == [r["output"] for r in restored]  # what `charlm tag` prints
    docs = [make_doc(tagger.task, t, tagger.marks) for t in TEXTS]
    probs = predict_docs(tagger.params, tagger.cfg, tagger.vocab, [d.text for d in docs])
    for shown, doc, doc_probs in zip(view["docs"], docs, probs, strict=True):
        assert "".join(p["text"] for p in shown["pieces"]) == shown["read"] == doc.text
        case = [p["labels"]["case"] for p in shown["pieces"]]
        assert [c[0][0] for c in case] == [("lower", "upper")[i] for i in doc_probs[0].argmax(axis=1)]
        np.testing.assert_allclose([c[0][1] for c in case], doc_probs[0].max(axis=1))
        text = doc.text + " "
        word_ends = [i for i in range(len(doc.text)) if text[i] != " " and text[i + 1] == " "]
        assert [i for i, p in enumerate(shown["pieces"]) if "punct" in p["labels"]] == word_ends
    assert any(c[0][0] == "upper" for c in (p["labels"]["case"] for d in view["docs"] for p in d["pieces"]))


def test_classify_gives_every_labels_probability(server, runs):
    status, view = call(server, "/api/classify", {"run": 1, "text": "\n".join(NAMES)})
    classifier = as_classifier(load_checkpoint(runs[2]))
    assert status == 200 and view["labels"] == list(classifier.labels)
    assert view["texts"] == classify_texts(classifier, NAMES, top_k=len(classifier.labels), explain=True)
    assert all(abs(sum(p for _, p in t["top"]) - 1) < 1e-6 for t in view["texts"])
    assert view["spaced"] is False and ["".join(tok for tok, _ in t["tokens"]) for t in view["texts"]] == NAMES


def test_states_are_the_encoders_outputs(server, runs):
    status, view = call(server, "/api/states", {"run": 1, "text": "Nakamuraki", "layer": 0})
    ckpt = load_checkpoint(runs[2])
    cfg = ckpt.config
    x = np.asarray(ckpt.vocab.encode("Nakamuraki"))[:, None]
    _, _, cache = encoder_forward(ckpt.params, cfg, x, init_state(cfg, 1), lengths=np.array([10]))
    acts = encoder_activations(cfg, cache)
    expected = np.concatenate([acts["layer.0.a"][:, 0], acts["layer.0.rev.a"][:, 0]], axis=1)  # (10, 2H)
    assert status == 200 and view["chars"] == list("Nakamuraki") and (view["low"], view["high"]) == (-1.0, 1.0)
    assert view["units"] == [f"f{u}" for u in range(cfg.hidden)] + [f"r{u}" for u in range(cfg.hidden)]
    np.testing.assert_allclose(view["values"], expected, atol=6e-5)  # sent to 4 decimals


def test_evaluate_gives_what_charlm_evaluate_gives(server, runs):
    root, tagger_run, classifier_run = runs
    heldout = (root / "heldout.txt").read_text(encoding="utf-8")
    status, found = call(server, "/api/evaluate", {"run": 0, "text": heldout, "name": "heldout.txt"})
    tagger = as_tagger(load_checkpoint(tagger_run))
    expected = evaluate_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task,
                             labelled_docs(tagger, root / "heldout.txt"))
    assert status == 200 and found == {"kind": "tagger", "file": "heldout.txt", **expected}
    names = (root / "names.tsv").read_text(encoding="utf-8")
    status, found = call(server, "/api/evaluate", {"run": 1, "text": names, "name": "names.tsv"})
    labelled = read_labelled(root / "names.tsv")
    expected = evaluate_texts(as_classifier(load_checkpoint(classifier_run)), labelled.texts, labelled.labels)
    assert status == 200 and found == {"kind": "classifier", "file": "names.tsv", **expected}


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/evaluate", {"run": 1, "text": "Russian\tPetrov\nDutch\tVan\n", "name": "mine.tsv"}, 400,
     "mine.tsv:2: label 'Dutch' is not one the classifier was trained on"),
    ("/api/evaluate", {"run": 1, "text": "  \n", "name": "mine.tsv"}, 400, "mine.tsv is empty"),
    ("/api/surprisal", {"run": 0, "text": "the"}, 400,
     "truecaser is a tagger, not a language model: its views are Tag, Evaluate, Curves and Model"),
    ("/api/sample", {"run": 1}, 400, "classifier is a classifier, not a language model"),
    ("/api/tag", {"run": 1, "text": "the"}, 400, "is a classifier, not a tagger"),
    ("/api/classify", {"run": 0, "text": "the"}, 400, "is a tagger, not a classifier: use charlm tag"),
    ("/api/tag", {"run": 0, "text": "\n \n"}, 400, "the text has no line to tag"),
    ("/api/states", {"run": 1, "text": "abc", "layer": 1}, 400, "no layer 1: the model has 1"),
])
def test_requests_of_another_kind_are_refused_in_one_line(server, path, body, status, message):
    got, answer = call(server, path, body)
    assert got == status and message in answer["error"], answer


def test_a_tag_runs_labels_are_per_token(tmp_path):
    rng = np.random.default_rng(2)
    lines = []
    for _ in range(60):
        for word in rng.choice(["Bob", "met", "the", "cat", "Alice"], 4):
            lines.append(f"{word}\t{'B-PER' if word[0].isupper() else 'O'}")
        lines.append("")
    corpus = tmp_path / "train.tsv"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train(TrainOptions(corpus=str(corpus), out=str(tmp_path / "run"), task="tag", hidden=8, layers=1, batch=8,
                       steps=10, eval_every=10, warmup=1))
    srv = start_in_thread(Explorer([tmp_path / "run"]))
    try:
        status, view = call(srv, "/api/tag", {"text": "the cat  met Bob\n"})
    finally:
        srv.shutdown()
        srv.server_close()
    tagger = as_tagger(load_checkpoint(tmp_path / "run"))
    (expected,) = tag_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, "tag", ["the cat  met Bob"])
    assert status == 200 and view["unit"] == "token" and view["heads"][0]["null"] == "O"
    (doc,) = view["docs"]
    assert doc["output"] == expected["output"] and doc["read"] == "the cat met Bob"
    labelled = [p for p in doc["pieces"] if p["labels"]]
    assert [p["text"] for p in labelled] == ["the", "cat", "met", "Bob"]
    assert [[p["labels"]["tag"][0][0], p["labels"]["tag"][0][1]] for p in labelled] == [
        [t["tag"], pytest.approx(t["tag_probability"])] for t in expected["tokens"]]
    assert [p["text"] for p in doc["pieces"] if not p["labels"]] == [" ", " ", " "]
