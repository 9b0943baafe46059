"""Ingestion: files -> cleaned articles -> chunks -> Chroma. See ingest.pipeline.ingest."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ingest":
        from ingest.pipeline import ingest

        return ingest
    raise AttributeError(name)
