"""A running `rag serve` answers the CLI's questions, so that `rag ask` in a new process loads no model.

Why: a cold `rag ask` spends ~4 s loading the two embedders on every question, and with the local LLM also
~1.4 s starting the LLM child and seconds reading the answer prompt's fixed part (bench/RESULTS.md, stops 18
and 19). A running `rag serve` has all of that loaded and warm. `rag serve` records where it listens in
DATA_DIR/run/serve.json; `rag ask` finds it there, checks that the process lives and answers /healthz, and
streams the answer from its /ask. The server's settings apply (models, thresholds); `rag ask --in-process`
answers in the CLI's own process. Only a server on this machine's loopback address is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from rag.errors import NewsragError
from rag.settings import Settings
from rag.types import Answer

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "run" / "serve.json"


def announce(settings: Settings, host: str, port: int) -> Path | None:
    """Called by `rag serve` before it listens: where CLI calls on this machine can reach it (None when
    bound to a single non-loopback address, which this machine's CLI does not use)."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if host not in LOOPBACK:
        return None
    path = run_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".serve.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": f"http://{'[::1]' if host == '::1' else host}:{port}", "pid": os.getpid()}))
    tmp.replace(path)  # a reader never sees half a file
    return path


def withdraw(path: Path | None) -> None:
    """Called when `rag serve` stops: remove its record, unless another server has replaced it since."""
    try:
        if path is not None and json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_server(settings: Settings) -> str | None:
    """The base URL of a live `rag serve` for this data folder, or None (no record, a dead process, a server
    that does not answer /healthz within a second)."""
    import httpx

    try:
        info = json.loads(run_file(settings).read_text())
        url, pid = str(info["url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if urlparse(url).hostname not in LOOPBACK:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a record left by a server that was killed
    except PermissionError:
        pass  # alive, another user's
    try:
        return url if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200 else None
    except httpx.HTTPError:
        return None


def ask_stream_via(url: str, question: str, *, collection: str | None, filters: dict, llm: str | None,
                   settings: Settings) -> Iterator[str | Answer]:
    """`rag.answer.ask_stream` through the server: the answer's text as it comes, then the final Answer."""
    import httpx

    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    body = {"question": question, "collection": collection, "filters": filters, "llm": llm, "stream": True}
    # Between two events the server may be checking claims (an LLM call each): allow the LLM's own timeout.
    timeout = httpx.Timeout(connect=2.0, read=settings.llm_timeout + 60, write=10.0, pool=2.0)
    try:
        with httpx.stream("POST", f"{url}/ask", json=body, headers=headers, timeout=timeout) as resp:
            if resp.status_code != 200:
                resp.read()
                try:
                    payload = resp.json()
                    detail = payload.get("error") or payload.get("detail") or resp.text
                except ValueError:
                    detail = resp.text
                raise NewsragError(f"{detail} (answered by rag serve at {url})")
            event = ""
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: "):
                    data = line[len("data: "):]
                    if event == "token":
                        yield json.loads(data)
                    elif event == "answer":
                        yield Answer.model_validate_json(data)
                    elif event == "error":
                        raise NewsragError(f"{json.loads(data)} (answered by rag serve at {url})")
    except httpx.HTTPError as exc:
        raise NewsragError(f"rag serve at {url} stopped answering ({exc.__class__.__name__}); "
                           "ask again, or use `rag ask --in-process`") from exc
