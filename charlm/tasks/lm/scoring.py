"""Scoring: negative log-likelihood of an id stream under a model, exactly or with parallel streams.

Exact mode carries one state from the zero state over the whole stream: target ids[i] is predicted from
ids[:i]. Streams mode cuts the targets into B contiguous pieces scored side by side; each piece first
reads `burn_in` preceding ids without scoring them (the first piece starts at the zero state, as exact).
Training's validation, `charlm perplexity` and `charlm score` all go through this module, so they agree.

Per-token figures divide by the targets scored; per-character figures divide by the characters of the
original text the targets stand for (`n_chars`: each document's characters plus one per document end, as
a character model's targets count them), so models of any tokenizer kind compare on bits per character.
Per-token figures compare only between models whose tokens are the same units: `tokenization` says what they
are.
"""

import math
from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models.lm import forward_nll, init_state
from charlm.text.cache import prepare_corpus
from charlm.text.corpus import iter_encoded_pieces
from charlm.text.tokenizer import EOS, UNK

LN2 = math.log(2)
# What a target is, by tokenizer kind: the unit a perplexity (exp of nats per token) counts.
TOKEN_UNITS = {
    "char": "characters",
    "word": "words and punctuation marks, and the whitespace between them that is not one space",
    "symbols": "whitespace-separated symbols",
}
DOCUMENT_NAMES = {"file": "file", "lines": "line", "paragraphs": "paragraph"}


def tokenization(kind: str, eos_mode: str) -> str:
    """The tokens a perplexity of a `kind` vocabulary over `eos_mode` documents counts, in plain words, e.g.
    "whitespace-separated symbols plus one end per line (blank lines included)"."""
    if kind == "symbols":  # every line end is an <EOS>; the document mode decides whether blank lines count
        blank = "included" if eos_mode == "file" else "skipped"
        return f"{TOKEN_UNITS[kind]} plus one end per line (blank lines {blank})"
    return f"{TOKEN_UNITS[kind]} plus one end per {DOCUMENT_NAMES[eos_mode]}"


@dataclass
class ScoreResult:
    """Totals of a scored stream.

    - nll_sum: summed negative log-likelihood in nats
    - n_scored: number of targets scored (tokens and `<EOS>`)
    - n_unk: how many of the targets are `<UNK>`
    - nll: per-target nats in stream order, of shape (n_scored,), when asked for
    - streams, burn_in: the mode actually used (1 and 0 for exact)
    - n_chars: characters of the original text the targets stand for (`<EOS>` counts 1); None means one
      per target, as for a character vocabulary. A float when `<UNK>` targets are counted by an
      estimated length (`vocab.char_count`).
    """

    nll_sum: float
    n_scored: int
    n_unk: int
    nll: np.ndarray | None = None
    streams: int = 1
    burn_in: int = 0
    n_chars: float | None = None

    def __post_init__(self):
        if self.n_chars is None:
            self.n_chars = self.n_scored

    @property
    def nats_per_token(self) -> float:
        return self.nll_sum / self.n_scored if self.n_scored else math.nan

    @property
    def perplexity(self) -> float:
        """Per token: exp(nats per token) (a word model's word perplexity)."""
        return math.exp(self.nats_per_token) if self.n_scored else math.nan

    @property
    def nats_per_char(self) -> float:
        return self.nll_sum / self.n_chars if self.n_chars else math.nan

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / LN2


