"""Training an encoder–decoder (`--task translate`): `source<TAB>target` pairs, each side with its own tokens
(`--source-tokens`, `--target-tokens`: char, word or symbols) and vocabulary, batches of pairs of similar
lengths, the loss per target token (teacher-forced), and the best checkpoint by the held-out loss.

The source vocabulary is the checkpoint's `vocab` (what the encoder reads, as every model's); the target
vocabulary is saved in the checkpoint's `data` under `translate`. A held-out evaluation also decodes up to
EXACT_SOURCES held-out sources greedily and reports the share written exactly as one of their references.

Within a time budget, evaluating by the clock, an evaluation scores a fixed random sample of the held-out pairs
sized to the interval between evaluations (as the language model's are, `charlm.training.budget`), and the
best checkpoint's final score is its loss over all of them.
"""

from dataclasses import dataclass, replace

import numpy as np

from charlm.errors import ConfigError
from charlm.models import seq2seq
from charlm.models.config import ATTENTIONS
from charlm.tasks.documents import DocumentTask
from charlm.tasks.translate.decoding import Translator, generate, source_ids
from charlm.tasks.translate.pairs import held_out_units, one_to_many, read_pairs, references, split_pairs
from charlm.text.batching import pad_documents
from charlm.text.cache import texts_vocab
from charlm.text.corpus import file_sha256
from charlm.text.tokenizer import tokenizer_from_dict
from charlm.text.vocab import EOS, KINDS
from charlm.training import budget, events
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import TRANSLATE_ATTENTION, TRANSLATE_EMBED, TRANSLATE_ONE_HOT_MAX
from charlm.training.start import check_same_corpus, starting_point, with_recipe
from charlm.training.task import Scores

# Options that do not apply to an encoder–decoder (a language model's, a tagger's and a classifier's own).
NOT_FOR_TRANSLATION = ("token_dropout", "encoder_lr", "eos", "marks", "seq_len", "tie", "lowercase", "eval_streams",
                       "eval_chars", "pool", "balance")
# Held-out sources an evaluation decodes greedily for its exact-match share.
EXACT_SOURCES = 500
# Pairs per batch of the held-out loss.
EVAL_BATCH = 256
# Unless --val-fraction is given, at most this many sources are held out (lines, for one-to-many data): enough
# to compare checkpoints (a dev set of the field's usual size), while the rest of a large corpus trains.
HELD_OUT_MAX = 3_000
# An evaluation sized to its interval scores at least this many held-out pairs: fewer, and one evaluation's
# loss would move more with the sample than with the model.
MIN_EVAL_PAIRS = 2_000
# Held-out pairs whose loss prices scoring them all, after an untimed warm-up of WARM_UP_PAIRS (the first
# calls load compiled kernels, a one-off cost the probe must not scale up).
PROBE_PAIRS = 512
WARM_UP_PAIRS = 16


@dataclass(frozen=True)
class PairSplit:
    """Sources and targets of one part of the data, as texts and, once the vocabularies exist, as ids:
    `source_ids` (n_i,) and `target_ids` (m_i + 1,), each target's ids closed by `<EOS>`."""

    sources: list[str]
    targets: list[str]
    source_ids: list = ()
    target_ids: list = ()

    def rows(self, rows) -> "PairSplit":
        """The pairs `rows`, in that order."""
        fields = (self.sources, self.targets, self.source_ids, self.target_ids)
        return PairSplit(*([values[i] for i in rows] if len(values) else values for values in fields))

    def encoded(self, source_vocab, target_vocab) -> "PairSplit":
        """These pairs with their ids."""
        return PairSplit(self.sources, self.targets, *encode_pairs(source_vocab, target_vocab, self.sources,
                                                                    self.targets))


def encode_pairs(source_vocab, target_vocab, sources: list[str], targets: list[str]) -> tuple[list, list]:
    """(source ids per pair, target ids per pair closed by `<EOS>`)."""
    return ([source_vocab.encode(s) for s in sources],
            [np.append(target_vocab.encode(t), EOS) for t in targets])


@dataclass(frozen=True)
class TranslateData:
    """- source_vocab, target_vocab: each side's tokens
    - train_docs, val_docs: the parts (val_docs None without validation)
    - val_fraction: the share of sources (or lines) held out"""

    source_vocab: object
    target_vocab: object
    train_docs: PairSplit
    val_docs: PairSplit | None
    sha256: str
    val_fraction: float

    @property
    def vocab(self):
        return self.source_vocab


