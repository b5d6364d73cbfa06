"""The explorer's API for encoder–decoders over real HTTP (a server in a thread) on tiny real translate runs: the
Translate view's outputs and attention against what `charlm translate` calls, Evaluate against what `charlm
evaluate` calls, the views the kind gets, and every bad request refused in one line."""

import urllib.request

import numpy as np
import pytest
from test_explore_api import call

from charlm.explore.runs import Explorer
from charlm.explore.server import start_in_thread
from charlm.explore.task_views import MAX_SOURCE_CHARS, MAX_SOURCES
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.registry import train
from charlm.tasks.translate.translate_inference import as_translator, evaluate_pairs, translate_texts
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import TRANSLATE_ATTENTION

LETTERS = list("abcdefghik")
SOURCES = ["abc", "kideg"]


def reversals(n: int, seed: int) -> list[str]:
    """`word<TAB>the word reversed` lines of distinct words of 3 to 6 letters."""
    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(LETTERS, rng.integers(3, 7))))
    return [f"{word}\t{word[::-1]}" for word in sorted(words)]


def train_translator(root, name: str = "reverser", **options):
    """A bidirectional encoder–decoder (general attention, the task's default) learning to reverse words from
    root/pairs.tsv (200 pairs), trained for about a second: it writes outputs of a few letters, not yet the
    reversals. Held-out pairs are root/heldout.tsv."""
    corpus = root / "pairs.tsv"
    corpus.write_text("\n".join(reversals(200, 0)) + "\n", encoding="utf-8")
    (root / "heldout.tsv").write_text("\n".join(reversals(30, 1)) + "\n", encoding="utf-8")
    out = root / name
    settings = {"steps": 60, "eval_every": 30, "hidden": 16, "layers": 1, "batch": 16, "lr": 0.01, "warmup": 1}
    train(TrainOptions(corpus=str(corpus), out=str(out), task="translate", **{**settings, **options}))
    return out


@pytest.fixture(scope="module")
def lm_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm-corpus") / "corpus.txt"
    path.write_text("the cat sat on the mat\nthe dog ran to it\n" * 40, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lm_corpus):
    root = tmp_path_factory.mktemp("explore-translate")
    translator = train_translator(root)
    plain = train_translator(root, "plain", attention="none", steps=10, eval_every=10)
    lm = root / "lm"
    train(TrainOptions(corpus=str(lm_corpus), out=str(lm), hidden=8, layers=1, batch=4, seq_len=16,
                       steps=4, eval_every=4, warmup=1))
    return {"root": root, "translator": translator, "plain": plain, "lm": lm}


@pytest.fixture(scope="module")
def server(runs):
    srv = start_in_thread(Explorer([runs["translator"], runs["plain"], runs["lm"]]))
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_translator_gets_its_views_and_the_page_its_script(server):
    status, info = call(server, "/api/model?run=0")
    assert status == 200 and info["kind"] == "seq2seq"
    assert info["views"] == ["translate", "evaluate", "curves", "model"]
    with urllib.request.urlopen(server.url + "translate.js", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/javascript") and b"/api/translate" in r.read()


def test_translate_gives_what_charlm_translate_gives_with_the_attention(server, runs):
    status, view = call(server, "/api/translate", {"run": 0, "text": "abc\n\nkideg\n", "beam": 3, "nbest": 2})
    assert status == 200 and (view["beam"], view["nbest"], view["attention"]) == (3, 2, TRANSLATE_ATTENTION)
    expected = translate_texts(as_translator(load_checkpoint(runs["translator"])), SOURCES, attention=True, beam=3,
                               nbest=2)
    assert len(view["texts"]) == 2 and view["note"] is None
    for shown, want in zip(view["texts"], expected, strict=True):
        weights = np.array(shown.pop("attention"))
        np.testing.assert_allclose(weights, want.pop("attention"), atol=1e-4)
        assert shown == want  # the outputs, best first, their scores, and the tokens on both axes
        assert len(shown["nbest"]) == 2 and shown["output"] == shown["nbest"][0]["output"]
        assert shown["nbest"][0]["score"] >= shown["nbest"][1]["score"]
        assert weights.shape == (len(shown["output_tokens"]), len(shown["source_tokens"]))
        assert shown["output_tokens"] == [*shown["output"], "<EOS>"] and shown["source_tokens"] == list(shown["source"])
        np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-3)  # a distribution over the source per row
    assert any(t["output"] for t in view["texts"])  # the model writes something


def test_translate_is_greedy_by_default(server, runs):
    status, view = call(server, "/api/translate", {"run": 0, "text": "abc"})
    (expected,) = translate_texts(as_translator(load_checkpoint(runs["translator"])), ["abc"])
    assert status == 200 and (view["beam"], view["nbest"]) == (1, 1)
    (shown,) = view["texts"]
    assert shown["nbest"] == expected["nbest"] and len(shown["nbest"]) == 1


