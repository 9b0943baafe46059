"""The nouns of both flows (ingest and answer), as typed models."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Article(BaseModel):
    doc_id: str
    title: str = ""
    text: str  # cleaned text; chunk spans point into it
    date: str | None = None  # ISO 8601 date (YYYY-MM-DD) or datetime
    source: str = ""
    url: str = ""
    author: str = ""
    lang: str = ""
    content_hash: str = ""
    group_id: str = ""
    path: str = ""
    extra: dict[str, str] = Field(default_factory=dict)


class Chunk(BaseModel):
    chunk_id: str
    doc_id: str
    index: int
    text: str  # exactly Article.text[start:end]
    start: int
    end: int
    embed_text: str  # what the embedder reads: title and date prepended


class Passage(BaseModel):
    doc_id: str
    chunk_id: str
    text: str
    score: float
    rank: int = 0
    dense_score: float | None = None
    bm25_score: float | None = None
    metadata: dict[str, object] = Field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))

    @property
    def start(self) -> int:
        return int(self.metadata.get("start", 0))  # type: ignore[call-overload]


class Citation(BaseModel):
    n: int
    doc_id: str
    chunk_id: str
    title: str = ""
    source: str = ""
    url: str = ""
    date: str | None = None
    quote: str = ""  # the exact supporting sentence(s) from the article
    start: int = 0  # span of `quote` in the article text
    end: int = 0
    passage: str = ""  # the chunk the quote sits in, for context
    score: float = 0.0
    verified: bool = False
    also_in: list[str] = Field(default_factory=list)  # other outlets with the same story


class Answer(BaseModel):
    question: str
    text: str
    citations: list[Citation] = Field(default_factory=list)
    answered: bool = True
    language: str = "en"
    provider: str = ""
    notice: str = ""  # e.g. "the LLM timed out; extractive answer"
    unsupported: list[str] = Field(default_factory=list)  # sentences no source supports
    sources: list[Citation] = Field(default_factory=list)  # closest sources (shown on refusal)
    query: str = ""  # the standalone query used for retrieval
    timings: dict[str, float] = Field(default_factory=dict)


class FailedFile(BaseModel):
    path: str
    error: str


class IngestReport(BaseModel):
    collection: str
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    failed: list[FailedFile] = Field(default_factory=list)
    skipped: list[FailedFile] = Field(default_factory=list)  # unsupported formats
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def ingested_anything(self) -> bool:
        return bool(self.added or self.updated or self.unchanged)

    def summary(self) -> str:
        return (
            f"{self.collection}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped "
            f"({self.chunks_written} chunks written in {self.seconds:.1f}s)"
        )
