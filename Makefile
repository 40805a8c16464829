# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo captures lint bench bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	MPLBACKEND=agg $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pktkit tests bench notebooks
	$(BIN)/lint-imports --no-cache

captures: $(STAMP)
	$(BIN)/python -m pktkit.craft.reference captures

demo: captures
	$(BIN)/pktkit analyze --out out/demo

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/analyze.py

# issue 13: --workers 1 against --workers 2 on 32-node sets of 10M and 20M frames (not in `test`)
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
