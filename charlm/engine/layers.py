"""Non-recurrent layers as pure forward/backward pairs: embedding, affine on one-hot input, temporal affine
(W stored (D, M), or (M, D) as a tied head's table), inverted dropout, softmax cross-entropy with per-target
weights (a mask).

Letters: T time, B batch, N = T * B rows, V vocabulary (rows of a gathered table), D input width, M output
width. Each forward returns its output and a cache; the matching backward takes the upstream gradient and
that cache. Outputs and gradients are workspace buffers when a workspace dict is given (see
`charlm.engine.backend`), valid until the next call with that workspace; `tag` keeps callers' buffers apart.

A one-hot row times a matrix is a row of that matrix, so the one-hot input and the embedding are both a row
gather, and their gradient is a segment sum of rows by id (segment_sum): never a dense one-hot (V, N)
matrix, never a product with zeros.
"""

from charlm.engine.backend import buffer, np

# Logits more than 60 nats below their row's largest count as exactly 60 below in the softmax. exp(-60) ~ 1e-26
# is a probability no float32 sum can see, and it keeps every exp, the gradient scaled by 1 / N, and the products
# with it normal floats: below ~1e-38 floats go subnormal, which the CPU handles 10-30x slower (a confident word
# model has thousands of such logits per row).
SOFTMAX_FLOOR = -60.0
SEGMENT_BLOCK = 256  # rows gathered at a time in segment_sum: a block stays in cache while it is summed


def ones(n: int, dtype, ws=None) -> np.ndarray:
    """A vector of n ones, kept in the workspace once made: sums as products with it are one BLAS pass."""
    if ws is None:
        return np.ones(n, dtype)
    key = ("ones", n, np.dtype(dtype).str)  # not a `buffer` key: those hold uninitialised arrays
    if key not in ws:
        ws[key] = np.ones(n, dtype)
    return ws[key]


def sum_rows(values, *, out, ws=None):
    """out = the sum of the rows of values (N, M), as ones(N) @ values: one BLAS pass instead of N row adds."""
    return np.matmul(ones(values.shape[0], values.dtype, ws), values, out=out)


def segment_sum(values, ids, num_rows, *, ws=None, tag=""):
    """Sum rows by id: out[v] = sum of the rows values[n] with ids[n] == v (0 for ids absent).

    The ids are sorted once; the rows are then gathered in sorted order block by block into scratch, and
    each block's runs of equal ids are summed while the block is in cache and written to their rows of out
    (added, for a run that began in the previous block). The work is one pass over values plus zeroing out;
    the Python loops run once per block of SEGMENT_BLOCK rows and once per run of equal ids within it
    (blocks x distinct ids at most, never all V). Each run is summed by np.sum over its contiguous rows,
    which adds whole rows at a time; np.add.reduceat computes the same sums with its inner loop running down
    the columns, a strided walk. (np.add.at sums unbuffered, one row at a time; a dense one-hot (V, N)
    product multiplies by zeros.)

    Inputs:
    - values: of shape (N, M)
    - ids: integer ids in [0, num_rows), of shape (N,) (not checked here)
    - num_rows: V

    Returns out, of shape (V, M).
    """
    N, M = values.shape
    order = np.argsort(ids, kind="stable")  # positions grouped by id, each group in time order
    sorted_ids = ids[order]
    out = buffer(ws, tag + "segsum", (num_rows, M), values.dtype)
    out.fill(0.0)
    block = buffer(ws, tag + "block", (min(N, SEGMENT_BLOCK), M), values.dtype)
    sums = buffer(ws, tag + "sums", (min(N, SEGMENT_BLOCK), M), values.dtype)
    for lo in range(0, N, SEGMENT_BLOCK):
        hi = min(lo + SEGMENT_BLOCK, N)
        rows = block[:hi - lo]
        np.take(values, order[lo:hi], axis=0, out=rows, mode="clip")  # the next block of rows, in id order
        block_ids = sorted_ids[lo:hi]
        starts = np.flatnonzero(np.r_[True, block_ids[1:] != block_ids[:-1]])  # first row of each id's run
        run_ids, run_sums = block_ids[starts], sums[:len(starts)]
        for k, (start, end) in enumerate(zip(starts, np.r_[starts[1:], hi - lo], strict=True)):
            np.sum(rows[start:end], axis=0, out=run_sums[k])  # run_sums[k] = sum of run k's rows
        if lo and run_ids[0] == sorted_ids[lo - 1]:  # the previous block's last run goes on here
            out[run_ids[0]] += run_sums[0]  # out[v] += the rest of v's rows
            run_ids, run_sums = run_ids[1:], run_sums[1:]
        out[run_ids] = run_sums  # out[v] = sum of v's rows (ids sorted: every other run starts in this block)
    return out


