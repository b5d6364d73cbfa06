"""Cooperative stopping: SIGINT and SIGTERM only raise a flag that the training loop checks after each step."""

import contextlib
import signal


class StopSignals:
    """While entered, SIGINT/SIGTERM set `signum`; the loop finishes its step, saves, then exits 128 + signum."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            # ValueError: not the main thread (e.g. a test runner thread), so no signal handling there.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        if self.signum is not None:
            # Stopping after a clean save: more Ctrl-Cs must not turn exit 130/143 into "Aborted!" or a
            # death by signal (SIG_IGN, unlike a Python handler, also holds during interpreter shutdown).
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
