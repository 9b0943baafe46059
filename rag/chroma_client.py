"""One Chroma client per store location and process: embedded (PersistentClient) or a server (HttpClient,
RAG_CHROMA_HOST), with its failures turned into one clear error."""

from __future__ import annotations

import threading
from typing import Any

from rag.errors import StoreUnavailableError
from rag.settings import Settings, get_settings

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def unavailable_error(exc: Exception, settings: Settings) -> StoreUnavailableError:
    where = (
        f"the Chroma server at {settings.chroma_host}:{settings.chroma_port}"
        if settings.chroma_host
        else f"the embedded Chroma store at {settings.chroma_dir}"
    )
    return StoreUnavailableError(f"{where} is unavailable ({type(exc).__name__}: {exc}). "
                                 + ("Is `chroma run` up?" if settings.chroma_host else ""))


def get_client(settings: Settings | None = None):
    settings = settings or get_settings()
    key = (settings.chroma_host, settings.chroma_port, str(settings.chroma_dir))
    with _clients_lock:
        if key in _clients:
            return _clients[key]
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        try:
            if settings.chroma_host:
                chroma_settings = ChromaSettings(anonymized_telemetry=False)
                headers = {}
                if settings.chroma_token is not None:
                    token = settings.chroma_token.get_secret_value()
                    headers = {"Authorization": f"Bearer {token}"}
                client = chromadb.HttpClient(
                    host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl,
                    headers=headers, settings=chroma_settings,
                )
                client.heartbeat()
            else:
                from filelock import FileLock

                settings.chroma_dir.mkdir(parents=True, exist_ok=True)
                # Two processes creating a new embedded store at once race on its tables.
                with FileLock(str(settings.chroma_dir.parent / ".chroma-init.lock")):
                    client = chromadb.PersistentClient(
                        path=str(settings.chroma_dir), settings=ChromaSettings(anonymized_telemetry=False)
                    )
        except Exception as exc:
            raise unavailable_error(exc, settings) from exc
        _clients[key] = client
        return client


def forget_clients() -> None:
    with _clients_lock:
        _clients.clear()
