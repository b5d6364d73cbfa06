"""`--task translate` through the library (`charlm.tasks.registry.train`): a small model learns to reverse
letter strings, resumes bit for bit, keeps its target vocabulary in the checkpoint, notes an ignored column
once, splits by source, reads words and symbols on either side, refuses options of other tasks (and other
tasks refuse its own), and within a time budget evaluates on a sample sized to it."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.store.checkpoint import load_checkpoint
from charlm.store.rundir import RunDir
from charlm.tasks.registry import train
from charlm.tasks.translate.translate_inference import as_translator, translate_texts
from charlm.tasks.translate.translate_task import (
    HELD_OUT_MAX,
    MIN_EVAL_PAIRS,
    PROBE_PAIRS,
    TranslateTask,
    held_out_loss,
    load_translate_data,
)
from charlm.training import events
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import TRANSLATE_ATTENTION

LETTERS = "abcdefgh"


def reversals(n: int, seed: int) -> list[str]:
    """`word<TAB>its reversal in capitals` lines: the two sides have different vocabularies."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list(LETTERS), rng.integers(2, 6))) for _ in range(n)]
    return [f"{w}\t{w[::-1].upper()}" for w in words]


def write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def options(tmp_path, corpus, name="run", **kw) -> TrainOptions:
    base = dict(corpus=str(corpus), out=str(tmp_path / name), task="translate", hidden=24, layers=1, batch=32,
                warmup=5, lr=0.01, eval_every=50, steps=150)
    return TrainOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A reversal model trained 150 steps, its corpus, its result and what it reported."""
    root = tmp_path_factory.mktemp("translate")
    corpus = write(root / "reverse.tsv", reversals(300, 0))
    seen = []
    result = train(options(root, corpus), report=seen.append)
    return root, corpus, result, seen


def test_the_held_out_loss_falls_and_outputs_become_right(trained):
    root, _, result, seen = trained
    evals = [e for e in seen if isinstance(e, events.Evaluation)]
    assert [e.step for e in evals] == [50, 100, 150]
    losses = [e.val_loss for e in evals]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]
    assert result.best_val_loss == pytest.approx(losses[-1]) and result.best_val_loss < 0.5
    assert result.tokens == "token" and result.stopped_by == "steps"
    assert evals[-1].val_accuracy > 0.4  # held-out sources reversed exactly, greedily
    translator = as_translator(load_checkpoint(root / "run"))
    [found] = translate_texts(translator, ["abcd"], beam=3)
    assert found["output"] == "DCBA"


def test_the_checkpoint_keeps_both_vocabularies_and_its_loss(trained):
    root, corpus, result, _ = trained
    ckpt = load_checkpoint(root / "run")
    assert ckpt.config.kind == "seq2seq" and ckpt.config.attention == TRANSLATE_ATTENTION and ckpt.config.bidirectional
    assert "".join(ckpt.vocab.chars) == LETTERS
    assert "".join(ckpt.target_vocab.chars) == LETTERS.upper()
    assert ckpt.target_vocab.to_dict() == ckpt.data["translate"]["target_vocab"]
    assert ckpt.config.target_vocab == ckpt.target_vocab.size == len(LETTERS) + 2
    meta = ckpt.data["translate"]
    assert (meta["task"], meta["source_tokens"], meta["target_tokens"]) == ("translate", "char", "char")
    # the best loss it records is the held-out loss of its own parameters, recomputed from the file
    opts = replace(options(root, corpus), source_tokens="char", target_tokens="char")
    val = load_translate_data(opts, None, lambda event: None).val_docs
    assert held_out_loss(as_translator(ckpt), val.source_ids, val.target_ids) == pytest.approx(result.best_val_loss,
                                                                                         rel=1e-6)


def test_a_run_resumes_bit_for_bit(tmp_path):
    corpus = write(tmp_path / "reverse.tsv", reversals(120, 1))
    # constant schedule: a cosine one depends on the total steps, which the first part does not know
    common = dict(hidden=8, batch=16, eval_every=5, warmup=2, dropout=0.3, schedule="constant")
    train(options(tmp_path, corpus, "whole", steps=14, **common))
    train(options(tmp_path, corpus, "split", steps=7, **common))
    train(options(tmp_path, corpus, "split", steps=14, resume=True, **common), explicit=frozenset({"steps"}))
    whole = load_checkpoint(tmp_path / "whole", prefer="latest")
    split = load_checkpoint(tmp_path / "split", prefer="latest")
    assert whole.train["step"] == split.train["step"] == 14
    assert whole.train["epoch"] > 1  # crosses an epoch boundary (a new order of the pairs)
    assert set(whole.params) == set(split.params) and set(whole.optim) == set(split.optim)
    for name in whole.params:
        np.testing.assert_array_equal(whole.params[name], split.params[name], err_msg=name)
    for name in whole.optim:
        np.testing.assert_array_equal(whole.optim[name], split.optim[name], err_msg=name)
    assert whole.rng == split.rng
    assert whole.target_vocab.to_dict() == split.target_vocab.to_dict()


def test_a_third_column_is_noted_once(tmp_path):
    lines = reversals(40, 2)
    lines = [line + "\tCC-BY 2.0 #1234" if i % 3 == 0 else line for i, line in enumerate(lines)]
    seen = []
    train(options(tmp_path, write(tmp_path / "three.tsv", lines), steps=2, hidden=4), report=seen.append)
    notes = [e.text for e in seen if isinstance(e, (events.Log, events.Warning)) and "third column" in e.text]
    assert len(notes) == 1 and "14 lines have a third column" in notes[0]
    assert "three.tsv" in notes[0]
    seen.clear()
    train(options(tmp_path, write(tmp_path / "two.tsv", reversals(40, 2)), "two", steps=2, hidden=4),
          report=seen.append)
    assert not [e for e in seen if "third column" in getattr(e, "text", "")]


def test_every_reference_of_a_source_goes_to_the_same_side(tmp_path):
    """Words with two or three pronunciations: all of a word's lines are trained on or all held out."""
    rng = np.random.default_rng(3)
    lines = []
    for i in range(60):
        word = "".join(rng.choice(list(LETTERS), 4)) + str(i)
        lines += [f"{word}\t{word.upper()}-{k}" for k in range(1 + i % 3)]
    corpus = write(tmp_path / "refs.tsv", [lines[i] for i in rng.permutation(len(lines))])
    opts = options(tmp_path, corpus, val_fraction=0.3, source_tokens="char", target_tokens="char")
    data = load_translate_data(opts, None, lambda event: None)
    train_sources, held_sources = set(data.train_docs.sources), set(data.val_docs.sources)
    assert not train_sources & held_sources
    assert len(train_sources | held_sources) == 60 and 10 <= len(held_sources) <= 26
    assert len(data.train_docs.sources) + len(data.val_docs.sources) == len(lines)
    for part in (data.train_docs, data.val_docs):
        for source in set(part.sources):
            assert part.sources.count(source) == 1 + int(source[4:]) % 3