def load_translate_data(opts: TrainOptions, base, report, *, held_out_max: int | None = None) -> TranslateData:
    """Read the pairs, note an ignored column, hold out sources (every reference of a held-out source goes
    with it; at most `held_out_max`, when given) or read --val-file, drop pairs longer than --max-len tokens,
    and build both vocabularies (a base checkpoint's when fine-tuning or resuming)."""
    found = read_pairs(opts.corpus, opts.encoding)
    if found.extra_columns:
        report(events.Log(f"{opts.corpus}: {found.extra_columns:,} lines have a third column or more (an "
                          f"attribution, as Tatoeba's exports have); only the first two are read"))
    fraction = opts.val_fraction
    if opts.val_file:
        held = read_pairs(opts.val_file, opts.encoding)
        train, val = PairSplit(found.sources, found.targets), PairSplit(held.sources, held.targets)
    else:
        units = held_out_units(found.sources)
        if held_out_max is not None and fraction * units > held_out_max:
            fraction = held_out_max / units
            noun = "lines" if one_to_many(found.sources) else "sources"
            report(events.Log(f"{opts.corpus}: {held_out_max:,} of {units:,} {noun} held out ({fraction:.1%}), "
                              f"enough to compare checkpoints; the rest trains (--val-fraction sets the share)"))
        train_rows, val_rows = split_pairs(found.sources, fraction, opts.seed)
        if one_to_many(found.sources) and len(val_rows):
            report(events.Log(f"{opts.corpus}: {len(found.sources):,} pairs from {len(set(found.sources)):,} "
                              f"sources (one-to-many): held-out pairs are drawn line by line"))
        every = PairSplit(found.sources, found.targets)
        train, val = every.rows(train_rows), every.rows(val_rows) if len(val_rows) else None
    if base:
        source_vocab, target_vocab = base.vocab, tokenizer_from_dict(base.data["translate"]["target_vocab"])
    else:
        source_vocab = texts_vocab(opts.source_tokens, train.sources, min_count=opts.min_count,
                                   max_vocab=opts.max_vocab)
        target_vocab = texts_vocab(opts.target_tokens, train.targets, min_count=opts.min_count,
                                   max_vocab=opts.max_vocab)
    train = train.encoded(source_vocab, target_vocab)
    kept = [i for i, (s, t) in enumerate(zip(train.source_ids, train.target_ids, strict=True))
            if len(s) <= opts.max_len and len(t) <= opts.max_len]
    if len(kept) < len(train.sources):
        report(events.Warning(f"{len(train.sources) - len(kept):,} of {len(train.sources):,} training pairs have a "
                              f"side longer than --max-len {opts.max_len} tokens and were left out"))
        train = train.rows(kept)
    if not train.sources:
        raise ConfigError(f"{opts.corpus}: no training pairs are left")
    val = val and val.encoded(source_vocab, target_vocab)
    return TranslateData(source_vocab, target_vocab, train, val, file_sha256(opts.corpus), fraction)


