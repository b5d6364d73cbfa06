"""charlm: character-level recurrent language models on numpy."""

__version__ = "0.1.0"