def embedding_forward(W, ids, *, ws=None, tag=""):
    """Look up one row per id: out[t, b] = W[ids[t, b]].

    Inputs:
    - W: the embedding table, of shape (V, E)
    - ids: integer ids in [0, V), of shape (T, B) (not checked here)

    Returns a tuple of:
    - out: of shape (T, B, E)
    - cache: for embedding_backward
    """
    T, B = ids.shape
    out = buffer(ws, tag + "out", (T, B, W.shape[1]), W.dtype)
    np.take(W, ids, axis=0, out=out, mode="clip")  # mode="clip" writes into out directly (no copy)
    return out, (ids, W.shape[0], ws, tag)


def embedding_backward(dout, cache):
    """Backward of embedding_forward: dW[v] = sum of dout[t, b] over the positions with ids[t, b] == v.

    Inputs:
    - dout: upstream gradient, of shape (T, B, E)
    - cache: from embedding_forward

    Returns dW, of shape (V, E).
    """
    ids, V, ws, tag = cache
    return segment_sum(dout.reshape(ids.size, -1), ids.reshape(-1), V, ws=ws, tag=tag)


def onehot_affine_forward(ids, W, b, *, ws=None, tag=""):
    """Affine layer on one-hot input: out = onehot(ids) W + b, which is row ids[t, b] of W, plus b.

    Inputs:
    - ids: integer ids in [0, V), of shape (T, B) (not checked here)
    - W: of shape (V, M); b: of shape (M,)

    Returns a tuple of:
    - out: of shape (T, B, M)
    - cache: for onehot_affine_backward
    """
    T, B = ids.shape
    out = buffer(ws, tag + "out", (T, B, W.shape[1]), W.dtype)
    np.take(W + b, ids, axis=0, out=out, mode="clip")  # b joins V rows, not N; clip mode writes out directly
    return out, (ids, W.shape[0], ws, tag)


def onehot_affine_backward(dout, cache):
    """Backward of onehot_affine_forward (the one-hot input itself gets no gradient).

    Inputs:
    - dout: upstream gradient, of shape (T, B, M)
    - cache: from onehot_affine_forward

    Returns a tuple of:
    - dW: of shape (V, M), dW[v] = sum of dout rows whose id is v
    - db: of shape (M,)
    """
    ids, V, ws, tag = cache
    dflat = dout.reshape(ids.size, -1)
    dW = segment_sum(dflat, ids.reshape(-1), V, ws=ws, tag=tag)  # dW = onehot^T dout, as a segment sum
    db = buffer(ws, tag + "db", (dflat.shape[1],), dout.dtype)
    sum_rows(dflat, out=db, ws=ws)  # db = sum over rows of dout
    return dW, db


def affine_forward(x, W, b, *, ws=None, tag=""):
    """Temporal affine: out = x W + b at every step, as one (N, D) x (D, M) product.

    Inputs:
    - x: of shape (T, B, D)
    - W: of shape (D, M); b: of shape (M,)

    Returns a tuple of:
    - out: of shape (T, B, M)
    - cache: for affine_backward
    """
    T, B, D = x.shape
    M = W.shape[1]
    out = buffer(ws, tag + "out", (T, B, M), W.dtype)
    np.matmul(x.reshape(T * B, D), W, out=out.reshape(T * B, M))  # out = x W
    out += b  # out += b
    return out, (x, W, ws, tag)


def affine_backward(dout, cache):
    """Backward of affine_forward.

    Inputs:
    - dout: upstream gradient, of shape (T, B, M)
    - cache: from affine_forward

    Returns a tuple of:
    - dx: of shape (T, B, D)
    - dW: of shape (D, M)
    - db: of shape (M,)
    """
    x, W, ws, tag = cache
    T, B, D = x.shape
    M = W.shape[1]
    dflat = dout.reshape(T * B, M)
    dW = buffer(ws, tag + "dW", W.shape, W.dtype)
    np.matmul(x.reshape(T * B, D).T, dflat, out=dW)  # dW = x^T dout
    db = buffer(ws, tag + "db", (M,), W.dtype)
    sum_rows(dflat, out=db, ws=ws)  # db = sum over rows of dout
    dx = buffer(ws, tag + "dx", (T, B, D), W.dtype)
    np.matmul(dflat, W.T, out=dx.reshape(T * B, D))  # dx = dout W^T
    return dx, dW, db


def affine_transposed_forward(x, W, b, *, ws=None, tag=""):
    """Temporal affine with W stored by output rows (as nn.Linear stores it): out = x W^T + b.

    A tied LM head passes the embedding table here, so one (V, E) matrix serves as the input lookup and the
    output weights without a transposed copy.

    Inputs:
    - x: of shape (T, B, D)
    - W: of shape (M, D); b: of shape (M,)

    Returns a tuple of:
    - out: of shape (T, B, M)
    - cache: for affine_transposed_backward
    """
    T, B, D = x.shape
    M = W.shape[0]
    out = buffer(ws, tag + "out", (T, B, M), W.dtype)
    np.matmul(x.reshape(T * B, D), W.T, out=out.reshape(T * B, M))  # out = x W^T
    out += b  # out += b
    return out, (x, W, ws, tag)


