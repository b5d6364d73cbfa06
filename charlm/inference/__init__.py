"""Using a trained model: sampling and beam search, scoring, and analyses of checkpoints, text and samples."""
