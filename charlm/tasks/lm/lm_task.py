"""Training a language model (`--task lm`): B parallel streams of one long id sequence, the hidden state
carried from chunk to chunk (truncated BPTT), scored in nats per token and bits per character."""

from pathlib import Path

import numpy as np

from charlm.errors import ConfigError
from charlm.models.lm import init_state, loss_and_grads
from charlm.store.checkpoint import Checkpoint
from charlm.tasks.lm.sampling import generate
from charlm.tasks.lm.scoring import LN2, score_ids
from charlm.text.batching import Batcher, split_train_val
from charlm.text.cache import Corpus, prepare_corpus
from charlm.text.tokenizer import EOS
from charlm.training import budget, events
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import MIN_BATCHES_PER_EPOCH, CorpusStats
from charlm.training.start import check_same_corpus, keep_checkpoint_model, starting_point, with_recipe
from charlm.training.task import Scores, Task

# --sample-every shows this many tokens, drawn at this temperature (a little below 1 reads better).
SAMPLE_LENGTH = 200
SAMPLE_TEMPERATURE = 0.8
# Options that shape only the document tasks' data, or only an encoder–decoder: given to a language model, a
# usage error.
NOT_FOR_LANGUAGE_MODELS = ("token_dropout", "encoder_lr", "marks", "max_len", "pool", "balance", "source_tokens",
                           "target_tokens", "attention")


