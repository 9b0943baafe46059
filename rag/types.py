"""The nouns of both flows (ingest and answer), as typed models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# What ask_stream is doing, for a progress line (rag.answer.ask_stream's on_stage): searching the articles,
# the model reading the sources (the wait before the first token), the claim check after the answer.
Stage = Literal["retrieving", "answering", "checking"]


class Article(BaseModel):
    """One news article. Loaders fill what the file says; cleaning (ingest/pipeline.py `to_article`) gives
    the final title, text, date, language and source."""

    doc_id: str = Field(description="Stable id: the file's path under the ingested folder, or the record's id.")
    title: str = Field("", description="The headline as the source gives it; never invented.")
    text: str = Field(description="The article text; after cleaning, chunk and citation spans point into it.")
    date: str | None = Field(None, description="Publication date, ISO 8601 (raw string before cleaning).")
    source: str = Field("", description="Outlet: the record's field, a dateline '(Reuters) -' or the URL's host.")
    url: str = ""
    author: str = ""
    lang: str = Field("", description="ISO 639-1 code, given or detected.")
    content_hash: str = Field("", description="Hash of the cleaned fields: unchanged hash = nothing to re-embed.")
    raw_hash: str = Field("", description="Hash of what the loader read: unchanged = no need to even clean it.")
    group_id: str = Field("", description="Story group (near-duplicate articles from different outlets).")
    path: str = Field("", description="The file it came from.")
    title_from_text: bool = Field(False, description="Set by loaders of plain text: the first line is the title.")
    extra: dict[str, str] = Field(default_factory=dict, description="Other columns of a record, kept as metadata.")


class ArticleRecord(BaseModel):
    """One article's entry in a collection's manifest (Chroma collection NAME__articles). An article counts
    as ingested only once its record carries the new content hash with `complete`."""

    title: str = ""
    date: str = ""
    date_ord: int = 0
    source: str = ""
    url: str = ""
    author: str = ""
    lang: str = ""
    path: str = ""
    content_hash: str = ""
    raw_hash: str = ""
    text_hash: str = Field("", description="Hash of the normalised text: the same text under two ids is stored once.")
    group_id: str = ""
    minhash: str = Field("", description="MinHash signature (story grouping across runs).")
    n_chunks: int = 0
    chars: int = 0
    ingested_at: str = ""
    complete: bool = False
    duplicate_of: str = Field("", description="doc_id of the article whose identical text is stored instead.")
    extra: dict[str, str] = Field(default_factory=dict, description="Up to 8 extra record columns (x_NAME in Chroma).")

    def to_metadata(self) -> dict[str, Any]:
        """Flat metadata for Chroma (no nested values)."""
        flat = self.model_dump(exclude={"extra"})
        flat.update({f"x_{k}": v for k, v in list(self.extra.items())[:8]})
        return flat

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> ArticleRecord:
        known = {k: v for k, v in meta.items() if k in cls.model_fields and k != "extra" and v is not None}
        extra = {k[2:]: str(v) for k, v in meta.items() if k.startswith("x_")}
        return cls(**known, extra=extra)


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
    scorer_vector: str = Field(
        "", exclude=True, repr=False,
        description="The answer scorer's vector of this chunk as stored at ingest (rag.embedding.pack_vector), or ''.",
    )

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


class ClaimCheck(BaseModel):
    """How one sentence of an answer was checked against the sources."""

    text: str
    support: float = Field(0.0, description="Support score of its best candidate quote (see rag/verify.py).")
    verified: bool = Field(False, description="A quote states it: it carries a ✓ citation.")
    problems: list[str] = Field(default_factory=list, description="Why it is not verified (flagged [?]).")
    model_check: str = Field("", description="The LLM's yes/no on whether its quote states it (RAG_VERIFY_LLM); "
                             "empty when not asked.")


class Answer(BaseModel):
    question: str
    text: str
    citations: list[Citation] = Field(default_factory=list)
    answered: bool = True
    language: str = "en"
    provider: str = ""
    notice: str = ""  # e.g. "the LLM timed out; extractive answer"
    unsupported: list[str] = Field(default_factory=list)  # sentences no source supports
    checks: list[ClaimCheck] = Field(default_factory=list)  # every answer sentence and how it was checked
    sources: list[Citation] = Field(default_factory=list)  # closest sources (shown on refusal)
    query: str = ""  # the standalone query used for retrieval
    timings: dict[str, float] = Field(default_factory=dict)
    relevance: float = Field(
        0.0, description="The closest source's dense score on the scorer's calibrated scale; the question is "
        "refused below RAG_MIN_RELEVANCE (bench/calibrate.py replays answers against this).")


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


class Filters(BaseModel):
    """What a question may be answered from: a date range of publication, outlets, languages."""

    since: str | None = None  # inclusive, ISO date (or anything parse_date reads)
    until: str | None = None
    sources: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, value: Filters | dict | None) -> Filters:
        if value is None:
            return cls()
        return value if isinstance(value, Filters) else cls(**value)

    def bounds(self) -> tuple[int, int]:
        from rag.dates import date_ordinal, parse_date

        lo = date_ordinal(parse_date(self.since)) if self.since else 0
        hi = date_ordinal(parse_date(self.until)) if self.until else 0
        return lo, hi

    def is_empty(self) -> bool:
        return not (self.since or self.until or self.sources or self.languages)

    def where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        lo, hi = self.bounds()
        if lo:
            clauses.append({"date_ord": {"$gte": lo}})
        if hi:
            clauses.append({"date_ord": {"$lte": hi}})
        if self.since or self.until:
            clauses.append({"date_ord": {"$gt": 0}})
        if self.sources:
            clauses.append({"source": {"$in": list(self.sources)}})
        if self.languages:
            clauses.append({"lang": {"$in": [lang.lower() for lang in self.languages]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def mask(self, index) -> Any:  # index: keyword.KeywordIndex -> np.ndarray | None
        import numpy as np

        if self.is_empty():
            return None
        mask = np.ones(len(index.ids), dtype=bool)
        lo, hi = self.bounds()
        if self.since or self.until:
            mask &= index.date_ord > 0
        if lo:
            mask &= index.date_ord >= lo
        if hi:
            mask &= index.date_ord <= hi
        if self.sources:
            wanted = set(self.sources)
            mask &= np.array([s in wanted for s in index.sources], dtype=bool)
        if self.languages:
            wanted = {lang.lower() for lang in self.languages}
            mask &= np.array([lang in wanted for lang in index.langs], dtype=bool)
        return mask

    def merged(self, other: Filters) -> Filters:
        return Filters(
            since=max(filter(None, [self.since, other.since]), default=None),
            until=min(filter(None, [self.until, other.until]), default=None),
            sources=self.sources or other.sources,
            languages=self.languages or other.languages,
        )