class ExactScorer:
    """Scores one stream fed in pieces, carrying the state and the last id across them (memory stays flat).

    - on_scored: called per chunk with (targets (T,), nll (T,) float64), in stream order
    - keep_nll: keep every per-target nll for the result
    """

    def __init__(self, params, cfg, *, chunk_len: int = 256, on_scored=None, keep_nll: bool = False):
        if chunk_len < 1:
            raise ConfigError(f"chunk length must be >= 1, got {chunk_len}")
        self.params, self.cfg, self.chunk_len = params, cfg, chunk_len
        self.on_scored = on_scored
        self.kept = [] if keep_nll else None
        self.state = init_state(cfg, 1)
        self.workspace = {}
        self.last = None  # the last id read, the input that predicts the next piece's first id
        self.nll_sum, self.n_scored, self.n_unk = 0.0, 0, 0

    def feed(self, ids) -> None:
        """Score the next piece of the stream, ids of shape (n,)."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return
        if self.last is not None:
            ids = np.concatenate([np.array([self.last], dtype=ids.dtype), ids])
        self.last = ids[-1]
        for s in range(0, len(ids) - 1, self.chunk_len):
            x = ids[s:s + self.chunk_len]
            y = ids[s + 1:s + 1 + self.chunk_len]
            x = x[:len(y)]
            nll, self.state = forward_nll(self.params, self.cfg, x[:, None], y[:, None], self.state,
                                          workspace=self.workspace)
            nll = nll[:, 0]
            self._add(y, nll)

    def _add(self, targets, nll) -> None:
        self.nll_sum += float(nll.sum())
        self.n_scored += len(targets)
        self.n_unk += int(np.count_nonzero(targets == UNK))
        if self.kept is not None:
            self.kept.append(nll.copy())
        if self.on_scored is not None:
            self.on_scored(targets, nll)

    def result(self) -> ScoreResult:
        nll = None
        if self.kept is not None:
            nll = np.concatenate(self.kept) if self.kept else np.zeros(0)
        return ScoreResult(self.nll_sum, self.n_scored, self.n_unk, nll)


def score_ids(params, cfg, ids, *, streams: int = 1, burn_in: int = 0, chunk_len: int = 256,
              per_char: bool = False, vocab=None) -> ScoreResult:
    """Score ids[1:] given ids[:-1] (a stream `<EOS> doc <EOS> ...`, any integer dtype, a memmap is fine).

    Inputs:
    - ids: of shape (N,)
    - streams: 1 = exact (one state carried from the zero state); B > 1 = B contiguous pieces in parallel
    - burn_in: ids each piece reads unscored before its first target (capped at the piece length)
    - chunk_len: time steps per forward call
    - per_char: also return every target's nll
    - vocab: the ids' vocabulary; when given, `n_chars` is `vocab.char_count(ids)` (else one per target)
    """
    if streams < 1:
        raise ConfigError(f"streams must be >= 1, got {streams}")
    if burn_in < 0:
        raise ConfigError(f"burn-in must be >= 0, got {burn_in}")
    if streams == 1 or len(ids) < 3:
        scorer = ExactScorer(params, cfg, chunk_len=chunk_len, keep_nll=per_char)
        scorer.feed(ids)
        result = scorer.result()
    else:
        result = _score_streams(params, cfg, ids, streams, burn_in, chunk_len, per_char)
    if vocab is not None and result.n_scored:
        result.n_chars = vocab.char_count(ids)
    return result


def _score_streams(params, cfg, ids, streams, burn_in, chunk_len, per_char) -> ScoreResult:
    n_targets = len(ids) - 1
    P = -(-n_targets // min(streams, n_targets))  # targets per piece
    B = -(-n_targets // P)
    W = min(burn_in, P)  # every piece after the first has at least P preceding ids
    starts = 1 + P * np.arange(B)  # first target index of each piece
    ends = np.minimum(starts + P, len(ids))  # (B,) one past the last target
    workspace = {}
    state = init_state(cfg, B)
    for t0 in range(0, W, chunk_len):
        t = np.arange(t0, min(t0 + chunk_len, W))[:, None]
        pos = np.maximum(starts[None, :] - 1 - W + t, 0)  # (T, B) inputs before each piece
        x = np.asarray(ids[pos])
        _, state = forward_nll(params, cfg, x, x, state, workspace=workspace)
    for arrays in state:
        for a in arrays:
            a[0] = 0.0  # the first piece starts at the beginning of the stream: the zero state
    nll_sum, n_unk = 0.0, 0
    columns = []
    for t0 in range(0, P, chunk_len):
        t = np.arange(t0, min(t0 + chunk_len, P))[:, None]
        target = starts[None, :] + t  # (T, B)
        valid = target < ends[None, :]
        target = np.minimum(target, len(ids) - 1)
        y = np.asarray(ids[target])
        nll, state = forward_nll(params, cfg, np.asarray(ids[target - 1]), y, state, workspace=workspace)
        nll_sum += float(nll[valid].sum())
        n_unk += int(np.count_nonzero((y == UNK) & valid))
        if per_char:
            columns.append(np.where(valid, nll, np.nan))
    nll = None
    if per_char:
        full = np.concatenate(columns, axis=0)  # (P, B)
        nll = full.T.reshape(-1)[:n_targets]
    return ScoreResult(nll_sum, n_targets, n_unk, nll, streams=B, burn_in=W)


def score_file(params, cfg, vocab, path, *, eos_mode: str, encoding: str = "utf-8", streams: int = 1,
               burn_in: int = 0, chunk_len: int = 256, on_scored=None,
               chunk_chars: int = 1 << 20) -> ScoreResult:
    """Score a text file read with the model's vocabulary and `--eos` mode.

    Exact mode (streams 1) reads the file in pieces of `chunk_chars` characters, carrying the state
    across them, so memory stays flat; `on_scored(targets, nll)` sees every chunk in order. Streams mode
    scores the encoded id stream (a memory-mapped cache file) with `score_ids`. `n_chars` is exact:
    the characters of the file's documents plus one per document end, whatever became `<UNK>`.
    """
    if streams == 1:
        scorer = ExactScorer(params, cfg, chunk_len=chunk_len, on_scored=on_scored)
        n_chars, n_eos = 0, 0
        for piece in iter_encoded_pieces(path, vocab, eos_mode=eos_mode, encoding=encoding,
                                         chunk_chars=chunk_chars):
            scorer.feed(piece.ids)
            n_chars += piece.n_chars
            n_eos += int(np.count_nonzero(piece.ids == EOS))
        result = scorer.result()
        result.n_chars = n_chars + n_eos - 1  # every document end but the stream's leading <EOS>
        return result
    corpus = prepare_corpus(path, tokens=vocab.kind, lowercase=vocab.lowercase, eos_mode=eos_mode,
                            encoding=encoding, vocab=vocab)
    result = score_ids(params, cfg, corpus.ids, streams=streams, burn_in=burn_in, chunk_len=chunk_len,
                       per_char=on_scored is not None)
    result.n_chars = corpus.n_chars + corpus.n_docs
    if on_scored is not None:
        on_scored(np.asarray(corpus.ids[1:]), result.nll)
    return result


def score_documents(params, cfg, docs, *, batch: int = 256, chunk_len: int = 256) -> np.ndarray:
    """Total nll (nats) of each document read from the zero state, batched with padding.

    - docs: id arrays, each `<EOS> text <EOS>` (the first id is read, the rest are scored)
    Returns float64 of shape (len(docs),).
    """
    totals = np.zeros(len(docs))
    for b0 in range(0, len(docs), batch):
        group = [np.asarray(d, dtype=np.int64) for d in docs[b0:b0 + batch]]
        T = max(len(d) for d in group)
        ids = np.full((T, len(group)), EOS, dtype=np.int64)  # (T, B) padded at the end
        for j, d in enumerate(group):
            ids[:len(d), j] = d
        lengths = np.array([len(d) for d in group])
        state = init_state(cfg, len(group))
        workspace = {}
        for s in range(0, T - 1, chunk_len):
            e = min(s + chunk_len, T - 1)
            nll, state = forward_nll(params, cfg, ids[s:e], ids[s + 1:e + 1], state, workspace=workspace)
            target_pos = np.arange(s + 1, e + 1)[:, None]
            totals[b0:b0 + len(group)] += np.where(target_pos < lengths[None, :], nll, 0.0).sum(axis=0)
    return totals
