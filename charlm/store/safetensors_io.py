"""The safetensors container, read defensively: every claim of the header is checked against the file size
before anything is allocated, so a damaged or hostile file costs no more memory than its own size.

Layout: an 8-byte little-endian header length, a JSON header ({name: {"dtype", "shape", "data_offsets"}}
plus optional "__metadata__"), then the payload. safetensors itself then parses the blob.
"""

import json
import math
import os
import struct
from pathlib import Path

from charlm.errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024 * 1024
_DTYPE_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                   "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def read_container(path: Path) -> tuple[bytes, dict]:
    """The whole file's bytes and its parsed header, read only after the header's length, offsets, shapes and
    dtypes agree with the file size (so nothing larger than the file is allocated).

    Raises CheckpointError with one sentence for a foreign, truncated, padded or malformed file.
    """
    try:
        # Size from the open file, not the path: a writer may rename a new file over `path` meanwhile.
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(9)
            if len(prefix) < 9 or prefix[8:9] != b"{":  # a safetensors header is a JSON object
                kind = _foreign_kind(prefix) or (f"file has only {size} bytes" if len(prefix) < 9
                                                 else "no safetensors header")
                raise CheckpointError(f"{path}: not a charlm checkpoint ({kind})")
            (header_len,) = struct.unpack("<Q", prefix[:8])
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: not a charlm checkpoint (header length {header_len} is over the "
                                      f"{MAX_HEADER_BYTES} byte limit)")
            if 8 + header_len > size:
                raise CheckpointError(f"{path}: truncated checkpoint (header declares {8 + header_len} bytes, "
                                      f"file has {size})")
            f.seek(8)
            header_bytes = f.read(header_len)
            header = json.loads(header_bytes, object_pairs_hook=_no_duplicate_keys,
                                parse_constant=_reject_constant)
            if not isinstance(header, dict):
                raise CheckpointError(f"{path}: not a charlm checkpoint (header is not a JSON object)")
            expected = 8 + header_len + _payload_size(header)
            if expected != size:
                raise CheckpointError(f"{path}: truncated or padded checkpoint (header declares "
                                      f"{expected} bytes, file has {size})")
            f.seek(0)
            return f.read(), header
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a charlm checkpoint (header is not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not a charlm checkpoint (header is not JSON: {exc.msg})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not a charlm checkpoint (header JSON nested too deeply)") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None


def _foreign_kind(prefix: bytes) -> str:
    """Name the common file kinds people mistake for checkpoints (read as bytes only, never unpickled)."""
    if prefix.startswith(b"PK\x03\x04"):
        return "a zip or .npz file"
    if prefix.startswith(b"\x93NUMPY"):
        return "a .npy file"
    if prefix[:1] == b"\x80":
        return "a pickle file; charlm never unpickles"
    return ""


def _payload_size(header: dict) -> int:
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            shape = info["shape"]
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise TypeError
            count = math.prod(shape)  # Python ints: a huge shape cannot wrap around to a small size
            itemsize = _DTYPE_ITEMSIZE[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"tensor {name!r} has a malformed header entry") from None
        if not (type(start) is int and type(stop) is int and 0 <= start <= stop):
            raise CheckpointError(f"tensor {name!r} has invalid offsets")
        if stop - start != count * itemsize:
            raise CheckpointError(f"tensor {name!r}: offsets do not match its shape and dtype")
        end = max(end, stop)
    return end


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise CheckpointError("not a charlm checkpoint (duplicate keys in header)")
    return dict(pairs)


def _reject_constant(name):
    raise CheckpointError(f"not a charlm checkpoint ({name} in header JSON)")
