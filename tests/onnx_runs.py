"""What the export tests share: onnxruntime sessions of exported files and their outputs by name, states
stacked as the exported graphs hold them, and the Python examples of docs/export.md (each found by a string
only it contains). The float64 log-softmax they compare with is `reference.log_softmax`."""

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort  # the dev extra: the tests need the real runtime, never a skip

EXPORT_DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def session_of(model) -> ort.InferenceSession:
    """An onnxruntime session of `model`: a file's path, or a serialised model (bytes)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the default-valued state inputs draw a warning on every load
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(session, **feeds) -> dict:
    """Every output of one run of `session`, by name."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def stacked(state, k: int) -> np.ndarray:
    """Array k of every layer's state tuple, stacked to (L, B, H)."""
    return np.stack([layer[k] for layer in state])


def docs_example(marker: str) -> str:
    """The one ```python block of docs/export.md that contains `marker`."""
    blocks = re.findall(r"```python\n(.*?)```", EXPORT_DOC.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if marker in b]
    return example
