"""Float64 finite-difference checks of a whole model's gradients (used by `charlm gradcheck` and the tests);
the numerics are `charlm.engine.gradcheck`'s."""

from charlm.engine.backend import np
from charlm.engine.gradcheck import check_tensors
from charlm.models.config import ModelConfig
from charlm.models.networks import network


def check_model(cfg: ModelConfig, *, seq_len: int, batch: int, seed: int = 0, max_coords: int = 30):
    """Compare the analytic gradients of every parameter and of the initial state with numeric ones.

    Inputs:
    - cfg: the model to check (its dtype is replaced by float64); its kind chooses the network and the random
      inputs (each network's `gradcheck_case`: a language model reads from a random carried state, a tagger
      and a classifier read documents of random lengths from the zero state)
    - seq_len, batch: chunk shape (T, B) of the random inputs
    - seed: drives the parameters, inputs, initial state, coordinate sample and dropout masks
    - max_coords: tensors larger than this are checked at that many random coordinates (sample_coords)

    Returns a list of CheckResult, parameters first (in param_shapes order), then `state.<layer>.<k>`.
    """
    cfg = ModelConfig(**{**cfg.to_dict(), "dtype": "float64"})
    rng = np.random.default_rng(seed)
    net = network(cfg)
    params = net.init_params(cfg, rng)
    for name, p in params.items():
        if name.endswith(".b"):
            p += 0.1 * rng.standard_normal(p.shape)  # a generic point, not the symmetric zero bias
    run, state = net.gradcheck_case(params, cfg, rng, seq_len=seq_len, batch=batch, seed=seed)
    _, grads, dstate = run()
    tensors = [(name, p, grads[name]) for name, p in params.items()]
    tensors += [(f"state.{layer}.{k}", a, dstate[layer][k])
                for layer, arrays in enumerate(state) for k, a in enumerate(arrays)]
    h = 1e-5 if cfg.cell == "rnn" and cfg.activation == "relu" else 1e-3
    return check_tensors(lambda: run()[0], tensors, rng=rng, h=h, max_coords=max_coords)
