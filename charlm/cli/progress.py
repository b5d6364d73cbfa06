"""Training progress on stderr: a live rich bar on a terminal, plain log lines otherwise."""

import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from charlm.training import events

_RESOLUTION = 1000  # the bar counts thousandths of the run


class TrainProgress:
    """Shows step, epoch, train loss, last val loss and bits/char, lr, chars/s, elapsed and ETA.

    On a terminal this is a rich Progress bar; when stderr is a pipe (CI, logs) it prints one plain
    line every `plain_interval` seconds instead, so logs stay readable and free of ANSI codes.
    """

    def __init__(self, console, *, plain_interval: float = 10.0):
        self.console = console
        self.live = console.is_terminal and not console.quiet
        self.plain_interval = plain_interval
        self._last_plain = -float("inf")
        self._bar = None
        self._task = None

    def __enter__(self):
        if self.live:
            self._bar = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=_RESOLUTION, status="starting")
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def update(self, event: events.Progress) -> None:
        status = format_status(event)
        fraction = min(event.fraction, 1.0)
        if self._bar is not None:
            self._bar.update(self._task, completed=fraction * _RESOLUTION, status=status)
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_interval:
            self._last_plain = now
            self.log(f"{100 * fraction:5.1f}%  {status}")

    def log(self, message: str) -> None:
        """A line above the bar (or a plain line): evaluations, samples, warnings."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            self.console.print(message, markup=False, highlight=False)


def format_status(p: events.Progress) -> str:
    """One line: step, epoch, smoothed train loss, last validation loss and bits/char, lr, chars/s."""
    parts = [f"step {p.step}", f"epoch {p.epoch:.2f}", f"loss {p.loss:.4f}"]
    if p.val_loss is not None:
        parts.append(f"val {p.val_loss:.4f}" + (f" ({p.val_bpc:.3f} bpc)" if p.val_bpc is not None else ""))
    parts.append(f"lr {p.lr:.2e}")
    parts.append(f"{p.chars_per_sec:,.0f} {'chars' if p.tokens == 'char' else 'tokens'}/s")
    return "  ".join(parts)
