# charlm: every target works on a fresh clone; the venv is built on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser test test-fast demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,export,plot,mpi,g2p]'
	touch $(STAMP)

# The explorer's browser tests drive Debian's chromium through Playwright (no browser download from elsewhere).
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The inner loop: everything but the tests marked slow (charlm processes, MPI, the browser, long end-to-end runs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check charlm tests bench
	$(BIN)/lint-imports

# Offline: the corpus is built from this Python's standard library; about a minute of training.
demo: $(STAMP)
	$(BIN)/charlm corpus get python-stdlib -o corpora/python-stdlib.txt
	rm -rf runs/demo
	$(BIN)/charlm train corpora/python-stdlib.txt --out runs/demo --time 60s --hidden 256
	$(BIN)/charlm sample runs/demo -n 3 --length 300 --temperature 0.7 --seed 1

# One benchmark at a time, under the shared lock (the machines have 2 cores); the machine's description first.
bench: $(STAMP)
	@for b in bench/machine.py $(filter-out bench/machine.py bench/torch_seq2seq.py,$(wildcard bench/*.py)); do \
		echo "== $$b"; flock /tmp/charlm-bench.lock $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
