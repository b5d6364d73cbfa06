"""The Python API: `charlm.load` on real runs of every kind trained here, each method answering as the command of
the same name does for the same input, the model staying loaded; `charlm.train` running what `charlm train`
runs; and bad input (paths that hold no run, sampling values out of range, unknown training options, a method of
another kind of model) as charlm's one-line exceptions, in the commands' words."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke, run_charlm
from onnx_runs import run, session_of
from task_runs import surnames, train_tagger

import charlm
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.tasks.description import describe
from charlm.text.tokenizer import Vocab
from charlm.training import events

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
# The language model's training options, as keywords and as `charlm train` flags.
LM_OPTIONS = dict(hidden=16, layers=1, steps=30, eval_every=30, eos="lines", batch=8, seq_len=32)
LM_FLAGS = ["--hidden", 16, "--layers", 1, "--steps", 30, "--eval-every", 30, "--eos", "lines", "--batch", 8,
            "--seq-len", 32]


def word_lines(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(WORDS, size=8)) for _ in range(n)) + "\n"


def reversals(n: int, seed: int) -> str:
    """`word<TAB>WORD reversed` lines, an encoder–decoder's pairs."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcdefgh"), rng.integers(2, 6))) for _ in range(n)]
    return "\n".join(f"{w}\t{w[::-1].upper()}" for w in words) + "\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real runs of each kind, trained here in a few seconds: a language model of lines and a classifier and an
    encoder–decoder by `charlm.train`, a truecase+punctuate tagger by the library; and the LM's corpus."""
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as patch:  # the function-scoped fixtures of conftest.py are not set up yet
        patch.setenv("CHARLM_CACHE_DIR", str(root / "cache"))
        patch.setenv("OMP_NUM_THREADS", "1")
        corpus = root / "corpus.txt"
        corpus.write_text(word_lines(200, 0), encoding="utf-8")
        lm = charlm.train(corpus, out=str(root / "lm"), **LM_OPTIONS)
        (root / "names.tsv").write_text("\n".join(surnames(4)) + "\n", encoding="utf-8")
        charlm.train(root / "names.tsv", out=str(root / "classifier"), task="classify", bidirectional=True,
                     hidden=16, layers=1, batch=16, steps=40, eval_every=20, warmup=1)
        (root / "pairs.tsv").write_text(reversals(200, 0), encoding="utf-8")
        charlm.train(root / "pairs.tsv", out=str(root / "seq2seq"), task="translate", hidden=16, layers=1,
                     batch=32, steps=30, lr=0.01)
        tagger = train_tagger(root)
    return dict(lm=root / "lm", lm_result=lm, corpus=corpus, classifier=root / "classifier",
                seq2seq=root / "seq2seq", tagger=tagger, root=root)


@pytest.fixture
def untrained(tmp_path):
    """A language model's checkpoint file, never trained (its vocabulary: a, b, c and space)."""
    vocab = Vocab.build({c: 1 for c in "abc "})
    cfg = ModelConfig("lstm", vocab.size, 4)
    return save_checkpoint(tmp_path / "lm.safetensors", params=init_params(cfg, np.random.default_rng(0)),
                           config=cfg, vocab=vocab, data={"eos_mode": "file", "encoding": "utf-8"})