def test_a_model_without_attention_sends_no_weights(server):
    status, view = call(server, "/api/translate", {"run": 1, "text": "abc\nkid", "beam": 2})
    assert status == 200 and view["attention"] == "none"
    assert [t["attention"] for t in view["texts"]] == [None, None]
    assert [t["source_tokens"] for t in view["texts"]] == [list("abc"), list("kid")]


def test_evaluate_gives_what_charlm_evaluate_gives(server, runs):
    heldout = runs["root"] / "heldout.tsv"
    status, found = call(server, "/api/evaluate", {"run": 0, "text": heldout.read_text(encoding="utf-8"),
                                                   "name": "heldout.tsv", "beam": 2})
    expected = evaluate_pairs(as_translator(load_checkpoint(runs["translator"])), heldout, beam=2)
    assert status == 200 and found == {"kind": "seq2seq", "file": "heldout.tsv", **expected}
    assert {"exact_match", "wer", "ter", "bleu", "chrf", "nats_per_token"} <= set(found) and found["n"] == 30


def test_the_curves_of_other_runs_survive_a_run_whose_curves_fail(server):
    status, found = call(server, "/api/curves")
    assert status == 200 and [r["name"] for r in found["runs"]] == ["reverser", "plain", "lm"]
    assert "error" not in found["runs"][2] and found["runs"][2]["val_loss"]


def test_a_translators_curves_are_drawn(server):
    _, found = call(server, "/api/curves")
    assert "error" not in found["runs"][0], found["runs"][0]
    assert found["runs"][0]["kept_by"] == "val_loss" and len(found["runs"][0]["val_loss"]) == 2


OTHER_KIND = "its views are Translate, Evaluate, Curves and Model"


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/translate", {"text": ""}, 400, "text is empty"),
    ("/api/translate", {}, 400, "text is required"),
    ("/api/translate", {"text": " \n\n"}, 400, "the text has no line to translate"),
    ("/api/translate", {"text": "abc", "beam": 0}, 400, "beam must lie in [1, 10], got 0"),
    ("/api/translate", {"text": "abc", "beam": 11}, 400, "beam must lie in [1, 10], got 11"),
    ("/api/translate", {"text": "abc", "beam": "3"}, 400, "beam must be a number, got '3'"),
    ("/api/translate", {"text": "abc", "beam": 2, "nbest": 3}, 400, "nbest must lie in [1, 2], got 3"),
    ("/api/translate", {"text": "abc\nxyz"}, 400, "'xyz': every token of the source is unknown to the model"),
    ("/api/translate", {"text": "a\n" * (MAX_SOURCES + 1)}, 400,
     f"the text has {MAX_SOURCES + 1} lines to translate; the limit is {MAX_SOURCES}"),
    ("/api/translate", {"text": "abc\n\n" + "a" * (MAX_SOURCE_CHARS + 1)}, 400,
     f"line 3 has {MAX_SOURCE_CHARS + 1} characters; the limit is {MAX_SOURCE_CHARS}"),
    ("/api/translate", {"run": 3, "text": "abc"}, 404, "no run 3: this explorer has 3"),
    ("/api/translate", {"run": 2, "text": "abc"}, 400, "run lm is a language model, not an encoder–decoder: its "
                                                        "views are Sample, Surprisal, Units, Curves and Model"),
    ("/api/surprisal", {"run": 0, "text": "abc"}, 400,
     f"run reverser is an encoder–decoder, not a language model: {OTHER_KIND}"),
    ("/api/sample", {"run": 1}, 400, f"run plain is an encoder–decoder, not a language model: {OTHER_KIND}"),
    ("/api/states", {"run": 0, "text": "abc"}, 400, f"run reverser is an encoder–decoder, not a classifier: "
                                                    f"{OTHER_KIND}"),
    ("/api/tag", {"run": 0, "text": "abc"}, 400, "is an encoder–decoder, not a tagger: use charlm translate or"),
    ("/api/classify", {"run": 0, "text": "abc"}, 400, "is an encoder–decoder, not a classifier: use charlm translate"),
    ("/api/evaluate", {"run": 0, "text": "abc\tcba\nkid\n", "name": "mine.tsv"}, 400,
     "mine.tsv:2: no tab (expected source<TAB>target)"),
    ("/api/evaluate", {"run": 0, "text": "abc\tcba\n", "name": "mine.tsv", "beam": 11}, 400,
     "beam must lie in [1, 10], got 11"),
])
def test_bad_requests_are_refused_in_one_line(server, path, body, status, message):
    got, answer = call(server, path, body)
    assert got == status and message in answer["error"] and "\n" not in answer["error"], answer
