"""Trained models in a user's own Python: `load` opens a run directory or a checkpoint as the object of its kind
(`LanguageModel`, `Tagger`, `Classifier`, `EncoderDecoder`), which holds the weights loaded and answers through
the library functions the commands call. `tag`, `classify`, `translate` and `info` return the records
`charlm <command> --json` prints for the same input; `sample` returns the texts, `score` the log-probabilities.

A method that reads texts takes one string (and answers for it) or a list of them (and answers a list, in order).
Failures are charlm's exceptions (`charlm.errors`) with the commands' one-line messages; warnings (a prime's
unknown characters, a damaged newer checkpoint skipped) go to Python's `warnings`.
"""

import tempfile
import warnings
from pathlib import Path

from charlm.errors import CorpusError
from charlm.export.exporting import export_checkpoint
from charlm.models.config import ModelConfig
from charlm.store.checkpoint import KIND_NAMES, Checkpoint, load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts
from charlm.tasks.description import describe
from charlm.tasks.lm.analysis import rank_candidates, score_summary
from charlm.tasks.lm.sampling import ends_at_eos, sample_model
from charlm.tasks.lm.scoring import score_file
from charlm.tasks.tagging.tagger_inference import as_tagger, tag_docs
from charlm.tasks.translate.translate_inference import as_translator, translate_texts

# The methods of each kind of model, so that asking one kind for another's says which kind it is.
METHOD_KINDS = {"sample": "lm", "score": "lm", "perplexity": "lm", "tag": "tagger", "classify": "classifier",
                "translate": "seq2seq"}


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=2)


def _texts(texts) -> list[str]:
    """The texts as a list: `texts` is one string or an iterable of strings."""
    return [texts] if isinstance(texts, str) else list(texts)


def _answer(texts, results: list):
    """The result of the one text when `texts` was a string, else the list of results."""
    return results[0] if isinstance(texts, str) else results


