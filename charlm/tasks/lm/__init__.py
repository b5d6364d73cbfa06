"""Language models: the next token of a stream of characters or words, and what a trained one does (sampling,
scoring, inspection, truecasing)."""
