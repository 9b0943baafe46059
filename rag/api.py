"""`rag serve`: the same API over HTTP (FastAPI) for clients that are not Python.

POST /ask (JSON, or server-sent events with "stream": true), GET /retrieve, POST /ingest, GET /collections.
Binds 127.0.0.1 by default; bound elsewhere it requires RAG_API_TOKEN as a bearer token.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rag.errors import NewsragError
from rag.settings import get_settings


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


def create_app(bind_host: str = "127.0.0.1") -> FastAPI:
    settings = get_settings()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if bind_host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise NewsragError("`rag serve` on a non-loopback address needs RAG_API_TOKEN (a bearer token)")

    def auth(authorization: str | None = Header(default=None)) -> None:
        if token and authorization != f"Bearer {token}":
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    app = FastAPI(title="newsrag", version="0.1.0", dependencies=[Depends(auth)])

    @app.exception_handler(NewsragError)
    async def newsrag_error(_request, exc: NewsragError):  # type: ignore[no-untyped-def]
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.post("/ask")
    def ask_endpoint(req: AskRequest):  # type: ignore[no-untyped-def]
        from rag.answer import ask_stream
        from rag.types import Answer

        gen = ask_stream(req.question, collection=req.collection, history=req.history, filters=req.filters,
                         llm=req.llm)
        if not req.stream:
            final = None
            for item in gen:
                if isinstance(item, Answer):
                    final = item
            return final.model_dump() if final else {}

        def events():
            try:
                for item in gen:
                    if isinstance(item, Answer):
                        yield f"event: answer\ndata: {item.model_dump_json()}\n\n"
                    else:
                        yield f"event: token\ndata: {json.dumps(item)}\n\n"
            except NewsragError as exc:
                yield f"event: error\ndata: {json.dumps(str(exc))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/retrieve")
    def retrieve_endpoint(q: str, k: int = 10, collection: str | None = None):  # type: ignore[no-untyped-def]
        from rag.retrieve import retrieve

        return [p.model_dump() for p in retrieve(q, k=k, collection=collection)]

    @app.post("/ingest")
    def ingest_endpoint(req: IngestRequest):  # type: ignore[no-untyped-def]
        from ingest.pipeline import ingest

        return ingest(req.paths, collection=req.collection, sync=req.sync).model_dump()

    @app.get("/collections")
    def collections_endpoint():  # type: ignore[no-untyped-def]
        from rag.store import Store

        return Store().collections()

    return app
