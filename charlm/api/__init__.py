"""The Python API: `charlm.load` and `charlm.train`, what a user's own code calls (see `charlm.api.models`)."""
