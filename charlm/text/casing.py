"""Lowercasing that keeps a text's length, character for character (what truecasing inverts)."""


def lower_char(c: str) -> str:
    """c lowercased when that stays one character (so a text keeps its length), else c itself."""
    low = c.lower()
    return low if len(low) == 1 else c


def lowercase(text: str) -> str:
    return "".join(lower_char(c) for c in text)
