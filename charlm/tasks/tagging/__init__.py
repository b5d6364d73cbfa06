"""Taggers: one label per character (case, punctuation, or the tags of a CoNLL-style file), read from whole
documents, and what a trained one does (tag, evaluate)."""
