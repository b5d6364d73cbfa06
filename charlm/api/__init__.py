"""The Python API: `charlm.load` and the model classes (`charlm.api.models`), `charlm.train`
(`charlm.api.training`); `charlm` itself exposes them, imported when first used."""
