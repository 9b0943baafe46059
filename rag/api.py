"""`rag serve`: the same API over HTTP (FastAPI) for clients that are not Python.

newsrag's own routes: POST /ask (JSON, or server-sent events with "stream": true), GET /retrieve,
POST /ingest, GET /collections. OpenAI-compatible routes, so that any OpenAI SDK or chat UI (Open WebUI,
LibreChat) can talk to newsrag: POST /v1/chat/completions (`model` = the collection, `stream` as SSE chunks;
the text carries the [n] markers and a sources block, the full citations ride in the extra `citations`
field) and GET /v1/models (the collections). POST /v1/embeddings makes this machine an OpenAI-compatible
embedding server for others (RAG_EMBED_PROVIDER=openai there): the local embedder's vectors of the texts as
given (clients add query/passage prompts). GET /healthz needs no token.

Errors: 404 unknown collection (or embedding model), 409 collection made by another embedder, 503 Chroma or
a model (or the embedding server) unavailable, 422 bad input, 401 wrong token.
Binds 127.0.0.1 by default; bound elsewhere it requires RAG_API_TOKEN as a bearer token.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from rag.errors import (
    CollectionNotFoundError,
    EmbedderMismatchError,
    LLMError,
    ModelMissingError,
    NewsragError,
    StoreUnavailableError,
)
from rag.settings import get_settings
from rag.types import Answer, Citation, IngestReport, Passage


class AskRequest(BaseModel):
    question: str
    collection: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    filters: dict[str, Any] | None = None
    llm: str | None = None
    stream: bool = False


class IngestRequest(BaseModel):
    paths: list[str]
    collection: str | None = None
    sync: bool = False


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # [{"type": "text", "text": ...}, ...]
            return " ".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model: str = Field(description="The collection to answer from.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class ChatChoice(BaseModel):
    index: int = 0
    message: dict[str, str]
    finish_reason: str = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: dict[str, int] = Field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0,
                                                           "total_tokens": 0})
    citations: list[Citation] = Field(default_factory=list, description="newsrag's citations, in [n] order.")
    answered: bool = True
    notice: str = ""


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "newsrag"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class EmbeddingRequest(BaseModel):
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)] = Field(
        description="A text or a list of texts, embedded as given (prompts such as e5's `query: ` are the client's).")
    model: str = Field("", description="RAG_EMBED_MODEL or a packaged embedder's name ('' = RAG_EMBED_MODEL).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Keep the first N dimensions, re-normalised.")
    user: str | None = None


class EmbeddingItem(BaseModel):
    object: str = "embedding"
    index: int
    embedding: list[float] | str  # base64 little-endian float32 with encoding_format=base64


class EmbeddingList(BaseModel):
    object: str = "list"
    data: list[EmbeddingItem]
    model: str
    usage: dict[str, int]


class Health(BaseModel):
    status: str
    chroma: str


class ErrorBody(BaseModel):
    error: str


def status_of(exc: NewsragError) -> int:
    if isinstance(exc, CollectionNotFoundError):
        return 404
    if isinstance(exc, EmbedderMismatchError):
        return 409
    if isinstance(exc, StoreUnavailableError | ModelMissingError | LLMError):
        return 503
    return 422


def sources_block(answer: Answer) -> str:
    """The citations as Markdown lines under the answer, for chat UIs that show only the text."""
    if not answer.citations:
        return ""
    lines = [f"[{c.n}] {c.title or c.doc_id}" + (f" ({c.source}, {c.date[:10]})" if c.source and c.date else "")
             + (f" {c.url}" if c.url else "") + (f' — "{c.quote}"' if c.quote else "") for c in answer.citations]
    return "\n\nSources:\n" + "\n".join(lines)


def chat_question(req: ChatRequest) -> tuple[str, list[dict[str, str]]]:
    """The last user message is the question; the earlier turns are its history."""
    turns = [{"role": m.role, "content": m.text()} for m in req.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise NewsragError("the last message must be a non-empty user message")
    return turns[-1]["content"], turns[:-1]


def create_app(bind_host: str = "127.0.0.1") -> FastAPI:
    settings = get_settings()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if bind_host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise NewsragError("`rag serve` on a non-loopback address needs RAG_API_TOKEN (a bearer token)")

    def auth(authorization: str | None = Header(default=None)) -> None:
        # compare_digest: the time taken does not tell how much of a guessed token was right
        if token and not secrets.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    app = FastAPI(title="newsrag", version="0.1.0")
    protected = [Depends(auth)]
    errors = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}

    @app.exception_handler(NewsragError)
    async def newsrag_error(_request, exc: NewsragError) -> JSONResponse:
        return JSONResponse(status_code=status_of(exc), content={"error": str(exc)})

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz() -> Any:
        from rag.store import Store

        try:
            Store().collection_names()
        except NewsragError:
            return JSONResponse(status_code=503, content={"status": "unavailable", "chroma": "unreachable"})
        return Health(status="ok", chroma="ok")

    @app.post("/ask", response_model=Answer, dependencies=protected, responses=errors)
    def ask_endpoint(req: AskRequest) -> Any:
        from rag.answer import ask_stream

        gen = ask_stream(req.question, collection=req.collection, history=req.history, filters=req.filters,
                         llm=req.llm)
        if not req.stream:
            return next(item for item in gen if isinstance(item, Answer))
        first = next(gen)  # errors before the first token (unknown collection, bad input) get their status

        def events() -> Iterator[str]:
            try:
                for item in _chain(first, gen):
                    if isinstance(item, Answer):
                        yield f"event: answer\ndata: {item.model_dump_json()}\n\n"
                    else:
                        yield f"event: token\ndata: {json.dumps(item)}\n\n"
            except NewsragError as exc:
                yield f"event: error\ndata: {json.dumps(str(exc))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/retrieve", response_model=list[Passage], dependencies=protected, responses=errors)
    def retrieve_endpoint(q: str, k: int = 10, collection: str | None = None) -> Any:
        from rag.retrieval import retrieve

        return retrieve(q, k=k, collection=collection)

    @app.post("/ingest", response_model=IngestReport, dependencies=protected, responses=errors)
    def ingest_endpoint(req: IngestRequest) -> Any:
        from ingest.pipeline import ingest

        return ingest(req.paths, collection=req.collection, sync=req.sync)

    @app.get("/collections", response_model=list[dict[str, Any]], dependencies=protected, responses=errors)
    def collections_endpoint() -> Any:
        from rag.store import Store

        return Store().collections()

    @app.get("/v1/models", response_model=ModelList, dependencies=protected, responses=errors)
    def models_endpoint() -> Any:
        from rag.store import Store

        return ModelList(data=[ModelCard(id=name) for name in Store().collection_names()])

    @app.post("/v1/embeddings", response_model=EmbeddingList, dependencies=protected,
              responses={**errors, 404: {"model": ErrorBody}})
    def embeddings_endpoint(req: EmbeddingRequest) -> Any:
        import numpy as np

        from rag.models import PACKAGED_EMBEDDERS, load_embedder

        current = get_settings()
        name, short = req.model or current.embed_model, (req.model or current.embed_model).rsplit("/", 1)[-1]
        # Always this machine's model, also if it embeds on a server itself: no chains of servers.
        local = current.model_copy(update={"embed_provider": "local"})
        if current.embed_model in (name, short):  # `intfloat/multilingual-e5-small` is the packaged e5 too
            name = current.embed_model
        elif short in PACKAGED_EMBEDDERS:  # another packaged model, at its full dimension
            name = short
            local = local.model_copy(update={"embed_model": name, "embed_dim": 0})
        else:
            known = ", ".join(dict.fromkeys([current.embed_model, *PACKAGED_EMBEDDERS]))
            return JSONResponse(status_code=404, content={"error": f"no embedding model {name!r} here; use {known}"})
        embedder = load_embedder(local)
        texts = [req.input] if isinstance(req.input, str) else req.input
        vectors = embedder.embed_texts(texts, batch_size=current.embed_batch_size)
        if req.dimensions is not None and req.dimensions > vectors.shape[1]:
            raise NewsragError(f"{name} makes {vectors.shape[1]}-dimension vectors, fewer than dimensions={req.dimensions}")
        if req.dimensions is not None and req.dimensions < vectors.shape[1]:
            vectors = vectors[:, : req.dimensions]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        tokens = sum(embedder.count_tokens(texts))
        data = [EmbeddingItem(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
                              if req.encoding_format == "base64" else v.tolist()) for i, v in enumerate(vectors)]
        return EmbeddingList(data=data, model=name, usage={"prompt_tokens": tokens, "total_tokens": tokens})

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=protected, responses=errors)
    def chat_completions(req: ChatRequest) -> Any:
        from rag.answer import ask_stream

        question, history = chat_question(req)
        gen = ask_stream(question, collection=req.model, history=history)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not req.stream:
            final = next(item for item in gen if isinstance(item, Answer))
            return ChatCompletion(id=cid, created=created, model=req.model, citations=final.citations,
                                  answered=final.answered, notice=final.notice,
                                  choices=[ChatChoice(message={"role": "assistant",
                                                               "content": final.text + sources_block(final)})])
        first = next(gen)

        def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                for item in _chain(first, gen):
                    if isinstance(item, Answer):
                        # The streamed text was the model's draft; the verified text replaces nothing in a
                        # chat UI, so the sources block and citations follow it.
                        yield chunk({"content": sources_block(item)}, "stop",
                                    citations=[c.model_dump() for c in item.citations], answered=item.answered,
                                    notice=item.notice, text=item.text)
                    else:
                        yield chunk({"content": item})
            except NewsragError as exc:
                yield chunk({"content": f"\n\n[error: {exc}]"}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _chain(first: object, rest: Iterator[object]) -> Iterator[object]:
    yield first
    yield from rest
