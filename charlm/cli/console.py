"""Consoles for status (stderr) and results (stdout) that respect pipes, NO_COLOR and TERM=dumb."""

import contextlib
import os
import sys

from rich.console import Console

from charlm.errors import ConfigError


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (`charlm ... | head -1`).

        Results (stdout): stop quietly with status 0, as every command does. Status lines (stderr) are not
        the product: they go to /dev/null and the work goes on (a training run is not lost to a closed log pipe).
        """
        self.quiet = True
        silence(self.file)
        if self.file is not sys.stderr:
            raise SystemExit(0)


def silence(stream) -> None:
    """Point a stream's file descriptor at /dev/null, so later writes and the flush at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no real descriptor (a test runner's buffer)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _plain_wanted(stream) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return True
    isatty = getattr(stream, "isatty", None)
    return not (isatty and isatty())


def status_console(quiet: bool = False) -> Console:
    """Console on stderr for progress and warnings; no ANSI codes unless stderr is a real terminal."""
    plain = _plain_wanted(sys.stderr)
    return _Console(
        file=sys.stderr,
        quiet=quiet,
        force_terminal=False if plain else None,
        no_color=plain,
        highlight=False,
        soft_wrap=plain,
    )


def result_console() -> Console:
    """Console on stdout for tables; plain text when piped so scripts can read it."""
    plain = _plain_wanted(sys.stdout)
    return _Console(
        file=sys.stdout,
        force_terminal=False if plain else None,
        no_color=plain,
        highlight=False,
        width=None if not plain else 120,
    )


def input_texts(texts) -> list[str]:
    """The TEXT arguments, or stdin's lines when there are none. Read whole before anything is printed, so an
    empty line (a usage error naming `<stdin>:LINE`) leaves no partial output."""
    if texts:
        for number, text in enumerate(texts, start=1):
            if not text.strip():
                raise ConfigError(f"TEXT {number} is empty; give a text to read")
        return list(texts)
    lines = sys.stdin.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ConfigError(f"<stdin>:{number}: empty line; give one text per line")
    if not lines:
        raise ConfigError("no text: give TEXT arguments or lines on stdin")
    return lines
