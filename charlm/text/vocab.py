"""What every vocabulary shares, whatever its tokens: the special ids, the tokenizer kinds, the document-end
marker and the id dtype. The character vocabulary (`charlm.text.tokenizer`), the word vocabulary
(`charlm.text.words`) and the symbol vocabulary (`charlm.text.symbols`) all stand on this module."""

import numpy as np

EOS = 0
UNK = 1
SPECIALS = ("<EOS>", "<UNK>")
KINDS = ("char", "word", "symbols")
# Marks the end of a document inside normalised text (charlm.text.corpus). A lone surrogate cannot come out of
# a strict decoder, so it never collides with a real character; it becomes `<EOS>` when encoded.
DOC_END = "\ud800"


def id_dtype_for(size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids 0..size-1."""
    return np.dtype(np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.uint32)


def codepoints(text: str) -> np.ndarray:
    """Code points of `text` as a uint32 array of shape (len(text),).

    `surrogatepass` lets a lone surrogate through as its code point instead of failing.
    """
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