PHONES = {"the": "DH AH", "cat": "K AE T", "sat": "S AE T", "on": "AA N", "mat": "M AE T", "red": "R EH D"}


def phrases(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    words = [list(rng.choice(list(PHONES), rng.integers(1, 4))) for _ in range(n)]
    return [(" ".join(w), " ".join(PHONES[x] for x in w)) for w in words]


@pytest.mark.parametrize(("source_tokens", "target_tokens"), [("word", "symbols"), ("symbols", "word"),
                                                              ("symbols", "char")])
def test_words_and_symbols_on_either_side(tmp_path, source_tokens, target_tokens):
    pairs = phrases(80, 4)
    corpus = write(tmp_path / "phrases.tsv", [f"{w}\t{p}" if source_tokens == "word" else f"{p}\t{w}"
                                              for w, p in pairs])
    train(options(tmp_path, corpus, steps=3, hidden=8, source_tokens=source_tokens, target_tokens=target_tokens))
    ckpt = load_checkpoint(tmp_path / "run")
    assert (ckpt.vocab.kind, ckpt.target_vocab.kind) == (source_tokens, target_tokens)
    meta = ckpt.data["translate"]
    assert (meta["source_tokens"], meta["target_tokens"]) == (source_tokens, target_tokens)
    source_side = {"word": set(PHONES), "symbols": {s for p in PHONES.values() for s in p.split()}}
    known = {ckpt.vocab.token_text(i) for i in range(2, ckpt.vocab.size)}
    assert source_side[source_tokens] <= known  # whole words or whole symbols, not characters
    if target_tokens != "char":
        target_known = {ckpt.target_vocab.token_text(i) for i in range(2, ckpt.target_vocab.size)}
        assert source_side["word" if target_tokens == "word" else "symbols"] <= target_known
    text = pairs[0][0] if source_tokens == "word" else pairs[0][1]
    [found] = translate_texts(as_translator(ckpt), [text], beam=2, nbest=2)
    assert found["source"] == text and len(found["nbest"]) == 2


def test_tokens_sets_both_sides_and_each_side_may_differ(tmp_path):
    corpus = write(tmp_path / "phrases.tsv", [f"{w}\t{p}" for w, p in phrases(40, 5)])
    train(options(tmp_path, corpus, steps=1, hidden=4, tokens="word"))
    ckpt = load_checkpoint(tmp_path / "run")
    assert (ckpt.vocab.kind, ckpt.target_vocab.kind) == ("word", "word")
    train(options(tmp_path, corpus, "mixed", steps=1, hidden=4, tokens="word", target_tokens="char"))
    ckpt = load_checkpoint(tmp_path / "mixed")
    assert (ckpt.vocab.kind, ckpt.target_vocab.kind) == ("word", "char")


@pytest.mark.parametrize(("task", "flag", "value"), [
    ("lm", "attention", "dot"), ("lm", "source_tokens", "word"), ("lm", "target_tokens", "symbols"),
    ("classify", "attention", "general"), ("classify", "source_tokens", "char"),
    ("truecase", "target_tokens", "char"), ("tag", "attention", "none"),
    ("translate", "seq_len", 20), ("translate", "pool", "mean"), ("translate", "tie", True),
])
def test_options_of_another_task_are_refused(tmp_path, task, flag, value):
    corpus = write(tmp_path / "any.tsv", reversals(20, 6))
    opts = TrainOptions(corpus=str(corpus), out=str(tmp_path / "run"), task=task, steps=1, **{flag: value})
    with pytest.raises(ConfigError) as caught:
        train(opts, explicit=frozenset({flag}))
    assert str(caught.value) == f"--{flag.replace('_', '-')} does not apply to --task {task}"
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("*.safetensors"))


