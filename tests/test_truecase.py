"""Truecasing (`charlm.tasks.lm.truecase`, `charlm truecase`): a tiny character model trained on sentences
with capitalised names restores them; the beam search is exact when wide enough and greedy at width 1."""

import itertools
import json
import random
import subprocess
from collections import Counter

import numpy as np
import pytest
from helpers import CHARLM, assert_one_line_error
from helpers import invoke as invoke_charlm
from inference_models import train_tiny, write_checkpoint

import charlm.tasks.lm.truecase as truecase_module
from charlm.errors import ConfigError
from charlm.models import lm, tagger
from charlm.models.config import ModelConfig
from charlm.tasks.choosing import log_softmax
from charlm.tasks.lm.scoring import score_documents
from charlm.tasks.lm.truecase import case_candidates, truecase
from charlm.text.tokenizer import EOS, UNK, Vocab
from charlm.text.words import WordVocab

NAMES = ["Alice", "Bob", "Carol", "Dan"]
# "a dog" against "Alice": the first letter alone cannot decide the case, the letters after it can
NOUN_PHRASES = ["the cat", "a dog", "the bird", "a fox"]
VERBS = ["saw", "met", "likes", "calls"]


def sentence(rng: random.Random) -> str:
    """A sentence such as "The cat saw Alice and a dog.": names and the first word are capitalised."""
    def phrase():
        return rng.choice(NAMES) if rng.random() < 0.5 else rng.choice(NOUN_PHRASES)

    text = f"{phrase()} {rng.choice(VERBS)} {phrase()}"
    if rng.random() < 0.4:
        text += f" and {phrase()}"
    return text[0].upper() + text[1:] + "."


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A lines-mode LSTM trained for about a second on 300 such sentences, saved in a run directory."""
    rng = random.Random(0)
    sentences = [sentence(rng) for _ in range(300)]
    vocab = Vocab(sorted(set("".join(sentences))))
    ids = [EOS]
    for line in sentences:
        ids += [*vocab.encode(line).tolist(), EOS]
    params, cfg = train_tiny(np.array(ids), vocab.size, steps=150, hidden=32, batch=16, seq_len=32, lr=2e-2)
    run = tmp_path_factory.mktemp("truecase") / "run"
    run.mkdir()
    write_checkpoint(run / "best.safetensors", params, cfg, vocab, eos_mode="lines")
    return dict(params=params, cfg=cfg, vocab=vocab, sentences=set(sentences), run=run)


@pytest.fixture(scope="module")
def mixed_case_model():
    """An untrained float64 GRU over a vocabulary with both cases of a, b, c (exactness tests)."""
    vocab = Vocab(sorted("abcABC .q"))
    cfg = ModelConfig("gru", vocab.size, 16, dtype="float64")
    return lm.init_params(cfg, np.random.default_rng(3)), cfg, vocab


def invoke(*args, input=None):
    return invoke_charlm("truecase", *args, input=input)


# ---------------------------------------------------------------------------------------------- library


def test_restores_capitalised_words_of_new_sentences(trained):
    rng = random.Random(1)
    new = [s for s in (sentence(rng) for _ in range(400)) if s not in trained["sentences"]][:40]
    assert len(new) == 40
    restored = truecase(trained["params"], trained["cfg"], trained["vocab"], [s.lower() for s in new])
    right = Counter()
    for truth, r in zip(new, restored, strict=True):
        assert len(r.text) == len(truth) and r.text.lower() == truth.lower()
        for want, got in zip(truth.split(), r.text.split(), strict=True):
            kind = "capitalised" if want[0].isupper() else "lowercase"
            right[kind, "total"] += 1
            right[kind, "right"] += want == got
    assert right["capitalised", "total"] >= 60  # names and first words: all wrong if left lowercase
    assert right["capitalised", "right"] / right["capitalised", "total"] >= 0.9
    assert right["lowercase", "right"] / right["lowercase", "total"] >= 0.9  # not by capitalising everything


def test_input_is_lowered_first_and_changed_counts_against_the_input(trained):
    shouting, lowered = truecase(trained["params"], trained["cfg"], trained["vocab"],
                                 ["BOB MET ALICE.", "bob met alice."])
    assert shouting.text == lowered.text == "Bob met Alice."
    assert shouting.logprob == lowered.logprob < 0
    assert lowered.changed == 2  # B, A
    assert shouting.changed == 2 + 3 + 4  # OB, MET, LICE lowered


def greedy_by_hand(params, cfg, vocab, lowered):
    """Pick the likelier of each character's cases one at a time, feeding back each choice."""
    logits, state = lm.step_logits(params, cfg, np.array([EOS]), lm.init_state(cfg, 1))
    text, total = "", 0.0
    for char in lowered:
        logprobs = log_softmax(logits)[0]
        options = [c for c in dict.fromkeys((char, char.upper())) if c in vocab]
        best = max(options, key=lambda c: logprobs[vocab.encode(c)[0]])
        total += logprobs[vocab.encode(best)[0]]
        text += best
        logits, state = lm.step_logits(params, cfg, vocab.encode(best), state)
    return text, total + log_softmax(logits)[0, EOS]


