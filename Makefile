# Two commands from nothing: `make chat` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
RAG    := $(VENV)/bin/rag

.PHONY: setup chat test test-fast lint bench models clean-index

setup: $(STAMP) models

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools

# Reinstall only when pyproject.toml changes. The CPU build of torch goes in first
# (a plain `torch` requirement would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0+cpu" || $(PIP) install --quiet torch
	@echo "installing newsrag (llama-cpp-python compiles from source the first time: ~5 min on 2 cores)"
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

models: $(STAMP)
	$(RAG) models fetch --llm all

SEED := $(wildcard ../shared/corpus/seed)

chat: setup
	$(RAG) ingest --demo small $(SEED) --if-empty
	$(RAG) chat

# Debian's chromium drives the browser tests (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

test: setup browser
	$(VENV)/bin/ruff check rag ingest ui tests bench
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check rag ingest ui tests bench
	$(VENV)/bin/ruff format --check rag ingest ui tests bench

bench: setup
	$(PY) -m bench.run

clean-index:
	rm -rf data/chroma data/keyword
