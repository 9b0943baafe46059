"""Shared helpers for the benchmarks: an isolated data dir and the naive llama-index pipeline."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.datasets import CACHE

BENCH_DATA = CACHE / "data"


def use_bench_settings() -> None:
    from rag.settings import reset_settings
    from rag.store import forget_clients

    os.environ["RAG_DATA_DIR"] = str(BENCH_DATA)
    reset_settings()
    forget_clients()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class NaivePipeline:
    """What a user would otherwise write: VectorStoreIndex.from_documents on Chroma, default splitter,
    the same embedder (loaded through llama-index, so without the e5 prefixes), dense top-k."""

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
        LISettings.embed_model = HuggingFaceEmbedding(model_name=str(embedder_dir()), device="cpu")
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
