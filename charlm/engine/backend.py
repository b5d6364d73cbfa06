"""The array module and the workspace: the one place numeric code gets `np` from.

Engine and model code write `from charlm.engine.backend import buffer, np`, never `import numpy`, so the
array module is named once. It is numpy; the code calls it with `out=` arguments and in-place operators
throughout, so a substitute must support those.

A workspace is a plain dict that the caller owns and passes to every call (`workspace={}` once, then the same
dict each step): the engine keeps its large intermediate arrays there, keyed by (name, shape, dtype), so a
training step allocates nothing big after the first. Arrays a function returns may be workspace buffers,
valid until the next call with the same workspace. Without a workspace (None) every buffer is fresh.

`thread_pools()` is the process's one threadpoolctl controller of the libraries behind numpy's products (BLAS,
and OpenMP if loaded): training sets their thread count through it, forward-only inference limits them to one
thread per block of streams.
"""

import numpy as np

__all__ = ["buffer", "np", "thread_pools"]

_controller = None


def thread_pools():
    """The threadpoolctl controller of the thread pools loaded in this process, made on first use (it reads
    the libraries loaded by then: numpy's BLAS at least)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


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