def affine_transposed_backward(dout, cache):
    """Backward of affine_transposed_forward.

    Inputs:
    - dout: upstream gradient, of shape (T, B, M)
    - cache: from affine_transposed_forward

    Returns a tuple of:
    - dx: of shape (T, B, D)
    - dW: of shape (M, D)
    - db: of shape (M,)
    """
    x, W, ws, tag = cache
    T, B, D = x.shape
    M = W.shape[0]
    dflat = dout.reshape(T * B, M)
    dW = buffer(ws, tag + "dW", W.shape, W.dtype)
    np.matmul(dflat.T, x.reshape(T * B, D), out=dW)  # dW = dout^T x
    db = buffer(ws, tag + "db", (M,), W.dtype)
    sum_rows(dflat, out=db, ws=ws)  # db = sum over rows of dout
    dx = buffer(ws, tag + "dx", (T, B, D), W.dtype)
    np.matmul(dflat, W, out=dx.reshape(T * B, D))  # dx = dout W
    return dx, dW, db


def dropout_forward(x, p, rng, *, ws=None, tag=""):
    """Inverted dropout: keep each unit with probability 1 - p and scale it by 1 / (1 - p), so the expected
    output equals x and evaluation needs no rescaling.

    Inputs:
    - x: of any shape
    - p: drop probability in [0, 1); 0 returns x itself
    - rng: np.random.Generator drawing the mask

    Returns a tuple of:
    - out: of x's shape (x itself when p is 0)
    - cache: the scaled mask (None when p is 0), for dropout_backward
    """
    if p <= 0:
        return x, None
    mask = buffer(ws, tag + "mask", x.shape, x.dtype)
    rng.random(x.shape, dtype=x.dtype, out=mask)
    np.greater_equal(mask, p, out=mask, casting="unsafe")  # keep = [uniform >= p]
    mask *= 1.0 / (1.0 - p)  # mask = keep / (1 - p)
    out = buffer(ws, tag + "dropped", x.shape, x.dtype)
    np.multiply(x, mask, out=out)  # out = x * mask
    return out, mask


def dropout_backward(dout, cache):
    """Backward of dropout_forward, in place: dout *= mask (dx = dout * mask). Returns dout."""
    if cache is not None:
        dout *= cache
    return dout


def softmax(logits) -> np.ndarray:
    """Probabilities along the last axis, float64 (evaluation: the row max is subtracted so exp cannot
    overflow)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def softmax_nll_forward(logits, targets, weights=None):
    """Softmax cross-entropy per row, overwriting logits, and the weighted mean loss.

    Inputs:
    - logits: of shape (N, V), overwritten (with exp(logits - row max), which the backward reuses)
    - targets: ids of shape (N,); every id must be in [0, V), a masked one too
    - weights: optional per-target weights of shape (N,), e.g. a 0/1 padding mask; None weighs all equally

    Returns a tuple of:
    - loss: sum(weights * nll) / sum(weights) (the mean nll without weights), a Python float
    - nll: nats per row, of shape (N,), float64 (unweighted)
    - cache: for softmax_nll_backward
    """
    N = logits.shape[0]
    rows = np.arange(N)
    logits -= logits.max(axis=1, keepdims=True)  # shift so exp cannot overflow
    target_logit = logits[rows, targets].astype(np.float64)  # before the floor: the loss stays exact
    np.maximum(logits, SOFTMAX_FLOOR, out=logits)
    np.exp(logits, out=logits)
    # the softmax denominator: a product with a ones vector (one BLAS pass); every term is in (0, 1] and the
    # largest is 1, so single-precision accumulation loses nothing the loss can show
    total = np.matmul(logits, ones(logits.shape[1], logits.dtype)).astype(np.float64)
    nll = np.log(total) - target_logit  # nll = log sum exp - target's logit
    if weights is None:
        loss = float(nll.sum() / N)
        row_scale = 1.0 / N
    else:
        weights = np.asarray(weights, np.float64)
        weight_sum = weights.sum()
        loss = float((weights * nll).sum() / weight_sum)
        row_scale = weights / weight_sum
    return loss, nll, (logits, targets, total, row_scale)


def softmax_nll_backward(cache):
    """Gradient of the loss with respect to the logits, in the logits buffer given to the forward.

    dlogits = row_scale * (softmax - onehot(target)), with row_scale = weight / sum(weights) (1 / N without
    weights): a target of weight 0 gives a zero row. Returns dlogits, of shape (N, V).
    """
    exps, targets, total, row_scale = cache
    N = exps.shape[0]
    factor = (row_scale / total).astype(exps.dtype)  # (N,)
    exps *= factor[:, None]  # dlogits = row_scale * softmax
    exps[np.arange(N), targets] -= np.broadcast_to(row_scale, (N,)).astype(exps.dtype)  # -= row_scale at target
    return exps
