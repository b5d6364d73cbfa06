"""Analyses of a language model and of its output, as plain JSON-able results (dicts, lists, str, int, float,
bool).

`score_summary`, `surprisal` and `rank_candidates` say how well a model predicts text; `novelty` says whether
samples occur verbatim in a corpus. The CLI commands draw these results and the explorer page serves them, so
neither holds a second copy of the analysis.
"""

import functools
from dataclasses import asdict, dataclass

import numpy as np

from charlm.tasks.lm.sampling import unit_noun
from charlm.tasks.lm.scoring import LN2, ScoreResult, score_documents
from charlm.text.corpus import split_documents
from charlm.text.tokenizer import EOS

# Upper bounds (bits) of the surprisal bins; a last, open bin holds everything from the largest bound up.
SURPRISAL_BINS = (1.0, 3.0, 6.0, 10.0)


# ---------------------------------------------------------------------------------------------- scores


def _count(n):
    """A character count as an int when it is whole (exact), else the float estimate."""
    return int(n) if float(n).is_integer() else float(n)


def score_summary(result: ScoreResult) -> dict:
    """Characters and tokens scored, `<UNK>` count and share (of the tokens), nats and bits per character,
    nats per token and the per-token perplexity of a score (tokens == chars for a char vocabulary)."""
    return {"chars": _count(result.n_chars), "unk": result.n_unk,
            "unk_rate": result.n_unk / result.n_scored if result.n_scored else 0.0,
            "nats_per_char": result.nats_per_char, "bits_per_char": result.bits_per_char,
            "perplexity": result.perplexity, "tokens": result.n_scored,
            "nats_per_token": result.nats_per_token}


def surprisal_bin(bits: float) -> int:
    """Index of the bin of `SURPRISAL_BINS` that holds `bits` (len(SURPRISAL_BINS) for the open last bin)."""
    for i, upper in enumerate(SURPRISAL_BINS):
        if bits < upper:
            return i
    return len(SURPRISAL_BINS)


@functools.lru_cache(maxsize=8)
def token_texts(vocab, eos_text: str) -> tuple[str, ...]:
    """The text of every id, of length V, with `<EOS>` written as `eos_text` (cached: scoring calls per chunk)."""
    return tuple(vocab.decode([i], eos=eos_text) for i in range(vocab.size))


def surprisal(vocab, targets, nll, *, eos_text: str = "\n", decoder=None) -> list[dict]:
    """Each target's text and surprisal, in stream order.

    Inputs:
    - targets: scored ids, of shape (n,)
    - nll: their negative log-likelihoods in nats, of shape (n,) (as `scoring` reports them)
    - eos_text: the text that stands for `<EOS>` (the document separator of the corpus mode)
    - decoder: a `vocab.decoder(...)` that has read the ids before `targets` (it reads them too); each
      text is then what its target adds to the decoded text, the implied separator before a word included.
      Without it each text is the id's own (a character vocabulary's texts need no context).
    Returns n records {"id": int, "text": str, "bits": float}.
    """
    ids = np.asarray(targets).tolist()
    bits = (np.asarray(nll, dtype=np.float64) / LN2).tolist()
    if len(ids) != len(bits):
        raise ValueError(f"{len(ids)} targets but {len(bits)} nll values")
    if decoder is None:
        pieces = token_texts(vocab, eos_text)
        texts = [pieces[i] for i in ids]
    else:
        texts = [decoder.feed([i]) for i in ids]
        texts = [eos_text if i == EOS else t for i, t in zip(ids, texts, strict=True)]
    return [{"id": i, "text": t, "bits": b} for i, t, b in zip(ids, texts, bits, strict=True)]


def rank_candidates(params, cfg, vocab, texts, *, warn=None) -> list[dict]:
    """Candidate texts ranked by their probability, each scored as one document (from `<EOS>`, closing
    `<EOS>` included); ties keep the given order.

    - warn: called once with a message when the texts hold tokens outside the vocabulary (read as `<UNK>`)
    Returns records {"rank", "text", "logprob" (nats), "chars" (the text's characters and the closing
    `<EOS>`), "nats_per_char", "bits_per_char", "tokens" (targets scored), "nats_per_token"}, most likely
    first (for a char vocabulary tokens == chars).
    """
    unknown = sorted({u for t in texts for u in vocab.unknown(t)})
    if unknown and warn is not None:
        warn(f"{unit_noun(vocab)} outside the vocabulary are scored as <UNK>: "
             + ", ".join(repr(c) for c in unknown))
    docs = [np.concatenate([[EOS], vocab.encode(t), [EOS]]) for t in texts]
    totals = score_documents(params, cfg, docs)
    ranked = sorted(range(len(texts)), key=lambda i: (totals[i], i))
    records = []
    for rank, i in enumerate(ranked):
        nats, chars, tokens = float(totals[i]), len(texts[i]) + 1, len(docs[i]) - 1
        records.append({"rank": rank + 1, "text": texts[i], "logprob": -nats, "chars": chars,
                        "nats_per_char": nats / chars, "bits_per_char": nats / chars / LN2,
                        "tokens": tokens, "nats_per_token": nats / tokens})
    return records


# ---------------------------------------------------------------------------------------------- novelty


@dataclass
class Novelty:
    """Whether a sample occurs verbatim in the corpus.

    - novel: lines/paragraphs mode: the sample is not one of the corpus documents; file mode: the sample
      is not a substring of the corpus
    - longest_shared: length of the longest substring of the sample found in the corpus
    """

    novel: bool
    longest_shared: int

    def to_json(self) -> dict:
        return asdict(self)


def longest_shared(sample: str, corpus: str) -> int:
    """Length of the longest substring of `sample` found in `corpus` (a sliding window: O(n) searches)."""
    best, i = 0, 0
    for j in range(1, len(sample) + 1):
        while i < j and sample[i:j] not in corpus:
            i += 1
        best = max(best, j - i)
    return best


def novelty(texts, corpus: str, eos_mode: str) -> list[Novelty]:
    """Novelty of each sample against a normalised corpus text: whole documents in lines/paragraphs mode,
    substrings in file mode."""
    known = set(split_documents(corpus, eos_mode)) if eos_mode != "file" else None
    found = []
    for text in texts:
        shared = longest_shared(text, corpus)
        novel = text not in known if known is not None else shared < len(text)
        found.append(Novelty(novel=novel, longest_shared=shared))
    return found
