"""Layering: the library below `charlm.cli` imports neither click nor rich (the explorer page and worker
processes use it without the command line)."""

import pkgutil
import subprocess
import sys

import charlm

LOADED = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n" \
         "print(','.join(m for m in ('click', 'rich') if m in sys.modules))"


def loaded_by(modules):
    """Which of click and rich a fresh interpreter holds after importing `modules`."""
    done = subprocess.run([sys.executable, "-c", LOADED, *modules], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_library_imports_neither_click_nor_rich():
    library = sorted(m.name for m in pkgutil.walk_packages(charlm.__path__, "charlm.")
                     if m.name.split(".")[1] not in ("cli", "__main__"))
    assert "charlm.tasks.lm.analysis" in library and "charlm.training.trainer" in library
    assert loaded_by(library) == ""


def test_the_check_sees_the_command_line_import_them():
    assert loaded_by(["charlm.cli.commands.perplexity"]) == "click,rich"


def test_the_launchers_environment_is_read_before_numpy_loads():
    """`limit_threads_per_rank` must run before the BLAS library starts its pool: the command line's entry module
    and the environment module it reads first load no numpy."""
    probe = ("import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
             "print('numpy' in sys.modules)")
    for module in ("charlm.parallel.environment", "charlm.cli.main"):
        done = subprocess.run([sys.executable, "-c", probe, module], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "False", module
