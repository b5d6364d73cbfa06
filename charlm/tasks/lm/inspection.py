"""Looking inside a model as it reads a text: each token's surprisal and the model's top guesses for it, every
hidden unit's activation after it, and the units whose activation best tells apart the tokens a pattern
matches. The explorer page serves these; each is computed once per text by `read_text`.
"""

import re
from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models.encoder import init_state
from charlm.models.lm import trace
from charlm.tasks.choosing import log_softmax
from charlm.tasks.lm.scoring import LN2
from charlm.text.corpus import split_documents
from charlm.text.tokenizer import EOS

# How many of the model's most likely next tokens a reading keeps per position.
TOP_GUESSES = 5
# Tokens per traced chunk: bounds the (T, V) logits held at once for a word vocabulary.
CHUNK_LEN = 256


@dataclass(frozen=True)
class Reading:
    """A text as a model read it, one entry per token (a character of a char model, a word token of a word
    model; a document end is a token whose text is the corpus mode's separator).

    - texts: each token's text, n strings; their concatenation is the text as shown
    - ids: the tokens' ids, of shape (n,)
    - bits: each token's surprisal -log2 p(token | tokens before it), of shape (n,), float64
    - top_ids, top_probs: the model's `TOP_GUESSES` most likely tokens at each position and their
      probabilities, most likely first, each of shape (n, k)
    - units: kind -> activations after reading each token, of shape (n, L, H) float32; kind "a" holds the
      layers' outputs a<t>, and for an LSTM kind "c" its memory cells c<t>
    """

    texts: list[str]
    ids: np.ndarray
    bits: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    units: dict[str, np.ndarray]

    @property
    def text(self) -> str:
        return "".join(self.texts)


def unit_kinds(cfg) -> tuple[str, ...]:
    """The activation kinds a reading holds for a model of this config: ("a", "c") for an LSTM, else ("a",)."""
    return ("a", "c") if cfg.cell == "lstm" else ("a",)


def _tokens(vocab, text: str, eos_mode: str) -> tuple[np.ndarray, list[str]]:
    """The ids (n,) of `text` read as the corpus mode reads a file, and each id's text.

    A char model's texts are the text's own characters (an unknown one keeps its character, read as `<UNK>`);
    a word model's are what its decoder writes for each id, implied separators included.
    """
    eos_text = "\n\n" if eos_mode == "paragraphs" else "\n"
    docs = [text] if eos_mode == "file" else split_documents(text, eos_mode)
    pieces = [np.asarray(vocab.encode(doc), dtype=np.int64) for doc in docs]
    if eos_mode != "file":
        pieces = [np.append(p, EOS) for p in pieces]
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if vocab.kind == "char":
        texts = [t for doc in docs for t in list(doc) + ([eos_text] if eos_mode != "file" else [])]
    else:
        decoder = vocab.decoder(context=[EOS], eos=eos_text)
        texts = [decoder.feed([i]) for i in ids.tolist()]
    return ids, texts


def read_text(params, cfg, vocab, text: str, *, eos_mode: str = "file") -> Reading:
    """Read `text` from a document start (`<EOS>` first), chunk by chunk with the state carried, as the
    model was trained on a corpus of `eos_mode`."""
    ids, texts = _tokens(vocab, text, eos_mode)
    n, k = len(ids), min(TOP_GUESSES, vocab.size)
    if n == 0:
        raise ConfigError("the text holds no tokens to read")
    inputs = np.concatenate([[EOS], ids])  # step i reads inputs[i]; its logits predict ids[i]
    bits, top_ids, top_probs = np.zeros(n), np.zeros((n, k), dtype=np.int64), np.zeros((n, k))
    kinds = unit_kinds(cfg)
    units = {kind: np.zeros((n + 1, cfg.layers, cfg.hidden), dtype=np.float32) for kind in kinds}
    state = init_state(cfg, 1)
    for start in range(0, n + 1, CHUNK_LEN):
        stop = min(start + CHUNK_LEN, n + 1)
        acts, state = trace(params, cfg, inputs[start:stop, None], state)
        for kind in kinds:
            for layer in range(cfg.layers):
                units[kind][start:stop, layer] = acts[f"layer.{layer}.{kind}"][:, 0]
        scored = min(stop, n) - start  # the last step (after the last token) predicts nothing
        if scored <= 0:
            continue
        logprobs = log_softmax(acts["head.logits"][:scored, 0].astype(np.float64))  # (t, V)
        rows = np.arange(scored)
        bits[start:start + scored] = -logprobs[rows, ids[start:start + scored]] / LN2
        best = np.argpartition(-logprobs, k - 1, axis=1)[:, :k]
        order = np.argsort(-logprobs[rows[:, None], best], axis=1, kind="stable")
        top_ids[start:start + scored] = np.take_along_axis(best, order, axis=1)
        top_probs[start:start + scored] = np.exp(logprobs[rows[:, None], top_ids[start:start + scored]])
    # activations after reading token i are those of step i + 1
    return Reading(texts=texts, ids=ids, bits=bits, top_ids=top_ids, top_probs=top_probs,
                   units={kind: values[1:] for kind, values in units.items()})


