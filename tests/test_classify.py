"""Classification: pooling and its gradients, rules that need the whole text, the labelled-file reader and the
stratified split, and real runs of `charlm train --task classify`, `charlm classify` and `charlm evaluate`."""

import json

import numpy as np
import pytest
from helpers import invoke
from helpers import run_charlm as run

from charlm.engine.optim import Adam
from charlm.errors import ConfigError, CorpusError
from charlm.models import classifier
from charlm.models.config import ModelConfig
from charlm.models.encoder import encoder_forward, init_state
from charlm.models.gradcheck import check_model
from charlm.tasks.classify.labelled_text import read_labelled, stratified_split

CELLS = ["rnn", "gru", "lstm"]


# ---------------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("pool", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_gradcheck(cell, pool, bidirectional):
    cfg = ModelConfig(cell=cell, vocab_size=5, hidden=3, layers=2, dropout=0.2, bidirectional=bidirectional,
                      heads=(3,), pool=pool)
    results = check_model(cfg, seq_len=4, batch=3, seed=7, max_coords=12)
    assert [r.name for r in results] == list(classifier.param_shapes(cfg))
    failed = [(r.name, r.error) for r in results if not r.passed]
    assert not failed, failed


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_padding_gets_exactly_zero_gradient(pool):
    rng = np.random.default_rng(0)
    cfg = ModelConfig(cell="gru", vocab_size=6, hidden=4, bidirectional=True, heads=(2,), pool=pool,
                      dtype="float64")
    params = classifier.init_params(cfg, rng)
    x = rng.integers(0, 6, (7, 3))
    lengths = np.array([7, 3, 1])
    out, _, _ = encoder_forward(params, cfg, x, init_state(cfg, 3), lengths=lengths)
    pooled, cache = classifier.pool_forward(out, lengths, cfg)
    dout = classifier.pool_backward(rng.normal(size=pooled.shape), cache)
    padding = np.arange(7)[:, None] >= lengths[None, :]
    assert np.all(dout[padding] == 0.0) and np.any(dout[~padding] != 0.0)
    other = x.copy()
    other[padding] = (x[padding] + 1) % 6  # different padding ids change nothing
    y = np.array([0, 1, 1])
    loss, grads = classifier.loss_and_grads(params, cfg, x, y, lengths)
    loss_other, grads_other = classifier.loss_and_grads(params, cfg, other, y, lengths)
    assert loss == loss_other
    for name in params:
        np.testing.assert_array_equal(grads[name], grads_other[name])


def test_last_pooling_takes_each_directions_final_state():
    cfg = ModelConfig(cell="lstm", vocab_size=5, hidden=3, bidirectional=True, heads=(2,), pool="last",
                      dtype="float64")
    params = classifier.init_params(cfg, np.random.default_rng(1))
    x = np.array([[1, 2], [3, 4], [2, 0]])
    out, _, _ = encoder_forward(params, cfg, x, init_state(cfg, 2), lengths=[3, 2])
    pooled, _ = classifier.pool_forward(out, np.array([3, 2]), cfg)
    np.testing.assert_array_equal(pooled[0], np.r_[out[2, 0, :3], out[0, 0, 3:]])
    np.testing.assert_array_equal(pooled[1], np.r_[out[1, 1, :3], out[0, 1, 3:]])


def _learn(cfg, texts, y, steps=300):
    params = classifier.init_params(cfg, np.random.default_rng(0))
    opt = Adam(params)
    lengths = np.array([len(t) for t in texts])
    x = np.zeros((lengths.max(), len(texts)), dtype=np.int64)
    for b, t in enumerate(texts):
        x[:len(t), b] = t
    losses = []
    for _ in range(steps):
        loss, grads = classifier.loss_and_grads(params, cfg, x, y, lengths)
        opt.step(params, grads, 0.02)
        losses.append(loss)
    accuracy = (classifier.predict(params, cfg, x, lengths).argmax(axis=1) == y).mean()
    return losses, accuracy


def test_learns_the_parity_of_a_letters_count_over_the_whole_text():
    rng = np.random.default_rng(2)
    texts = [rng.integers(2, 5, rng.integers(3, 9)) for _ in range(96)]
    y = np.array([int((t == 2).sum() % 2) for t in texts])
    losses, accuracy = _learn(ModelConfig("gru", 5, 12, heads=(2,), pool="last"), texts, y, steps=400)
    assert losses[-1] < 0.2 * losses[0] and accuracy >= 0.95


