"""Shared fixtures: real Chroma, the real packaged embedder, isolated data directories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
# The seed article travels with the repository (a bare clone has no ../shared beside it).
SEED_DIR = DATA / "seed"
SEED_FILE = next(SEED_DIR.glob("*.txt"))
SEED_ID = SEED_FILE.name
SEED_TITLE = "Russland und Nordkorea verstärken ihre Beziehungen"
# Most tests embed with e5-small (the calibrated scorer; 2-3x faster ingest on 2 cores keeps the suite's
# time down); tests/test_embedders.py exercises EmbeddingGemma, the default retrieval embedder, end to end.
os.environ.setdefault("RAG_EMBED_MODEL", "multilingual-e5-small")
# In fp32, so each test ingest embeds a chunk twice (e5 fp32 to retrieve, e5 int8 for the stored scorer
# vectors). int8 retrieval, one pass, cut the suite by ~10 minutes on a 2-core Zen 3, but with int8 vectors
# Chroma's HNSW search under a language filter gave the same query different chunks in two processes on one
# stored collection, and tests/test_answer_e2e.py's exact-vs-HNSW comparison failed 5 runs of 8
# (bench/RESULTS.md, stop 32).


def use_settings(data_dir: Path, **env: str) -> None:
    """Point newsrag at data_dir (and more RAG_* values) for the current process."""
    from rag.chroma_client import forget_clients
    from rag.settings import reset_settings

    os.environ["RAG_DATA_DIR"] = str(data_dir)
    for key, value in env.items():
        os.environ[f"RAG_{key.upper()}"] = value
    reset_settings()
    forget_clients()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    saved = dict(os.environ)
    use_settings(tmp_path / "data")
    yield tmp_path / "data"
    os.environ.clear()
    os.environ.update(saved)
    from rag.chroma_client import forget_clients
    from rag.settings import reset_settings

    reset_settings()
    forget_clients()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed article plus the 100-article demo corpus, ingested once into collection 'news'."""
    from ingest.pipeline import ingest
    from rag.provision import demo_corpus

    base = tmp_path_factory.mktemp("corpus")
    saved = dict(os.environ)
    use_settings(base / "data")
    report = ingest([SEED_DIR, demo_corpus("small")], collection="news")
    assert not report.failed, report.failed
    assert len(report.added) == 101
    os.environ.clear()
    os.environ.update(saved)
    return base / "data"


@pytest.fixture
def corpus(corpus_dir: Path) -> Iterator[Path]:
    saved = dict(os.environ)
    use_settings(corpus_dir)
    yield corpus_dir
    os.environ.clear()
    os.environ.update(saved)
    from rag.settings import reset_settings

    reset_settings()


@pytest.fixture
def seed_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    shutil.copy(SEED_FILE, folder / SEED_FILE.name)
    return folder
