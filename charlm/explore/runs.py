"""The runs an explorer page looks at: each run's newest best model (a language model, a tagger, a classifier
or an encoder–decoder), loaded once and reloaded when the run (still training, perhaps) writes a newer
checkpoint, and the readings of texts made with a language model."""

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import CharlmError, ConfigError
from charlm.store.checkpoint import KIND_NAMES, Checkpoint, checkpoint_files, load_checkpoint
from charlm.tasks.lm.inspection import Reading, read_text
from charlm.text.batching import split_train_val
from charlm.text.cache import prepare_corpus

# Readings kept per explorer (a reading of 20,000 characters by a 512x2 LSTM holds about 160 MB).
READINGS_KEPT = 4
# Characters of held-out text the page offers to read.
VALIDATION_CHARS = 2_000
# The page's views (its sections) that apply to each kind of model, the first shown first.
VIEWS = {
    "lm": ("sample", "surprisal", "units", "curves", "model"),
    "tagger": ("tag", "evaluate", "curves", "model"),
    "classifier": ("classify", "evaluate", "curves", "model"),
    "seq2seq": ("translate", "evaluate", "curves", "model"),
}


@dataclass(frozen=True)
class Run:
    index: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


class Explorer:
    """Run directories (or checkpoint files) by index; thread-safe, for a threading HTTP server."""

    def __init__(self, paths):
        self.runs = [Run(i, Path(p).resolve()) for i, p in enumerate(paths)]
        if not self.runs:
            raise ConfigError("give at least one run directory")
        for run in self.runs:
            if not _is_run(run.path):
                raise ConfigError(f"{run.path}: not a charlm run directory or checkpoint (no config.json, "
                                  f"metrics.jsonl or checkpoint in it)")
        self._lock = threading.Lock()
        self._models: dict[int, tuple[tuple, Checkpoint]] = {}
        self._readings: OrderedDict[tuple, Reading] = OrderedDict()

    def run(self, index: int) -> Run:
        if not 0 <= index < len(self.runs):
            raise CharlmError(f"no run {index}: there are {len(self.runs)}")
        return self.runs[index]

    def _version(self, run: Run) -> tuple:
        """What changes when the run writes a checkpoint: its checkpoint files' names, sizes and times."""
        if run.path.is_file():
            files = [run.path]
        else:
            files = checkpoint_files(run.path) + [run.path / "best.safetensors"]
        stats = []
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            stats.append((f.name, st.st_size, st.st_mtime_ns))
        return tuple(stats)

    def checkpoint(self, index: int) -> Checkpoint:
        """The run's best checkpoint (its newest step checkpoint before a best exists), reloaded when newer."""
        run = self.run(index)
        version = self._version(run)
        with self._lock:
            known = self._models.get(index)
            if known and known[0] == version:
                return known[1]
        ckpt = load_checkpoint(run.path, prefer="best")
        with self._lock:
            self._models[index] = (version, ckpt)
        return ckpt

    def of_kind(self, index: int, kind: str) -> Checkpoint:
        """The run's checkpoint when it holds a model of `kind`; another kind is a CharlmError naming its views."""
        ckpt = self.checkpoint(index)
        if ckpt.config.kind != kind:
            views = [view.capitalize() for view in VIEWS[ckpt.config.kind]]
            raise CharlmError(f"run {self.runs[index].name} is {KIND_NAMES[ckpt.config.kind]}, not "
                              f"{KIND_NAMES[kind]}: its views are {', '.join(views[:-1])} and {views[-1]}")
        return ckpt

    def language_model(self, index: int) -> Checkpoint:
        return self.of_kind(index, "lm")

    def reading(self, index: int, text: str) -> tuple[Checkpoint, Reading]:
        """The reading of `text` by run `index`'s current language model (the same text again is not read
        again)."""
        ckpt = self.language_model(index)
        key = (index, ckpt.meta.get("payload_sha256"), text)
        with self._lock:
            if key in self._readings:
                self._readings.move_to_end(key)
                return ckpt, self._readings[key]
        reading = read_text(ckpt.params, ckpt.config, ckpt.vocab, text, eos_mode=eos_mode(ckpt))
        with self._lock:
            self._readings[key] = reading
            while len(self._readings) > READINGS_KEPT:
                self._readings.popitem(last=False)
        return ckpt, reading

    def validation_text(self, index: int) -> str:
        """The first `VALIDATION_CHARS` characters of the run's held-out text, rebuilt from its corpus and
        split options as training made it."""
        ckpt = self.language_model(index)
        options = ckpt.train.get("options") or {}
        corpus_path = options.get("corpus")
        if options.get("val_file"):
            return _head(Path(options["val_file"]), options.get("encoding") or "utf-8")
        if not corpus_path or not options.get("val_fraction"):
            raise CharlmError("this run kept no validation text")
        if not Path(corpus_path).is_file():
            raise CharlmError(f"{corpus_path}: the run's corpus is gone, so its validation text is too")
        corpus = prepare_corpus(corpus_path, eos_mode=eos_mode(ckpt), encoding=options.get("encoding") or "utf-8",
                                vocab=ckpt.vocab)
        if corpus.sha256 != ckpt.data.get("corpus_sha256"):
            raise CharlmError(f"{corpus_path} changed since the run trained on it")
        _, val_ids = split_train_val(corpus, options["val_fraction"], options.get("seed", 0))
        if val_ids is None:
            raise CharlmError("this run kept no validation text")
        mode = eos_mode(ckpt)
        # the part starts and ends with <EOS>; in file mode they stand for no text
        body = val_ids[1:-1] if mode == "file" else val_ids[1:]
        eos_text = "\n\n" if mode == "paragraphs" else "\n"
        text = ckpt.vocab.decoder(context=val_ids[:1], eos=eos_text).feed(body[:VALIDATION_CHARS])
        return text[:VALIDATION_CHARS]


def eos_mode(ckpt: Checkpoint) -> str:
    """The document mode the checkpoint's corpus was read in."""
    return ckpt.data.get("eos_mode") or "file"


def _is_run(path: Path) -> bool:
    """A checkpoint file, or a directory a run has started writing (its config comes first)."""
    if path.is_file():
        return path.suffix == ".safetensors"
    names = ("config.json", "metrics.jsonl", "best.safetensors")
    return any((path / name).is_file() for name in names) or bool(checkpoint_files(path))


def _head(path: Path, encoding: str) -> str:
    try:
        with path.open(encoding=encoding, errors="replace") as f:
            return f.read(VALIDATION_CHARS)
    except OSError as exc:
        raise CharlmError(f"{path}: cannot read the run's validation file ({exc.strerror or exc})") from None
