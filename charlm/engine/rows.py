"""Forward-only work split by rows of the batch: each block of streams runs its whole forward in a thread of
its own, with a one-thread BLAS.

Why: a recurrent step is a product of the B streams' states with Wh. A multi-threaded BLAS splits every such
product over the cores and joins them again, one fork and join per step and layer, and the step's
elementwise work runs on one core in between. The streams of a forward are independent until its end, so
blocks of them need no join at all until then: each core runs the products and the elementwise work of its
own block. Training keeps one block (its backward sums the gradients of every stream).

The thread count is the BLAS pool's, so the user's choice (`--threads`, `OMP_NUM_THREADS`) and a training
run's own choice both hold: one BLAS thread means one block. Blocks are at least MIN_ROWS streams: thinner
products waste most of each core's vector units.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from charlm.engine.backend import thread_pools

MIN_ROWS = 8

_lock = threading.Lock()  # one split at a time: each sets the process's BLAS pools to one thread
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0


def blas_threads() -> int:
    """The threads the loaded BLAS pools may use now (the smallest pool's count; 1 when there is none)."""
    counts = [pool["num_threads"] for pool in thread_pools().info() if pool.get("user_api") == "blas"]
    return max(1, min(counts)) if counts else 1


def row_blocks(batch: int, blocks: int) -> list[slice]:
    """`blocks` contiguous slices of range(batch) whose sizes differ by at most one."""
    bounds = [batch * k // blocks for k in range(blocks + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(blocks)]


def map_row_blocks(forward, batch: int, workspace: dict | None = None, *, min_rows: int | None = None) -> list:
    """[forward(rows, ws) for each block of rows], the blocks run side by side in threads.

    - forward: function (rows: slice of the batch, ws: a workspace dict or None) -> anything; it must only
      read shared arrays (blocks run at once)
    - batch: B, the rows to split
    - workspace: the caller's workspace; each block gets a workspace of its own inside it (blocks run at
      once, so they cannot share buffers)
    - min_rows: the thinnest block (MIN_ROWS by default)
    Returns the blocks' results in row order (one block, run in this thread, when B < 2 * min_rows or BLAS
    has one thread).
    """
    min_rows = MIN_ROWS if min_rows is None else min_rows
    blocks = min(blas_threads(), batch // min_rows) if batch >= 2 * min_rows else 1
    if blocks <= 1:
        return [forward(slice(0, batch), workspace)]
    spaces = [None if workspace is None else workspace.setdefault(("rows", blocks, k), {}) for k in range(blocks)]
    global _pool, _pool_threads
    with _lock:
        if _pool_threads < blocks:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=blocks, thread_name_prefix="charlm-rows")
            _pool_threads = blocks
        with thread_pools().limit(limits=1, user_api="blas"):
            return list(_pool.map(forward, row_blocks(batch, blocks), spaces))
