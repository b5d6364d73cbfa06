"""Training: the one loop every kind of model trains in, with evaluation, checkpoints and exact resume.

`Trainer(task, run_dir)` runs a `charlm.training.task.Task`; `charlm.tasks.registry.train(options)` picks the
task and is the whole job (`charlm train` is a thin wrapper). Everything a resumed run needs to continue bit
for bit is in the checkpoint: parameters, optimiser slots, the carried hidden state (tasks that carry one),
the batch cursor, the dropout RNG, the schedule position and the step count.
"""

import math
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from charlm.engine.optim import clip_gradients, make_optimizer
from charlm.errors import CheckpointError, DivergenceError, TrainingInterrupted
from charlm.store.checkpoint import load_checkpoint
from charlm.store.rundir import RunDir
from charlm.training import budget, events
from charlm.training.events import LOSS_SMOOTHING, TrainResult
from charlm.training.schedule import learning_rate
from charlm.training.shards import restart_streams, restarting, rng_state_for
from charlm.training.signals import StopSignals
from charlm.training.task import Scores, Task
from charlm.training.threads import ThreadChoice, ThreadGovernor
from charlm.training.writer import RunWriter

# The moving average of each weight (--average) is saved among the optimiser's arrays under this prefix.
AVERAGE = "average/"


def _ignore(event: events.Event) -> None:
    pass


