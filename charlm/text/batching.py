"""Held-out split and truncated-BPTT batching over an id stream; batches of whole documents for taggers.

The training stream is cut into B contiguous streams of equal length. Batch i of an epoch holds chunk i
(T steps) of every stream, so the hidden state left by one batch is the right start for the next.
Each epoch begins at a random offset in [0, T) drawn from (seed, epoch), which moves the chunk boundaries;
the position is therefore fully described by {"epoch": e, "batch": i}.
"""

import numpy as np

from charlm.errors import ConfigError
from charlm.text.tokenizer import EOS


def held_out_count(n: int, fraction: float) -> int:
    """How many of `n` items (tokens, documents, a label's examples, sources) a `fraction` holds out: the rounded
    share, at least one and never all (0 for a fraction of 0)."""
    return min(max(1, round(fraction * n)), n - 1) if fraction > 0 else 0


def held_out_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """bool (n,): a seeded random `held_out_count(n, fraction)` of n items, held out."""
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).choice(n, size=held_out_count(n, fraction), replace=False)] = True
    return held


def split_train_val(corpus, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a prepared corpus into training and validation id streams.

    `file` mode holds out the tail; `lines`/`paragraphs` hold out a seeded random set of whole documents
    (document order is kept within each part). Both parts start and end with `<EOS>`.
    Returns (train_ids, val_ids), 1-D arrays of `corpus.ids.dtype`; val_ids is None when val_fraction is 0.
    """
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    ids = corpus.ids
    if val_fraction == 0:
        return ids, None
    eos = np.array([EOS], dtype=ids.dtype)
    if corpus.eos_mode == "file":
        n_tokens = len(ids) - 2
        n_val = held_out_count(n_tokens, val_fraction)
        if n_val < 1:
            unit = "character(s)" if corpus.vocab.kind == "char" else "token(s)"
            raise ConfigError(f"the corpus has {n_tokens} {unit}, too few to hold out a validation part; "
                              f"use --val-fraction 0 or --val-file")
        cut = len(ids) - 1 - n_val  # ids[cut:-1] are the held-out tokens
        return np.concatenate((ids[:cut], eos)), np.concatenate((eos, ids[cut:]))

    doc_ends = np.flatnonzero(ids == EOS)  # doc k is ids[doc_ends[k] + 1 : doc_ends[k + 1]]
    n_docs = len(doc_ends) - 1
    if n_docs < 2:
        raise ConfigError(f"the corpus has {n_docs} document(s), too few to hold out whole documents; "
                          f"use --val-fraction 0, --val-file or --eos file")
    is_val_doc = held_out_mask(n_docs, val_fraction, seed)
    # Each document travels with the <EOS> that ends it; ids[0] is the shared leading <EOS>.
    is_val = np.repeat(is_val_doc, np.diff(doc_ends))
    body = ids[1:]
    return np.concatenate((eos, body[~is_val])), np.concatenate((eos, body[is_val]))


def check_cursor(cursor, batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, batch index) of a saved cursor {"epoch": e, "batch": i}, else ConfigError."""
    try:
        epoch, index = cursor["epoch"], cursor["batch"]
    except (TypeError, KeyError):
        raise ConfigError(f"batcher cursor must hold 'epoch' and 'batch', got {cursor!r}") from None
    valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (epoch, index))
    if not (valid and epoch >= 0 and 0 <= index < batches_per_epoch):
        raise ConfigError(f"batcher cursor {cursor!r} does not fit {batches_per_epoch} batches per epoch")
    return epoch, index


