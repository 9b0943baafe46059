"""Shared helpers for the benchmarks: an isolated data dir and the peers newsrag is compared with
(the naive llama-index pipeline, and one dense vector per whole article)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.datasets import CACHE

BENCH_DATA = CACHE / "data"
# The seed article as the tests keep it (not imported from tests/conftest.py: importing that sets the tests'
# RAG_EMBED_MODEL for the rest of the process).
SEED_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "seed"


def use_bench_settings() -> None:
    from rag.chroma_client import forget_clients
    from rag.settings import reset_settings

    os.environ["RAG_DATA_DIR"] = str(BENCH_DATA)
    reset_settings()
    forget_clients()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class NaivePipeline:
    """What a careful user would otherwise write: VectorStoreIndex.from_documents on Chroma, default splitter,
    the same embedder loaded through llama-index with the e5 prefixes it was trained with
    ("query: " / "passage: "), dense top-k. Everything else is llama-index's documented default."""

    def __init__(self, name: str) -> None:
        import chromadb
        from llama_index.core import Settings as LISettings
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        from rag.models import embedder_dir

        self.client = chromadb.PersistentClient(path=str(BENCH_DATA / "naive"))
        try:
            self.client.delete_collection(name)
        except Exception:
            pass
        self.collection = self.client.create_collection(name, embedding_function=None)
        LISettings.embed_model = HuggingFaceEmbedding(model_name=str(embedder_dir(name="multilingual-e5-small")),
                                                      device="cpu",
                                                      query_instruction="query: ", text_instruction="passage: ")
        LISettings.llm = None
        self.index = None

    def ingest(self, records: list[dict]) -> float:
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        docs = [Document(text=(r.get("title", "") + "\n" + r["text"]).strip(), metadata={"doc_id": r["id"]})
                for r in records]
        store = ChromaVectorStore(chroma_collection=self.collection)
        t = time.perf_counter()
        self.index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store))
        return time.perf_counter() - t

    def retrieve(self, query: str, k: int = 10) -> list[str]:
        nodes = self.index.as_retriever(similarity_top_k=k * 3).retrieve(query)
        out: list[str] = []
        for n in nodes:
            d = n.node.metadata.get("doc_id")
            if d not in out:
                out.append(d)
        return out[:k]


class WholeArticleDense:
    """One dense vector per whole article: title + text embedded once with the "passage: " prefix (the model
    cuts it at its 512-token window), questions with "query: ", cosine top-k over articles. Same e5 vectors
    as newsrag (its own embedder), without chunking, BM25 or fusion."""

    def __init__(self) -> None:
        from rag.models import load_embedder

        self.embedder = load_embedder()
        self.ids: list[str] = []
        self.vectors = None

    def ingest(self, records: list[dict]) -> float:
        emb = self.embedder
        cut, emb.encode_tokens = emb.encode_tokens, emb.max_tokens  # the whole window, whatever a bench set before
        try:
            t = time.perf_counter()
            self.ids = [str(r["id"]) for r in records]
            self.vectors = emb.embed_passages([(r.get("title", "") + "\n" + r["text"]).strip() for r in records])
            return time.perf_counter() - t
        finally:
            emb.encode_tokens = cut

    def retrieve(self, query: str, k: int = 10) -> list[str]:
        import numpy as np

        scores = self.vectors @ self.embedder.embed_queries([query])[0]
        return [self.ids[i] for i in np.argsort(-scores, kind="stable")[:k]]
