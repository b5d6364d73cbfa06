"""A training run's directory: exclusive lock, stray temp-file cleanup, checkpoint rotation, logs.

Layout: `ckpt-<step:08d>.safetensors` (the newest `keep` step checkpoints), `best.safetensors`
(lowest validation loss), `config.json` (the run's options), `metrics.jsonl` (one JSON object per
logged step or evaluation), `.lock` (holds the PID of the trainer while it runs).
"""

import errno
import fcntl
import json
import math
import os
from pathlib import Path

from charlm.atomic import TEMP_GLOB, write_atomic
from charlm.errors import CharlmError
from charlm.store.checkpoint import checkpoint_files


class RunDir:
    """Owns a run directory for one training process. Use as a context manager to hold the lock."""

    def __init__(self, path, *, keep: int = 2):
        self.path = Path(path)
        self.keep = keep
        self._lock_fd = None
        self._created = False

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self) -> None:
        """Create (if needed), check writability and take the lock; fails at once, never an hour later."""
        if self.path.exists() and not self.path.is_dir():
            raise CharlmError(f"run directory {self.path} is a file")
        try:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CharlmError(f"cannot use run directory {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CharlmError(f"run directory {self.path} is in use by another charlm train "
                                  f"(pid {holder})") from None
            raise CharlmError(f"cannot lock run directory {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.remove_stray_temp_files()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            if self._created and [p.name for p in self.path.iterdir()] == [".lock"]:
                # a run that failed before writing anything leaves no empty directory behind
                os.unlink(self.path / ".lock")
                self.path.rmdir()
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def remove_stray_temp_files(self) -> list[Path]:
        """Delete temp files a killed write left behind (only we write them, and we hold the lock)."""
        stray = sorted(self.path.glob(TEMP_GLOB))
        for p in stray:
            p.unlink(missing_ok=True)
        return stray

    def step_path(self, step: int) -> Path:
        return self.path / f"ckpt-{step:08d}.safetensors"

    @property
    def best_path(self) -> Path:
        return self.path / "best.safetensors"

    def checkpoints(self) -> list[Path]:
        return checkpoint_files(self.path)

    def prune(self) -> None:
        """Keep the newest `keep` step checkpoints; called only after a new one is durable."""
        for old in self.checkpoints()[self.keep:]:
            old.unlink(missing_ok=True)

    def write_config(self, options: dict) -> None:
        text = json.dumps(options, indent=2, sort_keys=True) + "\n"
        try:
            write_atomic(self.path / "config.json", text.encode())
        except OSError as exc:
            raise self.io_error("config.json", exc) from None

    def last_good(self) -> str:
        """The checkpoint a resume would start from, as the end of an error message: every failure that
        stops a run names it, so the user knows nothing was lost."""
        last = self.checkpoints()
        return f"last good checkpoint: {last[0].name}" if last else "no checkpoint was written yet"

    def io_error(self, name: str, exc: OSError) -> CharlmError:
        """One line for a failed write in the run directory, naming the checkpoint a resume would start from."""
        return CharlmError(f"could not write {self.path / name}: {exc.strerror or exc}; {self.last_good()}")

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records logged after the checkpoint a resume starts from, so the log has no repeats."""
        metrics = self.path / "metrics.jsonl"
        if not metrics.exists():
            return
        kept = [line for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip() and _record_step(line) <= last_step]
        try:
            write_atomic(metrics, "".join(line + "\n" for line in kept).encode())
        except OSError as exc:
            raise self.io_error("metrics.jsonl", exc) from None

    def append_metrics(self, record: dict) -> None:
        try:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(_finite_or_none(record), allow_nan=False) + "\n")
        except OSError as exc:
            raise self.io_error("metrics.jsonl", exc) from None


def _finite_or_none(record: dict) -> dict:
    # Strict JSON has no NaN; a diverged loss is logged as null rather than a bare NaN token.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def _record_step(line: str) -> float:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):
        return math.inf  # a line torn by a kill is dropped
