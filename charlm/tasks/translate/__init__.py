"""The encoder–decoder task (`--task translate`): sentence pairs, references and their held-out split."""