class Batcher:
    """Consecutive (T, B) chunks of B parallel streams, for truncated BPTT.

    - ids: 1-D id stream (any integer dtype; a memmap is read lazily)
    - batch: B, seq_len: T, seed: drives the per-epoch offsets
    Every epoch has the same `batches_per_epoch`; `new_epoch` is True right after the first batch of an
    epoch has been returned (the trainer resets its carried state then).
    """

    def __init__(self, ids, batch: int, seq_len: int, seed: int):
        if batch < 1 or seq_len < 1:
            raise ConfigError(f"--batch and --seq-len must be at least 1, got {batch} and {seq_len}")
        n_ids = len(ids)
        if n_ids < batch * seq_len + 1:
            raise ConfigError(_too_short_message(n_ids, batch, seq_len))
        self.ids = ids
        self.batch = batch
        self.seq_len = seq_len
        self.seed = seed
        # The offset never leaves fewer than B*T + 1 ids, so every epoch has the same number of batches.
        self.max_offset = min(seq_len - 1, n_ids - 1 - batch * seq_len)
        self.batches_per_epoch = (n_ids - 1 - self.max_offset) // batch // seq_len
        self.stream_len = self.batches_per_epoch * seq_len
        self.epoch = 0  # epoch of the next batch
        self.batch_index = 0  # index of the next batch within its epoch
        self.new_epoch = False
        self._offset = self.epoch_offset(0)

    @classmethod
    def restore(cls, ids, batch: int, seq_len: int, seed: int, cursor: dict) -> "Batcher":
        """A batcher positioned at `cursor` (from `.cursor`): its next batch is the one that was due."""
        batcher = cls(ids, batch, seq_len, seed)
        batcher.epoch, batcher.batch_index = check_cursor(cursor, batcher.batches_per_epoch)
        batcher._offset = batcher.epoch_offset(batcher.epoch)
        return batcher

    @property
    def cursor(self) -> dict:
        """Position of the next batch as plain JSON: {"epoch": e, "batch": i}."""
        return {"epoch": self.epoch, "batch": self.batch_index}

    def epoch_offset(self, epoch: int) -> int:
        """Where the streams of `epoch` start in `ids`: seeded by (seed, epoch), in [0, max_offset]."""
        return int(np.random.default_rng((self.seed, epoch)).integers(0, self.max_offset + 1))

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (x, y), each int32 of shape (T, B), C-contiguous; y[t, b] is the id after x[t, b].

        Column b of consecutive batches continues stream b: x[0, b] of batch i+1 follows x[T-1, b] of i.
        """
        T, B, L = self.seq_len, self.batch, self.stream_len
        window = self.ids[self._offset:self._offset + B * L + 1]
        inputs = window[:B * L].reshape(B, L)  # row b is stream b
        targets = window[1:].reshape(B, L)
        start = self.batch_index * T
        x = np.ascontiguousarray(inputs[:, start:start + T].T, dtype=np.int32)
        y = np.ascontiguousarray(targets[:, start:start + T].T, dtype=np.int32)
        self.new_epoch = self.batch_index == 0
        self.batch_index += 1
        if self.batch_index == self.batches_per_epoch:
            self.epoch += 1
            self.batch_index = 0
            self._offset = self.epoch_offset(self.epoch)
        return x, y


def _too_short_message(n_ids: int, batch: int, seq_len: int) -> str:
    fits = (n_ids - 1) // seq_len
    if fits >= 1:
        hint = f"the largest --batch that fits with --seq-len {seq_len} is {fits}"
    else:
        hint = f"even --batch 1 needs --seq-len {n_ids - 1} or less"
    return (f"the training stream has {n_ids} ids, too short for --batch {batch} x --seq-len {seq_len} "
            f"(needs {batch * seq_len + 1}); {hint}")


def pad_documents(inputs) -> tuple[np.ndarray, np.ndarray]:
    """Documents' ids (a list of B arrays (n_b,)) as x (T, B) int32 padded with `<EOS>` (T the longest n_b),
    and their lengths (B,) (an empty document counts 1: it reads one `<EOS>`)."""
    lengths = np.array([max(len(ids), 1) for ids in inputs])
    x = np.full((int(lengths.max()), len(inputs)), EOS, dtype=np.int32)
    for b, ids in enumerate(inputs):
        x[:len(ids), b] = ids
    return x, lengths


def batches_by_length(vocab, texts, batch: int):
    """Texts encoded and padded in groups of `batch` of similar length (little padding), for evaluation:
    yields (rows: the texts' indices, x (T, b), lengths (b,))."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        yield (rows, *pad_documents([vocab.encode(texts[i]) for i in rows]))


# Documents sorted by length together: this many batches' worth at a time (more: less padding, less mixing).
SORT_WINDOW_BATCHES = 50


class DocumentBatcher:
    """Batches of whole documents of similar lengths, for taggers and classifiers (no state carried).

    Each epoch shuffles the documents (seeded by (seed, epoch)), sorts every window of SORT_WINDOW_BATCHES
    batches by length, cuts the windows into batches of `batch` documents and shuffles the batches, so a
    batch pads little and the order still changes every epoch. The last batch of an epoch may be smaller.
    Position: {"epoch": e, "batch": i}, as `Batcher`'s; `new_epoch` as `Batcher`'s.
    """

    def __init__(self, lengths, batch: int, seed: int):
        lengths = np.asarray(lengths)
        if batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {batch}")
        if len(lengths) == 0:
            raise ConfigError("there are no training documents")
        self.lengths, self.batch, self.seed = lengths, batch, seed
        self.batches_per_epoch = -(-len(lengths) // batch)
        self.epoch, self.batch_index, self.new_epoch = 0, 0, False
        self._order = self.epoch_batches(0)

    @classmethod
    def restore(cls, lengths, batch: int, seed: int, cursor: dict) -> "DocumentBatcher":
        """A batcher positioned at `cursor` (from `.cursor`)."""
        batcher = cls(lengths, batch, seed)
        batcher.epoch, batcher.batch_index = check_cursor(cursor, batcher.batches_per_epoch)
        batcher._order = batcher.epoch_batches(batcher.epoch)
        return batcher

    @property
    def cursor(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch_index}

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The document indices of every batch of `epoch`, in the order they are served."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.lengths))
        window = SORT_WINDOW_BATCHES * self.batch
        for start in range(0, len(order), window):
            part = order[start:start + window]
            order[start:start + window] = part[np.argsort(self.lengths[part], kind="stable")]
        batches = [order[i:i + self.batch] for i in range(0, len(order), self.batch)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def next_batch(self) -> np.ndarray:
        """The indices of the next batch's documents, of shape (b,), b <= batch."""
        indices = self._order[self.batch_index]
        self.new_epoch = self.batch_index == 0
        self.batch_index += 1
        if self.batch_index == self.batches_per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
            self._order = self.epoch_batches(self.epoch)
        return indices
