"""Data-parallel training: P ranks train one model on the global batch's B streams, B / P each.

The semantics of Horovod and PyTorch DDP, on `Trainer`'s seams:
- every rank builds the same trainer (same corpus, seed, batcher cursor); rank 0's parameters are broadcast
  so all start identical (a fine-tune or resume included);
- each rank draws the whole (T, B) batch (cheap: a gather of ids) and trains on its block of B / P columns,
  carrying the state of its own streams;
- `reduce_gradients`: one in-place Allreduce (sum) of one flat buffer holding every gradient, the loss and
  the stop signals this rank received, then / P: the mean over the global batch on every rank, clipped and
  applied identically;
- `decide`: rank 0 alone decides stop / evaluate / progress (its clock is the budget's) and broadcasts it;
  a signal on any rank reaches rank 0 through the Allreduce, so all ranks stop after the same step;
- rank 0 owns the run directory (lock, config, metrics, checkpoints, the display) and validates; a step
  checkpoint gathers every rank's carried state and dropout RNG first, so a resume is bit-exact with the
  same P and re-shards the streams with another (dropout masks then start afresh: `shards.rng_state_for`).
"""

import os
import signal
import time
from dataclasses import replace

import numpy as np

from charlm.errors import CharlmError, DivergenceError, TrainingInterrupted
from charlm.parallel import comm as mpi
from charlm.parallel.environment import LAUNCHER_VARIABLE, launched_rank
from charlm.parallel.launch import check_parallel_options
from charlm.store.rundir import RunDir
from charlm.tasks.lm.lm_task import LanguageModelTask
from charlm.tasks.registry import checked_options
from charlm.training import events
from charlm.training.events import TrainResult
from charlm.training.options import TrainOptions
from charlm.training.shards import check_divisible, join_states, rank_rng, rng_state_for, shard_state, stream_slice
from charlm.training.signals import StopSignals
from charlm.training.trainer import Trainer
from charlm.training.writer import RunWriter

# How each step ends, as rank 0 broadcasts it (index = code).
STOP_REASONS = (None, "steps", "epochs", "time", "signal")
# Slots after the gradients in the reduced buffer: the loss, then how many ranks saw SIGINT, SIGTERM.
EXTRA_SLOTS = 3


class _SilentWriter(RunWriter):
    """The writer of every rank but 0: the run directory has one writer."""

    def write_config(self, options: dict) -> None:
        pass

    def truncate_metrics(self, last_step: int) -> None:
        pass

    def append_metrics(self, record: dict) -> None:
        pass

    def save_step(self, step: int, **contents):
        return None

    def save_best(self, **contents):
        return None