class TranslateTask(DocumentTask):
    """An encoder–decoder's run (`charlm.training.task.Task`); the best checkpoint has the lowest held-out
    loss per target token."""

    kind = "seq2seq"
    unit = "token"
    meta_key = "translate"
    refused = NOT_FOR_TRANSLATION

    def __init__(self, opts: TrainOptions, data: TranslateData, *, base=None, resume: bool = False, report=None):
        super().__init__(opts, data, base=base, resume=resume, report=report)
        held = 0 if data.val_docs is None else len(data.val_docs.sources)
        # The held-out pairs in a seeded random order: an evaluation scores the first `eval_pairs` of them.
        self.eval_order = np.random.default_rng(opts.seed).permutation(held)
        # A resumed run keeps the size its first session chose, so its evaluations go on comparing alike.
        self.saved_eval_pairs = base.data["translate"].get("eval_pairs") if resume and base else None
        self.eval_pairs = min(self.saved_eval_pairs or held, held)
        self.exact_seconds: float | None = None  # scoring every held-out pair, timed by start_validation
        val = data.val_docs
        # Each held-out source's references and its ids, for the exact-match share of every evaluation.
        self.references = references(val.sources, val.targets) if val else {}
        self.source_ids_of = dict(zip(val.sources, val.source_ids, strict=True)) if val else {}

    @classmethod
    def check_options(cls, opts: TrainOptions, explicit: frozenset) -> None:
        cls.refuse_given(opts, explicit)
        for name in ("source_tokens", "target_tokens"):
            if getattr(opts, name) not in (None, *KINDS):
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(KINDS)}")
        if opts.attention not in (None, *ATTENTIONS):
            raise ConfigError(f"--attention must be one of {', '.join(ATTENTIONS)}, got {opts.attention!r}")

    @classmethod
    def open(cls, opts: TrainOptions, run_dir, *, explicit: frozenset, report) -> "TranslateTask":
        opts, base, resume = starting_point(opts, run_dir, explicit=explicit, report=report)
        if base is not None and base.config.kind != "seq2seq":
            raise ConfigError(f"{base.path} is not a --task translate model; start a new run")
        if base is None:
            opts = replace(opts, source_tokens=opts.source_tokens or opts.tokens,
                           target_tokens=opts.target_tokens or opts.tokens)
        else:  # the vocabularies come with the checkpoint, and so does what their tokens are
            saved = base.data.get("translate", {})
            opts = replace(opts, source_tokens=saved.get("source_tokens", base.vocab.kind),
                           target_tokens=saved.get("target_tokens", base.target_vocab.kind))
        # A resumed run's options hold the share its first session held out.
        held_out_max = None if "val_fraction" in explicit or resume else HELD_OUT_MAX
        data = load_translate_data(opts, base, report, held_out_max=held_out_max)
        opts = replace(opts, val_fraction=data.val_fraction)
        opts, chosen = translate_defaults(opts, data, explicit)
        opts, recipe = with_recipe(opts, None)
        if resume:
            check_same_corpus(base, data.sha256, opts, run_dir)
        if recipe is not None:
            report(replace(recipe, reasons=(*recipe.reasons, *chosen)))
        return cls(opts, data, base=base, resume=resume, report=report)

    @staticmethod
    def load_data(opts: TrainOptions, base, report) -> TranslateData:
        return load_translate_data(opts, base, report)

    def model_config(self):
        return self.opts.model_config(self.data.source_vocab.size, target_vocab=self.data.target_vocab.size,
                                      attention=self.opts.attention)

    def documents(self):
        train = self.data.train_docs
        inputs, outputs = train.source_ids, train.target_ids

        def targets(rows, lengths):  # source lengths (B,), targets (T, B), target lengths (B,)
            tgt, tgt_lengths = pad_documents([outputs[i] for i in rows])
            return lengths, tgt, tgt_lengths

        order_by = np.array([len(a) + len(b) for a, b in zip(inputs, outputs, strict=True)])
        return inputs, order_by, targets

    def loss_and_grads(self, params, cfg, x, y, state, *, rng, workspace):
        src_lengths, tgt, tgt_lengths = y
        loss, grads = seq2seq.loss_and_grads(params, cfg, x, src_lengths, tgt, tgt_lengths, rng=rng,
                                             workspace=workspace)
        return loss, grads, state

    def translator(self, params, cfg) -> Translator:
        return Translator(params, cfg, self.data.source_vocab, self.data.target_vocab)

    # ------------------------------------------------------------------ evaluation
    def start_validation(self, params, cfg, clock) -> None:
        """Price the loss over every held-out pair from a probe of PROBE_PAIRS; the first time, within a time
        budget, size the evaluations by it."""
        first = self.exact_seconds is None
        translator, probe = self.translator(params, cfg), self.eval_order[:PROBE_PAIRS]
        if first:
            self._held_out_loss(translator, probe[:WARM_UP_PAIRS])
        start = clock()
        self._held_out_loss(translator, probe)
        self.exact_seconds = (clock() - start) * len(self.eval_order) / len(probe)
        if first and self._sized_by_time() and not self.saved_eval_pairs:
            self.eval_pairs = self._affordable(len(self.eval_order), self.exact_seconds)

    def first_evaluation_took(self, seconds: float) -> None:
        """Size the later evaluations by the first one's measured cost (its decoding included)."""
        if self._sized_by_time() and not self.saved_eval_pairs:
            self.eval_pairs = self._affordable(self.eval_pairs, seconds)

    def _affordable(self, pairs: int, seconds: float) -> int:
        """The held-out pairs an evaluation scores in 1 / EVAL_SPACING of the interval between evaluations,
        given that `pairs` took `seconds`: at least MIN_EVAL_PAIRS and at most all of them."""
        return budget.resized_evaluation(pairs, seconds, eval_chars=len(self.eval_order),
                                         time_budget=self.opts.time_budget, least=MIN_EVAL_PAIRS)

    def _sized_by_time(self) -> bool:
        """Evaluations are sized only within a time budget, evaluating by the clock: a run by --steps or
        --eval-every scores every held-out pair at each evaluation, the same whatever the machine's speed."""
        return bool(self.opts.time_budget) and not self.opts.eval_every

    def _held_out_loss(self, translator: Translator, rows) -> float:
        val = self.data.val_docs
        rows = np.sort(rows)  # in the file's order, so scoring every pair reads them as written
        return held_out_loss(translator, [val.source_ids[i] for i in rows], [val.target_ids[i] for i in rows])

    def evaluate(self, params, cfg) -> Scores:
        """Loss per target token over the first `eval_pairs` held-out pairs of the random order (all of them
        unless sized by time), and the greedy exact-match share of their first EXACT_SOURCES sources."""
        val, translator = self.data.val_docs, self.translator(params, cfg)
        rows = self.eval_order[:self.eval_pairs]
        loss = self._held_out_loss(translator, rows)
        sources = list(dict.fromkeys(val.sources[i] for i in rows))[:EXACT_SOURCES]
        outputs = generate(translator, [self.source_ids_of[s] for s in sources])
        exact = np.mean([found[0].text in self.references[s] for s, found in zip(sources, outputs, strict=True)])
        return Scores(loss, accuracy=float(exact))

    def reserved_seconds(self, eval_seconds: float | None, slowdown: float = 1.0) -> float:
        if self.exact_seconds is None:
            return super().reserved_seconds(eval_seconds, slowdown)
        held = len(self.eval_order)
        guess = self.exact_seconds * self.eval_pairs / held if eval_seconds is None else eval_seconds
        return budget.reserved_seconds(self.opts.time_budget, exact_seconds=self.exact_seconds, eval_seconds=guess,
                                       val_ids=held, eval_chars=self.eval_pairs, slowdown=slowdown)

    def final_score(self, best_ckpt, best: Scores, *, train_seconds: float, report, slowdown: float = 1.0,
                    seconds_left: float | None = None) -> tuple[Scores, str]:
        """The best checkpoint's loss over every held-out pair: its evaluation's when evaluations scored them
        all, else scored now when that fits the budget (budget.final_is_exact), else its evaluation's on the
        sample ("sample")."""
        held = len(self.eval_order)
        if self.eval_pairs >= held:
            return best, "exact"
        exact = None if self.exact_seconds is None else self.exact_seconds * slowdown
        if budget.final_is_exact(exact, time_budget=self.opts.time_budget, train_seconds=train_seconds,
                                 seconds_left=seconds_left):
            loss = self._held_out_loss(self.translator(best_ckpt.params, best_ckpt.config), self.eval_order)
            return replace(best, loss=loss), "exact"
        report(events.Log(f"scoring all {held:,} held-out pairs would take about {exact:.0f}s; the best "
                          f"checkpoint's figure is its evaluation's, on {self.eval_pairs:,} of them (charlm "
                          f"evaluate RUN FILE scores a file whole)"))
        return best, "sample"

    def data_meta(self) -> dict:
        o = self.opts
        return {**self.common_meta(sum(len(s) for s in self.data.train_docs.sources), "lines"),
                "translate": {"task": "translate", "source_tokens": o.source_tokens, "target_tokens": o.target_tokens,
                              "target_vocab": self.data.target_vocab.to_dict(), "max_len": o.max_len,
                              "eval_pairs": self.eval_pairs}}

    def sample(self, params, cfg, step: int) -> str:
        part = self.data.val_docs or self.data.train_docs
        i = step % len(part.sources)
        translator = self.translator(params, cfg)
        [[found]] = generate(translator, [source_ids(translator, part.sources[i])])
        return f"{part.sources[i]!r} -> {found.text!r} (true: {part.targets[i]!r})"


