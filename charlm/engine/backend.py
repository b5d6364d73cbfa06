"""The array module and the workspace: the one place numeric code gets `np` from.

Engine and model code write `from charlm.engine.backend import buffer, np`, never `import numpy`, so the
array module is named once. It is numpy; the code calls it with `out=` arguments and in-place operators
throughout, so a substitute must support those.

A workspace is a plain dict that the caller owns and passes to every call (`workspace={}` once, then the same
dict each step): the engine keeps its large intermediate arrays there, keyed by (name, shape, dtype), so a
training step allocates nothing big after the first. Arrays a function returns may be workspace buffers,
valid until the next call with the same workspace. Without a workspace (None) every buffer is fresh.
"""

import numpy as np

__all__ = ["buffer", "np"]


def buffer(ws: dict | None, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array of `shape` and `dtype`: fresh when ws is None, else the one stored in ws
    under (key, shape, dtype), created on first use. Callers give each live intermediate its own key."""
    if ws is None:
        return np.empty(shape, dtype)
    full_key = (key, tuple(shape), np.dtype(dtype).str)
    arr = ws.get(full_key)
    if arr is None:
        arr = ws[full_key] = np.empty(shape, dtype)
    return arr