class Trainer:
    """One training run of `task`: owns the parameters, optimiser, batches, carried state and counters, and runs
    the loop. `report(event)` receives the events of `charlm.training.events`; `clock()` returns seconds.

    The seams a trainer spread over several processes (`charlm.parallel.trainer`) overrides, all public: every
    file write goes through `make_writer`'s writer; the gradient path `apply_gradients` calls
    `reduce_gradients`; `decide` makes each step's stop / evaluate decision and `validate` each evaluation's;
    `new_state`, `carried_state` and `restore_streams` hold the streams this process carries; `train_step`
    takes the global batch; `start_validation`, `final_eval`, `show_sample`, `result` and `interrupted` are the
    parts of the run one process does for all.
    """

    def __init__(self, task: Task, run_dir: RunDir, *, report=None, clock=time.perf_counter):
        opts, base = task.opts, task.base
        self.task = task
        self.run_dir = run_dir
        self.writer = self.make_writer(run_dir)
        self.report = report or _ignore
        self.clock = clock
        self.started = clock()  # when the time budget started counting (`loop` sets the invocation's start)
        self.cfg = base.config if base else task.model_config()
        if base and base.config.dropout != opts.dropout:
            self.cfg = replace(self.cfg, dropout=opts.dropout)
        self.rng = np.random.default_rng(opts.seed)  # draws the initial weights, then every dropout mask
        self.params = base.params if base else task.init_params(self.cfg, self.rng)
        self.optimizer = make_optimizer(opts.optimizer, self.params, momentum=opts.momentum,
                                        weight_decay=opts.weight_decay)
        self.rates = task.rates(self.params)
        # --average: a moving average of the weights, the model evaluated and kept (None: the weights as trained)
        self.average = {name: p.copy() for name, p in self.params.items()} if opts.average else None
        self.batcher = task.batches()
        self.state = self.new_state()  # carried from one batch to the next
        self.workspace = {}  # the engine's preallocated buffers, reused every step
        self.step = 0
        self.train_seconds = 0.0  # in training steps, over the whole run
        self.progress0 = 0.0  # the fraction of the run done when this invocation started
        self.best: Scores | None = None
        self.best_step = None
        self.evals_since_best = 0
        self.last: Scores | None = None
        self.eval_seconds = None  # measured at each evaluation
        self.first_vals: list[float] = []  # this invocation's validation losses (events.memorising)
        # The machine's pace (budget.Pace.now) when eval_seconds was measured, and when the task last timed
        # its validation (start_validation).
        self.eval_pace = self.validation_pace = None
        self.pace = budget.Pace()  # of this invocation's steps, the timed threads trials' aside
        self.start_validation()
        if task.resume:
            try:
                self.restore(base)
            except (KeyError, TypeError, ValueError) as exc:  # verified bytes, but not a usable training state
                raise CheckpointError(f"{base.path}: cannot resume, the training state is incomplete or "
                                      f"invalid ({type(exc).__name__}: {exc})") from None
        self.writer.write_config(asdict(opts))

    @property
    def opts(self):
        """The options in force (the task's)."""
        return self.task.opts

    @property
    def best_val(self) -> float | None:
        return None if self.best is None else self.best.loss

    @property
    def last_val(self) -> float | None:
        return None if self.last is None else self.last.loss

    def make_writer(self, run_dir: RunDir) -> RunWriter:
        return RunWriter(run_dir)

    def new_state(self) -> list | None:
        """The zero state of the streams this process carries (None for a task that carries none)."""
        return self.task.new_state(self.cfg, self.opts.batch) if self.task.carries_state else None

    def stream_ids(self) -> np.ndarray:
        """The indices in the global batch of the streams this process carries, (B,)."""
        return np.arange(self.opts.batch)

    def start_validation(self) -> None:
        """Let the task time what its validation will cost now (before training and after evaluations)."""
        if self.task.has_validation:
            self.task.start_validation(self.model, self.cfg, self.clock)
            self.validation_pace = self.pace.now()

    def restore(self, ckpt) -> None:
        """Continue the run a step checkpoint saved: optimiser, batches, streams, RNG and counters."""
        t = ckpt.train
        optim = dict(ckpt.optim)
        if self.average is not None:
            for name in self.average:
                np.copyto(self.average[name], optim.pop(AVERAGE + name))
        self.optimizer.load_state_arrays(optim, t["optimizer_steps"])
        self.batcher = self.task.restore_batches(t["cursor"])
        self.step = t["step"]
        self.restore_streams(ckpt.state, ckpt.rng)
        self.train_seconds = t["train_seconds"]
        self.progress0 = t["progress"]
        if t.get("best_val") is not None:
            self.best = Scores(t["best_val"], f1=t.get("best_f1"))
        self.best_step = t.get("best_step")
        self.evals_since_best = t.get("evals_since_best", 0)
        if t.get("last_val") is not None:
            self.last = Scores(t["last_val"])
        self.writer.truncate_metrics(self.step)
        self.report(events.Log(f"resumed {ckpt.path.name} at step {self.step}"))

    def restore_streams(self, state: list | None, rng: dict) -> None:
        """Take up the carried state (one tuple of (B, H) arrays per layer) and dropout RNG of a checkpoint;
        one saved by several processes is re-sharded (see `charlm.training.shards.rng_state_for`)."""
        if state is not None and self.task.carries_state:
            self.state = state
        self.rng.bit_generator.state, exact = rng_state_for(rng, rank=0, size=1, seed=self.opts.seed,
                                                            step=self.step)
        if not exact:
            self.report(events.Log(f"resumed a {len(rng['ranks'])}-process run in one process: the streams "
                                   f"are the same, the dropout masks are drawn afresh"))

    # ------------------------------------------------------------------ the gradient path
    def train_step(self, x: np.ndarray, y, progress: float) -> tuple[float, float, float]:
        """One update on inputs x, ids of shape (T, B), and the task's targets y, at `progress` (fraction of
        the run). Carries the state to the next batch and counts the step. Returns (loss, gradient norm, lr)."""
        loss, grads, new_state = self.task.loss_and_grads(self.params, self.cfg, x, y, self.state, rng=self.rng,
                                                          workspace=self.workspace)
        loss, norm, lr = self.apply_gradients(loss, grads, progress)
        self.state = new_state
        self.step += 1
        return loss, norm, lr

    def reduce_gradients(self, loss: float, grads: dict) -> tuple[float, dict]:
        """Combine the loss and gradients of every process training together; one process: as they are.
        The loss is combined too, so every process logs it and checks it for divergence alike."""
        return loss, grads

    def apply_gradients(self, loss: float, grads: dict, progress: float) -> tuple[float, float, float]:
        """loss -> grads -> reduce across processes -> clip -> optimiser step. Raises DivergenceError (before
        any update) on a non-finite loss or gradient. Returns (loss, gradient norm before clipping, lr)."""
        loss, grads = self.reduce_gradients(loss, grads)
        norm = clip_gradients(grads, self.opts.clip, self.opts.clip_mode)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise DivergenceError(
                f"training diverged at step {self.step + 1} (loss {loss}, gradient norm {norm}); "
                f"{self.run_dir.last_good()}. Try a lower --lr (now {self.opts.lr:g}) or --clip "
                f"(now {self.opts.clip:g})")
        o = self.opts
        lr = learning_rate(self.step, progress, lr=o.lr, schedule=o.schedule, warmup=o.warmup,
                           min_lr_ratio=o.min_lr_ratio)
        self.optimizer.step(self.params, grads, lr, self.rates)
        if self.average is not None:
            decay = o.average
            for name, p in self.params.items():  # the step is done: its gradients are scratch space
                change = np.subtract(p, self.average[name], out=grads[name])
                change *= 1.0 - decay
                self.average[name] += change  # average <- decay * average + (1 - decay) * p
        return loss, norm, lr

    @property
    def model(self) -> dict:
        """The weights that are evaluated and kept as the best: the moving average with --average, else the
        weights as trained."""
        return self.params if self.average is None else self.average

    # ------------------------------------------------------------------ the loop
    def loop(self, stop: StopSignals, *, started: float | None = None) -> TrainResult:
        """Train until a stopping rule holds (steps, epochs, time budget, patience or a signal), evaluating
        and saving on the way, then score the best checkpoint. Raises TrainingInterrupted after a signal.
        `started`: the clock when the invocation began, so the time budget covers the setup too (default:
        now)."""
        o = self.opts
        total = self.total_steps()
        if total is not None and self.step >= total:
            self.report(events.Log(f"already at step {self.step} of {total}; nothing to do (raise --steps to "
                                   f"continue)"))
            return self.result(budget.Session(start=0.0, next_eval_at=0.0), "finished", None, "none")
        self.started = self.clock() if started is None else started  # the time budget counts from here
        session = budget.Session(start=self.started, next_eval_at=budget.eval_interval(o.time_budget))
        progress = self.progress(0.0)
        stopped_by = None
        validating = self.task.has_validation
        threads = ThreadGovernor(o.threads, on_change=self.threads_changed)
        streams = self.stream_ids()
        while stopped_by is None:
            threads.before_step()
            step_start = self.clock()
            x, y = self.batcher.next_batch()
            if self.batcher.new_epoch:  # a new epoch starts at a new offset: the carried state no longer fits
                self.state = self.new_state()
            elif self.state is not None:
                self.state = restart_streams(self.state, restarting(self.step, streams))
            loss, norm, lr = self.train_step(x, y, progress)
            now = self.clock()
            if not threads.choosing:
                self.pace.add(now - step_start, x.size)
            threads.after_step(now - step_start, x.size, now)
            self.train_seconds += now - step_start
            session.step_seconds += now - step_start
            session.chars += x.size
            session.smoothed_loss = loss if session.smoothed_loss is None else (
                (1 - LOSS_SMOOTHING) * session.smoothed_loss + LOSS_SMOOTHING * loss)
            wall = now - session.start  # the time budget is wall time, evaluations included
            stopped_by, due_eval, progress = self.decide(total, wall, stop, session)
            self.writer.append_metrics({"step": self.step, "loss": loss, "grad_norm": norm, "lr": lr})
            self.report(events.Progress(
                fraction=progress, step=self.step, epoch=self.epochs_done(), loss=session.smoothed_loss, lr=lr,
                val_loss=self.last_val, val_bpc=self.task.bits_per_char(self.last_val),
                chars_per_sec=session.chars_per_sec(), tokens=self.task.unit))

            # A stop the user asked for saves and goes at once: no evaluation, however due.
            if validating and stopped_by != "signal" and (due_eval or stopped_by):
                eval_start = self.clock()
                if self.evaluate_and_checkpoint(progress, session, lr):
                    stopped_by = stopped_by or "patience"
                first = self.eval_seconds is None
                self.eval_seconds, self.eval_pace = self.clock() - eval_start, self.pace.now()
                if first and not stopped_by:  # past the start-up's contention: the final score priced again
                    self.start_validation()
                # The first evaluation sized the later ones (Task.first_evaluation_took): its cost is not theirs.
                spacing = budget.eval_interval(o.time_budget, None if first else self.eval_seconds)
                session.next_eval_at = self.clock() - session.start + spacing
            elif stopped_by or (o.save_every and self.step % o.save_every == 0):
                self.save(progress)
            if o.sample_every and self.step % o.sample_every == 0:
                self.show_sample()

        if stopped_by == "signal":
            self.interrupted(stop.signum)
        if stopped_by == "patience":
            self.report(events.Log(f"stopped early at step {self.step}: the validation loss has not improved in "
                                   f"{self.opts.patience} evaluations (best {self.best_val:.4f} at step "
                                   f"{self.best_step}); --patience 0 trains on"))
        self.report(events.Log(f"stopped by {stopped_by} at step {self.step} after "
                               f"{self.clock() - session.start:.0f}s"))
        return self.result(session, stopped_by, *self.final_eval())

    def threads_changed(self, choice: ThreadChoice) -> None:
        self.report(events.Log(f"the machine's load changed: {choice.describe()}"))

    def decide(self, total: int | None, wall: float, stop: StopSignals, session: budget.Session
               ) -> tuple[str | None, bool, float]:
        """After a step, `wall` seconds into this invocation: (why the run stops or None, whether an
        evaluation is due, the fraction of the run done)."""
        o = self.opts
        due_eval = self.step % o.eval_every == 0 if o.eval_every else wall >= session.next_eval_at
        return self.stop_reason(total, wall, stop), due_eval, self.progress(wall)

    def stop_reason(self, total: int | None, wall: float, stop: StopSignals) -> str | None:
        o = self.opts
        if total is not None and self.step >= total:
            return "steps" if o.steps is not None and self.step >= o.steps else "epochs"
        # The step that would end past the reserve is not started.
        if o.time_budget and wall + self.pace.next_step() > o.time_budget - self.reserved_seconds():
            return "time"
        if stop.signum:
            return "signal"
        return None

    # ------------------------------------------------------------------ progress and the time budget
    def total_steps(self) -> int | None:
        """The step the run ends at by --steps or --epochs (the nearer), None for a time budget only."""
        candidates = []
        if self.opts.steps is not None:
            candidates.append(self.opts.steps)
        if self.opts.epochs is not None:
            candidates.append(math.ceil(self.opts.epochs * self.batcher.batches_per_epoch))
        return min(candidates) if candidates else None

    def progress(self, session_seconds: float) -> float:
        """Fraction of the run done after `session_seconds` of this invocation (see budget.progress_fraction)."""
        return budget.progress_fraction(step=self.step, total_steps=self.total_steps(),
                                        time_budget=self.opts.time_budget, reserved=self.reserved_seconds(),
                                        progress0=self.progress0, session_seconds=session_seconds)

    def reserved_seconds(self) -> float:
        """Seconds of the time budget kept for the closing evaluation and the final score."""
        evaluation = None if self.eval_seconds is None else self.eval_seconds * self.pace.since(self.eval_pace)
        return self.task.reserved_seconds(evaluation, self.validation_slowdown())

    def validation_slowdown(self) -> float:
        """How much slower the machine trains than when the task last timed its validation (or at the start)."""
        return self.pace.since(self.validation_pace or self.pace.at_start)

    def epochs_done(self) -> float:
        return self.step / self.batcher.batches_per_epoch

    # ------------------------------------------------------------------ checkpoints
    def train_state(self, progress: float) -> dict:
        """The counters a checkpoint saves beside the arrays, and the options that continue the run."""
        state = {
            "step": self.step, "epoch": self.epochs_done(), "cursor": self.batcher.cursor,
            "optimizer_steps": self.optimizer.steps, "train_seconds": self.train_seconds,
            "progress": progress, "best_val": self.best_val, "best_step": self.best_step,
            "evals_since_best": self.evals_since_best, "last_val": self.last_val,
            "options": asdict(self.opts),
        }
        if self.best is not None and self.best.f1 is not None:
            state["best_f1"] = self.best.f1
        return state

    def save(self, progress: float, *, best: bool = False) -> Path:
        """A step checkpoint with everything a resume needs, or (best) the model that scored best."""
        contents = {"params": self.params, "config": self.cfg, "vocab": self.task.vocab, "data": self.task.data_meta(),
                    "train": self.train_state(progress)}
        if best:
            return self.writer.save_best(**(contents | {"params": self.model}))
        state, rng = self.carried_state()
        optim = self.optimizer.state_arrays()
        if self.average is not None:  # a resume continues the average: it travels with the optimiser's slots
            optim |= {AVERAGE + name: average for name, average in self.average.items()}
        return self.writer.save_step(self.step, optim=optim, state=state, rng=rng, **contents)

    def carried_state(self) -> tuple[list | None, dict]:
        """What a step checkpoint holds of the streams: the carried state of all B of them and the RNG."""
        return self.state, self.rng.bit_generator.state

    # ------------------------------------------------------------------ evaluation
    def evaluate_and_checkpoint(self, progress: float, session: budget.Session, lr: float) -> bool:
        """Evaluate, save a step checkpoint (and `best` on improvement); True when patience ran out."""
        first, start = self.best is None, self.clock()
        improved, out_of_patience = self.validate(session, lr)
        if first:  # sized before the checkpoint records the size, so a resume evaluates alike
            self.task.first_evaluation_took(self.clock() - start)
        self.save(progress)
        if improved:
            self.save(progress, best=True)
        return out_of_patience

    def validate(self, session: budget.Session, lr: float) -> tuple[bool, bool]:
        """Evaluate on held-out data and log it. -> (improved on the best, patience ran out)"""
        scores = self.task.evaluate(self.model, self.cfg)
        self.last = scores
        improved = self.task.improves(scores, self.best)
        if improved:
            self.best, self.best_step, self.evals_since_best = scores, self.step, 0
        else:
            self.evals_since_best += 1
        record = events.Evaluation(
            step=self.step, epoch=round(self.epochs_done(), 4), train_loss=session.smoothed_loss,
            val_loss=scores.loss, val_bpc=self.task.bits_per_char(scores.loss), best_val_loss=self.best_val, lr=lr,
            chars_per_sec=session.chars_per_sec(), train_seconds=round(self.train_seconds, 3), tokens=self.task.unit,
            val_f1=scores.f1, val_accuracy=scores.accuracy, best_step=self.best_step, best_f1=self.best.f1)
        self.writer.append_metrics({"event": "eval", **record.to_dict()})
        self.report(record)
        self.first_vals.append(scores.loss)
        if warning := events.memorising(self.first_vals):
            self.report(warning)
        return improved, bool(self.opts.patience) and self.evals_since_best >= self.opts.patience

    def final_eval(self) -> tuple[float | None, str]:
        """The best checkpoint's figures on the held-out data (the task's `final_score`), saved into
        best.safetensors. -> (loss, mode)"""
        if not self.task.has_validation or not self.run_dir.best_path.exists():
            return None, "none"
        best = load_checkpoint(self.run_dir.best_path)
        left = self.opts.time_budget - (self.clock() - self.started) if self.opts.time_budget else None
        scores, mode = self.task.final_score(best, self.best, train_seconds=self.train_seconds, report=self.report,
                                             slowdown=self.validation_slowdown(), seconds_left=left)
        final = dict(best.train, best_val_final=scores.loss, best_val_final_mode=mode)
        if scores.f1 is not None:
            final["best_val_f1"] = scores.f1
        self.writer.save_best(params=best.params, config=best.config, vocab=best.vocab, data=best.data, train=final)
        return scores.loss, mode

    # ------------------------------------------------------------------ endings
    def result(self, session: budget.Session, stopped_by: str, final_val: float | None, final_mode: str) -> TrainResult:
        run = self.run_dir
        best_path = run.best_path if run.best_path.exists() else (run.checkpoints() or [run.path])[0]
        val, mode = (final_val, final_mode) if final_val is not None else (self.best_val, "streams")
        return TrainResult(
            best_val_loss=val, best_val_bpc=self.task.bits_per_char(val), tokens=self.task.unit,
            best_val_mode=mode if val is not None else "none",
            steps=self.step, epochs=round(self.epochs_done(), 4), train_seconds=round(self.train_seconds, 3),
            chars_per_sec=session.chars_per_sec(), checkpoint=str(best_path), stopped_by=stopped_by,
        )

    def interrupted(self, signum: int):
        path = self.run_dir.checkpoints()[0]
        raise TrainingInterrupted(f"interrupted ({signal.Signals(signum).name}): saved step {self.step} to {path}",
                                  signum, resume=self.resume_command())

    def resume_command(self) -> str:
        return f"charlm train {self.opts.corpus} --out {self.run_dir.path} --resume"

    def show_sample(self) -> None:
        self.report(events.Sample(step=self.step, text=self.task.sample(self.model, self.cfg, self.step)))
