"""Training: truncated BPTT over B parallel streams, with evaluation, checkpoints and exact resume.

`train(options)` is the whole job; `charlm train` is a thin wrapper. Everything a resumed run needs to
continue bit for bit is in the checkpoint: parameters, optimiser slots, the carried hidden state, the
batcher cursor, the dropout RNG, the schedule position and the step count.
"""

import math
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from charlm.engine.optim import clip_gradients, make_optimizer
from charlm.errors import CheckpointError, DivergenceError, TrainingInterrupted
from charlm.inference.sampling import generate
from charlm.inference.scoring import score_ids
from charlm.models.lm import init_params, init_state, loss_and_grads
from charlm.store.checkpoint import load_checkpoint
from charlm.store.rundir import RunDir
from charlm.text.batching import Batcher
from charlm.training import budget, events
from charlm.training.events import TrainResult
from charlm.training.inputs import RunInputs, load_inputs
from charlm.training.options import TrainOptions, check_options, check_task_options, with_time_budget
from charlm.training.recipe import MIN_BATCHES_PER_EPOCH
from charlm.training.schedule import learning_rate
from charlm.training.shards import rng_state_for
from charlm.training.signals import StopSignals
from charlm.training.writer import RunWriter

LN2 = math.log(2)
# Weight of the newest step in the smoothed training loss that progress shows (an exponential moving
# average, so one noisy batch does not move the display).
LOSS_SMOOTHING = 0.02
# --sample-every shows this many characters, drawn at this temperature (a little below 1 reads better).
SAMPLE_LENGTH = 200
SAMPLE_TEMPERATURE = 0.8


@dataclass
class _Session:
    """What one invocation of the loop measures (a resumed run starts a new session)."""

    start: float  # clock() when the loop started
    next_eval_at: float  # seconds since start
    step_seconds: float = 0.0  # time in training steps only: chars/s
    chars: int = 0
    smoothed_loss: float | None = None

    def chars_per_sec(self) -> float:
        return self.chars / self.step_seconds if self.step_seconds else 0.0


def _ignore(event: events.Event) -> None:
    pass


