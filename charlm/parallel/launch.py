"""`charlm train --procs P`: start P ranks of this same command under the bundled `mpiexec`.

The launcher relays the ranks' output as it comes and leaves MPICH's own failure banner out: when a rank
dies, the user gets one line naming the rank (each rank tells its pid first, on a line the launcher keeps
to itself) and the checkpoint a resume would start from. Ctrl-C and SIGTERM are passed on once to
mpiexec, which forwards them to every rank; the ranks stop together after a clean save.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from charlm.errors import CharlmError, ConfigError
from charlm.parallel.comm import INSTALL_HINT, mpi_available
from charlm.parallel.environment import LAUNCHER_VARIABLE
from charlm.training.options import TrainOptions
from charlm.training.shards import check_divisible

# mpiexec merges the ranks' streams without keeping lines whole, so a rank's pid note may arrive inside
# another line: it is found and cut out wherever it is, its end marked by ';'.
RANK_NOTE = re.compile(r"charlm-rank (\d+) pid (\d+);")
DEATH_PID = re.compile(r"PID (\d+) RUNNING AT (\S+)")
EXIT_STRING = re.compile(r"EXIT STRING: (.*)$")
# MPICH's own lines: its banner for a rank that died, and its notes on forwarded signals.
MPICH_LINE = re.compile(r"^(=====|=   |YOUR APPLICATION TERMINATED|This typically refers to a problem|"
                        r"Please see the FAQ page|\[mpiexec@|\[proxy:)")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def find_mpiexec() -> str | None:
    """The mpiexec installed beside this Python (the mpich wheel's), else the first on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def check_parallel_options(opts: TrainOptions, procs: int) -> None:
    """Refuse what `procs` processes cannot train, before anything runs: no speed probe, recipe or mpiexec
    for a run that would fail at its first step."""
    if opts.task != "lm":
        raise ConfigError(f"--task {opts.task} trains in one process; multi-process training is for "
                          f"language models")
    if opts.batch is not None:
        check_divisible(opts.batch, procs)


def check_procs(procs: int) -> str:
    """Refuse what --procs cannot do on this machine; -> the mpiexec to use."""
    cores = usable_cores()
    if procs > cores:
        raise ConfigError(f"--procs {procs} is more than this machine's {cores} cores (ranks sharing a core "
                          f"run much slower); for more processes use your cluster's mpiexec: mpiexec -n "
                          f"{procs} charlm train ...")
    mpiexec = find_mpiexec()
    if not mpi_available() or mpiexec is None:
        raise ConfigError(f"--procs {procs} needs mpi4py and an mpiexec: {INSTALL_HINT}")
    return mpiexec


def without_procs(args: list[str]) -> list[str]:
    """Command-line arguments with --procs and its value taken out (the ranks must not launch again)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--procs":
            skip = True
        elif not arg.startswith("--procs="):
            kept.append(arg)
    return kept


class OutputFilter:
    """Relays a rank's stream line by line, keeping the rank-pid lines and MPICH's banner to itself."""

    def __init__(self, sink):
        self.sink = sink
        self.pids = {}  # pid -> rank
        self.dead_pid = None
        self.exit_string = None
        self._blank = False  # a blank line is held back: MPICH's banner starts with one

    def feed(self, line: str) -> None:
        notes = RANK_NOTE.findall(line)
        if notes:
            self.pids.update((int(pid), int(rank)) for rank, pid in notes)
            line = RANK_NOTE.sub("", line)
            if not line.strip():
                return
        text = line.rstrip("\n")
        if MPICH_LINE.match(text):
            self._blank = False
            if m := DEATH_PID.search(text):
                self.dead_pid = int(m.group(1))
            if m := EXIT_STRING.search(text):
                self.exit_string = m.group(1).strip()
            return
        if self._blank:
            self._write("\n")
        self._blank = text == ""
        if not self._blank:
            self._write(line)

    def _write(self, text: str) -> None:
        try:
            self.sink.write(text)
            self.sink.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads our output any more; the ranks still run and save


def _relay(stream, output_filter: OutputFilter) -> None:
    for raw in iter(stream.readline, b""):
        output_filter.feed(raw.decode("utf-8", errors="replace"))


def launch(procs: int, args: list[str], *, run_dir: Path, resume_hint: str) -> int:
    """Run `charlm <args>` as `procs` ranks and wait for them. -> the exit status for this process.

    A rank that died is one CharlmError naming it, the other ranks having been stopped by mpiexec;
    `resume_hint` ends that message.
    """
    mpiexec = check_procs(procs)
    command = [mpiexec, "-n", str(procs), sys.executable, "-m", "charlm", *without_procs(args)]
    env = dict(os.environ, **{LAUNCHER_VARIABLE: "1"})
    # Its own session: a terminal's Ctrl-C reaches mpiexec once, from us (twice would make it abort at once).
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    filters = (OutputFilter(sys.stdout), OutputFilter(sys.stderr))
    relays = [threading.Thread(target=_relay, args=(stream, f), daemon=True)
              for stream, f in zip((proc.stdout, proc.stderr), filters, strict=True)]
    for relay in relays:
        relay.start()

    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = proc.wait()
        for relay in relays:
            relay.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    dead = next((f for f in filters if f.dead_pid is not None), None)
    if dead is not None:
        pids = {**filters[0].pids, **filters[1].pids}
        rank = pids.get(dead.dead_pid)
        who = f"rank {rank} (pid {dead.dead_pid})" if rank is not None else f"pid {dead.dead_pid}"
        how = dead.exit_string or f"exit status {status}"
        raise CharlmError(f"{who} ended: {how}; mpiexec stopped the other ranks; "
                          f"{_last_good(run_dir)}; {resume_hint}")
    return status


def _last_good(run_dir: Path) -> str:
    from charlm.store.rundir import RunDir

    return RunDir(run_dir).last_good()


def announce(rank: int) -> None:
    """A rank started by `launch` tells it its pid (the note never reaches the user)."""
    if os.environ.get(LAUNCHER_VARIABLE):
        sys.stderr.write(f"charlm-rank {rank} pid {os.getpid()};\n")  # one write: mpiexec may split two
        sys.stderr.flush()
