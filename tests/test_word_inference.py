"""Word checkpoints through `charlm sample`, `perplexity`, `score` and `info` (click's CliRunner, real files).

Per-character figures of a word model divide the same nats by the characters of the original text, so they
are checked against a sum computed here from the text itself; per-token figures against `score_ids`.
"""

import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from helpers import invoke
from inference_models import train_tiny, write_checkpoint

from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.lm.analysis import surprisal
from charlm.tasks.lm.sampling import OrderedStream, beam_search, generate
from charlm.tasks.lm.scoring import score_ids
from charlm.text.tokenizer import EOS, UNK
from charlm.text.words import WordVocab

SENTENCES = ["The apple and pear salad.", "A pear and an apple!", "Pear salad, with apple.", "The pear tree.",
             "Apple and pear salad for all.", "The salad and the pear."]
# file mode: newlines, a double space and a space before punctuation are separator tokens of their own
FILE_TEXT = "The pear tree.\nA pear  and an apple !\n\nThe salad, and the pear.\n"


def lines_ids(vocab, lines):
    """The id stream of lines-mode documents: <EOS> line1 <EOS> line2 ... <EOS>."""
    ids = [EOS]
    for line in lines:
        ids += [*vocab.encode(line).tolist(), EOS]
    return np.array(ids)