class LanguageModelTask(Task):
    """- corpus: the prepared training corpus; train_ids (N,) and val_ids (M,) or None: its split
    - val_chars: characters of the original text that val_ids[1:] stand for (for bits/char; M - 1 for
      characters, estimated for the <UNK>s of a word split: see `held_out_chars`)"""

    kind = "lm"
    carries_state = True
    refused = NOT_FOR_LANGUAGE_MODELS

    def __init__(self, opts: TrainOptions, corpus: Corpus, train_ids: np.ndarray, val_ids: np.ndarray | None,
                 val_chars: float | None, *, base: Checkpoint | None = None, resume: bool = False, report=None):
        self.opts, self.corpus, self.base, self.resume = opts, corpus, base, resume
        self.report = report or (lambda event: None)
        self.vocab = corpus.vocab
        self.unit = self.vocab.kind  # what the losses are per: "char", "word" or "symbols"
        self.train_ids, self.val_ids = train_ids, val_ids
        # Losses are per token; bits/char divides the same total by the characters the tokens stand for.
        self.tokens_per_char = (len(val_ids) - 1) / val_chars if val_chars else 1.0
        self.exact_seconds = None  # estimated cost of scoring all validation text exactly
        self.eval_ids = self.opts.eval_chars  # validation ids an evaluation scores (start_validation sizes it)

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        cls.refuse_given(opts, explicit)
        if opts.bidirectional:
            raise ConfigError("--bidirectional needs a tagging --task: a bidirectional language model would read "
                              "the very token it predicts")

    @classmethod
    def open(cls, opts: TrainOptions, run_dir, *, explicit: frozenset, report) -> "LanguageModelTask":
        """Load the run to resume or the checkpoint to fine-tune, then the corpus and its training/validation
        split, and fill the options left to the recipe."""
        opts, base, resume = starting_point(opts, run_dir, explicit=explicit, report=report)
        if base is not None and not resume:
            opts = keep_checkpoint_model(base, opts, explicit)
        corpus = prepare_corpus(opts.corpus, tokens=opts.tokens, lowercase=opts.lowercase, eos_mode=opts.eos,
                                encoding=opts.encoding, min_count=opts.min_count, max_vocab=opts.max_vocab,
                                vocab=base.vocab if base else None)
        unit = "characters" if corpus.vocab.kind == "char" else "tokens"
        if resume:
            check_same_corpus(base, corpus.sha256, opts, run_dir)
        elif base is not None:
            report(events.Log(f"fine-tuning from {base.path}: {corpus.n_unk:,} of {len(corpus.ids) - 1:,} "
                              f"{unit} of the new corpus map to <UNK>"))
        if corpus.vocab.size <= 3:
            report(events.Warning(f"the corpus has only one distinct {unit[:-1]}"))

        if opts.val_file:
            val = prepare_corpus(opts.val_file, eos_mode=opts.eos, encoding=opts.encoding, vocab=corpus.vocab)
            train_ids, val_ids = corpus.ids, val.ids
            val_chars = val.n_chars + val.n_docs  # exact: each document's characters and its end
        else:
            train_ids, val_ids = split_train_val(corpus, opts.val_fraction, opts.seed)
            val_chars = held_out_chars(corpus, val_ids) if val_ids is not None else None
        if val_ids is not None and len(val_ids) < 2:
            val_ids = val_chars = None
        if val_ids is None and (opts.val_fraction > 0 or opts.val_file):
            report(events.Warning("the validation split is empty; validation is off"))
        documents = 1 if opts.eos == "file" else max(1, int(np.count_nonzero(train_ids == EOS)))
        stats = CorpusStats(tokens=len(train_ids), documents=documents, vocab=corpus.vocab.size,
                            kind=corpus.vocab.kind)
        opts, recipe = with_recipe(opts, stats)
        if recipe is not None:
            report(recipe)
        return cls(opts, corpus, train_ids, val_ids, val_chars, base=base, resume=resume, report=report)

    # ------------------------------------------------------------------ the model and its batches
    def model_config(self):
        return self.opts.model_config(self.vocab.size)

    def batches(self) -> Batcher:
        o = self.opts
        batcher = Batcher(self.train_ids, o.batch, o.seq_len, o.seed)
        if batcher.batches_per_epoch < MIN_BATCHES_PER_EPOCH:
            self.report(events.Warning(
                f"only {batcher.batches_per_epoch} batch(es) per epoch from {len(self.train_ids):,} "
                f"training ids with --batch {o.batch} x --seq-len {o.seq_len}; a smaller --batch or "
                f"--seq-len gives more updates per epoch"))
        return batcher

    def restore_batches(self, cursor: dict) -> Batcher:
        return Batcher.restore(self.train_ids, self.opts.batch, self.opts.seq_len, self.opts.seed, cursor)

    def new_state(self, cfg, batch: int) -> list:
        return init_state(cfg, batch)

    def loss_and_grads(self, params, cfg, x, y, state, *, rng, workspace):
        """x, y: (T, B) ids and the next ids; state: the streams' carried state."""
        return loss_and_grads(params, cfg, x, y, state, rng=rng, workspace=workspace)

    # ------------------------------------------------------------------ evaluation
    @property
    def has_validation(self) -> bool:
        return self.val_ids is not None

    def start_validation(self, params, cfg, clock) -> None:
        """Price exact scoring; the first time, size the evaluations during training by it (budget.eval_size:
        the same size for the whole run, so evaluations compare, and a resumed run keeps the size it had)."""
        first = self.exact_seconds is None
        self.exact_seconds = self.probe_exact_seconds(params, cfg, clock, warm=not first)
        saved = self.base.data.get("eval_ids") if self.resume and self.base else None
        if saved:
            self.eval_ids = saved
        elif first and self._sized_by_time():
            self.eval_ids = budget.eval_size(self.opts.eval_chars, exact_seconds=self.exact_seconds,
                                             val_ids=len(self.val_ids), time_budget=self.opts.time_budget)

    def probe_exact_seconds(self, params, cfg, clock, *, warm: bool = False) -> float:
        """Estimated seconds to score all validation text exactly (one stream), from a probe of
        budget.PROBE_IDS ids after an untimed one of budget.WARM_UP_IDS (none when `warm`: the kernels are
        loaded). The cost does not depend on the weights."""
        probe = self.val_ids[:min(len(self.val_ids), budget.PROBE_IDS)]
        if not warm:
            score_ids(params, cfg, probe[:budget.WARM_UP_IDS], streams=1)  # first calls load the kernels
        start = clock()
        score_ids(params, cfg, probe, streams=1)
        return budget.exact_seconds_estimate(clock() - start, len(probe), len(self.val_ids))

    def first_evaluation_took(self, seconds: float) -> None:
        """Size the later evaluations by the first one's measured cost (`start_validation` priced it from a
        guess), when evaluations come by the clock."""
        if self._sized_by_time():
            self.eval_ids = budget.resized_evaluation(self.eval_ids, seconds, eval_chars=self.opts.eval_chars,
                                                      time_budget=self.opts.time_budget)

    def _sized_by_time(self) -> bool:
        """Evaluations are sized to their spacing only within a time budget, evaluating by the clock: a run by
        --steps or --eval-every evaluates on --eval-chars ids, the same whatever the machine's speed."""
        return bool(self.opts.time_budget) and not self.opts.eval_every

    def evaluate(self, params, cfg) -> Scores:
        """The loss on the first `eval_ids` validation ids (at most --eval-chars, see `start_validation`), so
        an evaluation costs the same on a small corpus as on a huge one (like nanoGPT's eval_iters)."""
        return Scores(self.score_streams(params, cfg, max_ids=self.eval_ids))

    def score_streams(self, params, cfg, *, max_ids: int | None = None) -> float:
        """Validation loss in nats per token over B parallel streams with burn-in (fast; close to exact)."""
        ids = self.val_ids if max_ids is None else self.val_ids[:max_ids]
        streams = max(1, min(self.opts.eval_streams, len(ids) // (4 * self.opts.seq_len)))
        result = score_ids(params, cfg, ids, streams=streams, burn_in=0 if streams == 1 else self.opts.seq_len)
        return result.nll_sum / result.n_scored

    def reserved_seconds(self, eval_seconds: float | None, slowdown: float = 1.0) -> float:
        return budget.reserved_seconds(self.opts.time_budget, exact_seconds=self.exact_seconds,
                                       eval_seconds=eval_seconds, val_ids=self._val_count(),
                                       eval_chars=self.eval_ids, slowdown=slowdown)

    def final_score(self, best_ckpt, best: Scores, *, train_seconds: float, report, slowdown: float = 1.0,
                    seconds_left: float | None = None) -> tuple[Scores, str]:
        """Exact (as `charlm perplexity` scores it) when that fits the budget (budget.final_is_exact), else in
        parallel streams."""
        exact_seconds = None if self.exact_seconds is None else self.exact_seconds * slowdown
        if budget.final_is_exact(exact_seconds, time_budget=self.opts.time_budget, train_seconds=train_seconds,
                                 seconds_left=seconds_left):
            result = score_ids(best_ckpt.params, best_ckpt.config, self.val_ids, streams=1)
            return Scores(result.nll_sum / result.n_scored), "exact"
        report(events.Log(
            f"exact scoring of the validation text would take about {exact_seconds:.0f}s; using "
            f"{self.opts.eval_streams} parallel streams (charlm perplexity RUN FILE is exact)"))
        # When evaluations already score all of the validation text, the best one is this very score.
        if budget.evals_cover_val(self._val_count(), self.eval_ids):
            return best, "streams"
        return Scores(self.score_streams(best_ckpt.params, best_ckpt.config)), "streams"

    def bits_per_char(self, loss: float | None) -> float | None:
        return None if loss is None else loss * self.tokens_per_char / LN2

    def _val_count(self) -> int:
        return 0 if self.val_ids is None else len(self.val_ids)

    # ------------------------------------------------------------------ what runs record and show
    def data_meta(self) -> dict:
        o = self.opts
        return {"eos_mode": o.eos, "encoding": o.encoding, "min_count": o.min_count, "max_vocab": o.max_vocab,
                "corpus_name": Path(o.corpus).name, "corpus_sha256": self.corpus.sha256,
                "corpus_chars": self.corpus.n_chars, "eval_ids": self.eval_ids}

    def sample(self, params, cfg, step: int) -> str:
        samples = generate(params, cfg, self.vocab, num_samples=1, length=SAMPLE_LENGTH,
                           temperature=SAMPLE_TEMPERATURE, seed=step, stop_at_eos=self.opts.eos != "file")
        return samples[0].text


def held_out_chars(corpus: Corpus, val_ids: np.ndarray) -> float:
    """Characters of the original text that a held-out part of `corpus` stands for (val_ids[1:]).

    Exact for characters and for every word-mode token but `<UNK>`, whose text the ids no longer hold: each
    counts as the mean length of the corpus's out-of-vocabulary text.
    """
    unk_length = corpus.unk_chars / corpus.n_unk if corpus.n_unk else 1.0
    return corpus.vocab.char_count(val_ids, unk_length=unk_length)
