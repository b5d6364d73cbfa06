"""Every file a training run writes goes through one RunWriter, so a trainer running as several processes
can give a writer to one of them only."""

from pathlib import Path

from charlm.errors import CharlmError
from charlm.store.checkpoint import save_checkpoint
from charlm.store.rundir import RunDir


class RunWriter:
    """Writes a run's config.json, metrics.jsonl and checkpoints into its RunDir (which holds the lock)."""

    def __init__(self, run: RunDir):
        self.run = run

    def write_config(self, options: dict) -> None:
        self.run.write_config(options)

    def truncate_metrics(self, last_step: int) -> None:
        self.run.truncate_metrics(last_step)

    def append_metrics(self, record: dict) -> None:
        self.run.append_metrics(record)

    def save_step(self, step: int, **contents) -> Path:
        """A step checkpoint (see `save_checkpoint` for `contents`), then drop those past the `keep` newest."""
        path = self.run.step_path(step)
        self._save(path, contents)
        self.run.prune()
        return path

    def save_best(self, **contents) -> Path:
        """Replace best.safetensors (atomically: a failed save leaves the old one intact)."""
        path = self.run.best_path
        self._save(path, contents)
        return path

    def _save(self, path: Path, contents: dict) -> None:
        try:
            save_checkpoint(path, **contents)
        except OSError as exc:
            raise CharlmError(f"could not save checkpoint {path.name}: {exc.strerror}; {self.run.last_good()}"
                              ) from None