def test_bidirectional_last_pooling_learns_a_rule_set_by_the_first_character():
    """A unidirectional `last` state must carry the first character across a long text; the reverse
    direction's final state has just read it."""
    rng = np.random.default_rng(3)
    texts = [rng.integers(2, 6, 30) for _ in range(64)]
    y = np.array([int(t[0] >= 4) for t in texts])
    _, accuracy = _learn(ModelConfig("rnn", 6, 8, heads=(2,), pool="last", bidirectional=True), texts, y,
                         steps=150)
    assert accuracy == 1.0


def test_a_classifier_config_needs_one_head_and_a_known_pool():
    with pytest.raises(ConfigError):
        ModelConfig("gru", 5, 4, heads=(2, 3), pool="last")
    with pytest.raises(ConfigError):
        ModelConfig("gru", 5, 4, heads=(2,), pool="median")


# ---------------------------------------------------------------------------------------- data


def test_read_labelled_tab_and_fasttext(tmp_path):
    tab = tmp_path / "tab.tsv"
    tab.write_text("Russian\tIvanov\n\nGreek\tPapadopoulos\n", encoding="utf-8")
    found = read_labelled(tab)
    assert (found.texts, found.labels, found.lines, found.fasttext) == (
        ["Ivanov", "Papadopoulos"], ["Russian", "Greek"], [1, 3], False)
    ft = tmp_path / "ft.txt"
    ft.write_text("__label__pos what a great film\n__label__neg dull\n", encoding="utf-8")
    found = read_labelled(ft)
    assert found.fasttext and found.labels == ["pos", "neg"] and found.texts == ["what a great film", "dull"]


@pytest.mark.parametrize(("content", "message"), [
    ("Russian\tIvanov\nno label here\n", "bad.txt:2: no label"),
    ("Russian\tIvanov\nGreek\t  \n", "bad.txt:2: the text of label 'Greek' is empty"),
    ("", "no examples"),
])
def test_bad_lines_name_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_labelled(bad)


def test_stratified_split_keeps_every_label_in_both_parts():
    labels = ["a"] * 50 + ["b"] * 5 + ["c"] * 2 + ["d"]
    train, held = stratified_split(labels, 0.1, seed=1)
    assert sorted(np.r_[train, held].tolist()) == list(range(len(labels)))
    held_labels = [labels[i] for i in held]
    train_labels = [labels[i] for i in train]
    assert held_labels.count("a") == 5 and held_labels.count("b") == 1 and held_labels.count("c") == 1
    assert "d" not in held_labels and {"a", "b", "c", "d"} <= set(train_labels)
    again, _ = stratified_split(labels, 0.1, seed=1)
    np.testing.assert_array_equal(train, again)


# ---------------------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def surnames(tmp_path_factory):
    """Generated 'surnames' whose label is set by their ending, with a skewed label distribution."""
    root = tmp_path_factory.mktemp("classify")
    rng = np.random.default_rng(4)
    endings = {"Russian": "ov", "Greek": "los", "Irish": "an", "Japanese": "ki"}
    sizes = {"Russian": 300, "Greek": 80, "Irish": 60, "Japanese": 40}
    lines = []
    for label, n in sizes.items():
        for _ in range(n):
            stem = "".join(rng.choice(list("bcdfgklmnprstv aeiou".replace(" ", "")), rng.integers(2, 6)))
            lines.append(f"{label}\t{stem.capitalize()}{endings[label]}")
    rng.shuffle(lines)
    corpus = root / "names.tsv"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "run"
    done = run("train", corpus, "--task", "classify", "--bidirectional", "--hidden", 24, "--steps", 200,
               "--eval-every", 50, "--balance", "--out", out, "--json", "-q")
    assert done.returncode == 0, done.stderr
    return corpus, out, done


@pytest.mark.slow
def test_training_reports_accuracy_and_macro_f1(surnames):
    _, out, done = surnames
    evals = [json.loads(line) for line in done.stdout.splitlines() if '"val_f1"' in line]
    assert len(evals) == 4 and evals[-1]["val_accuracy"] > 0.9 and evals[-1]["val_f1"] > 0.85
    described = json.loads(run("info", out, "--json").stdout)["task"]
    assert described == {"task": "classify", "labels": ["Greek", "Irish", "Japanese", "Russian"], "pool": "last",
                         "bidirectional": True, "best_val_f1": max(e["val_f1"] for e in evals),
                         "encoder_from": None}