class Ticks:
    """A clock that moves `step` seconds at each reading."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def distinct_reversals(n: int, seed: int) -> list[str]:
    """`word<TAB>its reversal in capitals` for `n` distinct words of 6 to 8 letters."""
    rng = np.random.default_rng(seed)
    words = {"".join(rng.choice(list(LETTERS), rng.integers(6, 9))): None for _ in range(n + n // 10)}
    return [f"{w}\t{w[::-1].upper()}" for w in list(words)[:n]]


def sized_task(tmp_path, seed: int, **kw) -> TranslateTask:
    """A task over 30,000 distinct pairs, 3,000 of them held out."""
    corpus = write(tmp_path / "many.tsv", distinct_reversals(30_000, seed))
    opts = replace(options(tmp_path, corpus, hidden=4, steps=None, **kw), source_tokens="char",
                   target_tokens="char", embed=0, dropout=0.0)
    task = TranslateTask(opts, load_translate_data(opts, None, lambda event: None))
    assert len(task.eval_order) == len(task.data.val_docs.sources) == 3000
    return task


@pytest.mark.parametrize(("time_budget", "eval_every", "expect"), [(3600.0, 0, 2500), (60.0, 0, MIN_EVAL_PAIRS),
                                                                    (None, 0, 3000), (3600.0, 10, 3000)])
def test_evaluations_within_a_budget_score_a_sample_and_the_final_score_all(tmp_path, time_budget, eval_every,
                                                                            expect):
    """3,000 held-out pairs priced at 1 ms each: an hour's evaluations (every 60 s, 1/24 of it) score 2,500 of
    them, a minute's the floor; by steps, or every --eval-every steps, all of them. The final score is the
    best checkpoint's loss over all held-out pairs, whatever the evaluations scored."""
    task = sized_task(tmp_path, 7, eval_every=eval_every, time_budget=time_budget, attention="additive")
    val = task.data.val_docs
    cfg = task.model_config()
    params = task.init_params(cfg, np.random.default_rng(0))
    task.start_validation(params, cfg, Ticks(PROBE_PAIRS * 1e-3))  # the probe timed at 1 ms a pair
    assert task.exact_seconds == pytest.approx(3.0)
    assert task.eval_pairs == expect
    translator = task.translator(params, cfg)
    every = held_out_loss(translator, val.source_ids, val.target_ids)
    rows = np.sort(task.eval_order[:expect])
    sample = held_out_loss(translator, [val.source_ids[i] for i in rows], [val.target_ids[i] for i in rows])
    scores = task.evaluate(params, cfg)
    assert scores.loss == pytest.approx(sample, rel=1e-9)
    assert (scores.loss == pytest.approx(every, rel=1e-9)) == (expect == 3000)
    best = SimpleNamespace(params=params, config=cfg)
    final, mode = task.final_score(best, scores, train_seconds=100.0, report=lambda event: None,
                                   seconds_left=None if time_budget is None else time_budget / 2)
    assert mode == "exact" and final.loss == pytest.approx(every, rel=1e-9)
    assert final.accuracy == scores.accuracy


