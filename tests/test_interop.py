"""newsrag inside the ecosystem: a llama-index app uses it three ways (retriever, query engine, the Chroma
collection through ChromaVectorStore), and the `openai` client talks to `rag serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SEED_ID, use_settings
from helpers import free_port, wait_http

QUESTION = "Wie viele russische Delegationen besuchten Nordkorea?"


def test_retriever_in_a_llama_index_pipeline(corpus):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    from rag.llamaindex import NewsragRetriever

    retriever = NewsragRetriever(collection="news", k=3)
    nodes = retriever.retrieve("When will Putin visit North Korea?")
    top = nodes[0].node
    assert top.metadata["doc_id"] == SEED_ID and top.ref_doc_id == SEED_ID
    assert top.metadata["title"] and top.metadata["lang"] == "de"
    # the span points into the (cleaned) article text, as newsrag's citations do
    assert top.end_char_idx - top.start_char_idx == len(top.get_content()) > 0
    # a llama-index engine around it, with its own synthesizer (here with llama-index's MockLLM)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=8))
    response = engine.query("Wann traf Lawrow Choe Son-hui?")
    assert response.source_nodes[0].node.metadata["doc_id"] == SEED_ID


@pytest.mark.slow
def test_retriever_with_newsrag_local_llm_in_a_llama_index_engine(corpus):
    """A plain llama-index RetrieverQueryEngine: newsrag's retriever, newsrag's local LLM as a CustomLLM."""
    from llama_index.core.query_engine import RetrieverQueryEngine

    from rag.llamaindex import NewsragLLM, NewsragRetriever

    engine = RetrieverQueryEngine.from_args(NewsragRetriever(collection="news", k=2), llm=NewsragLLM(), streaming=True)
    response = engine.query("When did Lavrov meet Choe Son-hui in Moscow? Answer in one sentence.")
    text = "".join(response.response_gen)
    assert "16" in text and response.source_nodes[0].node.ref_doc_id == SEED_ID


def test_query_engine_gives_the_verified_answer_and_streams(corpus):
    from rag.llamaindex import NewsragQueryEngine

    response = NewsragQueryEngine(collection="news", llm="extractive").query(QUESTION)
    assert "[1]" in response.response and response.metadata["answered"]
    cited = response.source_nodes[0].node
    assert cited.metadata["doc_id"] == SEED_ID and cited.metadata["verified"]
    assert cited.metadata["quote"] in response.response
    streaming = NewsragQueryEngine(collection="news", llm="extractive", streaming=True).query(QUESTION)
    text = "".join(streaming.response_gen)
    assert "[1]" in text and streaming.source_nodes and streaming.metadata["answered"]


def test_chroma_vector_store_opens_a_newsrag_collection(data_dir, seed_copy):
    from llama_index.core import Settings as LISettings
    from llama_index.core import VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from ingest.pipeline import ingest
    from rag.models import embedder_dir
    from rag.store import Store

    assert ingest([seed_copy], collection="interop").chunks_written >= 3
    assert next(r for r in Store().collections() if r["name"] == "interop")["llama_index_fields"]
    collection = Store().client.get_collection("interop")  # the same embedded Chroma a user's app opens
    store = ChromaVectorStore(chroma_collection=collection)
    LISettings.llm = None
    embed = HuggingFaceEmbedding(model_name=str(embedder_dir(name="multilingual-e5-small")), query_instruction="query: ",
                                 text_instruction="passage: ", device="cpu")
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    nodes = index.as_retriever(similarity_top_k=2).retrieve("When will Putin visit North Korea?")
    assert nodes and nodes[0].node.ref_doc_id == SEED_ID and nodes[0].node.get_content().strip()
    before = collection.count()
    store.delete(ref_doc_id=SEED_ID)
    assert before > 0 and collection.count() == 0


@pytest.fixture
def rag_serve(corpus):
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(corpus), "RAG_LLM_PROVIDER": "extractive"}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 120)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_openai_client_gets_a_streamed_answer_with_citations(rag_serve):
    import httpx
    import openai

    client = openai.OpenAI(base_url=f"{rag_serve}/v1", api_key="unused")
    assert "news" in [m.id for m in client.models.list()]
    full = client.chat.completions.create(model="news", messages=[{"role": "user", "content": QUESTION}])
    assert "[1]" in full.choices[0].message.content and "Sources:" in full.choices[0].message.content
    assert full.model_extra["citations"][0]["doc_id"] == SEED_ID
    pieces, extra = [], {}
    for event in client.chat.completions.create(model="news", messages=[{"role": "user", "content": QUESTION}],
                                                stream=True):
        if event.choices and event.choices[0].delta.content:
            pieces.append(event.choices[0].delta.content)
        extra.update({k: v for k, v in (event.model_extra or {}).items() if k == "citations"})
    assert len(pieces) >= 2 and "[1]" in "".join(pieces) and extra["citations"][0]["doc_id"] == SEED_ID
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="news", messages=[{"role": "user", "content": "  "}])
    spec = httpx.get(f"{rag_serve}/openapi.json").json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert "schema" in op["responses"]["200"]["content"]["application/json"], path


def test_chroma_down_is_503_and_health_says_so(tmp_path):
    from fastapi.testclient import TestClient

    from rag.api import create_app

    saved = dict(os.environ)
    use_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=str(free_port()))
    try:
        client = TestClient(create_app())
        assert client.get("/healthz").status_code == 503
        r = client.post("/ask", json={"question": "Was?", "collection": "news"})
        assert r.status_code == 503 and "Chroma" in r.json()["error"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        use_settings(Path(saved.get("RAG_DATA_DIR", "data")))