def cli_json(*args):
    done = invoke(*args, "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


# ------------------------------------------------------------------------------------------ the names


def test_importing_charlm_or_its_errors_loads_neither_the_api_nor_numpy():
    probe = ("import sys, charlm, charlm.errors\n"
             "print('charlm.api' in sys.modules, 'numpy' in sys.modules)\n"
             "charlm.load\n"
             "print('charlm.api.models' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]


def test_every_public_name_resolves_and_star_import_gives_them():
    for name in charlm.__all__:
        assert getattr(charlm, name) is not None, name
    assert issubclass(charlm.ConfigError, charlm.CharlmError) and charlm.ConfigError is charlm.errors.ConfigError
    namespace = {}
    exec("from charlm import *", namespace)
    assert set(charlm.__all__) <= set(namespace)
    with pytest.raises(AttributeError):
        charlm.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_train_returns_the_result_of_a_run_the_command_line_repeats_bit_for_bit(runs, tmp_path):
    result = runs["lm_result"]
    assert isinstance(result, charlm.TrainResult)
    assert result.steps == 30 and result.stopped_by == "steps"
    assert load_checkpoint(result.checkpoint).path == load_checkpoint(runs["lm"]).path
    done = invoke("train", runs["corpus"], "--out", tmp_path / "cli", *LM_FLAGS, "-q")
    assert done.exit_code == 0, done.output
    by_api, by_cli = load_checkpoint(runs["lm"]), load_checkpoint(tmp_path / "cli")
    assert by_api.config == by_cli.config and by_api.train["step"] == by_cli.train["step"] == 30
    for name, array in by_api.params.items():
        np.testing.assert_array_equal(array, by_cli.params[name], err_msg=name)


@pytest.mark.slow
def test_train_reports_events_when_asked(runs, tmp_path):
    seen = []
    result = charlm.train(runs["corpus"], out=str(tmp_path / "run"), report=seen.append, **LM_OPTIONS)
    assert {events.Recipe, events.Progress, events.Evaluation} <= {type(event) for event in seen}
    assert [event.step for event in seen if isinstance(event, events.Evaluation)] == [30]
    assert result.best_val_loss == runs["lm_result"].best_val_loss  # the same run again, to the bit


def test_unknown_training_options_are_config_errors_naming_them(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(word_lines(20, 1), encoding="utf-8")
    for options, words in ((dict(hiden=8), "'hiden'; did you mean 'hidden'?"),
                           (dict(time=60), "'time'; did you mean 'time_budget'?"),
                           (dict(procs=2), "'procs'")):
        with pytest.raises(charlm.ConfigError) as caught:
            charlm.train(corpus, out=str(tmp_path / "run"), steps=2, **options)
        assert str(caught.value) == f"unknown training option {words}"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options,message", [
    (dict(time_budget=0), "--time must be a finite number > 0, got 0"),
    (dict(batch=0), "--batch must be a whole number >= 1, got 0"),
    (dict(seq_len=0), "--seq-len must be a whole number >= 1, got 0"),
    (dict(steps=0), "--steps must be a whole number >= 1, got 0"),
    (dict(epochs=-1.0), "--epochs must be a finite number > 0, got -1.0"),
    (dict(hidden=2.5), "--hidden must be a whole number >= 1, got 2.5"),
    (dict(clip=float("nan")), "--clip must be a finite number >= 0, got nan"),
])
def test_values_the_command_line_refuses_are_config_errors_here_too(tmp_path, options, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(word_lines(20, 1), encoding="utf-8")
    with pytest.raises(charlm.ConfigError) as caught:
        charlm.train(corpus, out=str(tmp_path / "run"), **options)
    assert str(caught.value) == message
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_stopped_run_gives_the_caller_its_own_ctrl_c_back(runs, tmp_path):
    """Ctrl-C stops charlm.train after a clean save (TrainingInterrupted); the caller's SIGINT handler is its
    own again afterwards, so a notebook can be interrupted once more."""
    mine = signal.getsignal(signal.SIGINT)

    def interrupt_once(event):
        if isinstance(event, events.Progress) and not interrupt_once.sent:
            interrupt_once.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    interrupt_once.sent = False
    with pytest.raises(charlm.TrainingInterrupted) as caught:
        charlm.train(runs["corpus"], out=str(tmp_path / "run"), report=interrupt_once,
                     **{**LM_OPTIONS, "steps": 10_000})
    assert caught.value.signum == signal.SIGINT
    assert list((tmp_path / "run").glob("ckpt-*.safetensors"))  # saved before stopping
    assert signal.getsignal(signal.SIGINT) is mine
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def test_a_missing_corpus_is_a_corpus_error(tmp_path):
    with pytest.raises(charlm.CorpusError, match="no such file") as caught:
        charlm.train(tmp_path / "nope.txt", out=str(tmp_path / "run"), steps=2)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------- language models


@pytest.mark.slow
def test_load_gives_the_object_of_the_kind_with_what_info_shows(runs):
    classes = {"lm": charlm.LanguageModel, "tagger": charlm.Tagger, "classifier": charlm.Classifier,
               "seq2seq": charlm.EncoderDecoder}
    for kind, cls in classes.items():
        model = charlm.load(runs[kind])
        ckpt = load_checkpoint(runs[kind])
        assert type(model) is cls and model.kind == kind
        assert model.path == ckpt.path and model.config == ckpt.config and model.vocab == ckpt.vocab
        assert model.info() == describe(ckpt)
        assert json.loads(json.dumps(model.info())) == cli_json("info", runs[kind])  # tuples become lists
    assert charlm.load(runs["lm"] / "best.safetensors").path == charlm.load(runs["lm"]).path


@pytest.mark.slow
def test_sample_repeats_with_a_seed_and_draws_what_charlm_sample_draws(runs):
    lm = charlm.load(runs["lm"])
    texts = lm.sample(n=3, length=40, temperature=0.8, top_k=5, prime="the ", seed=1)
    assert lm.sample(n=3, length=40, temperature=0.8, top_k=5, prime="the ", seed=1) == texts
    assert lm.sample(n=3, length=40, temperature=0.8, top_k=5, prime="the ", seed=2) != texts
    records = cli_json("sample", runs["lm"], "-n", 3, "-l", 40, "-t", 0.8, "--top-k", 5, "-p", "the ", "--seed", 1)
    assert texts == [r["text"] for r in records]
    assert len(texts) == 3 and all(t.startswith("the ") and "\n" not in t for t in texts)  # lines end at <EOS>


@pytest.mark.slow
def test_score_is_charlm_scores_logprob_in_the_given_order(runs):
    lm = charlm.load(runs["lm"])
    texts = ["zzq xqz", "the cat sat on a mat", "a dog ran"]
    done = run_charlm("score", runs["lm"], *texts, "--json")
    assert done.returncode == 0, done.stderr
    ranked = {r["text"]: r["logprob"] for r in json.loads(done.stdout)}
    with pytest.warns(UserWarning, match="outside the vocabulary are scored as <UNK>: 'q', 'x', 'z'"):
        assert lm.score(texts) == [ranked[t] for t in texts]
    assert list(ranked) != texts  # the command ranked them; the API kept their order
    assert lm.score("a dog ran") == lm.score(["a dog ran"])[0]


@pytest.mark.slow
def test_perplexity_of_a_text_is_charlm_perplexity_of_the_file(runs, tmp_path):
    lm = charlm.load(runs["lm"])
    text = "the cat sat on a mat\n\nthe dog ran to it, Z\nand"
    path = tmp_path / "held.txt"
    path.write_text(text, encoding="utf-8")
    done = run_charlm("perplexity", runs["lm"], path, "--json")
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["total"]
    assert lm.perplexity(text) == total
    assert total["unk"] == 2 and total["perplexity"] > 1  # ',' and 'Z' are not in the vocabulary


@pytest.mark.slow
def test_a_loaded_model_needs_its_files_no_more(runs, tmp_path):
    copy = shutil.copytree(runs["lm"], tmp_path / "lm")
    lm = charlm.load(copy)
    first = lm.sample(length=30, seed=4)
    shutil.rmtree(copy)
    assert lm.sample(length=30, seed=4) == first
    assert lm.score(["a cat"]) == charlm.load(runs["lm"]).score(["a cat"])
    written = lm.export(tmp_path / "lm.onnx")  # exported from memory: the run is gone
    assert written["kind"] == "lm" and written["bytes"] == (tmp_path / "lm.onnx").stat().st_size


def test_export_writes_what_charlm_export_writes_and_runs_in_onnxruntime(untrained, tmp_path):
    model = charlm.load(untrained)
    written = model.export(tmp_path / "api.onnx")
    assert invoke("export", untrained, "-o", tmp_path / "cli.onnx").exit_code == 0
    assert (tmp_path / "api.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    assert [v["name"] for v in written["outputs"]] == ["log_probs", "hn", "cn"]
    ids = model.vocab.encode("ab ba")[:, None].astype(np.int64)  # (T, 1)
    log_probs = run(session_of(tmp_path / "api.onnx"), ids=ids)["log_probs"]
    assert np.allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
    with pytest.raises(charlm.ConfigError, match="unknown export format 'tflite'"):
        model.export(tmp_path / "x", format="tflite")
    with pytest.raises(charlm.CharlmError, match="does not exist"):
        model.export(tmp_path / "missing" / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx") == ["api.onnx", "cli.onnx"]


def test_the_perplexity_of_no_text_is_a_corpus_error_about_the_text(untrained):
    for text in ("", " \n\n"):
        with pytest.raises(charlm.CorpusError) as caught:
            charlm.load(untrained).perplexity(text)
        assert str(caught.value) == "the text: corpus is empty (no text after removing the BOM and whitespace)"


def test_prime_warnings_go_to_pythons_warnings(untrained):
    lm = charlm.load(untrained)
    with pytest.warns(UserWarning, match="outside the vocabulary, read as <UNK>: 'z'"):
        texts = lm.sample(length=3, prime="abz", seed=0)
    assert len(texts) == 1 and texts[0].startswith("abz")


@pytest.mark.parametrize(("options", "option", "flags"), [
    (dict(temperature=-1.0), "temperature", ["-t", "-1"]),
    (dict(temperature=float("nan")), "temperature", ["-t", "nan"]),
    (dict(top_k=0), "top_k", ["--top-k", "0"]),
    (dict(top_k=7), "top_k", ["--top-k", "7"]),
    (dict(top_p=1.5), "top_p", ["--top-p", "1.5"]),
    (dict(top_p=0.0), "top_p", ["--top-p", "0"]),
    (dict(n=0), "num_samples", ["-n", "0"]),
    (dict(length=-1), "length", ["-l", "-1"]),
])
def test_bad_sampling_values_are_config_errors_in_charlm_samples_words(untrained, options, option, flags):
    with pytest.raises(charlm.ConfigError) as caught:
        charlm.load(untrained).sample(**options)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(option + " must be")
    line = assert_one_line_error(invoke("sample", untrained, *flags), 2)
    assert line.endswith(": " + message[len(option) + 1:]), (line, message)


# ------------------------------------------------------------------------------ the other kinds of model


@pytest.mark.slow
def test_tag_is_charlm_tag(runs):
    tagger = charlm.load(runs["tagger"])
    texts = ["alice met the cat in a park", "bob saw carol"]
    found = tagger.tag(texts)
    assert found == cli_json("tag", runs["tagger"], *texts)
    assert tagger.tag(texts[0]) == tagger.tag(texts[:1])[0]  # one text, one record
    assert set(tagger.labels) == {"case", "punct"} and "?" in tagger.labels["punct"]


@pytest.mark.slow
def test_classify_is_charlm_classify_with_the_models_labels(runs):
    classifier = charlm.load(runs["classifier"])
    texts = ["Petrov", "Nakamuraki", "Papadopoulos"]
    found = classifier.classify(texts, top_k=2)
    assert found == cli_json("classify", runs["classifier"], *texts, "--top-k", 2)
    assert set(classifier.labels) == {"Russian", "Greek", "Irish", "Japanese"}
    assert all(r["label"] in classifier.labels and len(r["top"]) == 2 for r in found)
    every = classifier.classify("Petrov", top_k=10)
    assert sorted(label for label, _ in every["top"]) == sorted(classifier.labels)
    with pytest.raises(charlm.ConfigError, match="top_k must be at least 1, got 0"):
        classifier.classify(texts, top_k=0)


@pytest.mark.slow
def test_translate_is_charlm_translate(runs):
    model = charlm.load(runs["seq2seq"])
    texts = ["abc", "hgfe"]
    found = model.translate(texts, beam=3, nbest=2)
    assert found == cli_json("translate", runs["seq2seq"], *texts, "--beam", 3, "--nbest", 2)
    assert model.translate(texts) == cli_json("translate", runs["seq2seq"], *texts)
    sampled = model.translate("abc", n=3, temperature=0.5, seed=2)
    assert sampled == cli_json("translate", runs["seq2seq"], "abc", "-n", 3, "--temperature", 0.5, "--seed", 2)[0]
    assert set("".join(r["output"] for r in found)) <= set("ABCDEFGH")  # the target side's letters
    with pytest.raises(charlm.ConfigError, match="--beam must be at least 1, got 0"):
        model.translate(texts, beam=0)


@pytest.mark.slow
def test_a_method_of_another_kind_of_model_is_absent_and_says_what_the_model_is(runs):
    lm, tagger = charlm.load(runs["lm"]), charlm.load(runs["tagger"])
    classifier, seq2seq = charlm.load(runs["classifier"]), charlm.load(runs["seq2seq"])
    for model, method, said in ((lm, "tag", "is a language model, not a tagger: it has no tag()"),
                                (tagger, "sample", "is a tagger, not a language model: it has no sample()"),
                                (classifier, "translate", "is a classifier, not an encoder–decoder"),
                                (seq2seq, "classify", "is an encoder–decoder, not a classifier")):
        assert not hasattr(model, method)
        with pytest.raises(AttributeError, match=said):
            getattr(model, method)
    with pytest.raises(AttributeError, match="'LanguageModel' object has no attribute 'nothing'"):
        lm.nothing  # noqa: B018


# ------------------------------------------------------------------------------------------ bad paths


def test_load_refuses_what_is_not_a_run_in_one_line(untrained, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "cut.safetensors").write_bytes(untrained.read_bytes()[:-100])
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "notes.txt").write_text("not a checkpoint\n", encoding="utf-8")
    for name, said in (("missing", "checkpoint not found"), ("empty", "no checkpoint in"),
                       ("cut.safetensors", "truncated"), ("noise.safetensors", "not a charlm checkpoint"),
                       ("notes.txt", "not a charlm checkpoint")):
        with pytest.raises(charlm.CheckpointError) as caught:
            charlm.load(tmp_path / name)
        message = str(caught.value)
        assert said in message and name in message and "\n" not in message, message
