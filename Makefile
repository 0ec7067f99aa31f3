# Two entry points that work on a fresh machine: `make demo` and `make test`.
# pip (not uv/poetry) so torch 2.14.1 comes from this machine's local files, not a CUDA download.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/biohash demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/synthetic_throughput.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/synthetic_realism.py

clean:
	rm -rf $(VENV) runs bench/results
