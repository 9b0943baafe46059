"""Errors that newsrag reports to people: each names the cause and the fix."""

from __future__ import annotations

import signal


class NewsragError(Exception):
    """Base class: the message is meant for the user, not a stack trace."""


class ModelMissingError(NewsragError):
    """A model file is missing, incomplete or corrupted."""


class EmbedderUnavailableError(ModelMissingError):
    """The embedding server (RAG_EMBED_PROVIDER=openai) cannot be reached, refuses, or answers garbage.
    A ModelMissingError: like a missing model, the embedder is unavailable (HTTP 503 from `rag serve`)."""


class StoreUnavailableError(NewsragError):
    """The vector store (embedded or a Chroma server) cannot be reached."""


class CollectionNotFoundError(NewsragError):
    """The named collection does not exist (names the ones that do)."""


class EmbedderMismatchError(NewsragError):
    """A collection was embedded by another embedder than the one in use."""


class LLMError(NewsragError):
    """The language model failed, timed out or returned garbage."""


class IngestError(NewsragError):
    """One input file could not be ingested; names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def exit_status(code: int) -> str:
    """A child process's return code in words: 'signal SIGKILL' for -9, 'exit code 1' for 1."""
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