class Trainer:
    """One training run: owns the model, optimiser, batcher, carried state and counters, and runs the loop.

    `Trainer.open` loads what the options point to (a run to resume, a checkpoint to fine-tune, the corpus)
    and builds one. `report(event)` receives the events of `charlm.training.events`; `clock()` returns
    seconds.

    The seams a trainer spread over several processes (`charlm.parallel.trainer`) overrides: every file
    write goes through `make_writer`'s writer; the gradient path `apply_gradients` calls `reduce_gradients`;
    `decide` makes each step's stop / evaluate decision, `validate` each evaluation's, `carried_state` and
    `new_state` hold the streams this process carries.
    """

    def __init__(self, inputs: RunInputs, run_dir: RunDir, *, report=None, clock=time.perf_counter):
        opts, base = inputs.opts, inputs.base
        self.opts = opts
        self.run_dir = run_dir
        self.writer = self.make_writer(run_dir)
        self.report = report or _ignore
        self.clock = clock
        self.corpus = inputs.corpus
        self.vocab = inputs.corpus.vocab
        self.unit = self.vocab.kind  # what the losses are per: "char" or "word"
        self.train_ids, self.val_ids = inputs.train_ids, inputs.val_ids
        # Losses are per token; bits/char divides the same total by the characters the tokens stand for.
        self.tokens_per_char = (len(self.val_ids) - 1) / inputs.val_chars if inputs.val_chars else 1.0
        self.cfg = base.config if base else opts.model_config(self.vocab.size)
        if base and base.config.dropout != opts.dropout:
            self.cfg = replace(self.cfg, dropout=opts.dropout)
        self.rng = np.random.default_rng(opts.seed)  # draws the initial weights, then every dropout mask
        self.params = base.params if base else init_params(self.cfg, self.rng)
        self.optimizer = make_optimizer(opts.optimizer, self.params, momentum=opts.momentum,
                                        weight_decay=opts.weight_decay)
        self.batcher = Batcher(self.train_ids, opts.batch, opts.seq_len, opts.seed)
        if self.batcher.batches_per_epoch < MIN_BATCHES_PER_EPOCH:
            self.report(events.Warning(
                f"only {self.batcher.batches_per_epoch} batch(es) per epoch from {len(self.train_ids):,} "
                f"training ids with --batch {opts.batch} x --seq-len {opts.seq_len}; a smaller --batch or "
                f"--seq-len gives more updates per epoch"))
        self.state = self.new_state()  # carried from one batch to the next
        self.workspace = {}  # the engine's preallocated buffers, reused every step
        self.step = 0
        self.train_seconds = 0.0  # in training steps, over the whole run
        self.progress0 = 0.0  # the fraction of the run done when this invocation started
        self.best_val = None
        self.best_step = None
        self.evals_since_best = 0
        self.last_val = None
        self.exact_seconds = self.probe_exact_seconds()
        self.eval_seconds = None  # measured at each evaluation
        if inputs.resume:
            try:
                self._restore(base)
            except (KeyError, TypeError, ValueError) as exc:  # verified bytes, but not a usable training state
                raise CheckpointError(f"{base.path}: cannot resume, the training state is incomplete or "
                                      f"invalid ({type(exc).__name__}: {exc})") from None
        self.writer.write_config(asdict(opts))

    def make_writer(self, run_dir: RunDir) -> RunWriter:
        return RunWriter(run_dir)

    def new_state(self) -> list:
        """The zero state of the streams this process carries."""
        return init_state(self.cfg, self.opts.batch)

    @classmethod
    def open(cls, opts: TrainOptions, run_dir: RunDir, *, explicit: frozenset = frozenset(), report=None,
             clock=time.perf_counter) -> "Trainer":
        """Load what `opts` start from (see `load_inputs`) and build the trainer; `explicit` as for `train`."""
        inputs = load_inputs(opts, run_dir, explicit=explicit, report=report or _ignore)
        return cls(inputs, run_dir, report=report, clock=clock)

    def probe_exact_seconds(self) -> float | None:
        """Estimated seconds to score all validation text exactly (one stream), from a probe of
        budget.PROBE_IDS ids after an untimed one of budget.WARM_UP_IDS; None without validation text. The cost
        does not depend on the weights."""
        if self.val_ids is None:
            return None
        probe = self.val_ids[:min(len(self.val_ids), budget.PROBE_IDS)]
        score_ids(self.params, self.cfg, probe[:budget.WARM_UP_IDS], streams=1)  # first calls load the kernels
        start = self.clock()
        score_ids(self.params, self.cfg, probe, streams=1)
        return budget.exact_seconds_estimate(self.clock() - start, len(probe), len(self.val_ids))

    def _restore(self, ckpt) -> None:
        t = ckpt.train
        self.optimizer.load_state_arrays(ckpt.optim, t["optimizer_steps"])
        self.batcher = Batcher.restore(self.train_ids, self.opts.batch, self.opts.seq_len, self.opts.seed,
                                       t["cursor"])
        self.step = t["step"]
        self.restore_streams(ckpt.state, ckpt.rng)
        self.train_seconds = t["train_seconds"]
        self.progress0 = t["progress"]
        self.best_val, self.best_step = t.get("best_val"), t.get("best_step")
        self.evals_since_best = t.get("evals_since_best", 0)
        self.last_val = t.get("last_val")
        self.writer.truncate_metrics(self.step)
        self.report(events.Log(f"resumed {ckpt.path.name} at step {self.step}"))

    def restore_streams(self, state: list | None, rng: dict) -> None:
        """Take up the carried state (one tuple of (B, H) arrays per layer) and dropout RNG of a checkpoint;
        one saved by several processes is re-sharded (see `charlm.training.shards.rng_state_for`)."""
        if state is not None:
            self.state = state
        self.rng.bit_generator.state, exact = rng_state_for(rng, rank=0, size=1, seed=self.opts.seed,
                                                            step=self.step)
        if not exact:
            self.report(events.Log(f"resumed a {len(rng['ranks'])}-process run in one process: the streams "
                                   f"are the same, the dropout masks are drawn afresh"))

    # ------------------------------------------------------------------ the gradient path
    def train_step(self, x: np.ndarray, y: np.ndarray, progress: float) -> tuple[float, float, float]:
        """One update on inputs x and targets y, ids of shape (T, B), at `progress` (fraction of the run).
        Carries the state to the next batch and counts the step. Returns (loss, gradient norm, lr)."""
        loss, grads, new_state = loss_and_grads(self.params, self.cfg, x, y, self.state, rng=self.rng,
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
        self.optimizer.step(self.params, grads, lr)
        return loss, norm, lr

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
            return self._result(_Session(start=0.0, next_eval_at=0.0), "finished", None, "none")
        session = _Session(start=self.clock() if started is None else started,
                           next_eval_at=budget.eval_interval(o.time_budget))
        progress = self.progress(0.0)
        stopped_by = None
        while stopped_by is None:
            step_start = self.clock()
            x, y = self.batcher.next_batch()
            if self.batcher.new_epoch:  # a new epoch starts at a new offset: the carried state no longer fits
                self.state = self.new_state()
            loss, norm, lr = self.train_step(x, y, progress)
            now = self.clock()
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
                val_loss=self.last_val, val_bpc=self.bits_per_char(self.last_val),
                chars_per_sec=session.chars_per_sec(), tokens=self.unit))

            if self.val_ids is not None and (due_eval or (stopped_by and stopped_by != "signal")):
                eval_start = self.clock()
                if self._evaluate_and_checkpoint(progress, session, lr):
                    stopped_by = stopped_by or "patience"
                self.eval_seconds = self.clock() - eval_start
                session.next_eval_at = self.clock() - session.start + budget.eval_interval(o.time_budget,
                                                                                           self.eval_seconds)
            elif stopped_by or (o.save_every and self.step % o.save_every == 0):
                self.save(progress)
            if o.sample_every and self.step % o.sample_every == 0:
                self._show_sample()

        if stopped_by == "signal":
            self._interrupted(stop.signum)
        if stopped_by == "patience":
            self.report(events.Log(f"stopped early at step {self.step}: the validation loss has not improved in "
                                   f"{self.opts.patience} evaluations (best {self.best_val:.4f} at step "
                                   f"{self.best_step}); --patience 0 trains on"))
        self.report(events.Log(f"stopped by {stopped_by} at step {self.step} after "
                               f"{self.clock() - session.start:.0f}s"))
        return self._result(session, stopped_by, *self._final_eval())

    def decide(self, total: int | None, wall: float, stop: StopSignals, session: _Session
               ) -> tuple[str | None, bool, float]:
        """After a step, `wall` seconds into this invocation: (why the run stops or None, whether an
        evaluation is due, the fraction of the run done)."""
        o = self.opts
        due_eval = self.step % o.eval_every == 0 if o.eval_every else wall >= session.next_eval_at
        return self._stop_reason(total, wall, stop), due_eval, self.progress(wall)

    def _stop_reason(self, total: int | None, wall: float, stop: StopSignals) -> str | None:
        o = self.opts
        if total is not None and self.step >= total:
            return "steps" if o.steps is not None and self.step >= o.steps else "epochs"
        if o.time_budget and wall >= o.time_budget - self.reserved_seconds():
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
        return budget.reserved_seconds(self.opts.time_budget, exact_seconds=self.exact_seconds,
                                       eval_seconds=self.eval_seconds, val_ids=self._val_count(),
                                       eval_chars=self.opts.eval_chars)

    def final_is_exact(self) -> bool:
        return budget.final_is_exact(self.exact_seconds, time_budget=self.opts.time_budget,
                                     train_seconds=self.train_seconds)

    def _val_count(self) -> int:
        return 0 if self.val_ids is None else len(self.val_ids)

    def epochs_done(self) -> float:
        return self.step / self.batcher.batches_per_epoch

    # ------------------------------------------------------------------ checkpoints
    def train_state(self, progress: float) -> dict:
        """The counters a checkpoint saves beside the arrays, and the options that continue the run."""
        return {
            "step": self.step, "epoch": self.epochs_done(), "cursor": self.batcher.cursor,
            "optimizer_steps": self.optimizer.steps, "train_seconds": self.train_seconds,
            "progress": progress, "best_val": self.best_val, "best_step": self.best_step,
            "evals_since_best": self.evals_since_best, "last_val": self.last_val,
            "options": asdict(self.opts),
        }

    def data_meta(self) -> dict:
        return {"eos_mode": self.opts.eos, "encoding": self.opts.encoding, "min_count": self.opts.min_count,
                "max_vocab": self.opts.max_vocab, "corpus_name": Path(self.opts.corpus).name,
                "corpus_sha256": self.corpus.sha256, "corpus_chars": self.corpus.n_chars}

    def save(self, progress: float, *, best: bool = False) -> Path:
        """A step checkpoint with everything a resume needs, or (best) the model that scored best."""
        contents = {"params": self.params, "config": self.cfg, "vocab": self.vocab, "data": self.data_meta(),
                    "train": self.train_state(progress)}
        if best:
            return self.writer.save_best(**contents)
        state, rng = self.carried_state()
        return self.writer.save_step(self.step, optim=self.optimizer.state_arrays(), state=state, rng=rng,
                                     **contents)

    def carried_state(self) -> tuple[list, dict]:
        """What a step checkpoint holds of the streams: the carried state of all B of them and the RNG."""
        return self.state, self.rng.bit_generator.state

    # ------------------------------------------------------------------ evaluation
    def bits_per_char(self, nats_per_token: float | None) -> float | None:
        """A validation loss in bits per character of the original text (None stays None)."""
        return None if nats_per_token is None else nats_per_token * self.tokens_per_char / LN2

    def evaluate(self, params=None, *, max_ids: int | None = None) -> float:
        """Validation loss in nats per token over B parallel streams with burn-in (fast; close to exact).

        During training only the first `eval_chars` ids are scored, so an evaluation costs the same on a
        small corpus as on a huge one (like nanoGPT's eval_iters).
        """
        ids = self.val_ids if max_ids is None else self.val_ids[:max_ids]
        streams = max(1, min(self.opts.eval_streams, len(ids) // (4 * self.opts.seq_len)))
        result = score_ids(self.params if params is None else params, self.cfg, ids, streams=streams,
                           burn_in=0 if streams == 1 else self.opts.seq_len)
        return result.nll_sum / result.n_scored

    def _evaluate_and_checkpoint(self, progress: float, session: _Session, lr: float) -> bool:
        """Evaluate, save a step checkpoint (and `best` on improvement); True when patience ran out."""
        improved, out_of_patience = self.validate(session, lr)
        self.save(progress)
        if improved:
            self.save(progress, best=True)
        return out_of_patience

    def validate(self, session: _Session, lr: float) -> tuple[bool, bool]:
        """Evaluate on held-out text and log it. -> (improved on the best, patience ran out)"""
        val = self.evaluate(max_ids=self.opts.eval_chars)
        self.last_val = val
        improved = self.best_val is None or val < self.best_val
        if improved:
            self.best_val, self.best_step, self.evals_since_best = val, self.step, 0
        else:
            self.evals_since_best += 1
        record = events.Evaluation(
            step=self.step, epoch=round(self.epochs_done(), 4), train_loss=session.smoothed_loss, val_loss=val,
            val_bpc=self.bits_per_char(val), best_val_loss=self.best_val, lr=lr,
            chars_per_sec=session.chars_per_sec(), train_seconds=round(self.train_seconds, 3), tokens=self.unit)
        self.writer.append_metrics({"event": "eval", **record.to_dict()})
        self.report(record)
        return improved, bool(self.opts.patience) and self.evals_since_best >= self.opts.patience

    def _final_eval(self) -> tuple[float | None, str]:
        """The best checkpoint's loss on all validation text: exact (as `charlm perplexity` scores it) when
        final_is_exact, else in parallel streams. Saved into best.safetensors. -> (loss, mode)"""
        if self.val_ids is None or not self.run_dir.best_path.exists():
            return None, "none"
        best = load_checkpoint(self.run_dir.best_path)
        if self.final_is_exact():
            result = score_ids(best.params, best.config, self.val_ids, streams=1)
            loss, mode = result.nll_sum / result.n_scored, "exact"
        else:
            self.report(events.Log(
                f"exact scoring of the validation text would take about {self.exact_seconds:.0f}s; using "
                f"{self.opts.eval_streams} parallel streams (charlm perplexity RUN FILE is exact)"))
            # When evaluations already score all of the validation text, the best one is this very score.
            covered = budget.evals_cover_val(self._val_count(), self.opts.eval_chars)
            loss = self.best_val if covered else self.evaluate(best.params)
            mode = "streams"
        self.writer.save_best(params=best.params, config=best.config, vocab=best.vocab, data=best.data,
                              train=dict(best.train, best_val_final=loss, best_val_final_mode=mode))
        return loss, mode

    # ------------------------------------------------------------------ endings
    def _result(self, session: _Session, stopped_by: str, final_val: float | None, final_mode: str
                ) -> TrainResult:
        run = self.run_dir
        best_path = run.best_path if run.best_path.exists() else (run.checkpoints() or [run.path])[0]
        val, mode = (final_val, final_mode) if final_val is not None else (self.best_val, "streams")
        return TrainResult(
            best_val_loss=val, best_val_bpc=self.bits_per_char(val), tokens=self.unit,
            best_val_mode=mode if val is not None else "none",
            steps=self.step, epochs=round(self.epochs_done(), 4), train_seconds=round(self.train_seconds, 3),
            chars_per_sec=session.chars_per_sec(), checkpoint=str(best_path), stopped_by=stopped_by,
        )

    def _interrupted(self, signum: int):
        path = self.run_dir.checkpoints()[0]
        raise TrainingInterrupted(
            f"{signal.Signals(signum).name}: saved {path} at step {self.step}; resume with: "
            f"{self.resume_command()}", signum)

    def resume_command(self) -> str:
        return f"charlm train {self.opts.corpus} --out {self.run_dir.path} --resume"

    def _show_sample(self) -> None:
        samples = generate(self.params, self.cfg, self.vocab, num_samples=1, length=SAMPLE_LENGTH,
                           temperature=SAMPLE_TEMPERATURE, seed=self.step, stop_at_eos=self.opts.eos != "file")
        self.report(events.Sample(step=self.step, text=samples[0].text))


def checked_options(opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """The options as given, checked: refused flags of another task are usage errors, and a run with no
    stopping rule gets the default time budget. The recipe fills the rest once the corpus is read."""
    check_task_options(opts, explicit)
    opts = with_time_budget(opts)
    check_options(opts)
    return opts


def train(opts: TrainOptions, *, explicit: frozenset = frozenset(), report=None,
          clock=time.perf_counter, started: float | None = None) -> TrainResult:
    """Run (or resume) a training job described by `opts`; see the module docstring.

    explicit: names of options the user set on the command line (a resume refuses to change the
    architecture and keeps the checkpoint's training options unless they were given explicitly).
    report: called with each event of `charlm.training.events`; None is silent.
    clock: seconds for the time budget and the speed figures (time.perf_counter).
    started: the clock's reading when the invocation began (`charlm train`: before its imports); the time
    budget counts from it. Default: now.
    """
    from charlm.training.classify import ClassifierTrainer  # these build on Trainer
    from charlm.training.tagging import TaggerTrainer

    started = clock() if started is None else started
    opts = checked_options(opts, explicit)
    kind = {"lm": Trainer, "classify": ClassifierTrainer}.get(opts.task, TaggerTrainer)
    with RunDir(opts.run_dir, keep=opts.keep) as run_dir:
        trainer = kind.open(opts, run_dir, explicit=explicit, report=report, clock=clock)
        with StopSignals() as stop:
            return trainer.loop(stop, started=started)
