"""newsrag: question answering over news articles with verified citations.

    from rag import ask
    answer = ask("Wann besuchte Choe Son-hui Moskau?")
    print(answer.text, answer.citations)

Imports are lazy so that `import rag` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ask", "ask_stream", "retrieve", "ingest", "Chat", "Answer", "Citation", "Passage", "Filters",
           "IngestReport"]


def __getattr__(name: str) -> Any:
    if name in ("ask", "ask_stream", "Chat"):
        from rag import answer

        return getattr(answer, name)
    if name == "retrieve":
        from rag.retrieval import retrieve

        return retrieve
    if name == "ingest":
        from ingest.pipeline import ingest

        return ingest
    if name in ("Answer", "Citation", "Passage", "IngestReport", "Filters"):
        from rag import types

        return getattr(types, name)
    raise AttributeError(name)
