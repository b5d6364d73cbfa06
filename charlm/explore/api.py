"""The explorer page's JSON API: each endpoint a function of the explorer and the request's fields, returning
a JSON-able dict (the sample endpoint yields a stream of them). Requests are checked here and refused with
a `RequestError` (an HTTP status and one readable line); the server turns anything else into a 500.

A run's kind decides its endpoints: a language model's are sample, surprisal, units and find-units; a
tagger's tag; a classifier's classify and states; an encoder–decoder's translate; taggers, classifiers and
encoder–decoders share evaluate; every run has model and curves. `model` names the page's views for the run
(`charlm.explore.runs.VIEWS`).

Rules: text fields are capped at `MAX_TEXT_CHARS` (an uploaded file at `MAX_FILE_CHARS`); no request field
is ever used as a path (runs are chosen by index among those the server was started with).
"""

import shlex
import time

import numpy as np

from charlm.errors import CharlmError
from charlm.explore.runs import VIEWS, Explorer, eos_mode
from charlm.explore.task_views import classify_view, evaluate_view, states_view, tag_view, translate_view
from charlm.tasks.description import describe
from charlm.tasks.lm.inspection import find_units, pattern_mask, surprisal_view, unit_kinds, unit_view
from charlm.tasks.lm.sampling import generate
from charlm.text.tokenizer import EOS
from charlm.viz.curves import load_curves

MAX_TEXT_CHARS = 20_000
# A labelled file sent to be evaluated, in characters.
MAX_FILE_CHARS = 1_000_000
MAX_SAMPLE_LENGTH = 2_000
MAX_SAMPLES = 8
MAX_FOUND_UNITS = 50
# Hypotheses per source of the Translate view's beam search (and of an evaluation's).
MAX_BEAM = 10
# Training-loss points per run sent to the page (polled every few seconds): a long run's are thinned evenly.
MAX_CURVE_POINTS = 2_000
# Seconds between the sample stream's writes: often enough to look live, rarely enough to stay cheap.
STREAM_INTERVAL = 0.05
# What the page's text boxes and pattern start with: the pattern matches the quoted parts of the text, so Find
# units works before anything is typed.
DEFAULT_TEXT = 'The cat sat on the mat. "Is it raining?" she asked.\nHe looked up and said, "Not today."\n'
DEFAULT_PATTERN = '"[^"]*"'


class RequestError(Exception):
    """A request the API refuses: `status` (4xx) and a one-line message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------- fields


def _field(body: dict, name: str, kind, default=None, *, low=None, high=None, optional=False,
           max_chars=MAX_TEXT_CHARS):
    """body[name] as `kind` (int, float or str, at most `max_chars` long) within [low, high]; `default` when
    absent (None allowed when `optional`)."""
    value = body.get(name, default)
    if value is None:
        if optional:
            return None
        raise RequestError(400, f"{name} is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or (kind is float and not np.isfinite(value)):
        raise RequestError(400, f"{name} must be {'a number' if kind is not str else 'a string'}, got {value!r}")
    if kind is str and len(value) > max_chars:
        raise RequestError(413, f"{name} holds {len(value):,} characters; the limit is {max_chars:,}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(400, f"{name} must lie in [{low}, {high}], got {value}")
    return value


def _run_index(explorer: Explorer, body: dict) -> int:
    index = _field(body, "run", int, 0)
    if not 0 <= index < len(explorer.runs):
        raise RequestError(404, f"no run {index}: this explorer has {len(explorer.runs)}")
    return index


def _text(body: dict) -> str:
    text = _field(body, "text", str)
    if not text:
        raise RequestError(400, "text is empty")
    return text


def _checked(call):
    """call() with a CharlmError (a bad request the library noticed) turned into a 400."""
    try:
        return call()
    except CharlmError as exc:
        raise RequestError(400, str(exc)) from None


# ----------------------------------------------------------------------------------------- endpoints


def runs(explorer: Explorer, body: dict) -> dict:
    """The runs, and what the page's text boxes and pattern start with."""
    return {"runs": [{"index": r.index, "name": r.name, "path": str(r.path)} for r in explorer.runs],
            "defaults": {"text": DEFAULT_TEXT, "pattern": DEFAULT_PATTERN}}


