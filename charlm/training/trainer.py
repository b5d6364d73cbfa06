"""Training: truncated BPTT over B parallel streams, with evaluation, checkpoints and exact resume.

`train(options)` is the whole job; `charlm train` is a thin wrapper. Everything a resumed run needs to
continue bit for bit is in the checkpoint: parameters, optimiser slots, the carried hidden state, the
batcher cursor, the dropout RNG, the schedule position and the step count.
"""

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from charlm.engine.optim import clip_gradients, make_optimizer
from charlm.errors import CharlmError, CheckpointError, ConfigError, DivergenceError, TrainingInterrupted
from charlm.inference.scoring import score_ids
from charlm.models.lm import init_params, init_state, loss_and_grads
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.store.rundir import RunDir
from charlm.text.batching import Batcher, split_train_val
from charlm.text.cache import prepare_corpus
from charlm.training.options import ARCHITECTURE_OPTIONS, TrainOptions, learning_rate, with_budget_defaults

LN2 = math.log(2)


@dataclass
class TrainResult:
    best_val_loss: float | None
    best_val_bpc: float | None
    best_val_mode: str
    steps: int
    epochs: float
    train_seconds: float
    chars_per_sec: float
    checkpoint: str
    stopped_by: str
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("history")
        return d


class _StopSignals:
    """SIGINT/SIGTERM only raise a flag; the loop finishes its step, saves, then exits (130/143)."""

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