def test_a_final_score_that_does_not_fit_keeps_the_sample_and_says_so(tmp_path):
    task = sized_task(tmp_path, 8, eval_every=0, time_budget=60.0, attention="none")
    cfg = task.model_config()
    params = task.init_params(cfg, np.random.default_rng(0))
    task.start_validation(params, cfg, Ticks(PROBE_PAIRS * 1e-2))  # 10 ms a pair: 30 s for all
    scores, seen = task.evaluate(params, cfg), []
    final, mode = task.final_score(SimpleNamespace(params=params, config=cfg), scores, train_seconds=50.0,
                                   report=seen.append, seconds_left=8.0)
    assert (final, mode) == (scores, "sample")
    assert "scoring all 3,000 held-out pairs would take about 30s" in seen[0].text
    assert f"on {MIN_EVAL_PAIRS:,} of them" in seen[0].text


@pytest.mark.parametrize("given", [False, True])
def test_a_large_corpus_holds_out_at_most_the_cap_unless_the_share_is_given(tmp_path, given):
    corpus = write(tmp_path / "large.tsv", distinct_reversals(40_000, 9))
    opts = replace(options(tmp_path, corpus, val_fraction=0.1), source_tokens="char", target_tokens="char")
    seen = []
    task = TranslateTask.open(opts, RunDir(tmp_path / "run"),
                              explicit=frozenset({"val_fraction"} if given else ()), report=seen.append)
    held = len(set(task.data.val_docs.sources))
    notes = [e.text for e in seen if isinstance(e, events.Log) and "held out" in e.text]
    if given:
        assert held == 4_000 and task.opts.val_fraction == 0.1 and not notes
    else:
        assert held == HELD_OUT_MAX and task.opts.val_fraction == pytest.approx(HELD_OUT_MAX / 40_000)
        assert notes == [f"{corpus}: 3,000 of 40,000 sources held out (7.5%), enough to compare checkpoints; the "
                         f"rest trains (--val-fraction sets the share)"]
    assert len(task.data.train_docs.sources) + len(task.data.val_docs.sources) == 40_000