def surprisal_view(reading: Reading, vocab, *, eos_text: str = "\n") -> dict:
    """Every token's text, surprisal in bits and the model's top guesses [[text, probability], ...], with
    bits per character of the whole text."""
    names = [eos_text if i == EOS else vocab.token_text(i) for i in range(vocab.size)]
    tokens = [{"text": t, "bits": float(b),
               "top": [[names[i], float(p)] for i, p in zip(ids, probs, strict=True)]}
              for t, b, ids, probs in zip(reading.texts, reading.bits.tolist(), reading.top_ids.tolist(),
                                          reading.top_probs.tolist(), strict=True)]
    chars = len(reading.text)
    return {"tokens": tokens, "chars": chars, "bits_per_char": float(reading.bits.sum() / max(chars, 1))}


def unit_view(reading: Reading, *, layer: int, unit: int, kind: str) -> dict:
    """One unit's activation after each token, and the range to colour it over: [-1, 1] for the outputs
    (tanh-bounded), a symmetric [-m, m] with m the largest |c| for an LSTM's unbounded memory cells."""
    values = _unit_values(reading, kind)
    layers, hidden = values.shape[1:]
    if not (0 <= layer < layers and 0 <= unit < hidden):
        raise ConfigError(f"no unit {unit} in layer {layer}: the model has {layers} layer(s) of {hidden} units")
    column = values[:, layer, unit].astype(np.float64)
    high = 1.0 if kind == "a" else max(float(np.abs(column).max()), 1e-6)
    return {"tokens": reading.texts, "values": column.tolist(), "low": -high, "high": high}


def _unit_values(reading: Reading, kind: str) -> np.ndarray:
    if kind not in reading.units:
        raise ConfigError(f"kind must be one of {', '.join(reading.units)}, got {kind!r}")
    return reading.units[kind]


def pattern_mask(texts: list[str], pattern: str) -> np.ndarray:
    """Tokens (n,) bool that hold at least one character of a match of the regular expression `pattern` in
    their concatenation; empty matches match nothing."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"the pattern is not a regular expression: {exc}") from None
    text = "".join(texts)
    in_match = np.zeros(len(text) + 1, dtype=np.int64)  # +1 at a match's start, -1 after its end
    for m in regex.finditer(text):
        if m.end() > m.start():
            in_match[m.start()] += 1
            in_match[m.end()] -= 1
    covered = np.concatenate([[0], np.cumsum(np.cumsum(in_match)[:-1] > 0)])  # matched chars before each
    ends = np.cumsum([len(t) for t in texts])
    starts = ends - np.array([len(t) for t in texts])
    return covered[ends] > covered[starts]


def find_units(reading: Reading, mask: np.ndarray, *, kind: str = "a", top: int = 10) -> list[dict]:
    """The units whose activation best separates the tokens of `mask` (n,) from the others, best first.

    A unit's separation is its ROC AUC: the chance that a random matching token has a larger activation than
    a random other one; score = |2 AUC - 1| in [0, 1] counts units that go down inside a match too. Ties
    between activations are broken by position (exact ties are rare in float32 activations).
    """
    values = _unit_values(reading, kind)
    n, layers, hidden = values.shape
    mask = np.asarray(mask, dtype=bool)
    positives = int(mask.sum())
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
    if positives == 0 or positives == n:
        what = "no token" if positives == 0 else "every token"
        raise ConfigError(f"the pattern matches {what} of the text; units cannot separate it")
    flat = values.reshape(n, layers * hidden)
    ranks = np.empty_like(flat, dtype=np.float64)
    np.put_along_axis(ranks, np.argsort(flat, axis=0, kind="stable"), np.arange(1, n + 1, dtype=np.float64)[:, None],
                      axis=0)
    negatives = n - positives
    auc = (ranks[mask].sum(axis=0) - positives * (positives + 1) / 2) / (positives * negatives)
    score = np.abs(2 * auc - 1)
    best = np.argsort(-score, kind="stable")[:top]
    mean_in, mean_out = flat[mask].mean(axis=0), flat[~mask].mean(axis=0)
    return [{"layer": int(u // hidden), "unit": int(u % hidden), "kind": kind, "score": float(score[u]),
             "auc": float(auc[u]), "mean_in": float(mean_in[u]), "mean_out": float(mean_out[u])} for u in best]
