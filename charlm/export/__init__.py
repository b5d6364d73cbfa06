"""Models that leave charlm: a standard ONNX graph and a PyTorch state dict, each checked against charlm's own
forward in the tests."""