class Model:
    """A trained model of any kind, loaded once: where it came from, what it is, and `info`."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint

    @property
    def path(self) -> Path:
        """The checkpoint file loaded (a run directory's best checkpoint, or the file given)."""
        return self.checkpoint.path

    @property
    def kind(self) -> str:
        """The kind of model: "lm", "tagger", "classifier" or "seq2seq"."""
        return self.checkpoint.config.kind

    @property
    def config(self) -> ModelConfig:
        """Everything that rebuilds the network: cell, sizes, layers, direction, heads."""
        return self.checkpoint.config

    @property
    def vocab(self):
        """The vocabulary the model reads (characters, words or symbols): `size`, `encode`, `decode`."""
        return self.checkpoint.vocab

    def info(self) -> dict:
        """What `charlm info --json` shows: the file, format and integrity, the model, its vocabulary, the
        training summary and the task."""
        return describe(self.checkpoint)

    def export(self, out, format: str = "onnx") -> dict:
        """Write the model for another runtime as `charlm export` does: "onnx" (ONNX's own LSTM/GRU/RNN graph)
        or "torch" (a PyTorch state dict in safetensors), see docs/export.md; returns what `--json` prints."""
        return export_checkpoint(self.checkpoint, out, fmt=format)

    def __repr__(self) -> str:
        return f"<charlm.{type(self).__name__} {self.path}>"

    def __getattr__(self, name: str):
        kind = METHOD_KINDS.get(name)
        if kind is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(f"{self.path} is {KIND_NAMES[self.kind]}, not {KIND_NAMES[kind]}: it has no "
                             f"{name}()")


class LanguageModel(Model):
    """A language model: `sample`, `score`, `perplexity`."""

    def sample(self, n: int = 1, length: int = 200, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, prime: str = "", seed: int | None = None) -> list[str]:
        """`n` texts drawn together as `charlm sample` draws them, as a list of strings. Each starts a document,
        begins with `prime` (read first), and ends after `length` generated tokens (characters or words, as the
        model reads), or earlier at a document's end for a model of lines or paragraphs.

        temperature: 0 is greedy; top_k, top_p: sample among the k most likely tokens, or the fewest holding
        probability top_p; seed: the same seed gives the same texts (None: a fresh one). A value out of range
        is a ConfigError in `charlm sample`'s words (`temperature must be a finite number >= 0 ...`).
        """
        ckpt = self.checkpoint
        samples = sample_model(ckpt, num_samples=n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                               warn=_warn, prime=prime, length=length, stop_at_eos=ends_at_eos(ckpt.data, False))
        return [s.text for s in samples]

    def score(self, texts):
        """The log-probability (nats) of each text read as one document, from `<EOS>` to its closing `<EOS>`:
        the `logprob` `charlm score` ranks by. A float for one text, a list in the given order for a list."""
        ckpt, many = self.checkpoint, _texts(texts)
        records = rank_candidates(ckpt.params, ckpt.config, ckpt.vocab, many, warn=_warn)
        logprob = {record["text"]: record["logprob"] for record in records}
        return _answer(texts, [logprob[text] for text in many])

    def perplexity(self, text: str) -> dict:
        """How well the model predicts `text`, exactly as `charlm perplexity` figures a file holding it (every
        token predicted from all the text before it): the `total` of its `--json`, {"chars", "unk", "unk_rate",
        "nats_per_char", "bits_per_char", "perplexity", "tokens", "nats_per_token"}; "perplexity" is per token
        (per character for a character model)."""
        ckpt = self.checkpoint
        # Through a file, the text is normalised and cut into documents by the very code the command reads with.
        with tempfile.TemporaryDirectory(prefix="charlm-") as scratch:
            path = Path(scratch) / "text.txt"
            path.write_bytes(text.encode("utf-8"))
            try:
                result = score_file(ckpt.params, ckpt.config, ckpt.vocab, path,
                                    eos_mode=ckpt.data.get("eos_mode", "file"), encoding="utf-8")
            except CorpusError as exc:  # said of the text, not of the file it passed through
                raise CorpusError(str(exc).replace(str(path), "the text")) from None
        return score_summary(result)


class Tagger(Model):
    """A tagger (truecase, punctuate, or the tags of a CoNLL file): `tag`."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(checkpoint)
        self._tagger = as_tagger(checkpoint)

    @property
    def labels(self) -> dict[str, tuple[str, ...]]:
        """Each head's labels by head name ("case", "punct" or "tag")."""
        return {head.name: head.labels for head in self._tagger.heads}

    def tag(self, texts):
        """Per text what `charlm tag --json` prints: {"input", "output" (the text restored, or token/label
        pairs), "tokens": [{"token", "restored", <head>, <head>_probability}, ...]}."""
        t = self._tagger
        return _answer(texts, tag_docs(t.params, t.cfg, t.vocab, t.heads, t.task, _texts(texts), marks=t.marks))


class Classifier(Model):
    """A classifier, one label per text: `classify`."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(checkpoint)
        self._classifier = as_classifier(checkpoint)

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels, by label id."""
        return self._classifier.labels

    def classify(self, texts, top_k: int = 1):
        """Per text what `charlm classify --json --top-k K` prints: {"text", "label", "probability", "top":
        [[label, probability], ...]}, the `top_k` most likely labels (all of them when there are fewer)."""
        return _answer(texts, classify_texts(self._classifier, _texts(texts), top_k=top_k))


class EncoderDecoder(Model):
    """An encoder–decoder (`--task translate`): `translate`."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(checkpoint)
        self._translator = as_translator(checkpoint)

    @property
    def target_vocab(self):
        """The vocabulary of the outputs."""
        return self.checkpoint.target_vocab

    def translate(self, texts, beam: int = 1, nbest: int = 1, n: int = 1, temperature: float | None = None,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None):
        """Per text what `charlm translate --json` prints: {"source", "output", "logprob", "score", "capped",
        "nbest": [...]}. Greedy by default; `beam` hypotheses with the `nbest` best kept; or `n` outputs
        sampled (with `temperature`, `top_k`, `top_p`, `seed`), as the command's flags of those names."""
        return _answer(texts, translate_texts(self._translator, _texts(texts), beam=beam, nbest=nbest, samples=n,
                                              temperature=temperature, top_k=top_k, top_p=top_p, seed=seed))


# The class of each kind of model (`ModelConfig.kind`).
MODELS = {"lm": LanguageModel, "tagger": Tagger, "classifier": Classifier, "seq2seq": EncoderDecoder}


def load(path) -> Model:
    """The model in a run directory (its best checkpoint, else its newest) or a checkpoint file, as the object
    of its kind: `LanguageModel`, `Tagger`, `Classifier` or `EncoderDecoder`. A path that holds no readable
    checkpoint (missing, no checkpoint in it, damaged or foreign) is a CheckpointError in one line."""
    checkpoint = load_checkpoint(path, warn=_warn)
    return MODELS[checkpoint.config.kind](checkpoint)
