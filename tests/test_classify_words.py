"""Classifiers over word tokens, and classifiers whose encoder starts from a language model (--init-from LM)."""

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke

from charlm.models import classifier
from charlm.store.checkpoint import load_checkpoint
from charlm.store.rundir import RunDir
from charlm.tasks.pretraining import PRETRAIN_DIR, language_model_options
from charlm.tasks.registry import open_trainer, train
from charlm.text.vocab import UNK
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import PRETRAIN_SHARE

ADJECTIVES = {"good": "pos", "great": "pos", "fine": "pos", "bad": "neg", "dull": "neg", "awful": "neg"}
FILLERS = ["the", "film", "was", "story", "acting", "plot", "really", "quite"]


def _sentiment_lines(n: int, seed: int) -> list[str]:
    """`label<TAB>text` lines whose label is set by an adjective and flipped by a "not" just before it: word
    order decides the label, as in "not bad at all"."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        words = list(rng.choice(FILLERS, rng.integers(2, 6)))
        adjective = str(rng.choice(list(ADJECTIVES)))
        negated = bool(rng.integers(2))
        label = ADJECTIVES[adjective]
        if negated:
            label = "neg" if label == "pos" else "pos"
        at = int(rng.integers(len(words) + 1))
        words[at:at] = ["not", adjective] if negated else [adjective]
        lines.append(f"{label}\t{' '.join(words)}")
    return lines


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    corpus = root / "sentiment.tsv"
    corpus.write_text("\n".join(_sentiment_lines(600, 3)) + "\n", encoding="utf-8")
    texts = root / "texts.txt"
    texts.write_text("".join(line.split("\t")[1] + "\n" for line in _sentiment_lines(600, 4)), encoding="utf-8")
    lm = root / "lm"
    done = invoke("train", texts, "--tokens", "word", "--hidden", 16, "--layers", 1, "--steps", 5, "--out", lm, "-q")
    assert done.exit_code == 0, done.output
    return root, corpus, lm


@pytest.fixture(scope="module")
def word_classifier(sentiment):
    root, corpus, _ = sentiment
    out = root / "classifier"
    done = invoke("train", corpus, "--task", "classify", "--tokens", "word", "--hidden", 24, "--layers", 1,
                  "--steps", 300, "--eval-every", 300, "--out", out, "--json", "-q")
    assert done.exit_code == 0, done.output
    return out


def test_a_word_classifier_learns_a_label_that_word_order_decides(sentiment, word_classifier):
    root, _, _ = sentiment
    vocab = load_checkpoint(word_classifier).vocab
    assert vocab.kind == "word" and "not" in vocab and "awful" in vocab
    held_out = root / "held_out.tsv"
    held_out.write_text("\n".join(_sentiment_lines(200, 9)) + "\n", encoding="utf-8")
    found = json.loads(invoke("evaluate", word_classifier, held_out, "--json").stdout)
    assert found["accuracy"] > 0.9, found
    [negated] = json.loads(invoke("classify", word_classifier, "the plot was not bad", "--json").stdout)
    assert negated["label"] == "pos"


def test_explain_gives_each_words_effect_on_the_chosen_label(word_classifier):
    text = "the acting was not awful"
    [explained] = json.loads(invoke("classify", word_classifier, text, "--explain", "--json").stdout)
    words = text.split()
    assert [token for token, _ in explained["tokens"]] == words
    # each effect is the label's probability lost when that word alone becomes <UNK> (a literal "<unk>")
    variants = [" ".join(words[:i] + ["<unk>"] + words[i + 1:]) for i in range(len(words))]
    found = json.loads(invoke("classify", word_classifier, text, *variants, "--top-k", 2, "--json").stdout)
    label = explained["label"]
    assert found[0]["label"] == label and found[0]["probability"] == pytest.approx(explained["probability"])
    expected = [explained["probability"] - dict(f["top"])[label] for f in found[1:]]
    assert [e for _, e in explained["tokens"]] == pytest.approx(expected, abs=1e-6)  # float32, other batches
    strongest = max(explained["tokens"], key=lambda te: abs(te[1]))[0]
    assert strongest in ("not", "awful")  # the words that decide the label
    shown = invoke("classify", word_classifier, text, "--explain")
    assert shown.exit_code == 0 and shown.stdout.startswith(f"{label}  ") and "for: " in shown.stdout
    assert shown.stdout.splitlines()[0].endswith(f"  {text}")  # the text as written, spacing kept


@pytest.mark.parametrize(("args", "code", "fragments"), [
    (["--explain", "--top-k", "2"], 2, ["--explain explains the top label"]),
    (["--explain", ""], 2, ["TEXT 2 is empty"]),
])
def test_explain_refuses_what_it_cannot_do(word_classifier, args, code, fragments):
    assert_one_line_error(invoke("classify", word_classifier, "good film", *args), code, *fragments)


def test_explain_on_a_language_model_says_what_to_use(sentiment):
    _, _, lm = sentiment
    assert_one_line_error(invoke("classify", lm, "good film", "--explain"), 2, "is a language model")


def test_a_pretrained_encoder_starts_the_classifier_with_the_language_models_arrays(sentiment, tmp_path):
    _, corpus, lm = sentiment
    opts = TrainOptions(corpus=str(corpus), task="classify", init_from=str(lm), steps=1, out=str(tmp_path / "r"))
    with RunDir(opts.run_dir) as run_dir:
        trainer = open_trainer(opts, run_dir, explicit=frozenset({"init_from", "steps"}))
    source = load_checkpoint(lm)
    assert trainer.task.vocab == source.vocab and trainer.cfg.hidden == 16 and trainer.cfg.kind == "classifier"
    copied = [name for name in source.params if name == "embed.W" or name.startswith("layer.")]
    assert copied and all(np.array_equal(trainer.params[name], source.params[name]) for name in copied)
    assert "head.0.W" in trainer.params and trainer.task.data_meta()["encoder_from"] == str(source.path)


def test_info_says_where_the_encoder_came_from(sentiment, tmp_path):
    _, corpus, lm = sentiment
    out = tmp_path / "run"
    assert invoke("train", corpus, "--task", "classify", "--init-from", lm, "--steps", 2, "--out", out,
                  "-q").exit_code == 0
    assert str(lm) in invoke("info", out).stdout
    assert json.loads(invoke("info", out, "--json").stdout)["task"]["encoder_from"].startswith(str(lm))


@pytest.mark.parametrize(("args", "fragments"), [
    (["--hidden", "8"], ["--hidden 8 (was 16)"]),
    (["--tokens", "char"], ["is a word-level model", "--tokens char"]),
])
def test_an_encoder_that_does_not_fit_is_a_usage_error_naming_both(sentiment, tmp_path, args, fragments):
    _, corpus, lm = sentiment
    done = invoke("train", corpus, "--task", "classify", "--init-from", lm, "--steps", 1,
                  "--out", tmp_path / "r", *args)
    assert_one_line_error(done, 2, *fragments)
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.safetensors"))


def test_a_deep_pretrained_encoder_cannot_be_read_both_ways(sentiment, tmp_path):
    root, corpus, _ = sentiment
    deep = tmp_path / "deep"
    assert invoke("train", root / "texts.txt", "--tokens", "word", "--hidden", 8, "--layers", 2, "--steps", 1,
                  "--out", deep, "-q").exit_code == 0
    done = invoke("train", corpus, "--task", "classify", "--init-from", deep, "--bidirectional", "--steps", 1,
                  "--out", tmp_path / "r")
    assert_one_line_error(done, 2, "has 2 layers", "--bidirectional")


def test_a_tagger_cannot_start_from_a_word_language_model(sentiment, tmp_path):
    root, _, lm = sentiment
    done = invoke("train", root / "texts.txt", "--task", "truecase", "--init-from", lm, "--steps", 1,
                  "--out", tmp_path / "r")
    assert_one_line_error(done, 2, "--task truecase reads char tokens")


def test_pretrain_trains_a_language_model_on_the_texts_then_the_classifier_from_it(sentiment, tmp_path):
    _, corpus, _ = sentiment
    out = tmp_path / "run"
    done = invoke("train", corpus, "--task", "classify", "--tokens", "word", "--pretrain", "--time", "8s",
                  "--hidden", 16, "--out", out, "-q")
    assert done.exit_code == 0, done.output
    lm = load_checkpoint(out / "pretrain")
    texts = (out / "pretrain" / "texts.txt").read_text(encoding="utf-8").splitlines()
    assert lm.config.kind == "lm" and texts == [line.split("\t")[1] for line in corpus.read_text().splitlines()]
    classifier = load_checkpoint(out)
    assert classifier.vocab == lm.vocab and classifier.data["encoder_from"] == str(lm.path)
    assert json.loads(invoke("info", out, "--json").stdout)["task"]["encoder_from"] == str(lm.path)
    assert "pre-trained: " in invoke("info", out).stdout


@pytest.mark.parametrize(("args", "fragments"), [
    (["--init-from", "LM"], ["--pretrain trains the encoder that --init-from would give"]),
    (["--steps", "3"], ["--pretrain shares a --time budget"]),
    (["--task", "lm"], ["does not apply to --task lm"]),
])
def test_pretrain_refuses_what_it_cannot_share(sentiment, tmp_path, args, fragments):
    _, corpus, lm = sentiment
    args = [str(lm) if a == "LM" else a for a in args]
    task = [] if "--task" in args else ["--task", "classify"]
    done = invoke("train", corpus, *task, "--pretrain", "--out", tmp_path / "r", *args)
    assert_one_line_error(done, 2, *fragments)
    assert not (tmp_path / "r" / "pretrain").exists()


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_token_dropout_reads_that_share_of_the_input_as_unk(sentiment, tmp_path, rate):
    _, corpus, _ = sentiment
    opts = TrainOptions(corpus=str(corpus), task="classify", tokens="word", hidden=8, steps=1, token_dropout=rate,
                        dropout=0.0, out=str(tmp_path / "r"))
    with RunDir(opts.run_dir) as run_dir:
        trainer = open_trainer(opts, run_dir, explicit=frozenset({"tokens", "hidden", "steps", "token_dropout"}))
    task = trainer.task
    x, targets = task.batches().next_batch()
    loss, _, _ = task.loss_and_grads(trainer.params, trainer.cfg, x, targets, None, rng=np.random.default_rng(5),
                                     workspace={})
    drawn = np.random.default_rng(5).random(x.shape) < rate  # the draw the task makes first
    labels, lengths, weights = targets
    expected, _ = classifier.loss_and_grads(trainer.params, trainer.cfg, np.where(drawn, UNK, x), labels, lengths,
                                            weights=weights)
    assert loss == pytest.approx(expected, rel=1e-6)
    if rate:
        plain, _ = classifier.loss_and_grads(trainer.params, trainer.cfg, x, labels, lengths, weights=weights)
        assert drawn[: lengths.min()].any() and loss != pytest.approx(plain, rel=1e-6)


def test_average_keeps_the_moving_average_of_the_weights_and_resumes_it_exactly(sentiment, tmp_path):
    _, corpus, _ = sentiment
    # constant schedule: a cosine one depends on the total steps, which the first part does not know
    common = dict(corpus=str(corpus), task="classify", tokens="word", hidden=8, batch=16, eval_every=8,
                  average=0.9, token_dropout=0.1, schedule="constant", warmup=0)
    train(TrainOptions(out=str(tmp_path / "whole"), steps=8, **common))
    train(TrainOptions(out=str(tmp_path / "split"), steps=4, **common))
    train(TrainOptions(out=str(tmp_path / "split"), steps=8, resume=True, **common), explicit=frozenset({"steps"}))
    whole = load_checkpoint(tmp_path / "whole", prefer="latest")
    split = load_checkpoint(tmp_path / "split", prefer="latest")
    for name in whole.optim:
        np.testing.assert_array_equal(whole.optim[name], split.optim[name])
    averages = {name[len("average/"):]: a for name, a in whole.optim.items() if name.startswith("average/")}
    assert set(averages) == set(whole.params)
    assert any(not np.allclose(averages[n], whole.params[n]) for n in averages)  # not the raw weights
    best = load_checkpoint(tmp_path / "whole")  # the one evaluation, at step 8: the average is kept
    assert best.train["step"] == 8 and all(np.array_equal(best.params[n], averages[n]) for n in averages)


def test_a_resume_cannot_switch_the_average_on(sentiment, tmp_path):
    _, corpus, _ = sentiment
    out = tmp_path / "r"
    assert invoke("train", corpus, "--task", "classify", "--tokens", "word", "--hidden", 8, "--average", 0,
                  "--steps", 2, "--out", out, "-q").exit_code == 0
    done = invoke("train", corpus, "--task", "classify", "--average", 0.99, "--steps", 4, "--out", out, "--resume")
    assert_one_line_error(done, 1, "--average 0.99 (was 0.0)")


def test_encoder_lr_zero_freezes_the_pretrained_arrays_and_trains_the_rest(sentiment, tmp_path):
    _, corpus, lm = sentiment
    out = tmp_path / "r"
    assert invoke("train", corpus, "--task", "classify", "--init-from", lm, "--bidirectional", "--encoder-lr", 0,
                  "--steps", 5, "--out", out, "-q").exit_code == 0
    source, trained = load_checkpoint(lm).params, load_checkpoint(out, prefer="latest").params
    pretrained = [name for name in source if name in trained]
    assert pretrained and all(np.array_equal(trained[n], source[n]) for n in pretrained)
    moving = tmp_path / "moving"  # the same run at the full rate moves them
    assert invoke("train", corpus, "--task", "classify", "--init-from", lm, "--bidirectional", "--steps", 5,
                  "--out", moving, "-q").exit_code == 0
    moved = load_checkpoint(moving, prefer="latest").params
    assert not any(np.array_equal(moved[n], source[n]) for n in pretrained)


def test_encoder_lr_is_a_usage_error_for_a_language_model(sentiment, tmp_path):
    root, _, _ = sentiment
    done = invoke("train", root / "texts.txt", "--encoder-lr", 0.5, "--steps", 1, "--out", tmp_path / "r")
    assert_one_line_error(done, 2, "--encoder-lr does not apply to --task lm")


def test_a_resume_after_a_stop_while_pretraining_finishes_both_runs_in_the_budget(sentiment, tmp_path):
    root, corpus, _ = sentiment
    out = tmp_path / "run"
    first = TrainOptions(corpus=str(corpus), task="classify", tokens="word", hidden=16, time_budget=10.0,
                         out=str(out))
    lm_opts, lm_explicit = language_model_options(first, out / PRETRAIN_DIR, resume=False)
    (out / PRETRAIN_DIR).mkdir(parents=True)
    (out / PRETRAIN_DIR / "texts.txt").write_text((root / "texts.txt").read_text())
    train(replace(lm_opts, steps=3), explicit=lm_explicit | {"steps"})  # stopped before the classifier began
    assert not list(out.glob("*.safetensors"))
    # the resume names neither the tokens nor the budget: both come from the run
    train(TrainOptions(corpus=str(corpus), task="classify", out=str(out), resume=True),
          explicit=frozenset({"resume"}))
    classifier = load_checkpoint(out)
    assert classifier.vocab.kind == "word" and classifier.data["encoder_from"].startswith(str(out / PRETRAIN_DIR))
    assert classifier.train["options"]["time_budget"] == pytest.approx(4.0 / PRETRAIN_SHARE)