def model(explorer: Explorer, body: dict) -> dict:
    """What `charlm info --json` shows, the page's views for the model's kind, the units the page can colour
    by, and the run."""
    index = _run_index(explorer, body)
    ckpt = _checked(lambda: explorer.checkpoint(index))
    cfg = ckpt.config
    return {**describe(ckpt), "views": list(VIEWS[cfg.kind]),
            "units": {"layers": cfg.layers, "hidden": cfg.hidden, "kinds": list(unit_kinds(cfg))},
            "run": {"index": index, "name": explorer.runs[index].name}}


def validation_text(explorer: Explorer, body: dict) -> dict:
    index = _run_index(explorer, body)
    try:
        return {"text": explorer.validation_text(index)}
    except CharlmError as exc:
        raise RequestError(404, str(exc)) from None


def surprisal(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    ckpt, reading = _checked(lambda: explorer.reading(index, text))
    eos_text = "\n\n" if eos_mode(ckpt) == "paragraphs" else "\n"
    return surprisal_view(reading, ckpt.vocab, eos_text=eos_text)


def units(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    layer, unit = _field(body, "layer", int, 0), _field(body, "unit", int, 0)
    kind = _field(body, "kind", str, "a")
    _, reading = _checked(lambda: explorer.reading(index, text))
    return _checked(lambda: unit_view(reading, layer=layer, unit=unit, kind=kind))


def find(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    pattern = _field(body, "pattern", str)
    kind = _field(body, "kind", str, "a")
    top = _field(body, "top", int, 10, low=1, high=MAX_FOUND_UNITS)
    if not pattern:
        raise RequestError(400, "pattern is empty")
    _, reading = _checked(lambda: explorer.reading(index, text))
    mask = _checked(lambda: pattern_mask(reading.texts, pattern))
    found = _checked(lambda: find_units(reading, mask, kind=kind, top=top))
    return {"matched": int(mask.sum()), "total": len(mask), "units": found}


def tag(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    ckpt = _checked(lambda: explorer.checkpoint(index))
    return _checked(lambda: tag_view(ckpt, text))


def classify(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    ckpt = _checked(lambda: explorer.checkpoint(index))
    return _checked(lambda: classify_view(ckpt, text))


def states(explorer: Explorer, body: dict) -> dict:
    index, text = _run_index(explorer, body), _text(body)
    layer = _field(body, "layer", int, 0)
    ckpt = _checked(lambda: explorer.of_kind(index, "classifier"))
    return _checked(lambda: states_view(ckpt, text, layer))


def translate(explorer: Explorer, body: dict) -> dict:
    """Each line of the text translated by beam search (beam 1: greedy), its `nbest` best outputs with their
    scores and the best one's attention (`charlm.explore.task_views.translate_view`)."""
    index, text = _run_index(explorer, body), _text(body)
    beam = _field(body, "beam", int, 1, low=1, high=MAX_BEAM)
    nbest = _field(body, "nbest", int, 1, low=1, high=beam)
    ckpt = _checked(lambda: explorer.of_kind(index, "seq2seq"))
    return _checked(lambda: translate_view(ckpt, text, beam=beam, nbest=nbest))


def evaluate(explorer: Explorer, body: dict) -> dict:
    """The figures of `charlm evaluate` on a labelled file the page read: {"text": its content, "name": its
    name (for messages), "beam": an encoder–decoder's beam (1: greedy)}."""
    index = _run_index(explorer, body)
    text = _field(body, "text", str, max_chars=MAX_FILE_CHARS)
    name = _field(body, "name", str, "the file")
    beam = _field(body, "beam", int, 1, low=1, high=MAX_BEAM)
    if not text.strip():
        raise RequestError(400, f"{name} is empty")
    ckpt = _checked(lambda: explorer.checkpoint(index))
    return _checked(lambda: evaluate_view(ckpt, text, name, beam=beam))


def curves(explorer: Explorer, body: dict) -> dict:
    """Every run's curves, the training loss thinned to MAX_CURVE_POINTS (the last step kept); a run without
    metrics yet (or whose curves fail to load) gets its name and the reason instead."""
    found = []
    for run in explorer.runs:
        try:
            record = load_curves(run.path).to_dict()
        except CharlmError as exc:
            found.append({"name": run.name, "error": str(exc)})
            continue
        except Exception as exc:  # a fault of charlm's own in one run's curves: the others are still drawn
            found.append({"name": run.name, "error": f"internal error: {type(exc).__name__}: {exc}"})
            continue
        n = len(record["steps"])
        if n > MAX_CURVE_POINTS:
            keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int)).tolist()
            for key in ("steps", "train_loss", "step_seconds"):
                record[key] = [record[key][i] for i in keep]
        found.append(record)
    return {"runs": found}


def sample_command(path, *, prime, temperature, top_k, top_p, length, seed, num_samples, stop_at_eos) -> str:
    """The `charlm sample` command line that draws the same samples."""
    words = ["charlm", "sample", str(path), "--temperature", f"{temperature:g}", "--length", str(length),
             "-n", str(num_samples)]
    if top_k is not None:
        words += ["--top-k", str(top_k)]
    if top_p is not None:
        words += ["--top-p", f"{top_p:g}"]
    if seed is not None:
        words += ["--seed", str(seed)]
    if prime:
        words += ["--prime", prime]
    if stop_at_eos:
        words.append("--stop-at-eos")
    return shlex.join(words)


def sample(explorer: Explorer, body: dict):
    """Check the request, then return a function of `write(record)` that draws the samples together and
    writes text deltas {"sample": i, "text": ...} as they are drawn (the first of each starts with the
    prime), then {"done": true, "samples": [{"text", "logprob"}], "command": the `charlm sample` line}."""
    index = _run_index(explorer, body)
    options = {
        "prime": _field(body, "prime", str, ""),
        "temperature": _field(body, "temperature", float, 1.0, low=0.0, high=100.0),
        "top_k": _field(body, "top_k", int, optional=True, low=1),
        "top_p": _field(body, "top_p", float, optional=True, low=1e-9, high=1.0),
        "length": _field(body, "length", int, 300, low=1, high=MAX_SAMPLE_LENGTH),
        "seed": _field(body, "seed", int, optional=True, low=0, high=2**63 - 1),
        "num_samples": _field(body, "num_samples", int, 3, low=1, high=MAX_SAMPLES),
    }
    ckpt = _checked(lambda: explorer.language_model(index))
    options["stop_at_eos"] = eos_mode(ckpt) != "file"
    if options["top_k"] is not None:
        options["top_k"] = min(options["top_k"], ckpt.vocab.size)
    path = explorer.runs[index].path
    return lambda write: _draw(ckpt, path, options, write)


def _draw(ckpt, path, options, write) -> None:
    vocab, n = ckpt.vocab, options["num_samples"]
    pending = [options["prime"]] * n
    context = np.concatenate([[EOS], vocab.encode(options["prime"])])
    decoders = [vocab.decoder(context=context) for _ in range(n)]
    last_write = [time.monotonic()]

    def flush():
        for i, text in enumerate(pending):
            if text:
                write({"sample": i, "text": text})
        pending[:] = [""] * n
        last_write[0] = time.monotonic()

    def on_step(rows, ids, ended):
        for row, i, end in zip(rows.tolist(), ids.tolist(), ended.tolist(), strict=True):
            if not (end and options["stop_at_eos"] and i == EOS):
                pending[row] += decoders[row].feed([i])
        if time.monotonic() - last_write[0] >= STREAM_INTERVAL:
            flush()

    samples = generate(ckpt.params, ckpt.config, vocab, on_step=on_step, **options)
    flush()
    write({"done": True, "samples": [{"text": s.text, "logprob": s.logprob} for s in samples],
           "command": sample_command(path, **options)})


ENDPOINTS = {
    ("GET", "/api/runs"): runs,
    ("GET", "/api/model"): model,
    ("GET", "/api/validation-text"): validation_text,
    ("GET", "/api/curves"): curves,
    ("POST", "/api/surprisal"): surprisal,
    ("POST", "/api/units"): units,
    ("POST", "/api/find-units"): find,
    ("POST", "/api/tag"): tag,
    ("POST", "/api/classify"): classify,
    ("POST", "/api/states"): states,
    ("POST", "/api/translate"): translate,
    ("POST", "/api/evaluate"): evaluate,
}
STREAMS = {("POST", "/api/sample"): sample}