def word_vocab(docs):
    return WordVocab.build(Counter(t for d in docs for t in WordVocab(()).tokenize(d)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A lines-mode word model trained on SENTENCES, a copy that favours <UNK>, a random file-mode word
    model over FILE_TEXT's tokens, a truncated checkpoint and the corpora."""
    root = tmp_path_factory.mktemp("words")
    vocab = word_vocab(SENTENCES)
    params, cfg = train_tiny(lines_ids(vocab, SENTENCES * 30), vocab.size, steps=120, hidden=32, embed=16,
                             batch=16, seq_len=16, lr=2e-2)
    (root / "run").mkdir()
    lines = write_checkpoint(root / "run" / "best.safetensors", params, cfg, vocab, eos_mode="lines",
                             train={"step": 120, "best_val": 0.5})
    likes_unk = {k: v.copy() for k, v in params.items()}
    likes_unk["head.b"][UNK] += 12.0
    unk = write_checkpoint(root / "unk.safetensors", likes_unk, cfg, vocab, eos_mode="lines")

    file_vocab = word_vocab([FILE_TEXT])
    file_cfg = ModelConfig("gru", file_vocab.size, 16, layers=2, embed=8)
    file_ckpt = write_checkpoint(root / "file.safetensors", init_params(file_cfg, np.random.default_rng(1)),
                                 file_cfg, file_vocab)
    truncated = root / "truncated.safetensors"
    truncated.write_bytes(lines.read_bytes()[:-100])
    corpus = root / "sentences.txt"
    corpus.write_text("\n".join(SENTENCES * 2) + "\n")
    return dict(run=root / "run", lines=lines, unk=unk, file=file_ckpt, truncated=truncated, corpus=corpus,
                vocab=vocab, file_vocab=file_vocab, root=root)


# ---------------------------------------------------------------------------------------------- sample


def test_unknown_prime_words_warn_once_and_sampling_continues(files):
    result = invoke("sample", files["lines"], "-p", "The zebra ate", "-n", 3, "--seed", 0)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("The zebra ate") for line in lines)
    warnings = [line for line in result.stderr.splitlines() if "outside the vocabulary" in line]
    assert len(warnings) == 1 and "'zebra'" in warnings[0] and "'ate'" in warnings[0]
    assert "tokens" in warnings[0] and "<UNK>" in warnings[0]
    strict = invoke("sample", files["lines"], "-p", "The zebra", "--strict")
    assert strict.exit_code == 2 and strict.stdout == "" and "'zebra'" in strict.stderr


def test_length_counts_tokens(files):
    ckpt = load_checkpoint(files["file"])
    samples = generate(ckpt.params, ckpt.config, ckpt.vocab, num_samples=20, length=7, seed=0)
    assert all(len(s.ids) == 7 for s in samples)
    assert any(len(s.text) > 7 for s in samples)  # words are longer than one character
    records = json.loads(invoke("sample", files["file"], "-n", 20, "-l", 7, "--seed", 0, "--json").stdout)
    assert [r["text"] for r in records] == [s.text for s in samples]


def test_sample_text_is_the_decoded_ids_after_the_prime(files):
    ckpt = load_checkpoint(files["file"])
    vocab = ckpt.vocab
    samples = generate(ckpt.params, ckpt.config, vocab, num_samples=30, length=12, seed=4, prime="The pear")
    context = np.concatenate([[EOS], vocab.encode("The pear")])
    for s in samples:
        assert s.text == vocab.decode(np.concatenate([context, s.ids]))[1:]  # the <EOS> read first is "\n"
    # a word after the prime's last word gets the implied space, a punctuation mark none
    first = [vocab.token_text(s.ids[0]) for s in samples]
    words = [s for s, t in zip(samples, first, strict=True) if re.fullmatch(r"[^\W_]+", t)]
    marks = [s for s, t in zip(samples, first, strict=True) if t in (".", ",", "!")]
    assert words and marks
    assert all(s.text.startswith("The pear " + vocab.token_text(s.ids[0])) for s in words)
    assert all(s.text.startswith("The pear" + vocab.token_text(s.ids[0])) for s in marks)


def test_unk_is_never_sampled_without_allow_unk(files):
    ckpt = load_checkpoint(files["unk"])
    params, cfg, vocab = ckpt.params, ckpt.config, ckpt.vocab
    for options in (dict(seed=0), dict(seed=1, top_k=3), dict(seed=2, top_p=0.9), dict(temperature=0)):
        samples = generate(params, cfg, vocab, num_samples=100, length=15, stop_at_eos=True, **options)
        assert not any(UNK in s.ids.tolist() for s in samples), options
    beams = beam_search(params, cfg, vocab, beam=5, length=8, prime="The", stop_at_eos=True)
    assert beams and not any(UNK in s.ids.tolist() for s in beams)
    allowed = generate(params, cfg, vocab, num_samples=100, length=15, seed=0, allow_unk=True)
    assert sum(UNK in s.ids.tolist() for s in allowed) > 50  # the model favours it: the flag lets it through
    texts = json.loads(invoke("sample", files["unk"], "-n", 40, "-l", 10, "--seed", 0, "--json").stdout)
    assert not any("<unk>" in r["text"] for r in texts)
    texts = json.loads(invoke("sample", files["unk"], "-n", 40, "-l", 10, "--seed", 0, "--json",
                              "--allow-unk").stdout)
    assert any("<unk>" in r["text"] for r in texts)


def first_end(text, stop, start=0):
    i = text.find(stop, start)
    return -1 if i < 0 else i + len(stop)


@pytest.mark.parametrize("stop", ["pear", "and the", "ea", "d,"])
def test_stop_strings_match_the_decoded_text(files, stop):
    # a stop string may be a word, span words and their spacing, or lie inside a word: the sample ends
    # with the token that completes its first occurrence
    records = json.loads(invoke("sample", files["file"], "--stop", stop, "-n", 60, "-l", 25, "--seed", 3,
                                "--json").stdout)
    stopped = 0
    for r in records:
        end = first_end(r["text"], stop)
        if end < 0:
            continue
        stopped += 1
        tail = r["text"][end:]
        assert re.fullmatch(r"[^\W_]*", tail), (stop, r["text"])  # at most the rest of the completing word
    assert stopped > 0


def test_stop_string_no_token_can_write_is_dropped_with_a_warning(files):
    result = invoke("sample", files["lines"], "--stop", "#", "--stop", "pear", "-n", 2, "--seed", 0)
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "can never appear" in line]
    assert len(warnings) == 1 and "'#'" in warnings[0]


