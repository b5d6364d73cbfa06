"""The `charlm` command group.

Subcommands live in `charlm.cli.commands.<name>` and are imported only when used, so `charlm --help`
stays fast and a command's heavy imports (numpy) are paid only by that command.
"""

import atexit
import errno
import importlib
import sys
import time

# When this process began, before the heavy imports: `charlm train --time` counts its budget from here when
# started by `main` (an in-process invocation, as in tests, counts from its own call).
STARTED = time.perf_counter()

import click  # noqa: E402

from charlm import __version__  # noqa: E402
from charlm.errors import CharlmError, TrainingInterrupted  # noqa: E402
from charlm.parallel.environment import limit_threads_per_rank  # noqa: E402

# command name -> "module:attribute"
COMMANDS = {
    "train": "charlm.cli.commands.train:train",
    "sample": "charlm.cli.commands.sample:sample",
    "perplexity": "charlm.cli.commands.perplexity:perplexity",
    "score": "charlm.cli.commands.perplexity:score",
    "info": "charlm.cli.commands.info:info",
    "vocab": "charlm.cli.commands.vocab:vocab",
    "corpus": "charlm.cli.commands.corpus:corpus",
    "gradcheck": "charlm.cli.commands.gradcheck:gradcheck",
    "plot": "charlm.cli.commands.plot:plot",
    "explore": "charlm.cli.commands.explore:explore",
    "truecase": "charlm.cli.commands.truecase:truecase",
    "tag": "charlm.cli.commands.tag:tag",
    "evaluate": "charlm.cli.commands.evaluate:evaluate",
    "classify": "charlm.cli.commands.classify:classify",
    "translate": "charlm.cli.commands.translate:translate",
    "export": "charlm.cli.commands.export:export",
}


class CharlmFailure(click.ClickException):
    """A CharlmError shown as one line with its own exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class CharlmGroup(click.Group):
    """Lazily loads subcommands and turns expected failures into one-line errors."""

    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx, name):
        return self._load(name)

    def _load(self, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrainingInterrupted as exc:  # a stop the user asked for: said calmly, not as an "Error:"
            if not exc.quiet:
                click.echo(str(exc), err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
        except CharlmError as exc:
            if exc.quiet:
                raise click.exceptions.Exit(exc.exit_code) from None
            raise CharlmFailure(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C outside train's own handling: 128 + SIGINT, not click's "Aborted!" 1
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader went away (`charlm sample | head`): stop quietly
                from charlm.cli.console import silence  # rich loads only on this path

                silence(sys.stdout)
                raise click.exceptions.Exit(0) from None
            raise CharlmFailure(_describe_os_error(exc), 1) from None


def _describe_os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charlm")
def cli():
    """Recurrent networks (RNN, GRU, LSTM) on numpy, trained by `charlm train --task T`:

    \b
    - language models of characters or words (--tokens word):
      sample, perplexity, score, truecase
    - taggers (--task truecase, punctuate or tag): tag, evaluate
    - classifiers, one label per text (--task classify): classify, evaluate

    Start offline: `charlm corpus get tinyshakespeare -o shakespeare.txt`, `charlm train shakespeare.txt
    --time 5m`, then `charlm sample runs/shakespeare`.
    """


def main(argv=None):
    """Console-script entry point: quiet on a closed pipe, never a traceback for expected failures."""
    limit_threads_per_rank()  # before any command imports numpy
    try:
        cli.main(args=argv, prog_name="charlm", obj={"started": STARTED})
    except BrokenPipeError:  # raised while flushing after the command: same quiet exit as in invoke
        from charlm.cli.console import silence

        silence(sys.stdout)
        sys.exit(0)
    finally:
        _no_colour_reset_at_exit()


def _no_colour_reset_at_exit() -> None:
    """numba initialises colorama when it is installed (sacrebleu brings it), and colorama then writes a colour
    reset to a terminal's stdout at exit: output asked to be plain (NO_COLOR, TERM=dumb) would end with one."""
    initialise = sys.modules.get("colorama.initialise")
    if initialise is not None:
        atexit.unregister(initialise.reset_all)