def held_out_loss(translator: Translator, src: list, tgt: list) -> float:
    """Teacher-forced nats per target token (each `<EOS>` counted) over the pairs of ids (`encode_pairs`), in
    batches of similar lengths."""
    order = sorted(range(len(src)), key=lambda i: (len(src[i]), len(tgt[i])))
    total, tokens = 0.0, 0
    for start in range(0, len(order), EVAL_BATCH):
        rows = order[start:start + EVAL_BATCH]
        x, x_lengths = pad_documents([src[i] for i in rows])
        y, y_lengths = pad_documents([tgt[i] for i in rows])
        total += float(seq2seq.sequence_nll(translator.params, translator.cfg, x, x_lengths, y, y_lengths).sum())
        tokens += int(y_lengths.sum())
    return total / tokens


def translate_defaults(opts: TrainOptions, data: TranslateData, explicit: frozenset
                       ) -> tuple[TrainOptions, tuple[str, ...]]:
    """The encoder–decoder's own choices the user left open (attention, both directions, the input
    embedding), and one reason line for each choice made."""
    reasons = []
    if opts.attention is None:
        opts = replace(opts, attention=TRANSLATE_ATTENTION)
        reasons.append(f"--attention {TRANSLATE_ATTENTION}: the form that measured best on grapheme-to-phoneme "
                       f"(docs/recipe.md)")
    if "bidirectional" not in explicit and not opts.resume and not opts.init_from:
        opts = replace(opts, bidirectional=True)
        reasons.append("--bidirectional: the encoder reads each source both ways, so every state the attention "
                       "reads knows the whole source")
    if opts.embed is None:
        largest = max(data.source_vocab.size, data.target_vocab.size)
        embed = 0 if largest <= TRANSLATE_ONE_HOT_MAX else TRANSLATE_EMBED
        opts = replace(opts, embed=embed)
        reasons.append(f"--embed {embed}: " + (f"one-hot rows for vocabularies this small ({largest} tokens)"
                                               if embed == 0 else f"a learned table for {largest:,} tokens"))
    return opts, tuple(reasons)