def test_beam_search_and_greedy_on_a_word_model(files):
    result = invoke("sample", files["lines"], "--beam", 3, "-p", "The", "-n", 2)
    assert result.exit_code == 0, result.output
    assert result.stdout == invoke("sample", files["lines"], "--beam", 3, "-p", "The", "-n", 2).stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("The ") for line in lines)
    greedy = json.loads(invoke("sample", files["lines"], "-t", 0, "-n", 2, "-p", "The", "--json").stdout)
    assert greedy[0] == greedy[1] and greedy[0]["text"].startswith("The ")


def test_ordered_stream_of_word_samples_writes_the_final_text(files):
    ckpt = load_checkpoint(files["file"])
    for eos_ends in (True, False):
        out = []
        stream = OrderedStream(ckpt.vocab, 5, "The pear", out.append, eos_ends=eos_ends, separator="\n\n")
        samples = generate(ckpt.params, ckpt.config, ckpt.vocab, num_samples=5, length=10, prime="The pear",
                           seed=2, stop_at_eos=eos_ends, on_step=stream)
        stream.finish()
        assert "".join(out) == "\n\n".join(s.text for s in samples) + "\n"


# ---------------------------------------------------------------------------------------------- perplexity


def test_perplexity_per_char_divides_the_nats_by_the_texts_characters(files, tmp_path):
    # unknown words, a double space and an unknown mark: characters are counted in the text, not guessed
    lines = [*SENTENCES, "The zebra  and the pear ate a salad?"]
    path = tmp_path / "eval.txt"
    path.write_text("\n".join(lines) + "\n")
    ckpt = load_checkpoint(files["lines"])
    ids = lines_ids(ckpt.vocab, lines)
    expected = score_ids(ckpt.params, ckpt.config, ids)
    chars = sum(len(line) for line in lines) + len(lines)  # each document's characters and its end
    data = json.loads(invoke("perplexity", files["lines"], path, "--json").stdout)
    total = data["total"]
    assert total["tokens"] == len(ids) - 1 == expected.n_scored
    assert total["chars"] == chars and data["files"][0]["chars"] == chars
    assert total["unk"] == int(np.count_nonzero(ids[1:] == UNK)) >= 3
    assert total["nats_per_char"] == pytest.approx(expected.nll_sum / chars, rel=1e-6)
    assert total["bits_per_char"] == pytest.approx(expected.nll_sum / chars / math.log(2), rel=1e-6)
    assert total["nats_per_token"] == pytest.approx(expected.nll_sum / expected.n_scored, rel=1e-6)
    assert total["perplexity"] == pytest.approx(math.exp(total["nats_per_token"]), rel=1e-9)
    assert total["unk_rate"] == pytest.approx(total["unk"] / total["tokens"])


def test_perplexity_in_file_mode_counts_every_character_and_the_document_end(files, tmp_path):
    path = tmp_path / "file.txt"
    path.write_text(FILE_TEXT)
    ckpt = load_checkpoint(files["file"])
    ids = np.concatenate([[EOS], ckpt.vocab.encode(FILE_TEXT), [EOS]])
    assert ckpt.vocab.decode(ids[1:-1]) == FILE_TEXT  # every token is known: the round trip is exact
    expected = score_ids(ckpt.params, ckpt.config, ids, vocab=ckpt.vocab)
    assert expected.n_chars == len(FILE_TEXT) + 1  # char_count agrees with the text when nothing is <UNK>
    total = json.loads(invoke("perplexity", files["file"], path, "--json").stdout)["total"]
    assert total["chars"] == len(FILE_TEXT) + 1 and total["tokens"] == len(ids) - 1
    assert total["nats_per_char"] == pytest.approx(expected.nll_sum / (len(FILE_TEXT) + 1), rel=1e-6)
    two = json.loads(invoke("perplexity", files["file"], path, path, "--json").stdout)["total"]
    assert two["chars"] == 2 * total["chars"] and two["tokens"] == 2 * total["tokens"]