def test_beam_one_is_the_greedy_choice(trained):
    params, cfg, vocab = trained["params"], trained["cfg"], trained["vocab"]
    for lowered in ("a dog met carol.", "dan calls the cat and a fox."):
        text, logprob = greedy_by_hand(params, cfg, vocab, lowered)
        [restored] = truecase(params, cfg, vocab, [lowered], beam=1)
        assert restored.text == text
        assert restored.logprob == pytest.approx(logprob, abs=1e-9)


def test_a_wide_enough_beam_finds_the_most_likely_casing(mixed_case_model):
    params, cfg, vocab = mixed_case_model
    lowered = "ab c.a"  # 4 letters with two cases: 16 casings
    casings = ["".join(chars) for chars in itertools.product(*[dict.fromkeys((c, c.upper())) for c in lowered])]
    assert len(casings) == 16
    nll = score_documents(params, cfg, [np.concatenate([[EOS], vocab.encode(c), [EOS]]) for c in casings])
    [exact] = truecase(params, cfg, vocab, [lowered], beam=16)
    assert exact.text == casings[int(np.argmin(nll))]
    assert exact.logprob == pytest.approx(-nll.min(), abs=1e-9)
    narrow = truecase(params, cfg, vocab, [lowered], beam=2)[0]
    assert narrow.logprob <= exact.logprob + 1e-12
    assert narrow.logprob == pytest.approx(-nll[casings.index(narrow.text)], abs=1e-9)  # scored as it says


def test_all_hypotheses_advance_in_one_model_call_per_character(mixed_case_model, monkeypatch):
    params, cfg, vocab = mixed_case_model
    batch_sizes = []

    def counting_step(params, cfg, ids, state):
        batch_sizes.append(len(ids))
        return lm.step_logits(params, cfg, ids, state)

    monkeypatch.setattr(truecase_module, "step_logits", counting_step)
    truecase(params, cfg, vocab, ["abcab cab"], beam=8)
    assert len(batch_sizes) == 1 + len("abcab cab")  # <EOS>, then one call per character
    assert max(batch_sizes) == 8


def test_characters_outside_the_vocabulary_keep_the_inputs_character(mixed_case_model):
    params, cfg, vocab = mixed_case_model
    [r] = truecase(params, cfg, vocab, ["ΩzÿAb"])
    assert r.text[:3] == "ΩzÿAb"[:3]
    assert r.text[3:].lower() == "ab"
    assert r.changed == ("ΩzÿAb"[3] != r.text[3]) + ("ΩzÿAb"[4] != r.text[4])
    [empty] = truecase(params, cfg, vocab, [""])
    assert empty.text == "" and empty.changed == 0
    assert empty.logprob == pytest.approx(-score_documents(params, cfg, [np.array([EOS, EOS])])[0], abs=1e-9)


def test_case_candidates():
    vocab = Vocab(sorted("0123456789abcqAB ßÉ"))
    [[own]] = [vocab.encode("a").tolist()]
    assert case_candidates(vocab, "a") == [own, vocab.encode("A")[0]]
    assert case_candidates(vocab, "3") == vocab.encode("3").tolist()  # a digit has no case
    assert "ß".upper() == "SS" and case_candidates(vocab, "ß") == vocab.encode("ß").tolist()
    assert case_candidates(vocab, "q") == vocab.encode("q").tolist()  # 'Q' is not in the vocabulary
    assert case_candidates(vocab, "z") == [UNK]
    assert case_candidates(vocab, "é") == [UNK, vocab.encode("É")[0]]
    with pytest.raises(ConfigError):
        case_candidates(vocab, "ab")


def test_input_is_lowered_character_by_character(mixed_case_model):
    params, cfg, vocab = mixed_case_model
    assert len("İ".lower()) == 2  # so 'İ' stays as it is, and the restored text lines up with the input
    [r] = truecase(params, cfg, vocab, ["İABC"])
    assert r.text[0] == "İ" and r.text[1:].lower() == "abc"


def test_a_tagger_or_a_word_model_is_refused(mixed_case_model):
    _, _, vocab = mixed_case_model
    tagger_cfg = ModelConfig("gru", vocab.size, 8, heads=(3,))
    with pytest.raises(ConfigError, match="charlm tag"):
        truecase(tagger.init_params(tagger_cfg, np.random.default_rng(0)), tagger_cfg, vocab, ["ab"])
    words = WordVocab.build(Counter(["the", " ", "cat"]))
    word_cfg = ModelConfig("gru", words.size, 8)
    with pytest.raises(ConfigError, match="character"):
        truecase(lm.init_params(word_cfg, np.random.default_rng(0)), word_cfg, words, ["the cat"])