@pytest.mark.slow
def test_classify_and_evaluate(surnames):
    corpus, out, _ = surnames
    done = run("classify", out, "Petrov", "Nakamuraki", "--top-k", "2")
    assert done.returncode == 0, done.stderr
    first, second = [line.split("\t") for line in done.stdout.splitlines()]
    assert first[0] == "Russian" and second[0] == "Japanese" and first[-1] == "Petrov" and len(first) == 5
    records = json.loads(run("classify", out, "Petrov", "--json").stdout)
    assert records[0]["label"] == "Russian" and records[0]["top"][0] == ["Russian", records[0]["probability"]]
    found = json.loads(run("evaluate", out, corpus, "--json").stdout)
    assert found["task"] == "classify" and found["accuracy"] > 0.9 and found["macro_f1"] > 0.85
    labels = found["confusion"]["labels"]
    assert labels == ["Greek", "Irish", "Japanese", "Russian"]
    matrix = np.array(found["confusion"]["matrix"])
    assert matrix.sum() == 480 and [found["labels"][name]["support"] for name in labels] == matrix.sum(axis=1).tolist()
    table = run("evaluate", out, corpus)
    assert table.returncode == 0 and "most confused" in table.stdout and "macro-F1" in table.stdout


@pytest.mark.slow
def test_fasttext_files_are_detected_and_said(tmp_path):
    corpus = tmp_path / "ft.txt"
    corpus.write_text("".join(f"__label__{'pos' if i % 2 else 'neg'} text number {i}\n" for i in range(40)),
                      encoding="utf-8")
    done = run("train", corpus, "--task", "classify", "--steps", 3, "--hidden", 4, "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "fastText format" in done.stderr


@pytest.mark.slow
def test_classifiers_and_language_models_refuse_each_others_commands(surnames, tmp_path):
    corpus, out, _ = surnames
    text = tmp_path / "plain.txt"
    text.write_text("some plain text to train a tiny language model on\n" * 40, encoding="utf-8")
    lm = tmp_path / "lm"
    assert run("train", text, "--steps", 2, "--hidden", 4, "--batch", 4, "--seq-len", 16, "--out", lm).returncode == 0
    for args, message in ((["classify", lm, "x"], "is a language model"), (["sample", out], "is a classifier"),
                          (["tag", out, "x"], "is a classifier")):
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--marks", ",."], "--marks does not apply to --task classify"),
    (["--seq-len", "20"], "--seq-len does not apply to --task classify"),
    (["--pool", "mean"], None),  # fine for a classifier: see the next case for a language model
])
def test_language_model_flags_are_usage_errors_for_a_classifier(surnames, tmp_path, args, message):
    corpus, _, _ = surnames
    done = run("train", corpus, "--task", "classify", "--steps", 1, "--hidden", 4, "--out", tmp_path / "r", *args)
    if message is None:
        assert done.returncode == 0, done.stderr
        lm = run("train", corpus, "--pool", "mean", "--steps", 1, "--out", tmp_path / "lm")
        assert lm.returncode == 2 and "--pool does not apply to --task lm" in lm.stderr
    else:
        assert done.returncode == 2 and message in done.stderr


def test_a_file_too_small_to_learn_from_is_warned_once(tmp_path):
    # 6 texts, 3 a label: a classifier cannot learn from so few. One warning, before training, naming the file.
    corpus = tmp_path / "six.tsv"
    corpus.write_text("pos\tgood film\npos\tgreat fun\npos\tloved it\nneg\tbad film\nneg\tawful\nneg\tboring\n",
                      encoding="utf-8")
    result = invoke("train", corpus, "--task", "classify", "--out", tmp_path / "run", "--steps", "3",
                    "--hidden", "8", "-q")
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if "fewer than 10 training texts" in line]
    assert warning.startswith(f"warning: {corpus}: 2 of 2 labels") and "too few to learn from" in warning


def test_enough_texts_a_label_get_no_small_data_warning(tmp_path):
    corpus = tmp_path / "many.tsv"
    corpus.write_text("".join(f"{label}\t{label} text {i}\n" for i in range(30) for label in ("pos", "neg")),
                      encoding="utf-8")
    result = invoke("train", corpus, "--task", "classify", "--out", tmp_path / "run", "--steps", "3",
                    "--hidden", "8", "-q")
    assert result.exit_code == 0, result.output
    assert "fewer than 10" not in result.stderr
