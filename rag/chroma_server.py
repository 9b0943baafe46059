"""A Chroma server on 127.0.0.1 (`chroma run`, from the venv), started and stopped from Python: how the
tests and bench/ingest_workers.py get the real server mode that RAG_CHROMA_HOST points newsrag at."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from rag.errors import NewsragError
from rag.llm_process import free_port


class LocalChromaServer:
    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path, self.port = path, port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, wait_seconds: float = 60) -> LocalChromaServer:
        """Start `chroma run --path PATH` and return once its heartbeat answers."""
        import httpx

        chroma = Path(sys.executable).parent / "chroma"
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url, deadline = f"http://127.0.0.1:{self.port}/api/v2/heartbeat", time.monotonic() + wait_seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise NewsragError(f"`chroma run` on 127.0.0.1:{self.port} did not come up within {wait_seconds:.0f}s")

    def stop(self) -> None:
        """Kill the server outright (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
