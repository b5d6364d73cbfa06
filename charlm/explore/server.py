"""The explorer's HTTP server: the page's files from the package, and the JSON API of `api`.

Rules: it listens on 127.0.0.1 only; it opens no file named by a request (static files come from a fixed
table, runs by index); every failure is a JSON body {"error": "..."} with a 4xx status (5xx for a fault of
charlm's own), never a traceback page.
"""

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from charlm.explore import api
from charlm.explore.runs import Explorer

HOST = "127.0.0.1"
# The page's files: URL path -> (file in charlm/explore/static, content type).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
    "/curves.js": ("curves.js", "text/javascript; charset=utf-8"),
    "/task-views.js": ("task-views.js", "text/javascript; charset=utf-8"),
    "/translate.js": ("translate.js", "text/javascript; charset=utf-8"),
    "/explore.css": ("explore.css", "text/css; charset=utf-8"),
}
# A request body beyond this is refused before it is read (the largest text, a labelled file to evaluate, in
# characters, 4 bytes each, and room for the other fields).
MAX_BODY_BYTES = 4 * api.MAX_FILE_CHARS + 4096


def static_file(name: str) -> bytes:
    return resources.files("charlm.explore").joinpath("static", name).read_bytes()


class ExplorerHandler(BaseHTTPRequestHandler):
    """One request; `server.explorer` is the shared Explorer."""

    server_version = "charlm-explore"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """Quiet: the command's own status line says where the page is; requests are not logged."""

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            if method == "GET" and url.path == "/favicon.ico":  # browsers ask for it; the page has none
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
                return
            if method == "GET" and url.path in STATIC:
                name, content_type = STATIC[url.path]
                self._send(HTTPStatus.OK, static_file(name), content_type)
                return
            key = (method, url.path)
            if key not in api.ENDPOINTS and key not in api.STREAMS:
                known = {path for _, path in api.ENDPOINTS} | {path for _, path in api.STREAMS} | set(STATIC)
                status = 405 if url.path in known else 404
                raise api.RequestError(status, f"no {method} {url.path}")
            body = self._body() if method == "POST" else {k: _query_value(v[-1]) for k, v in
                                                          parse_qs(url.query).items()}
            if key in api.STREAMS:
                stream = api.STREAMS[key](self.server.explorer, body)
                self._stream(stream)
            else:
                self._json(HTTPStatus.OK, api.ENDPOINTS[key](self.server.explorer, body))
        except api.RequestError as exc:
            self._json(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a fault of charlm's own: say so in one line, keep serving
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": _one_line(exc)})

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise api.RequestError(400, "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would otherwise be read as the next request
            raise api.RequestError(413, f"the request body has {length:,} bytes; the limit is {MAX_BODY_BYTES:,}")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise api.RequestError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise api.RequestError(400, "the body must be a JSON object")
        return body

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, record: dict) -> None:
        self._send(status, json.dumps(record, allow_nan=False).encode(), "application/json")

    def _stream(self, stream) -> None:
        """Newline-delimited JSON records written as they come, in HTTP/1.1 chunks."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

        def write(record: dict) -> None:
            line = json.dumps(record).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        try:
            stream(write)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # the status line is sent: the stream's last record says what went wrong
            write({"error": _one_line(exc)})
        self.wfile.write(b"0\r\n\r\n")


def _one_line(exc: Exception) -> str:
    if isinstance(exc, api.RequestError):
        return str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error: {type(exc).__name__}: {first}"


def _query_value(text: str):
    """A query parameter as a number when it is one (run=0), else the text."""
    try:
        return int(text)
    except ValueError:
        return text


class ExplorerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer: Explorer, port: int = 0):
        super().__init__((HOST, port), ExplorerHandler)
        self.explorer = explorer

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def start_in_thread(explorer: Explorer, port: int = 0) -> ExplorerServer:
    """A server answering in a background thread (tests); `shutdown()` stops it."""
    server = ExplorerServer(explorer, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