class DistributedTrainer(Trainer):
    """A language-model `Trainer` that is one rank of `comm`; every rank runs the same loop in lockstep. It
    overrides only the Trainer's public seams."""

    def __init__(self, task: LanguageModelTask, run_dir: RunDir, *, comm, report=None, clock=time.perf_counter):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.is_root = self.rank == 0
        check_divisible(task.opts.batch, self.size)
        self.streams = stream_slice(task.opts.batch, self.size, self.rank)
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        self.stop = None
        self._flat = self._views = None
        self._in_place = mpi.in_place()
        super().__init__(task, run_dir, report=report if self.is_root else None, clock=clock)
        if not task.resume:  # a resume takes each rank's own RNG from the checkpoint
            self.rng = rank_rng(self.opts.seed, self.rank)

    def share_parameters(self) -> None:
        """Every rank starts from rank 0's parameters (collective)."""
        for name in sorted(self.params):
            self.comm.Bcast(self.params[name], root=0)

    def make_writer(self, run_dir: RunDir) -> RunWriter:
        return RunWriter(run_dir) if self.is_root else _SilentWriter(run_dir)

    def new_state(self) -> list:
        return self.task.new_state(self.cfg, self.opts.batch // self.size)

    def start_validation(self) -> None:
        if self.is_root:  # only rank 0 validates
            super().start_validation()

    def restore_streams(self, state: list | None, rng: dict) -> None:
        if state is not None:
            self.state = shard_state(state, self.size, self.rank)
        self.rng.bit_generator.state, exact = rng_state_for(rng, rank=self.rank, size=self.size,
                                                            seed=self.opts.seed, step=self.step)
        if not exact:
            saved = len(rng["ranks"]) if "ranks" in rng else 1
            self.report(events.Log(f"resumed a {saved}-process run with {self.size}: the same {self.opts.batch} "
                                   f"streams, shared out again; the dropout masks are drawn afresh"))

    # ------------------------------------------------------------------ the gradient path
    def stream_ids(self) -> np.ndarray:
        return np.arange(self.opts.batch)[self.streams]

    def train_step(self, x: np.ndarray, y: np.ndarray, progress: float):
        """x, y: the global (T, B) batch; this rank trains on its B / P columns."""
        return super().train_step(np.ascontiguousarray(x[:, self.streams]),
                                   np.ascontiguousarray(y[:, self.streams]), progress)

    def reduce_gradients(self, loss: float, grads: dict) -> tuple[float, dict]:
        """Sum every rank's gradients, loss and signals in one in-place Allreduce, then divide by P."""
        if self._flat is None:
            self._flat, self._views = _flat_buffer(grads, EXTRA_SLOTS)
        flat, views = self._flat, self._views
        for k, view in views.items():
            view[...] = grads[k]
        signum = self.stop.signum if self.stop else None
        flat[-EXTRA_SLOTS:] = (loss, signum == signal.SIGINT, signum == signal.SIGTERM)
        start = time.perf_counter()
        self.comm.Allreduce(self._in_place, flat)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_calls += 1
        flat *= 1.0 / self.size
        loss, sigint, sigterm = (float(v) for v in flat[-EXTRA_SLOTS:])
        if self.stop and self.stop.signum is None and (sigint or sigterm):
            self.stop.signum = signal.SIGINT if sigint else signal.SIGTERM
        return loss, views

    # ------------------------------------------------------------------ collective decisions
    def loop(self, stop: StopSignals, *, started: float | None = None) -> TrainResult:
        self.stop = stop
        return super().loop(stop, started=started)

    def decide(self, total, wall, stop, session):
        """Rank 0's decision, broadcast: every rank stops, evaluates and schedules the learning rate alike."""
        message = np.zeros(4)
        if self.is_root:
            stopped_by, due_eval, progress = super().decide(total, wall, stop, session)
            message[:] = (STOP_REASONS.index(stopped_by), stop.signum or 0, due_eval, progress)
        self.comm.Bcast(message, root=0)
        stopped_by = STOP_REASONS[int(message[0])]
        if stopped_by == "signal":
            stop.signum = int(message[1])
        return stopped_by, bool(message[2]), float(message[3])

    def validate(self, session, lr) -> tuple[bool, bool]:
        """Rank 0 evaluates; every rank learns whether it improved (a best checkpoint) and patience ran out."""
        message = np.zeros(2)
        if self.is_root:
            message[:] = super().validate(session, lr)
        self.comm.Bcast(message, root=0)
        return bool(message[0]), bool(message[1])

    def carried_state(self) -> tuple[list, dict]:
        """Every rank's streams and RNG, gathered to rank 0 (on the others: what they hold)."""
        shares = self.comm.gather((self.state, self.rng.bit_generator.state), root=0)
        if not self.is_root:
            return self.state, {}
        return join_states([state for state, _ in shares]), {"ranks": [rng for _, rng in shares]}

    def train_state(self, progress: float) -> dict:
        return {**super().train_state(progress), "procs": self.size}

    def final_eval(self):
        return super().final_eval() if self.is_root else (None, "none")

    def show_sample(self) -> None:
        if self.is_root:
            super().show_sample()

    def result(self, session, stopped_by, final_val, final_mode) -> TrainResult:
        result = super().result(session, stopped_by, final_val, final_mode)
        steps = self.allreduce_calls
        per_step = self.allreduce_seconds / steps if steps else 0.0
        if steps:
            self.report(events.Log(f"{self.size} processes; Allreduce {per_step * 1e3:.2f} ms per step "
                                   f"({self.allreduce_seconds / max(session.step_seconds, 1e-9):.0%} of the "
                                   f"time in steps)"))
        return replace(result, procs=self.size, allreduce_seconds_per_step=round(per_step, 6))

    def resume_command(self) -> str:
        if os.environ.get(LAUNCHER_VARIABLE):  # started by charlm train --procs
            return (f"charlm train {self.opts.corpus} --out {self.run_dir.path} --procs {self.size} "
                    f"--resume")
        return f"mpiexec -n {self.size} {super().resume_command()}"

    def interrupted(self, signum: int):
        if self.is_root:
            super().interrupted(signum)
        raise TrainingInterrupted("interrupted", signum)


def _flat_buffer(grads: dict, extra: int) -> tuple[np.ndarray, dict]:
    """One buffer for every gradient and `extra` slots after them, and each gradient's view into it."""
    names = sorted(grads)
    flat = np.empty(sum(grads[k].size for k in names) + extra, np.result_type(*(grads[k].dtype for k in names)))
    views, offset = {}, 0
    for k in names:
        views[k] = flat[offset:offset + grads[k].size].reshape(grads[k].shape)
        offset += grads[k].size
    return flat, views


def train_distributed(opts: TrainOptions, *, explicit: frozenset = frozenset(), report=None,
                      clock=time.perf_counter, started: float | None = None) -> TrainResult | None:
    """`charlm.training.trainer.train` as one rank of an MPI job (started by mpiexec); see the module
    docstring. Returns the result on rank 0, None on the others. Errors every rank meets at the same step
    (bad options, divergence, an interrupt) are raised on every rank, quiet but on rank 0; an error one rank
    meets alone ends that process at once, which makes the launcher stop the others."""
    try:
        comm = mpi.connect()
    except CharlmError as exc:  # every rank lacks mpi4py alike: rank 0 says so
        exc.quiet = launched_rank() != 0
        raise
    root = comm.rank == 0
    run_dir = None
    in_loop = False
    try:
        check_parallel_options(opts, comm.size)
        started = clock() if started is None else started
        opts = checked_options(opts, explicit)
        run_dir = RunDir(opts.run_dir, keep=opts.keep)
        trainer = _open_in_turn(comm, opts, run_dir, explicit, report, clock)
        trainer.share_parameters()
        in_loop = True
        with StopSignals() as stop:
            result = trainer.loop(stop, started=started)
    except CharlmError as exc:
        if in_loop and not isinstance(exc, (DivergenceError, TrainingInterrupted)):
            run_dir.close()
            raise  # this rank alone: leaving without MPI's finalisation makes the launcher stop the others
        exc.quiet = exc.quiet or not root
        _end_together(comm, run_dir)
        raise
    except BaseException:
        if run_dir is not None:
            run_dir.close()
        raise
    _end_together(comm, run_dir)  # rank 0 may still be scoring the best checkpoint
    return result if root else None


def _end_together(comm, run_dir) -> None:
    if run_dir is not None:
        run_dir.close()
    comm.Barrier()
    mpi.finish()


def _open_in_turn(comm, opts, run_dir, explicit, report, clock) -> DistributedTrainer:
    """Rank 0 opens the run directory, prepares the corpus (filling its cache) and settles the recipe first,
    then the others load it with rank 0's options; each failure is agreed on, so no rank waits for one that
    gave up."""
    trainer = None
    for turn in (0, 1):
        error = None
        if (comm.rank == 0) == (turn == 0):
            try:
                if comm.rank == 0:
                    run_dir.open()
                task = LanguageModelTask.open(opts, run_dir, explicit=explicit, report=report or _ignore)
                trainer = DistributedTrainer(task, run_dir, comm=comm, report=report, clock=clock)
            except CharlmError as exc:
                error = exc
        mpi.agree(comm, error)
        if turn == 0:  # the others take rank 0's options, recipe included (it timed this machine once)
            opts = comm.bcast(trainer.opts if comm.rank == 0 else None, root=0)
    return trainer


def _ignore(event) -> None:
    pass
