"""DESIGN.md is the map of the code: every module path and dotted name it quotes must exist, and every call it
quotes as `charlm.module.function(a, b, *, c)` must have exactly those parameters, so the map cannot drift."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "DESIGN.md").read_text(encoding="utf-8")
PROSE = re.sub(r"^```.*?^```", "", DESIGN, flags=re.S | re.M)  # fenced blocks hold diagrams, not names
SPANS = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", PROSE)]  # a span may wrap a line
DOTTED = re.compile(r"^(charlm(?:\.\w+)+)(\(.*\))?")
PATHS = sorted({s for s in SPANS if re.fullmatch(r"charlm/[\w/]+\.py|charlm/[\w/]+/", s)})
NAMES = sorted({m.group(1) for s in SPANS if (m := DOTTED.match(s))})
CALLS = sorted({(m.group(1), m.group(2)) for s in SPANS if (m := DOTTED.match(s)) and m.group(2)})


def resolve(dotted: str):
    """Import the longest module prefix of `dotted`, then follow attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def quoted_parameters(arglist: str) -> list[str]:
    """'(a, b: int = 1, *, c)' -> ['a', 'b', '*', 'c'] (annotations and defaults dropped)."""
    inner = arglist.strip()[1:-1].strip()
    if not inner:
        return []
    names = []
    for part in inner.split(","):
        part = part.strip().split("=")[0].split(":")[0].strip()
        names.append(part)
    return names


def actual_parameters(fn) -> list[str]:
    names, star_done = [], False
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star_done:
            names.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
            names.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            names.append("**" + p.name)
        else:
            names.append(p.name)
    return names


def test_the_map_quotes_enough_to_be_checked():
    assert len(PATHS) >= 20 and len(NAMES) >= 40 and len(CALLS) >= 20


@pytest.mark.parametrize("path", PATHS)
def test_every_module_path_exists(path):
    assert (ROOT / path).exists(), f"DESIGN.md names {path}, which does not exist"


@pytest.mark.parametrize("dotted", NAMES)
def test_every_dotted_name_imports(dotted):
    resolve(dotted)


@pytest.mark.parametrize(("dotted", "arglist"), CALLS)
def test_every_quoted_signature_matches_the_code(dotted, arglist):
    fn = resolve(dotted)
    target = fn.__init__ if inspect.isclass(fn) and "__init__" in vars(fn) else fn
    assert quoted_parameters(arglist) == actual_parameters(target), f"DESIGN.md: {dotted}{arglist}"


def test_every_package_module_is_on_the_map():
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "charlm").rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if m not in PATHS and m != "charlm/__main__.py"]
    assert not missing, f"modules DESIGN.md does not describe: {missing}"
