"""`charlm explore`: a thin wrapper that serves the explorer page (`charlm.explore.server`) until stopped."""

import json
import webbrowser

import click

from charlm.cli.console import status_console
from charlm.errors import ConfigError
from charlm.explore.runs import Explorer
from charlm.explore.server import ExplorerServer


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--json", "as_json", is_flag=True, help="Print {url, port, runs} as one JSON line once serving.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines on stderr.")
def explore(runs, port, open_browser, as_json, quiet):
    """Serve a local page that looks inside the model of RUNS (run directories; the first is shown first), in
    the views that fit its kind: a language model's samples, surprisal and hidden units; a tagger's labels of a
    text; a classifier's label distributions and hidden states; a tagger's or classifier's figures on a
    labelled file; and every run's training curves and configuration. Read-only; Ctrl-C stops it."""
    explorer = Explorer(runs)
    try:
        server = ExplorerServer(explorer, port)
    except OSError as exc:
        raise ConfigError(f"--port {port}: cannot listen on it ({exc.strerror or exc})") from None
    with server:
        if as_json:
            click.echo(json.dumps({"url": server.url, "port": server.server_address[1],
                                   "runs": [str(r.path) for r in explorer.runs]}), nl=True)
        status_console(quiet).print(f"charlm explore: serving {server.url} (Ctrl-C stops)", markup=False)
        if open_browser:
            webbrowser.open(server.url)
        server.serve_forever()
