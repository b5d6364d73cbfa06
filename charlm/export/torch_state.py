"""A language model, a tagger or a classifier as a PyTorch state dict: tensors named and shaped as the
parameters of a small module of `nn.Embedding`, `nn.LSTM` / `nn.GRU` / `nn.RNN` and `nn.Linear` (docs/export.md
defines it), with the constructor's arguments beside them (`module_arguments`).

Letters: V vocabulary, E embedding width, D a layer's input width, H hidden, G' = the module's gates * H,
F = H or 2H (bidirectional), K labels of a head.

Tensors (float32):
- `embedding.weight` (V, E), when the model has an embedding; with one-hot input there is none, and the
  recurrent module reads `one_hot(ids, V).float()`, so `rnn.weight_ih_l0` is (G', V)
- `rnn.weight_ih_l{k}` (G', D), `rnn.weight_hh_l{k}` (G', H), `rnn.bias_ih_l{k}` (G',) holding charlm's b,
  `rnn.bias_hh_l{k}` (G',) zeros; a bidirectional layer's reverse direction with the suffix `_reverse`
- a language model's `head.weight` (V, H) and `head.bias` (V,) (tied: `head.weight` is a copy of
  `embedding.weight`); a classifier's `head.weight` (K, F), `head.bias`; a tagger's `heads.{k}.weight` (K_k, F)
  and `heads.{k}.bias` per head k (an `nn.ModuleList`, even with one head)

The gates map as `charlm.export.gates` describes: LSTM [i, f, g, o] = [Γu, Γf, c~, Γo]; gru-simple is nn.GRU
[r, z, n] with z = 1 - Γu and r pinned open; rnn is nn.RNN with nonlinearity tanh or relu. The lecture's GRU
cannot be written for nn.GRU (`charlm.export.gates.TORCH_REFUSES`).
"""

import numpy as np

from charlm.errors import CharlmError
from charlm.export.gates import TORCH_REFUSES, gate_rows
from charlm.models.config import ModelConfig
from charlm.models.encoder import directions

MODES = {"rnn": "RNN", "gru-simple": "GRU", "lstm": "LSTM"}


def check_expressible(cfg: ModelConfig) -> None:
    """A CharlmError saying why when nn.LSTM / nn.GRU / nn.RNN cannot compute this model's cell."""
    if cfg.cell in TORCH_REFUSES:
        raise CharlmError(f"cannot export to PyTorch: {TORCH_REFUSES[cfg.cell]}")


def module_arguments(cfg: ModelConfig) -> dict:
    """What builds the module the tensors load into: the recurrent module's constructor arguments (`mode` is
    its class; `nonlinearity` only for RNN) and the rest of the model (embedding width, one-hot input, heads,
    pooling, tying, kind)."""
    arguments = {
        "kind": cfg.kind,
        "mode": MODES[cfg.cell],
        "vocab_size": cfg.vocab_size,
        "embedding_dim": cfg.embed,
        "one_hot": not cfg.embed,
        "input_size": cfg.embed or cfg.vocab_size,
        "hidden_size": cfg.hidden,
        "num_layers": cfg.layers,
        "bidirectional": cfg.bidirectional,
        "batch_first": False,
        "heads": list(cfg.heads) if cfg.kind != "lm" else [cfg.vocab_size],
        "pool": cfg.pool,
        "tie": cfg.tie,
    }
    if cfg.cell == "rnn":
        arguments["nonlinearity"] = cfg.activation
    return arguments


def state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The tensors of the module, float32 and contiguous, in the order PyTorch lists them."""
    check_expressible(cfg)
    tensors = {}
    if cfg.embed:
        tensors["embedding.weight"] = params["embed.W"]
    for layer in range(cfg.layers):
        for direction in directions(cfg):
            W, R, bias = gate_rows("torch", cfg.cell, *(params[f"layer.{layer}.{direction}{k}"]
                                                        for k in ("Wx", "Wh", "b")))
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            tensors[f"rnn.weight_ih_{suffix}"] = W
            tensors[f"rnn.weight_hh_{suffix}"] = R
            tensors[f"rnn.bias_ih_{suffix}"] = bias
            tensors[f"rnn.bias_hh_{suffix}"] = np.zeros_like(bias)
    if cfg.kind == "lm":
        tensors["head.weight"] = params["embed.W"] if cfg.tie else params["head.W"].T  # (V, H)
        tensors["head.bias"] = params["head.b"]
    elif cfg.kind == "classifier":
        tensors["head.weight"], tensors["head.bias"] = params["head.0.W"].T, params["head.0.b"]  # (K, F), (K,)
    else:
        for k in range(len(cfg.heads)):
            tensors[f"heads.{k}.weight"] = params[f"head.{k}.W"].T  # (K_k, F)
            tensors[f"heads.{k}.bias"] = params[f"head.{k}.b"]
    return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}
