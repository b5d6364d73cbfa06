"""The encoder forward only: what evaluation, scoring, tagging, classifying and sampling run.

Letters: T time, B batch, V vocabulary, E embedding width, H hidden, G = gates * H, F the output width (H, or
2H bidirectional).

`encoder_infer` computes what `charlm.models.encoder.encoder_forward` computes without an rng (no dropout),
keeping no cache: each layer runs `charlm.engine.infer.infer_sequence`, which reads its input projections
by row number. A one-hot layer 0 hands it the (V, G) table Wx + b and the ids themselves (or, given fewer ids
than the table has rows, those rows gathered: one step of sampling from a word model); a layer reading
features hands it its (T * B, G) projections and, for the reverse direction, the rows of each stream's steps
in reverse (`charlm.models.encoder.reversal`), so nothing is gathered or reversed before the recurrence.

The networks' forward-only functions (`charlm.models.lm.forward_nll`, `step_logits`, the tagger's and the
classifier's `predict`) run it over blocks of the batch's streams side by side (`charlm.engine.rows`), each
block with its own slice of the state (`state_rows`), joined again in order (`join_states`).
"""

from charlm.engine import layers
from charlm.engine.backend import np
from charlm.engine.infer import infer_sequence
from charlm.models.config import ModelConfig
from charlm.models.encoder import directions, reversal

__all__ = ["encoder_infer", "join_states", "state_rows"]


def encoder_infer(params, cfg: ModelConfig, x, state, *, lengths=None, ws=None):
    """Input layer -> L recurrent layers, forward only (no dropout, no cache).

    Inputs (validated by the caller): as `charlm.models.encoder.encoder_forward` without rng:
    - x: input ids, of shape (T, B); state: list of per-layer tuples of (B, H) arrays in cfg.dtype
    - lengths: bidirectional only: each stream's real steps, of shape (B,); None means all T

    Returns a tuple of:
    - out: the top layer's features, of shape (T, B, F) (may be a workspace buffer)
    - new_state: the forward direction's state after step T, fresh arrays
    """
    T, B = x.shape
    columns = np.arange(B)
    rev = reversal(np.full(B, T) if lengths is None else lengths, T) if cfg.bidirectional else None
    inp = None
    if cfg.embed:
        inp, _ = layers.embedding_forward(params["embed.W"], x, ws=ws, tag="embed.")  # (T, B, E)
    new_state = []
    for layer in range(cfg.layers):
        outputs = []
        for direction in directions(cfg):
            tag = f"layer.{layer}.{direction}"
            Wx, Wh, b = (params[tag + k] for k in ("Wx", "Wh", "b"))
            if inp is None:
                ids = x[rev, columns] if direction else x  # (T, B)
                if ids.size < len(Wx):  # fewer ids than rows (a step of sampling, a word vocabulary): gather
                    table = Wx[ids.reshape(-1)] + b  # (T * B, G): onehot(x<t>) Wx + b is row x<t> plus b
                    rows = np.arange(T * B).reshape(T, B)
                else:
                    table, rows = Wx + b, ids  # (V, G): row x<t> is onehot(x<t>) Wx + b
            else:
                projected, _ = layers.affine_forward(inp, Wx, b, ws=ws, tag=tag)  # (T, B, G)
                table = projected.reshape(T * B, -1)
                rows = (rev if direction else np.arange(T)[:, None]) * B + columns  # (T, B): row of x<t>
            if direction:
                start = tuple(np.zeros_like(s) for s in state[layer])
                a_out, _ = infer_sequence(cfg.cell, table, rows, start, Wh, activation=cfg.activation, ws=ws,
                                          tag=tag)
                a_out = a_out[rev, columns]  # back to the streams' own order
            else:
                a_out, final = infer_sequence(cfg.cell, table, rows, state[layer], Wh, activation=cfg.activation,
                                              ws=ws, tag=tag)
                new_state.append(final)
            outputs.append(a_out)
        inp = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)  # (T, B, F)
    return inp, new_state


def state_rows(state, rows) -> list[tuple[np.ndarray, ...]]:
    """The state of the streams `rows` (a slice or index array of the batch)."""
    return [tuple(a[rows] for a in arrays) for arrays in state]


def join_states(states: list) -> list[tuple[np.ndarray, ...]]:
    """The states of consecutive blocks of streams as one state, blocks in order."""
    if len(states) == 1:
        return states[0]
    return [tuple(np.concatenate(parts) for parts in zip(*layer, strict=True)) for layer in zip(*states, strict=True)]
