"""The network of each model kind (`ModelConfig.kind`): one table, so code that handles any model (checkpoint
validation, gradient checks, the tasks) asks it instead of inferring the kind from the config's fields.

Each network module has `param_shapes(cfg)`, `init_params(cfg, rng)`, `loss_and_grads(...)` and
`gradcheck_case(params, cfg, rng, *, seq_len, batch, seed)`.
"""

from types import ModuleType

from charlm.models import classifier, lm, seq2seq, tagger
from charlm.models.config import ModelConfig

NETWORKS: dict[str, ModuleType] = {"lm": lm, "tagger": tagger, "classifier": classifier, "seq2seq": seq2seq}


def network(cfg: ModelConfig) -> ModuleType:
    """The module that computes a model of `cfg.kind`."""
    return NETWORKS[cfg.kind]