class Trainer:
    """Holds one run's state between steps. Built by `train`; not for reuse across runs."""

    def __init__(self, opts: TrainOptions, run: RunDir, report):
        self.opts = opts
        self.run = run
        self.report = report  # report(kind, payload): "log" str, "progress" (fraction, fields), "eval" dict

    # ------------------------------------------------------------------ setup
    def setup(self, explicit: frozenset):
        opts = self.opts
        resume_from = None
        if opts.resume:
            resume_from = load_checkpoint(self.run.path, prefer="latest",
                                          warn=lambda m: self.report("log", f"warning: {m}"))
            opts = self.opts = _merge_resumed_options(resume_from, opts, explicit)
        elif self.run.checkpoints():
            raise CharlmError(f"{self.run.path} already holds checkpoints; add --resume to continue that "
                              f"run or choose another --out")
        init_from = load_checkpoint(opts.init_from) if opts.init_from and not resume_from else None
        base = resume_from or init_from
        if init_from:
            _refuse_changes(init_from, opts, explicit, what="--init-from checkpoint",
                            keys=("cell", "hidden", "layers", "embed", "activation", "dtype"))

        vocab = base.vocab if base else None
        self.corpus = prepare_corpus(opts.corpus, eos_mode=opts.eos, encoding=opts.encoding,
                                     min_count=opts.min_count, max_vocab=opts.max_vocab, vocab=vocab)
        if resume_from and resume_from.data.get("corpus_sha256") != self.corpus.sha256:
            raise CharlmError(f"{opts.corpus} is not the corpus this run was trained on (content differs); "
                              f"to train this checkpoint on new text use --init-from {self.run.path} with a "
                              f"new --out")
        if init_from:
            self.report("log", f"fine-tuning from {init_from.path}: {self.corpus.n_unk:,} of "
                               f"{self.corpus.n_chars:,} characters of the new corpus map to <UNK>")
        self.vocab = self.corpus.vocab
        if self.vocab.size <= 3:
            self.report("log", "warning: the corpus has only one distinct character")

        if opts.val_file:
            val = prepare_corpus(opts.val_file, eos_mode=opts.eos, encoding=opts.encoding, vocab=self.vocab)
            self.train_ids, self.val_ids = self.corpus.ids, val.ids
        else:
            self.train_ids, self.val_ids = split_train_val(self.corpus, opts.val_fraction, opts.seed)
        if self.val_ids is not None and len(self.val_ids) < 2:
            self.val_ids = None
        if self.val_ids is None and (opts.val_fraction > 0 or opts.val_file):
            self.report("log", "warning: the validation split is empty; validation is off")

        self.cfg = base.config if base else opts.model_config(self.vocab.size)
        if base and base.config.dropout != opts.dropout:
            self.cfg = replace(self.cfg, dropout=opts.dropout)
        self.rng = np.random.default_rng(opts.seed)
        self.params = base.params if base else init_params(self.cfg, self.rng)
        self.optimizer = make_optimizer(opts.optimizer, self.params, momentum=opts.momentum,
                                        weight_decay=opts.weight_decay)
        self.batcher = Batcher(self.train_ids, opts.batch, opts.seq_len, opts.seed)
        if self.batcher.batches_per_epoch < 10:
            self.report("log", f"warning: only {self.batcher.batches_per_epoch} batch(es) per epoch from "
                               f"{len(self.train_ids):,} training ids with --batch {opts.batch} x --seq-len "
                               f"{opts.seq_len}; a smaller --batch or --seq-len gives more updates per epoch")
        self.state = init_state(self.cfg, opts.batch)
        self.workspace = {}  # the engine's preallocated buffers, reused every step
        self.step = 0
        self.train_seconds = 0.0
        self.progress0 = 0.0
        self.best_val = None
        self.best_step = None
        self.evals_since_best = 0
        self.last_val = None
        self.exact_seconds = self._probe_exact_seconds()
        self.eval_seconds = None  # measured at the first evaluation
        if resume_from:
            try:
                self._restore(resume_from)
            except (KeyError, TypeError, ValueError) as exc:  # verified bytes, but not a usable training state
                raise CheckpointError(f"{resume_from.path}: cannot resume, the training state is incomplete or "
                                      f"invalid ({type(exc).__name__}: {exc})") from None
        self.run.write_config({k: v for k, v in asdict(opts).items()})

    def _probe_exact_seconds(self) -> float | None:
        """Estimated seconds to score all validation text exactly (one stream); the cost does not depend on
        the weights, so the initial ones serve."""
        if self.val_ids is None:
            return None
        probe = self.val_ids[:min(len(self.val_ids), 1025)]
        start = time.perf_counter()
        score_ids(self.params, self.cfg, probe, streams=1)
        return (time.perf_counter() - start) * len(self.val_ids) / len(probe)

    def final_is_exact(self) -> bool:
        """Score the best checkpoint exactly at the end when that costs at most a quarter of the --time
        budget (else of the training time, or a minute), else in parallel streams."""
        if self.exact_seconds is None:
            return False
        allowance = self.opts.time_budget / 4 if self.opts.time_budget else max(60.0, self.train_seconds / 4)
        return self.exact_seconds <= allowance

    def reserved_seconds(self) -> float:
        """Seconds of the --time budget kept for the work after the last step: the closing evaluation and
        the final score of the best checkpoint, so the whole invocation fits the budget. At most half."""
        if not self.opts.time_budget or self.val_ids is None:
            return 0.0
        # Before the first evaluation is timed, a parallel-streams pass costs about 0.4x an exact one here.
        evaluation = self.eval_seconds if self.eval_seconds is not None else 0.4 * self.exact_seconds
        if self.final_is_exact():
            final = self.exact_seconds
        elif self.evals_cover_val():
            final = 0.0  # the best evaluation's score is reused
        else:
            final = evaluation * len(self.val_ids) / self.opts.eval_chars
        return min(evaluation + final, self.opts.time_budget / 2)

    def evals_cover_val(self) -> bool:
        """True when an evaluation during training scores all of the validation text."""
        return len(self.val_ids) <= self.opts.eval_chars

    def _restore(self, ckpt):
        t = ckpt.train
        self.optimizer.load_state_arrays(ckpt.optim, t["optimizer_steps"])
        self.batcher = Batcher.restore(self.train_ids, self.opts.batch, self.opts.seq_len, self.opts.seed,
                                       t["cursor"])
        if ckpt.state is not None:
            self.state = ckpt.state
        self.rng.bit_generator.state = ckpt.rng
        self.step = t["step"]
        self.train_seconds = t["train_seconds"]
        self.progress0 = t["progress"]
        self.best_val, self.best_step = t.get("best_val"), t.get("best_step")
        self.evals_since_best = t.get("evals_since_best", 0)
        self.last_val = t.get("last_val")
        self.run.truncate_metrics(self.step)
        self.report("log", f"resumed {ckpt.path.name} at step {self.step}")

    # ------------------------------------------------------------------ progress and stopping
    def total_steps(self):
        o = self.opts
        candidates = []
        if o.steps is not None:
            candidates.append(o.steps)
        if o.epochs is not None:
            candidates.append(math.ceil(o.epochs * self.batcher.batches_per_epoch))
        return min(candidates) if candidates else None

    def progress(self, session_seconds: float) -> float:
        """Fraction of the run done: by steps/epochs, or by wall time for --time (whichever is further; the
        time budget less what the closing evaluations need)."""
        fractions = []
        total = self.total_steps()
        if total:
            fractions.append(self.step / total)
        if self.opts.time_budget:
            training_budget = self.opts.time_budget - self.reserved_seconds()
            fractions.append(self.progress0 + (1 - self.progress0) * session_seconds / training_budget)
        return max(fractions) if fractions else 0.0

    def epochs_done(self) -> float:
        return self.step / self.batcher.batches_per_epoch

    # ------------------------------------------------------------------ checkpoints
    def train_state(self, progress: float) -> dict:
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
        path = self.run.best_path if best else self.run.step_path(self.step)
        extra = {} if best else {"optim": self.optimizer.state_arrays(), "state": self.state,
                                 "rng": self.rng.bit_generator.state}
        try:
            save_checkpoint(path, params=self.params, config=self.cfg, vocab=self.vocab,
                            data=self.data_meta(), train=self.train_state(progress), **extra)
        except OSError as exc:
            raise CharlmError(f"could not save checkpoint {path.name}: {exc.strerror}; {self.run.last_good()}"
                              ) from None
        if not best:
            self.run.prune()
        return path

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, params=None, *, max_ids: int | None = None) -> float:
        """Validation loss in nats/char over B parallel streams with burn-in (fast; close to exact).

        During training only the first `eval_chars` ids are scored, so an evaluation costs the same on a
        1 MB corpus as on a 10 GB one (like nanoGPT's eval_iters).
        """
        ids = self.val_ids if max_ids is None else self.val_ids[:max_ids]
        streams = max(1, min(self.opts.eval_streams, len(ids) // (4 * self.opts.seq_len)))
        result = score_ids(self.params if params is None else params, self.cfg, ids, streams=streams,
                           burn_in=0 if streams == 1 else self.opts.seq_len)
        return result.nll_sum / result.n_scored


def train(opts: TrainOptions, *, explicit: frozenset = frozenset(), report=None) -> TrainResult:
    """Run (or resume) a training job described by `opts`; see the module docstring.

    explicit: names of options the user set on the command line (a resume refuses to change the
    architecture and keeps the checkpoint's training options unless they were given explicitly).
    report: callback(kind, payload) for progress; None is silent.
    """
    opts = with_budget_defaults(opts)
    _check_options(opts)
    report = report or (lambda kind, payload: None)
    with RunDir(opts.run_dir, keep=opts.keep) as run:
        trainer = Trainer(opts, run, report)
        trainer.setup(explicit)
        with _StopSignals() as signals:
            return _loop(trainer, signals)


def _loop(tr: Trainer, signals: _StopSignals) -> TrainResult:
    opts = tr.opts
    total = tr.total_steps()
    if total is not None and tr.step >= total:
        tr.report("log", f"already at step {tr.step} of {total}; nothing to do (raise --steps to continue)")
        return _result(tr, 0, 0.0, "finished", None, "none")
    session_start = time.perf_counter()
    step_seconds = 0.0  # time in training steps only: chars/s
    tokens = 0
    smoothed = None
    next_eval_at = _first_eval_interval(opts)
    stopped_by = None
    progress = tr.progress(0.0)

    while stopped_by is None:
        step_start = time.perf_counter()
        x, y = tr.batcher.next_batch()
        if tr.batcher.new_epoch:  # a new epoch starts at a new offset: the carried state no longer fits
            tr.state = init_state(tr.cfg, opts.batch)
        loss, grads, new_state = loss_and_grads(tr.params, tr.cfg, x, y, tr.state, rng=tr.rng,
                                                workspace=tr.workspace)
        norm = clip_gradients(grads, opts.clip, opts.clip_mode)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            _diverged(tr, loss, norm)
        lr = learning_rate(opts, tr.step, progress)
        tr.optimizer.step(tr.params, grads, lr)
        tr.state = new_state
        tr.step += 1
        tokens += x.size
        now = time.perf_counter()
        tr.train_seconds += now - step_start
        step_seconds += now - step_start
        wall = now - session_start  # the --time budget is wall time, evaluations included
        progress = tr.progress(wall)
        smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
        tr.run.append_metrics({"step": tr.step, "loss": loss, "grad_norm": norm, "lr": lr})
        fields_ = {"step": tr.step, "epoch": tr.epochs_done(), "loss": smoothed, "lr": lr,
                   "val_loss": tr.last_val, "val_bpc": tr.last_val / LN2 if tr.last_val else None,
                   "chars_per_sec": tokens / step_seconds}
        tr.report("progress", (progress, fields_))

        if total is not None and tr.step >= total:
            stopped_by = "steps" if opts.steps is not None and tr.step >= opts.steps else "epochs"
        elif opts.time_budget and wall >= opts.time_budget - tr.reserved_seconds():
            stopped_by = "time"
        elif signals.signum:
            stopped_by = "signal"
        due_eval = tr.step % opts.eval_every == 0 if opts.eval_every else wall >= next_eval_at
        if tr.val_ids is not None and (due_eval or (stopped_by and stopped_by != "signal")):
            eval_start = time.perf_counter()
            if _evaluate_and_checkpoint(tr, progress, smoothed, fields_):
                stopped_by = stopped_by or "patience"
            tr.eval_seconds = time.perf_counter() - eval_start
            # Evaluations take at most about 4% of the run, however slow they are: time spent scoring is
            # time not spent training.
            next_eval_at = time.perf_counter() - session_start + max(_first_eval_interval(opts),
                                                                      24 * tr.eval_seconds)
        elif stopped_by or (opts.save_every and tr.step % opts.save_every == 0):
            tr.save(progress)
        if opts.sample_every and tr.step % opts.sample_every == 0:
            _show_sample(tr)

    if stopped_by == "signal":
        _interrupted(tr, progress, signals.signum)
    tr.report("log", f"stopped by {stopped_by} at step {tr.step} after {time.perf_counter() - session_start:.0f}s")
    return _result(tr, tokens, step_seconds, stopped_by, *_final_eval(tr))


def _first_eval_interval(opts: TrainOptions) -> float:
    """Seconds between automatic evaluations: a minute, or an eighth of a shorter --time budget."""
    return min(60.0, opts.time_budget / 8) if opts.time_budget else 60.0


def _evaluate_and_checkpoint(tr: Trainer, progress, smoothed, fields_) -> bool:
    """Evaluate, save a step checkpoint (and `best` on improvement); True when patience ran out."""
    val = tr.evaluate(max_ids=tr.opts.eval_chars)
    tr.last_val = val
    improved = tr.best_val is None or val < tr.best_val
    if improved:
        tr.best_val, tr.best_step, tr.evals_since_best = val, tr.step, 0
    else:
        tr.evals_since_best += 1
    record = {"step": tr.step, "epoch": round(tr.epochs_done(), 4), "train_loss": smoothed,
              "val_loss": val, "val_bpc": val / LN2, "best_val_loss": tr.best_val,
              "lr": fields_["lr"], "chars_per_sec": fields_["chars_per_sec"],
              "train_seconds": round(tr.train_seconds, 3)}
    tr.run.append_metrics({"event": "eval", **record})
    tr.report("eval", record)
    tr.save(progress)
    if improved:
        tr.save(progress, best=True)
    return bool(tr.opts.patience) and tr.evals_since_best >= tr.opts.patience


def _final_eval(tr: Trainer):
    """The best checkpoint's loss on all validation text: exact (as `charlm perplexity` scores it) when
    Trainer.final_is_exact, else in parallel streams. -> (loss, mode)"""
    if tr.val_ids is None or not tr.run.best_path.exists():
        return None, "none"
    best = load_checkpoint(tr.run.best_path)
    if tr.final_is_exact():
        result = score_ids(best.params, best.config, tr.val_ids, streams=1)
        loss, mode = result.nll_sum / result.n_scored, "exact"
    else:
        tr.report("log", f"exact scoring of the validation text would take about {tr.exact_seconds:.0f}s; "
                         f"using {tr.opts.eval_streams} parallel streams (charlm perplexity RUN FILE is exact)")
        # When evaluations already score all of the validation text, the best one is this very score.
        loss = tr.best_val if tr.evals_cover_val() else tr.evaluate(best.params)
        mode = "streams"
    try:
        save_checkpoint(tr.run.best_path, params=best.params, config=best.config, vocab=best.vocab,
                        data=best.data, train=dict(best.train, best_val_final=loss, best_val_final_mode=mode))
    except OSError as exc:  # the old best file is intact (atomic save): say so in one line
        raise CharlmError(f"could not save checkpoint {tr.run.best_path.name}: {exc.strerror}; "
                          f"{tr.run.last_good()}") from None
    return loss, mode


def _result(tr: Trainer, tokens, step_seconds, stopped_by, final_val, final_mode) -> TrainResult:
    best_path = tr.run.best_path if tr.run.best_path.exists() else (tr.run.checkpoints() or [tr.run.path])[0]
    val, mode = (final_val, final_mode) if final_val is not None else (tr.best_val, "streams")
    return TrainResult(
        best_val_loss=val, best_val_bpc=val / LN2 if val is not None else None,
        best_val_mode=mode if val is not None else "none",
        steps=tr.step, epochs=round(tr.epochs_done(), 4), train_seconds=round(tr.train_seconds, 3),
        chars_per_sec=tokens / step_seconds if step_seconds else 0.0,
        checkpoint=str(best_path), stopped_by=stopped_by,
    )


def _diverged(tr: Trainer, loss, norm):
    raise DivergenceError(
        f"training diverged at step {tr.step + 1} (loss {loss}, gradient norm {norm}); {tr.run.last_good()}. "
        f"Try a lower --lr (now {tr.opts.lr:g}) or --clip (now {tr.opts.clip:g})")


def _interrupted(tr: Trainer, progress, signum):
    path = tr.run.checkpoints()[0]
    name = signal.Signals(signum).name
    raise TrainingInterrupted(
        f"{name}: saved {path} at step {tr.step}; resume with: charlm train {tr.opts.corpus} "
        f"--out {tr.run.path} --resume", signum)


def _show_sample(tr: Trainer):
    from charlm.inference.sampling import generate

    samples = generate(tr.params, tr.cfg, tr.vocab, num_samples=1, length=200, temperature=0.8,
                       seed=tr.step, stop_at_eos=tr.opts.eos != "file")
    tr.report("log", f"--- sample at step {tr.step} ---\n{samples[0].text}\n---")


def _check_options(o: TrainOptions):
    if o.steps is None and o.epochs is None and o.time_budget is None and not o.resume:
        raise ConfigError("say how long to train: --steps, --epochs or --time")
    if not 0 <= o.dropout < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {o.dropout}")
    if not 0 <= o.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {o.val_fraction}")
    if not (math.isfinite(o.lr) and o.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {o.lr}")


def _merge_resumed_options(ckpt, opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """The run's saved options, overridden by those the user gave now (never the architecture)."""
    saved = ckpt.train.get("options")
    if not saved:
        raise CharlmError(f"{ckpt.path} has no training state to resume (is it a best.safetensors copy?)")
    _refuse_changes(ckpt, opts, explicit, what="the run being resumed",
                    keys=ARCHITECTURE_OPTIONS + ("seq_len", "batch", "seed", "optimizer"))
    known = {f.name for f in fields(TrainOptions)}
    merged = {k: v for k, v in saved.items() if k in known}
    for name in explicit:
        merged[name] = getattr(opts, name)
    merged.update(corpus=opts.corpus, out=str(opts.run_dir), resume=True, init_from=None)
    return TrainOptions(**merged)


def _refuse_changes(ckpt, opts: TrainOptions, explicit: frozenset, *, what: str, keys) -> None:
    saved = (ckpt.train.get("options") or {}) | {
        "cell": ckpt.config.cell, "hidden": ckpt.config.hidden, "layers": ckpt.config.layers,
        "embed": ckpt.config.embed, "activation": ckpt.config.activation, "dtype": ckpt.config.dtype}
    diffs = [f"--{k.replace('_', '-')} {getattr(opts, k)} (was {saved[k]})"
             for k in keys if k in explicit and k in saved and saved[k] != getattr(opts, k)]
    if diffs:
        raise CharlmError(f"cannot change {what}: {'; '.join(diffs)}")
