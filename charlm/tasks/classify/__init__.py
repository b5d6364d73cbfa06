"""Classifiers: one label per text, read from `label<TAB>text` lines, and what a trained one does (classify,
evaluate)."""
