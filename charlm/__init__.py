"""charlm: recurrent language models, taggers, classifiers and encoder–decoders on numpy.

From Python: `charlm.load(path)` opens a trained model as an object of its kind, `charlm.train(corpus, **options)`
runs what `charlm train` runs (`charlm.api`). The names in `__all__` are the ones to rely on.
"""

import importlib

from charlm.errors import (
    CharlmError,
    CheckpointError,
    CheckpointVersionError,
    ConfigError,
    CorpusError,
    DivergenceError,
    TrainingInterrupted,
)

__version__ = "0.1.0"

# The API's names and their modules, imported on first use: `import charlm` (which the command line does first,
# and every `charlm.errors` import) stays free of numpy.
_API = {
    "load": "charlm.api.models",
    "Model": "charlm.api.models",
    "LanguageModel": "charlm.api.models",
    "Tagger": "charlm.api.models",
    "Classifier": "charlm.api.models",
    "EncoderDecoder": "charlm.api.models",
    "train": "charlm.api.training",
    "TrainResult": "charlm.api.training",
}

__all__ = [
    *_API,
    "CharlmError",
    "CorpusError",
    "ConfigError",
    "CheckpointError",
    "CheckpointVersionError",
    "DivergenceError",
    "TrainingInterrupted",
    "__version__",
]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'charlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
