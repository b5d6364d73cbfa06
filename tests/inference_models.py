"""Small trained models for the inference tests (scoring, CLI): a few dozen Adam steps."""

import numpy as np

from charlm.engine.optim import Adam
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, loss_and_grads
from charlm.store.checkpoint import save_checkpoint
from charlm.text.batching import Batcher


def train_tiny(ids, vocab_size, *, steps=300, hidden=32, cell="lstm", seed=0, batch=8, seq_len=32, lr=1e-2,
               embed=0):
    """Train a 1-layer model on an id stream (one-hot input, or an embedding of width `embed`);
    returns (params, cfg)."""
    cfg = ModelConfig(cell, vocab_size, hidden, layers=1, embed=embed)
    params = init_params(cfg, np.random.default_rng(seed))
    batcher = Batcher(ids, batch, seq_len, seed)
    opt = Adam(params)
    state, workspace = init_state(cfg, batch), {}
    for _ in range(steps):
        x, y = batcher.next_batch()
        if batcher.new_epoch:
            state = init_state(cfg, batch)
        _, grads, state = loss_and_grads(params, cfg, x, y, state, workspace=workspace)
        opt.step(params, grads, lr)
    return params, cfg


def write_checkpoint(path, params, cfg, vocab, *, eos_mode="file", train=None):
    """A real checkpoint file, as the trainer writes it."""
    data = {"eos_mode": eos_mode, "encoding": "utf-8", "min_count": 1, "max_vocab": None,
            "corpus_name": "tiny.txt", "corpus_sha256": "0" * 64, "corpus_chars": 0}
    return save_checkpoint(path, params=params, config=cfg, vocab=vocab, data=data, train=train)
