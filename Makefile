# Two commands from nothing: `make chat` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
RAG    := $(VENV)/bin/rag

.PHONY: setup chat test test-fast lint bench models llama-variants clean-index FORCE

setup: $(STAMP) llama-variants models

# llama.cpp is compiled for a fixed, portable x86-64 level (AVX2/FMA/F16C/BMI2), never for the build
# machine's own CPU: a native build on a CPU that advertises AMX or AVX-512 emits instructions that can
# fault (SIGILL) on another machine, or even on the same VM (issue 11). Opt into a native build with
#   make setup LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON"
# (on aarch64 or a CPU without AVX2 use that, or "-DGGML_NATIVE=OFF" for a plain build).
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_FLAGS_FILE := $(VENV)/.llama-cmake-args
# The wheel is built into a folder named by a hash of the flags, never into pip's wheel cache, so a wheel
# built with other flags (a native one from an older setup) is never reused.
LLAMA_WHEELS := $(HOME)/.cache/newsrag/llama-wheels/$(shell printf '%s %s' '$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
# The source, downloaded once for the wheel and for the CPU variants below.
LLAMA_SDIST_DIR := $(HOME)/.cache/newsrag/llama-sdist
LLAMA_SDIST := $(LLAMA_SDIST_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools

# The flags file changes only when the flags do, so an existing venv with another build is rebuilt once.
$(LLAMA_FLAGS_FILE): FORCE | $(PY)
	@printf '%s %s\n' '$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' | cmp -s - $@ || \
		printf '%s %s\n' '$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' > $@

# Reinstall only when pyproject.toml or the llama.cpp flags change. The CPU build of torch goes in first
# (a plain `torch` requirement would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml $(LLAMA_FLAGS_FILE) | $(PY)
	$(PIP) install --quiet "torch==2.13.0+cpu" || $(PIP) install --quiet torch==2.13.0 || $(PIP) install --quiet torch
	@test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl 2>/dev/null)" || { \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (portable CPU flags; ~5 min on 2 cores, once)"; \
		{ test -f $(LLAMA_SDIST) || $(PIP) download --quiet --no-deps --no-binary :all: -d $(LLAMA_SDIST_DIR) \
			"llama-cpp-python==$(LLAMA_CPP_VERSION)"; } && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --quiet --no-cache-dir --no-deps -w $(LLAMA_WHEELS) $(LLAMA_SDIST); }
	$(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(PIP) install --quiet -e ".[dev,bench]"
	cp $(LLAMA_FLAGS_FILE) $(STAMP)

# Beside the portable build: llama.cpp's CPU backend compiled with AVX-512 (never AMX), which the LLM child
# loads only on a CPU that has every instruction it uses (rag/cpu_variants.py; ~30 s, once; prompt
# evaluation 1.4x faster on such a CPU). With a native build there is nothing to add: old variants go.
llama-variants: $(STAMP)
	@$(PY) -m rag.cpu_variants build --version $(LLAMA_CPP_VERSION) --cache $(LLAMA_SDIST_DIR) \
		$(if $(findstring GGML_NATIVE=ON,$(LLAMA_CMAKE_ARGS)),--remove)

models: $(STAMP)
	$(RAG) models fetch --llm all

# The seed article is part of the repository, so a bare clone's chat has it.
SEED := tests/data/seed

# `rag doctor` exits 3 when only the local LLM cannot run here: the chat then starts with quoted
# (extractive) answers and says so, instead of failing on every question.
chat: setup
	$(RAG) ingest --demo small $(SEED) --if-empty
	@$(RAG) doctor; rc=$$?; \
	if [ $$rc -eq 3 ]; then \
		echo "newsrag: the local LLM does not work on this machine (see above); the chat answers with quoted sentences (RAG_LLM_PROVIDER=extractive)"; \
		RAG_LLM_PROVIDER=extractive $(RAG) chat; \
	elif [ $$rc -ne 0 ]; then exit $$rc; \
	else $(RAG) chat; fi

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
