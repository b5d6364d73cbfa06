"""Named corpora a new user can obtain with `charlm corpus get NAME -o FILE` (catalogue: corpora/README.md).

`tinyshakespeare` is downloaded and checked against its sha256; `python-stdlib` is built offline from the
running interpreter's standard library, so there is always a real corpus at hand.
"""

import hashlib
import http.client
import os
import sysconfig
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from charlm.atomic import atomic_open
from charlm.errors import ConfigError, CorpusError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1115394
URL_ENV = "CHARLM_CORPUS_URL_TINYSHAKESPEARE"
# Directory names never taken into the python-stdlib corpus: test suites and installed third-party code.
_STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    source: str
    size: str
    licence: str
    sha256: str
    description: str


CATALOGUE = (
    CatalogueEntry("tinyshakespeare", TINYSHAKESPEARE_URL, f"{TINYSHAKESPEARE_BYTES:,} bytes",
                   "public domain text (Shakespeare); file from karpathy/char-rnn (MIT)", TINYSHAKESPEARE_SHA256,
                   "40,000 lines of Shakespeare plays, downloaded"),
    CatalogueEntry("python-stdlib", "this Python's standard library (.py sources)", "about 2 MB (--max-bytes)",
                   "PSF License", "depends on the Python version",
                   "Python source code, built offline in a fixed file order"),
)


def catalogue_entry(name: str) -> CatalogueEntry:
    """The catalogue entry called `name`; ConfigError listing the known names otherwise."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise ConfigError(f"unknown corpus {name!r}; known corpora: {', '.join(e.name for e in CATALOGUE)}")


def get_corpus(name: str, out, *, url: str | None = None, timeout: float = 30.0,
               max_bytes: int = 2_000_000) -> Path:
    """Obtain corpus `name` into file `out` (written atomically); returns the path.

    - url: download source for `tinyshakespeare` (default: `$CHARLM_CORPUS_URL_TINYSHAKESPEARE`, else the
      canonical URL)
    - max_bytes: size cap of `python-stdlib`
    """
    catalogue_entry(name)
    if name == "tinyshakespeare":
        source = url or os.environ.get(URL_ENV) or TINYSHAKESPEARE_URL
        return download_verified(source, out, sha256=TINYSHAKESPEARE_SHA256, max_bytes=2 * TINYSHAKESPEARE_BYTES,
                                 timeout=timeout)
    return build_python_stdlib(out, max_bytes=max_bytes)


def download_verified(url: str, out, *, sha256: str, max_bytes: int, timeout: float = 30.0) -> Path:
    """Stream `url` into `out`, keeping it only if its sha256 matches; CorpusError on any failure.

    max_bytes bounds the download, so a wrong URL cannot fill the disk.
    """
    out = Path(out)
    digest = hashlib.sha256()
    received = 0
    try:
        with _atomic_open(out) as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 16):
                received += len(block)
                if received > max_bytes:
                    raise CorpusError(f"download from {url} exceeds {max_bytes:,} bytes; not the expected file")
                digest.update(block)
                f.write(block)
            if digest.hexdigest() != sha256:
                raise CorpusError(f"checksum mismatch for {url}: expected sha256 {sha256}, got "
                                  f"{digest.hexdigest()} ({received:,} bytes); the file was not saved")
    except urllib.error.HTTPError as exc:
        raise CorpusError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CorpusError(f"could not download {url} ({reason}); check the network connection, or fetch the "
                          f"file yourself and pass it to charlm as a path") from None
    return out


def build_python_stdlib(out, *, max_bytes: int = 2_000_000, stdlib_dir=None) -> Path:
    """Write the standard library's `.py` sources into `out`, each preceded by a `# file: relpath` line.

    Files come in sorted relative-path order, test suites and site-packages skipped, files that are not
    valid UTF-8 skipped; files are added while the total stays within `max_bytes` (UTF-8 bytes).
    """
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    sources = sorted(_python_sources(root))
    total = 0
    with _atomic_open(Path(out)) as f:
        for rel, path in sources:
            try:
                text = path.read_bytes().decode("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            block = f"# file: {rel}\n{text}{'' if text.endswith(chr(10)) else chr(10)}".encode()
            if total + len(block) > max_bytes:
                break
            f.write(block)
            total += len(block)
        if total == 0:
            raise CorpusError(f"no standard-library source fits in --max-bytes {max_bytes:,} (found "
                              f"{len(sources)} files under {root})")
    return Path(out)


def _python_sources(root: Path):
    """(relative posix path, path) of every `.py` file under root, skipped directories pruned."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                path = Path(dirpath, name)
                yield path.relative_to(root).as_posix(), path


def _atomic_open(path: Path):
    """`atomic_open` after creating the parent directory (a failure there is a CorpusError)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(f"cannot write {path}: {exc.strerror or exc}") from None
    return atomic_open(path)