def test_perplexity_streams_mode_on_a_word_model(files):
    exact = json.loads(invoke("perplexity", files["lines"], files["corpus"], "--json").stdout)["total"]
    fast = json.loads(invoke("perplexity", files["lines"], files["corpus"], "--json", "--streams", 3,
                             "--burn-in", 8).stdout)
    assert fast["mode"] == "streams"
    assert (fast["total"]["tokens"], fast["total"]["chars"]) == (exact["tokens"], exact["chars"])
    assert fast["total"]["nats_per_token"] == pytest.approx(exact["nats_per_token"], abs=0.3)
    short = invoke("perplexity", files["lines"], files["corpus"], "--streams", 500, "--burn-in", 1000)
    assert "tokens of burn-in" in short.stderr


def test_perplexity_table_shows_per_token_and_per_char_figures(files):
    result = invoke("perplexity", files["lines"], files["corpus"])
    assert result.exit_code == 0, result.output
    for column in ("tokens", "chars", "nats/token", "word perplexity", "bits/char"):
        assert column in result.stdout


def test_show_colours_tokens_and_keeps_the_spacing(files, tmp_path):
    path = tmp_path / "file.txt"
    path.write_text(FILE_TEXT)
    result = invoke("perplexity", files["file"], path, "--show")
    assert result.exit_code == 0, result.output
    assert "bits per token" in result.stdout
    assert "A pear  and an apple !" in result.stdout and "The salad, and the pear." in result.stdout


def test_surprisal_with_a_decoder_gives_each_tokens_text_in_context(files):
    vocab = files["file_vocab"]
    ids = np.concatenate([[EOS], vocab.encode(FILE_TEXT), [EOS]])
    records = surprisal(vocab, ids[1:], np.ones(len(ids) - 1), eos_text="\n", decoder=vocab.decoder([EOS]))
    assert "".join(r["text"] for r in records) == FILE_TEXT + "\n"
    assert [r["id"] for r in records] == ids[1:].tolist()


# ---------------------------------------------------------------------------------------------- score, info


def test_score_ranks_word_candidates(files):
    result = invoke("score", files["lines"], "The apple and pair salad.", "The apple and pear salad.", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["text"] for r in records] == ["The apple and pear salad.", "The apple and pair salad."]
    best = records[0]
    assert best["chars"] == len("The apple and pear salad.") + 1
    assert best["tokens"] == len(files["vocab"].encode("The apple and pear salad.")) + 1
    assert best["nats_per_char"] == pytest.approx(-best["logprob"] / best["chars"])
    assert best["nats_per_token"] == pytest.approx(-best["logprob"] / best["tokens"])
    assert "'pair'" in result.stderr
    table = invoke("score", files["lines"], "The pear tree.")
    assert "nats/token" in table.stdout and "bits/char" in table.stdout


def test_info_on_a_word_checkpoint(files):
    data = json.loads(invoke("info", files["run"], "--json").stdout)
    vocab = files["vocab"]
    assert data["vocab"]["kind"] == "word" and data["vocab"]["lowercase"] is False
    assert data["vocab"]["size"] == vocab.size and "chars" not in data["vocab"]
    assert data["vocab"]["tokens"] == [vocab.token_text(i) for i in range(2, min(vocab.size, 22))]
    assert data["model"]["embed"] == 16
    text = invoke("info", files["run"])
    assert text.exit_code == 0, text.output
    assert "tokenizer: word (case kept)" in text.stdout and "most frequent" in text.stdout
    assert "nats/token" in text.stdout and "characters" not in text.stdout


# ---------------------------------------------------------------------------------------------- damage


@pytest.mark.parametrize("command", ["sample", "info", "perplexity", "score"])
def test_a_damaged_word_checkpoint_is_refused_like_any_other(files, command):
    extra = {"perplexity": [files["corpus"]], "score": ["The pear."]}.get(command, [])
    result = invoke(command, files["truncated"], *extra)
    assert result.exit_code == 1 and result.stdout == ""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert sum(line.startswith("Error") for line in result.stderr.splitlines()) == 1, result.stderr
