"""The README's five-minute tour, run as written: every line of its code blocks, read from README.md itself, in a
fresh directory with real `charlm` processes and each `--time` shrunk to a few seconds. Every line must exit 0,
and what the README says each command shows is checked where a barely trained model shows it too (the shape
of the output, never its quality)."""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import charlm_env

from charlm.text.catalogue import TINYSHAKESPEARE_SHA256, URL_ENV

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_HEADING = "## A five-minute tour"
SHORT_TIME = "5s"
# Lines that cannot run unattended, and what stands in for them: the venv's charlm is put on PATH rather than
# activated, the test's own temporary directory is the scratch directory, and the explorer serves until Ctrl-C.
UNATTENDED = (re.compile(r"^source \S*activate\b"), re.compile(r"^mkdir -p ~\S*( && cd ~\S*)?(\s+#.*)?$"),
              re.compile(r"^charlm explore\b"))
# The commands a tour must show at least, so that a README losing its tour cannot pass by running nothing.
CORE_COMMANDS = {"corpus", "train", "sample", "perplexity", "score"}


def tour_lines(readme: str) -> list[str]:
    """The shell lines of the ```bash blocks of the tour's section, continuation lines joined, comments and
    blank lines left out."""
    _, found, rest = readme.partition(TOUR_HEADING)
    assert found, f"README.md has no {TOUR_HEADING!r} section"
    section = rest.split("\n## ", 1)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", "").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def runnable(line: str) -> bool:
    if any(pattern.search(line) for pattern in UNATTENDED):
        return False
    # `charlm plot` needs the plot extra, as the README says; where it is missing the line is left out.
    return not (line.startswith("charlm plot") and importlib.util.find_spec("matplotlib") is None)


def option(words: list[str], *names: str) -> str | None:
    """The value given to the first of `names` in a command's words, or None."""
    for i, word in enumerate(words[:-1]):
        if word in names:
            return words[i + 1]
    return None


def positionals(words: list[str]) -> list[str]:
    """The words of `charlm COMMAND ...` after the checkpoint that are not options or their values (enough for
    the commands the tour uses: every option there takes one value or is a known flag)."""
    flags = {"--bidirectional", "--balance", "--json", "-q", "--quiet"}
    values, skip = [], False
    for word in words[3:]:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word not in flags
        else:
            values.append(word)
    return values


def check_what_the_readme_promises(words: list[str], done: subprocess.CompletedProcess, scratch: Path) -> None:
    """What the README says `charlm WORDS...` shows, as far as it holds for a model trained a few seconds."""
    command = words[1]
    out, err = done.stdout, done.stderr
    if words[1:3] == ["corpus", "get"]:
        target = option(words, "-o", "--output")
        assert re.search(rf"^{re.escape(target)}: [\d,]+ bytes, sha256 [0-9a-f]{{64}}$", out, re.MULTILINE), out
        if words[3] == "tinyshakespeare":
            assert TINYSHAKESPEARE_SHA256 in out, out
    elif command == "train":
        assert "recipe:" in err and "done:" in err, err
        assert (scratch / option(words, "--out", "-o") / "best.safetensors").is_file()
    elif command == "sample":
        prime = option(words, "--prime", "-p") or ""
        samples = int(option(words, "-n", "--num-samples") or 1)
        assert out.startswith(prime) and out.count(prime) >= samples, out
        if option(words, "--seed") is None:
            assert re.search(r"^seed \d+$", err, re.MULTILINE), err
    elif command == "perplexity":
        for column in ("nats/char", "bits/char", "perplexity"):
            assert column in out, out
        for name in positionals(words):
            assert re.search(rf"^ {re.escape(name)} │.*│ +\d+\.\d+ │ +\d+\.\d+ │ +\d+\.\d+ $", out, re.MULTILINE), out
    elif command == "score":
        candidates = positionals(words)
        for text in candidates:
            assert text in out, out
        ranks = re.findall(r"^\s*(\d+) │", out, re.MULTILINE)
        assert ranks == [str(rank) for rank in range(1, len(candidates) + 1)], out
    elif command == "info":
        assert re.search(r"integrity\s+verified", out), out
    elif command == "plot":
        picture = scratch / option(words, "-o", "--output")
        assert picture.is_file() and picture.stat().st_size > 0, err
    elif command == "tag":
        for text in positionals(words):  # a truecaser gives back the line itself, only its case restored
            assert text.lower() in out.lower(), out
    elif command == "classify":  # per text: label, probability, then each runner-up and its probability, text
        top_k, texts, lines = int(option(words, "--top-k") or 1), positionals(words), out.splitlines()
        assert len(lines) == len(texts), out
        for text, line in zip(texts, lines, strict=True):
            fields = line.split("\t")
            assert len(fields) == 2 * top_k + 1 and fields[-1] == text, line
            assert all(0 <= float(p) <= 1 for p in fields[1:-1:2]), line
    elif command == "evaluate":  # a tagger's or a classifier's closing line
        assert re.search(r"^[\w+]+: .*F1 \d\.\d+", out, re.MULTILINE), out


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    lines = tour_lines(README.read_text(encoding="utf-8"))
    scratch = tmp_path / "charlm-tour"
    scratch.mkdir()
    bin_dir = tmp_path / "bin"  # `charlm` on PATH: this interpreter's charlm, as helpers.CHARLM runs it
    bin_dir.mkdir()
    shim = bin_dir / "charlm"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m charlm "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = charlm_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.pop(URL_ENV, None)  # the tour is offline: a mirror set in this environment must not be used

    ran = set()
    for line in filter(runnable, lines):
        line = re.sub(r"--time[ =]\S+", f"--time {SHORT_TIME}", line)
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        words = shlex.split(line, comments=True)
        if words[0] == "charlm":
            ran.add(words[1])
            check_what_the_readme_promises(words, done, scratch)
    assert CORE_COMMANDS <= ran, f"the tour no longer shows {sorted(CORE_COMMANDS - ran)}"
