# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
# torch is pinned in constraints.txt (2.13.0, the CPU build on this machine's disk); the
# package's own range in pyproject.toml stays open for users.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench,dev,video,dmc,export,wandb,playground]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/widerl train --preset demo --out runs/demo --force

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -m "not ray"
	$(BIN)/python -m pytest -m ray

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs
