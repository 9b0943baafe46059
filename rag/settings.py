"""The one settings object. Read from the environment and `.env`, prefix `RAG_`.

Nothing else in newsrag reads `os.environ`; everything asks `get_settings()`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# EmbeddingGemma retrieves: +0.11 to +0.26 recall@1 over e5-small on the German and cross-lingual bench sets
# at 3.1 chunks/s (int8) on 2 cores (bench/RESULTS.md, issue 17). e5-small is one setting away.
DEFAULT_EMBEDDER = "embeddinggemma-300m"
# The embedder whose cosine scale the answer thresholds are calibrated on (rag.models.load_scorer).
SCORER_EMBEDDER = "multilingual-e5-small"

# The answer providers, in one place: settings validation, the CLI's --llm choices and the UI's selector
# read this; rag/llm.py maps each LLM name to its class.
PROVIDERS: dict[str, str] = {
    "local": "llama.cpp in a supervised child process (packaged GGUF or RAG_LLM_MODEL_PATH)",
    "openai": "any OpenAI-compatible server (RAG_OPENAI_BASE_URL)",
    "extractive": "no LLM: the best-matching source sentences, quoted",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # where things live
    data_dir: Path = Field(Path("data"), description="Index, keyword cache and uploads.")
    model_dir: Path = Field(
        Path.home() / ".cache" / "newsrag" / "models",
        description="Provisioned models (converted embedder, GGUF files).",
    )
    collection: str = Field("news", description="Default collection (one corpus each).")

    # embedder
    embed_model: str = Field(
        DEFAULT_EMBEDDER,
        description="'embeddinggemma-300m' (Gemma license) or 'multilingual-e5-small' (MIT; faster, weaker "
        "across languages), both provisioned offline by `rag models fetch --embedder NAME`, or any "
        "sentence-transformers id/path.",
    )
    embed_max_tokens: int = Field(
        512, description="Longest text the embedder reads (tokens; the model's own window if smaller). Chunks are "
        "sized to fit it."
    )
    embed_dim: int = Field(
        0, description="Keep only the first N dimensions of each vector (Matryoshka models such as EmbeddingGemma: "
        "768, 512, 256, 128); 0 = all."
    )
    embed_batch_size: int = Field(
        32, description="Chunks embedded per batch (per request with RAG_EMBED_PROVIDER=openai)."
    )
    ingest_batch_articles: int = Field(
        48, ge=1, description="Articles written to Chroma per batch by an ingest: an interrupted ingest redoes at "
        "most one batch; larger batches make fewer round trips to a Chroma server."
    )
    embed_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: onnxruntime when the model folder has the exported graph (2-3x faster per "
        "question), else torch; torch: always sentence-transformers."
    )

    embed_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="fp32, int8 (a dynamically quantised ONNX graph: faster ingest; see bench/RESULTS.md), "
        "or auto: what bench/RESULTS.md chose per packaged model (e5-small fp32, EmbeddingGemma int8; fp32 otherwise)."
    )

    ingest_scorer_vectors: bool = Field(
        True, description="Store each chunk's answer-scorer (e5-small) vector at ingest, so answering does not embed "
        "its candidates before the first token. Costs an e5 pass at ingest; off, or with RAG_EMBED_PROVIDER=openai, "
        "answering embeds them per question (bench/RESULTS.md, stop 27)."
    )
    scorer_precision: Literal["fp32", "int8"] = Field(
        "int8", description="Precision of the multilingual-e5-small graph that scores answers (relevance, evidence, "
        "citation checks; rag.models.load_scorer). int8 reached the first token 0.34 s sooner on the answer bench "
        "with the same refusals and wrong-but-verified count; 2 of 91 fewer right answers, within what any "
        "change to the evidence moves (bench/RESULTS.md, stop 27)."
    )

    # remote embedding (an OpenAI-compatible /v1/embeddings server: Text Embeddings Inference, Infinity, vLLM,
    # Ollama, llama.cpp server, or another machine's `rag serve`)
    embed_provider: Literal["local", "openai"] = Field(
        "local", description="local: RAG_EMBED_MODEL on this machine; openai: an OpenAI-compatible embedding server "
        "(RAG_EMBED_BASE_URL) embeds chunks and questions. Answers are still scored with the local "
        "multilingual-e5-small."
    )
    embed_base_url: str = Field(
        "", description="Base URL of the embedding server with RAG_EMBED_PROVIDER=openai, e.g. "
        "http://gpu-box:8080/v1 (newsrag POSTs to BASE_URL/embeddings)."
    )
    embed_api_model: str = Field(
        "", description="Model name sent to the embedding server ('' = the server's default; the name it reports "
        "is recorded). A packaged embedder's name (multilingual-e5-small, embeddinggemma-300m) gets that "
        "model's prompts and tokenizer."
    )
    embed_api_key: SecretStr | None = Field(None, description="API key of the embedding server (never printed).")
    embed_timeout: float = Field(60.0, gt=0, description="Seconds the embedding server may take for one batch.")
    embed_retries: int = Field(
        4, ge=0, description="Retries of a batch after a connection error, HTTP 429 or 5xx, with exponential "
        "backoff (0.5 s, 1 s, 2 s, ...)."
    )
    embed_query_prefix: str = Field(
        "", description="Remote embedder: text put before each question ('' = the model's own prompt when newsrag "
        "knows the model: packaged embedders, e5 models; else none)."
    )
    embed_passage_prefix: str = Field(
        "", description="Remote embedder: text put before each chunk ('' = the model's own prompt when known)."
    )

    # LLM
    llm_provider: str = Field(
        "local", description="local (llama.cpp in a child process), openai (any compatible server) or extractive."
    )
    llm_model: Literal["qwen2.5-1.5b", "qwen2.5-0.5b"] = Field(
        "qwen2.5-1.5b", description="Packaged local model to use when no path is given."
    )
    llm_model_path: Path | None = Field(None, description="Any GGUF file instead of the packaged one.")
    llm_threads: int = Field(os.cpu_count() or 2, description="llama.cpp threads.")
    llm_context: int = Field(2048, description="Context window of the local model (tokens).")
    llm_max_tokens: int = Field(320, description="Longest answer (tokens).")
    llm_temperature: float = Field(
        0.0, description="Sampling temperature. 0 = greedy: the same sources and question give the same answer every "
        "time (at 0.1, 11 answer-bench questions got another answer text in the next run from the same sources; "
        "greedy lost no right answer there: bench/RESULTS.md, stop 24)."
    )
    llm_timeout: float = Field(120.0, description="Seconds before the LLM counts as hung.")
    llm_start_timeout: float = Field(
        180.0, description="Seconds the local LLM process may take to load before it counts as failed."
    )
    llm_cpu_variant: str = Field(
        "auto", description="Build of llama.cpp's CPU backend the local LLM loads: auto (the fastest one `make setup` "
        "compiled that this CPU can run), portable, or a variant's name such as avx512 (see rag/cpu_variants.py)."
    )
    llm_cpu_variants_dir: Path | None = Field(
        None, description="Folder of the compiled CPU variants (default: the venv's llama-cpu folder)."
    )
    llm_server_command: str | None = Field(
        None, description="Command that starts the local OpenAI-compatible LLM server instead of llama-cpp-python's "
        "(placeholders {port} {model} {ctx} {threads} {python}), e.g. 'llama-server -m {model} --port {port}'."
    )

    # OpenAI-compatible server
    openai_base_url: str = Field("http://127.0.0.1:8080/v1", description="Base URL of the server.")
    openai_api_key: SecretStr = Field(SecretStr("not-needed"), description="API key (never printed).")
    openai_model: str = Field("local-model", description="Model name the server knows.")

    # Chroma
    chroma_path: Path | None = Field(None, description="Embedded store folder (default DATA_DIR/chroma).")
    chroma_host: str | None = Field(None, description="Chroma server host; set to use server mode.")
    chroma_port: int = Field(8000, description="Chroma server port.")
    chroma_ssl: bool = Field(False, description="Use https for the Chroma server.")
    chroma_token: SecretStr | None = Field(None, description="Chroma token auth (never printed).")

    # ingestion
    chunk_tokens: int = Field(220, description="Chunk size in embedder tokens (max ~480 for e5; see bench/chunking.py).")
    chunk_overlap: int = Field(1, description="Sentences shared by neighbouring chunks.")
    max_file_mb: float = Field(25.0, description="Files larger than this are refused.")

    # retrieval and answering
    retrieval_k: int = Field(
        4, description="Passages re-scored for the answer, and the most that become its sources (each one "
        "re-scored costs ~0.05 s before the first token on 2 cores)."
    )
    candidates: int = Field(40, description="Candidates per retriever before fusion.")
    exact_search_max_chunks: int = Field(
        100_000, description="Up to this many chunks, dense retrieval scores every chunk exactly from a local "
        "float32 copy of the vectors (~3 KB per chunk on disk, beside the keyword index); above it, Chroma's "
        "approximate HNSW index (bench/RESULTS.md, stop 29). 0 = always Chroma."
    )
    article_vectors: bool = Field(
        True, description="Also embed each article whole (title + lead) at ingest and fuse that article-level "
        "score into retrieval (bench/RESULTS.md)."
    )
    article_weight: float = Field(
        0.7, description="Share of the article-level vector in an article's dense score (the rest: its best chunk)."
    )
    min_relevance: float = Field(
        0.80, description="Dense cosine below which nothing counts as relevant (the question is refused)."
    )
    relevance_margin: float = Field(0.05, description="Sources more than this below the best one are left out.")
    evidence_sentences: int = Field(8, description="Sentences put into the prompt (fewer = faster first token).")
    evidence_tokens: int = Field(
        200, description="About this many tokens of source text go into the prompt (0 = no limit; fewer = faster). "
        "On the answer bench 200 put the answer into the prompt for 82 of 91 answerable questions, 120 for 70."
    )
    extractive_min_score: float = Field(
        0.82, description="Extractive answers (and the fallback) refuse unless a sentence is this close to the question."
    )
    verify_threshold: float = Field(
        0.80, description="Support score a cited sentence needs (with the claim check on, a stricter value only "
        "refused more right answers: bench/calibrate.py)."
    )
    verify_llm: bool = Field(
        True, description="After the answer, the LLM copies the answer words from each verified claim's quote; "
        "NONE, or numbers/names the claim does not state, flag the claim [?]. Wrong-but-verified 0.20 -> 0.05 on "
        "the answer bench, ~3 s per claim after the answer streamed (bench/RESULTS.md)."
    )
    quote_min_relevance: float = Field(
        0.0, description="A supporting sentence must be at least this close to the question (cosine), or the claim is "
        "flagged as not answering it."
    )
    unsupported: Literal["flag", "remove"] = Field("flag", description="Unsupported sentences: flag or remove.")
    history_turns: int = Field(3, description="Earlier turns used for follow-ups.")

    # HTTP API
    api_token: SecretStr | None = Field(None, description="Bearer token for `rag serve` (needed off 127.0.0.1).")

    @field_validator("llm_provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown LLM provider {value!r}; choose one of {', '.join(PROVIDERS)}")
        return value

    @property
    def chroma_dir(self) -> Path:
        return self.chroma_path or (self.data_dir / "chroma")


ENV_EXAMPLE_HEAD = """# newsrag settings: copy to .env and change what you need. Every name takes the prefix RAG_.
# Secrets (API keys, tokens) are never printed or logged.
# Generated from rag/settings.py by `python -m rag.settings > .env.example` (a test checks it is current).
"""


def env_example() -> str:
    """The text of .env.example: every setting with its description and default."""
    lines = [ENV_EXAMPLE_HEAD]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "llm_threads":
            shown = "(number of cores)"
        elif name == "model_dir":
            shown = "~/.cache/newsrag/models"
        elif isinstance(default, SecretStr):
            shown = "" if default.get_secret_value() in ("", "not-needed") else "***"
        else:
            shown = "" if default is None else str(default)
        lines.append(f"# {field.description}\n# RAG_{name.upper()}={shown}")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the UI change them)."""
    get_settings.cache_clear()


if __name__ == "__main__":
    print(env_example(), end="")
