"""The one atomic file writer: every file charlm writes goes through `atomic_open` or `write_atomic`.

A file is written under a temporary name in the same directory (`.<name>.<random>.tmp`, so a rename never
crosses file systems), flushed and fsynced, renamed over the target with `os.replace`, and then the
directory is fsynced so the rename itself survives a power loss. Readers and crashes see either the old
file or the new one, never a torn one. On any failure before the rename the temporary file is removed and
the target is left as it was.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Every temporary file the writer creates matches this glob; a killed process can leave one behind, and
# the owner of the directory (RunDir, under its lock) removes them.
TEMP_GLOB = ".*.tmp"


@contextlib.contextmanager
def atomic_open(path) -> Iterator[BinaryIO]:
    """A binary stream whose bytes replace `path` atomically when the `with` block ends without an exception.

    An exception inside the block (or from the flush, fsync or rename) removes the temporary file and
    propagates; `path` keeps its old content. A failed directory fsync propagates too, after the rename,
    so `path` then already holds the new content.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # a missing or read-only directory: name the file asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # the failure may have come before the file existed
            os.unlink(tmp_name)
        raise
    fsync_directory(path.parent)


def write_atomic(path, data: bytes) -> None:
    """Replace `path` with `data` atomically (see `atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def fsync_directory(directory) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
