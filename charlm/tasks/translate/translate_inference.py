"""Using a trained encoder–decoder: what `charlm translate` and `charlm evaluate` call.

`translate_texts` decodes inputs (greedy, beam search or sampling, all batched); `evaluate_pairs` scores a
`source<TAB>target` file against every reference of each source: exact match, WER (the share of sources whose
output matches none of their references), TER (token edit distance to the nearest reference over that
reference's length, summed over the file: the phoneme error rate of grapheme-to-phoneme, the character error
rate of character targets), BLEU and chrF (sacrebleu, the field's standard, with every reference) and the
teacher-forced nats per target token of the references.
"""

import numpy as np
import sacrebleu

from charlm.errors import ConfigError
from charlm.store.checkpoint import Checkpoint, require_kind
from charlm.tasks.translate.decoding import (
    MAX_EXTRA,
    MAX_RATIO,
    Output,
    Translator,
    attention_of,
    beam_search,
    sample,
    source_ids,
)
from charlm.tasks.translate.pairs import read_pairs, references
from charlm.tasks.translate.translate_task import encode_pairs, held_out_loss


def as_translator(ckpt: Checkpoint) -> Translator:
    """The encoder–decoder a checkpoint holds; another kind of model is a ConfigError saying what to use."""
    require_kind(ckpt, "seq2seq")
    return Translator(ckpt.params, ckpt.config, ckpt.vocab, ckpt.target_vocab)


def check_decoding(*, beam: int, nbest: int, samples: int, sampling: bool) -> None:
    """Usage errors of the decoding options, as ConfigError."""
    if beam < 1:
        raise ConfigError(f"--beam must be at least 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise ConfigError(f"--nbest must be between 1 and --beam {beam}, got {nbest}")
    if sampling and (beam > 1 or nbest > 1):
        raise ConfigError("sampling (-n, --temperature, --top-k, --top-p) draws outputs; it does not go with "
                          "--beam or --nbest")
    if samples < 1:
        raise ConfigError(f"-n must be at least 1, got {samples}")


def check_decode_options(*, beam: int = 1, nbest: int = 1, samples: int = 1, temperature: float | None = None,
                         top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> bool:
    """`decode`'s options checked (usage errors, as ConfigError) -> whether they ask for sampling."""
    sampling = samples > 1 or temperature is not None or top_k is not None or top_p is not None
    check_decoding(beam=beam, nbest=nbest, samples=samples, sampling=sampling)
    return sampling


def decode(translator: Translator, ids: list[np.ndarray], *, beam: int = 1, nbest: int = 1, samples: int = 1,
           temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None) -> list[list[Output]]:
    """Outputs per source: sampled when a sampling option is given (temperature 0: greedy), else by beam
    search (beam 1: greedy)."""
    if check_decode_options(beam=beam, nbest=nbest, samples=samples, temperature=temperature, top_k=top_k,
                            top_p=top_p):
        return sample(translator, ids, samples=samples, temperature=1.0 if temperature is None else temperature,
                      top_k=top_k, top_p=top_p, seed=seed)
    return beam_search(translator, ids, beam=beam, nbest=nbest)


def translate_texts(translator: Translator, texts: list[str], *, attention: bool = False, **options) -> list[dict]:
    """Per text `{"source", "output", "logprob", "score", "capped", "nbest": [{"output", "logprob", "score",
    "capped"}, ...]}` (the first output's fields at the top level); with `attention`, the first output's
    attention weights (output tokens + `<EOS>`, source tokens) and the tokens on both axes. `options`: as
    `decode`."""
    check_decode_options(**options)  # a bad option is reported before a bad text
    ids = [source_ids(translator, text) for text in texts]
    found = []
    for text, source, outputs in zip(texts, ids, decode(translator, ids, **options), strict=True):
        record = {"source": text, **outputs[0].to_json(), "nbest": [o.to_json() for o in outputs]}
        if attention:
            weights = attention_of(translator, source, outputs[0].ids)
            record["attention"] = None if weights is None else np.round(weights, 4).tolist()
            record["source_tokens"] = [translator.source_vocab.token_text(int(i)) for i in source]
            record["output_tokens"] = [translator.target_vocab.token_text(int(i)) for i in outputs[0].ids] + \
                ["<EOS>"]
        found.append(record)
    return found


def capped_note(found: list[dict]) -> str | None:
    """One line counting the outputs cut at the length cap, when any were."""
    capped = sum(o["capped"] for record in found for o in record["nbest"])
    if not capped:
        return None
    return (f"{capped} output(s) reached the length cap ({MAX_RATIO:g} x the source's tokens + {MAX_EXTRA}) "
            f"without ending: the model did not learn to stop on such inputs")


def edit_tokens(vocab, text: str) -> list[str]:
    """The units TER counts edits of: characters for a character vocabulary, else its tokens without the
    whitespace between them."""
    if vocab.kind == "char":
        return list(text)
    return [token for token in vocab.tokenize(text) if token.strip()]


def token_edits(a: list, b: list) -> int:
    """Levenshtein distance between two token sequences (insertions, deletions and substitutions cost 1),
    one numpy row per token of `a`."""
    previous = np.arange(len(b) + 1)
    b_tokens = np.array(b, dtype=object)
    for i, token in enumerate(a, start=1):
        substituted = previous[:-1] + (b_tokens != token)
        row = np.empty_like(previous)
        row[0] = i
        row[1:] = np.minimum(previous[1:] + 1, substituted)
        row = np.minimum.accumulate(row - np.arange(len(row))) + np.arange(len(row))  # insertions, left to right
        previous = row
    return int(previous[-1])


def evaluate_pairs(translator: Translator, path, *, beam: int = 1, encoding: str = "utf-8") -> dict:
    """The figures of the module docstring over the pairs of `path` (each source decoded once, by beam search
    with `beam`, 1 = greedy)."""
    pairs = read_pairs(path, encoding)
    refs = references(pairs.sources, pairs.targets)
    sources = list(refs)
    first_line = dict(zip(reversed(pairs.sources), reversed(pairs.lines), strict=True))
    ids = [source_ids(translator, s, f"{path}:{first_line[s]}") for s in sources]
    outputs = [found[0] for found in beam_search(translator, ids, beam=beam)]
    exact, edits, ref_tokens = 0, 0, 0
    for source, output in zip(sources, outputs, strict=True):
        exact += output.text in refs[source]
        hypothesis = edit_tokens(translator.target_vocab, output.text)
        nearest = min((token_edits(hypothesis, ref), len(ref))
                      for ref in (edit_tokens(translator.target_vocab, r) for r in refs[source]))
        edits, ref_tokens = edits + nearest[0], ref_tokens + nearest[1]
    most = max(len(r) for r in refs.values())
    streams = [[refs[s][k] if k < len(refs[s]) else None for s in sources] for k in range(most)]
    hyps = [o.text for o in outputs]
    n = len(sources)
    return {"task": "translate", "n": n, "pairs": len(pairs.sources), "beam": beam,
            "exact_match": exact / n, "wer": 1 - exact / n, "ter": edits / max(ref_tokens, 1),
            "bleu": sacrebleu.corpus_bleu(hyps, streams).score, "chrf": sacrebleu.corpus_chrf(hyps, streams).score,
            "nats_per_token": held_out_loss(translator, *encode_pairs(translator.source_vocab,
                                                                      translator.target_vocab, pairs.sources,
                                                                      pairs.targets)),
            "capped": sum(o.capped for o in outputs)}