def test_beam_must_be_positive(mixed_case_model):
    with pytest.raises(ConfigError, match="beam"):
        truecase(*mixed_case_model, ["ab"], beam=0)


# ---------------------------------------------------------------------------------------------- command


def test_command_prints_one_restored_text_per_argument(trained):
    result = invoke(trained["run"], "bob met alice.", "THE CAT SAW DAN.")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Bob met Alice.\nThe cat saw Dan.\n"


def test_command_reads_stdin_one_text_per_line(trained):
    result = invoke(trained["run"], input="bob met alice.\r\nthe cat saw dan.\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Bob met Alice.\nThe cat saw Dan.\n"


def test_empty_stdin_line_is_an_error_naming_it(trained):
    result = invoke(trained["run"], input="bob met alice.\n\nthe cat saw dan.\n")
    assert_one_line_error(result, 2, alone=True)
    assert "<stdin>:2" in result.stderr
    nothing = invoke(trained["run"], input="")
    assert nothing.exit_code == 2 and nothing.stdout == "" and "no text: give TEXT arguments" in nothing.stderr


def test_json_records(trained):
    result = invoke(trained["run"], "BOB MET ALICE.", "a dog saw carol.", "--json", "--beam", 3)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    expected = truecase(trained["params"], trained["cfg"], trained["vocab"],
                        ["BOB MET ALICE.", "a dog saw carol."], beam=3)
    assert [set(r) for r in records] == [{"input", "text", "logprob", "changed"}] * 2
    assert [r["input"] for r in records] == ["BOB MET ALICE.", "a dog saw carol."]
    assert [r["text"] for r in records] == [e.text for e in expected] == ["Bob met Alice.", "A dog saw Carol."]
    assert [r["changed"] for r in records] == [e.changed for e in expected] == [9, 2]
    assert [r["logprob"] for r in records] == pytest.approx([e.logprob for e in expected], abs=1e-9)


def test_unknown_characters_are_reported_on_stderr_unless_quiet(trained):
    result = invoke(trained["run"], "bob met zoë.")
    assert result.exit_code == 0 and result.stdout.startswith("Bob met ")
    assert "'z'" in result.stderr and "'ë'" in result.stderr
    assert invoke(trained["run"], "bob met zoë.", "-q").stderr == ""


def test_bad_beam_is_a_usage_error(trained):
    result = invoke(trained["run"], "bob", "--beam", 0)
    assert result.exit_code == 2 and result.stdout == ""


def write_tagger_checkpoint(path, vocab):
    """A checkpoint of an (untrained) tagger with one head of 3 labels."""
    cfg = ModelConfig("gru", vocab.size, 8, heads=(3,))
    return write_checkpoint(path, tagger.init_params(cfg, np.random.default_rng(0)), cfg, vocab)


def test_tagger_and_word_checkpoints_fail_with_one_line(trained, tmp_path):
    tagger_path = write_tagger_checkpoint(tmp_path / "tagger.safetensors", trained["vocab"])
    result = invoke(tagger_path, "bob met alice.")
    assert_one_line_error(result, 2, alone=True)
    assert "charlm tag" in result.stderr

    words = WordVocab.build(Counter(["bob", " ", "met", "alice", "."]))
    cfg = ModelConfig("gru", words.size, 8)
    word_path = write_checkpoint(tmp_path / "words.safetensors", lm.init_params(cfg, np.random.default_rng(0)),
                                 cfg, words)
    result = invoke(word_path, "bob met alice.")
    assert_one_line_error(result, 2, alone=True)
    assert "character" in result.stderr


@pytest.mark.slow
def test_registered_command_runs_in_a_real_process(trained):
    done = subprocess.run([*CHARLM, "truecase", str(trained["run"])],
                          input="dan likes a fox.\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Dan likes a fox.\n"


def test_a_whole_file_model_reads_each_text_as_a_line():
    vocab = Vocab(sorted(set("ab\nAB")))
    newline = int(vocab.encode("\n")[0])
    assert truecase_module.framing(vocab, "file") == ([EOS, newline], newline)
    assert truecase_module.framing(vocab, "lines") == ([EOS], EOS)
    assert truecase_module.framing(Vocab(["a", "b"]), "file") == ([EOS], EOS)  # no newline to frame a line
    cfg = ModelConfig("gru", vocab.size, 6, dtype="float64")
    params = lm.init_params(cfg, np.random.default_rng(4))
    [restored] = truecase(params, cfg, vocab, ["ab"], beam=4, eos_mode="file")
    ids = np.concatenate([[EOS, newline], vocab.encode(restored.text), [newline]])
    expected = -lm.forward_nll(params, cfg, ids[:-1, None], ids[1:, None], lm.init_state(cfg, 1))[0][1:].sum()
    assert restored.logprob == pytest.approx(expected, rel=1e-9)
