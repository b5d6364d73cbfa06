"""Errors a user can cause or meet. Each carries the process exit code the CLI uses.

0 success, 1 runtime failure, 2 usage, 3 training diverged, 130/143 interrupted after a clean save.
"""


class CharlmError(Exception):
    """Base of every expected failure: printed as one line, never as a traceback. `quiet`: the exit code
    only, because another process says it (the ranks of a multi-process run leave the words to rank 0)."""

    exit_code = 1
    quiet = False


class CorpusError(CharlmError):
    """The corpus cannot be read or is unusable (missing, empty, undecodable)."""


class ConfigError(CharlmError):
    """A setting is invalid for this input (e.g. corpus shorter than one sequence)."""

    exit_code = 2


class CheckpointError(CharlmError):
    """A checkpoint is missing, damaged, foreign or inconsistent with its config."""


class CheckpointVersionError(CheckpointError):
    """A checkpoint was written by a newer charlm format."""


class DivergenceError(CharlmError):
    """Training produced a non-finite loss or gradient; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(CharlmError):
    """SIGINT/SIGTERM stopped training after a clean save (exit 128 + signal number). `saved` says what was
    saved, `resume` the command that continues (the message joins them), so a caller that ran the training
    as part of a larger job can name its own command instead."""

    def __init__(self, saved: str, signum: int, resume: str = ""):
        super().__init__(f"{saved}; resume with: {resume}" if resume else saved)
        self.saved, self.signum, self.resume = saved, signum, resume
        self.exit_code = 128 + signum
