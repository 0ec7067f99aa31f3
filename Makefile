# Two entry points that work on a fresh machine: `make demo` and `make test`.
# pip (not uv/poetry) so torch 2.14.1 comes from this machine's local files, not a CUDA download.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean landmarks-env

TEST_STAMP := $(VENV)/.installed-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train]'
	touch $(STAMP)

# tests and benchmarks also need pytest and the ONNX tools (the demo does not)
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/biohash demo

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests

bench: $(TEST_STAMP)
	$(BIN)/python bench/synthetic_throughput.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/synthetic_realism.py

# optional: MediaPipe hand landmarks (numpy < 2) in .venv-landmarks; use .venv-landmarks/bin/biohash roi ...
landmarks-env: .venv-landmarks/.installed

.venv-landmarks/.installed: requirements-landmarks.txt pyproject.toml
	$(PYTHON) -m venv .venv-landmarks
	.venv-landmarks/bin/pip install -q -r requirements-landmarks.txt
	.venv-landmarks/bin/pip install -q --no-deps -e .
	touch $@

clean:
	rm -rf $(VENV) .venv-landmarks runs bench/results
