"""Truecasing: restore the case of lowercased text with an ordinary character language model.

The method of Susanto, Chieu and Lu (EMNLP 2016, "Learning to Capitalize with Character-Level Recurrent
Neural Networks"): read the text as one document and search, with a beam, for the casing the model finds
most likely, where each character may only be itself or its upper-case form (`case_candidates`). Each text
is read as the model read a document: after `<EOS>`, with its closing `<EOS>` scored too, so the end of a text
informs the casing of its last word; a model of a whole file (`eos_mode` "file") saw `<EOS>` once and lines
thousands of times, so there a text is read as a line: after `<EOS>` and a newline, closed by a newline.

Letters: K live hypotheses (at most `beam`), V vocabulary, C candidates of one character (1 or 2).
"""

from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models.lm import init_state, step_logits
from charlm.tasks.choosing import log_softmax, take_rows
from charlm.text.casing import lowercase
from charlm.text.tokenizer import EOS, UNK


@dataclass
class Restored:
    """One truecased text.

    - text: the restored text, as long as the input; a character outside the vocabulary keeps the input's
    - logprob: the model's log-probability (nats) of the restored text and its closing id (see `framing`)
      (characters outside the vocabulary are scored as `<UNK>`)
    - changed: the characters whose case differs from the input's
    """

    text: str
    logprob: float
    changed: int


def case_candidates(vocab, char: str) -> list[int]:
    """The ids a lowercased character may become: its own id (`<UNK>` when unknown), then the id of its
    upper-case form when `char.upper()` is one character, differs from `char` and is in the vocabulary."""
    if len(char) != 1:
        raise ConfigError(f"case_candidates takes one character, got {char!r}")
    own = int(vocab.encode(char)[0])
    upper = char.upper()
    if len(upper) == 1 and upper != char and upper in vocab:
        return [own, int(vocab.encode(upper)[0])]
    return [own]


def check_truecase_model(cfg, vocab) -> None:
    """Raise ConfigError unless the model is a character language model."""
    if cfg.kind != "lm":
        use = "tag text with `charlm tag`" if cfg.kind == "tagger" else "classify text with `charlm classify`"
        raise ConfigError(f"this checkpoint is a {cfg.kind}, not a language model; {use}")
    if vocab.kind != "char":
        units = vocab.kind if vocab.kind == "symbols" else f"{vocab.kind}s"
        raise ConfigError(f"truecasing needs a character language model; this checkpoint's model reads "
                          f"{units} (train one with `charlm train --tokens char`)")


def framing(vocab, eos_mode: str) -> tuple[list[int], int]:
    """The ids read before each text and the id that closes it: a line for a whole-file model whose
    vocabulary has a newline, else a document (`<EOS>` ... `<EOS>`)."""
    if eos_mode == "file" and "\n" in vocab:
        newline = int(vocab.encode("\n")[0])
        return [EOS, newline], newline
    return [EOS], EOS


def truecase(params, cfg, vocab, texts, *, beam: int = 8, eos_mode: str = "lines") -> list[Restored]:
    """Restore the case of each text by beam search over its casings.

    Each text is lowered first, character by character (`charlm.tasks.tagging.tagged_text.lowercase`: a character whose
    lower case is not one character, such as 'İ', stays as it is), so the result lines up with the input.

    - texts: strings; each is one document (one line of a whole-file model's text)
    - beam: hypotheses kept per character (1 = greedy)
    - eos_mode: the document mode of the model's corpus (see `framing`)
    Returns one Restored per text, in order.
    """
    check_truecase_model(cfg, vocab)
    if beam < 1:
        raise ConfigError(f"need a beam width >= 1, got {beam}")
    start, end = framing(vocab, eos_mode)
    return [_truecase_one(params, cfg, vocab, text, beam, start, end) for text in texts]


def _truecase_one(params, cfg, vocab, text: str, beam: int, start: list[int], end: int) -> Restored:
    """Beam search over the casings of one text; the K live hypotheses advance together as one batch."""
    lowered = lowercase(text)
    state = init_state(cfg, 1)
    for i in start:
        logits, state = step_logits(params, cfg, np.array([i]), state)  # (1, V)
    scores = np.zeros(1)  # (K,) log-probability of each live hypothesis
    # Per position, each live hypothesis's parent row (K,) and chosen id (K,), for backtracking.
    parents, chosen = [], []
    for char in lowered:
        candidates = np.array(case_candidates(vocab, char))  # (C,)
        extended = scores[:, None] + log_softmax(logits)[:, candidates]  # (K, C)
        flat = extended.ravel()
        # best first; ties by index, so the search is deterministic
        keep = np.lexsort((np.arange(flat.size), -flat))[:beam]
        rows, which = np.divmod(keep, len(candidates))
        ids = candidates[which]
        parents.append(rows)
        chosen.append(ids)
        scores = flat[keep]
        logits, state = step_logits(params, cfg, ids, take_rows(state, rows))
    scores = scores + log_softmax(logits)[:, end]
    best = int(np.argmax(scores))  # the first of equal scores: the better-ranked before the closing <EOS>
    path = np.zeros(len(lowered), dtype=np.int64)
    for t in range(len(lowered) - 1, -1, -1):
        path[t] = chosen[t][best]
        best = int(parents[t][best])
    restored = "".join(original if i == UNK else vocab.token_text(int(i))
                       for original, i in zip(text, path, strict=True))
    changed = sum(a != b for a, b in zip(text, restored, strict=True))
    return Restored(text=restored, logprob=float(scores.max()), changed=changed)
