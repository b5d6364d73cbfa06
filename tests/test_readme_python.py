"""The README's "From Python" section, run as written: every ```python block of it, read from README.md itself,
executed in a fresh directory that holds what the blocks open (the tour's files and runs, trained tiny here), so
its examples cannot rot."""

import asyncio
import json
import re
from pathlib import Path

import pytest

import charlm
from charlm.text.catalogue import get_corpus

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## From Python"


def python_blocks(readme: str) -> list[str]:
    """The code of the ```python blocks of the section, in order."""
    _, found, rest = readme.partition(HEADING + "\n")
    assert found, f"README.md has no {HEADING!r} section"
    section = rest.split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


def code_lines(package: Path, label: str, n: int) -> list[str]:
    """`label<TAB>line` for the first `n` non-blank lines of a standard-library package's sources."""
    lines = []
    for source in sorted(package.glob("*.py")):
        lines += [f"{label}\t{line.strip()}" for line in source.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    return lines[:n]


def tour_files(root: Path) -> None:
    """The tour's files and runs the section opens, small: train.txt (a piece of tinyshakespeare), a language
    model of it in runs/shakespeare, a classifier of Python lines (asyncio or other) in runs/pkg."""
    get_corpus("tinyshakespeare", root / "shakespeare.txt")
    (root / "train.txt").write_text((root / "shakespeare.txt").read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    charlm.train(root / "train.txt", out=str(root / "runs" / "shakespeare"), hidden=32, layers=1, steps=30)
    lines = code_lines(Path(asyncio.__file__).parent, "asyncio", 150) + code_lines(Path(json.__file__).parent,
                                                                                  "other", 150)
    (root / "lines-train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    charlm.train(root / "lines-train.tsv", out=str(root / "runs" / "pkg"), task="classify", bidirectional=True,
                 hidden=16, layers=1, batch=16, steps=20)


@pytest.mark.slow
def test_the_from_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    code = "\n".join(blocks)
    assert blocks and "charlm.load(" in code and "charlm.train(" in code
    tour_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md, {HEADING[3:]} block {number}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert printed.count("\n") >= code.count("print(")  # every print ran
    for out in re.findall(r"""out=["']([^"']+)["']""", code):  # every run the blocks train is there to load
        assert (tmp_path / out / "best.safetensors").is_file(), out
