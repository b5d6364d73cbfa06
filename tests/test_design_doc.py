"""docs/design.md is the map of the code: every module path it names exists, and every module of the package
is named there. The layer rules it states are import-linter contracts (`.importlinter`), checked here too."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
NAMED = set(re.findall(r"`(charlm/[\w/]+\.py)`", DESIGN))
MODULES = {p.relative_to(ROOT).as_posix() for p in (ROOT / "charlm").rglob("*.py") if p.name != "__init__.py"}


def test_every_module_the_map_names_exists():
    assert NAMED, "docs/design.md names no modules"
    assert sorted(NAMED - MODULES) == []


def test_every_module_of_the_package_is_on_the_map():
    assert sorted(MODULES - NAMED) == []


def test_the_layer_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 kept, 0 broken" in done.stdout
