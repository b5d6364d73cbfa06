"""The one atomic writer: whole new file or untouched old file, no temp file left, the rename made durable."""

import os
import stat

import pytest

from charlm import atomic as atomic_module
from charlm.atomic import TEMP_GLOB, atomic_open, write_atomic


def test_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    write_atomic(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_an_exception_inside_the_stream_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="producer failed"), atomic_open(path) as f:
        f.write(b"half of the new")
        assert list(tmp_path.glob(TEMP_GLOB))  # the bytes go to a temp file beside the target
        raise RuntimeError("producer failed")
    assert path.read_bytes() == b"old"
    assert not list(tmp_path.glob(TEMP_GLOB))


def test_a_failed_write_to_a_new_path_creates_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "new.bin") as f:
        f.write(b"x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_the_file_and_then_its_directory_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(atomic_module.os, "fsync", fsync)
    write_atomic(tmp_path / "out.bin", b"data")
    assert synced == ["file", "dir"]


def test_temp_glob_matches_the_temp_names_the_writer_uses(tmp_path):
    with atomic_open(tmp_path / "ckpt-00000001.safetensors") as f:
        f.write(b"x")
        names = [p.name for p in tmp_path.glob(TEMP_GLOB)]
    assert len(names) == 1 and names[0].startswith(".ckpt-00000001.safetensors.") and names[0].endswith(".tmp")


def test_a_missing_directory_is_reported_with_the_target_name(tmp_path):
    target = tmp_path / "no-such-dir" / "out.bin"
    with pytest.raises(FileNotFoundError) as info:
        write_atomic(target, b"x")
    assert info.value.filename == str(target)
