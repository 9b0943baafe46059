"""A stand-in for the local LLM server that fails the way native code fails: a real child process that
dies by SIGILL or SIGKILL, or hangs, on its first chat request, and answers like an OpenAI-compatible
server after that (the "after a restart" part). Started by newsrag through RAG_LLM_SERVER_COMMAND:

    python tests/fake_llm_server.py --port {port} --mode sigill --state DIR

`--state DIR` remembers across restarts that the failure already happened (a file per mode).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWER = ["Zwischen Juli und November 2023 ", "besuchten vier russische ", "Delegationen Nordkorea [1]."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["sigill", "sigsegv", "hang", "ok"], required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    starts = args.state / "starts"
    starts.write_text(str(int(starts.read_text() or 0) + 1 if starts.exists() else 1))
    (args.state / "pid").write_text(str(os.getpid()))
    failed_once = args.state / f"{args.mode}.done"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - readiness probe
            body = json.dumps({"object": "list", "data": [{"id": "local", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802 - chat completions
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if args.mode != "ok" and not failed_once.exists():
                failed_once.write_text("1")
                if args.mode == "hang":
                    time.sleep(3600)
                # A real SIGILL/SIGSEGV is a fault in the thread that runs the instruction: it never goes on.
                # os.kill() sends the signal to the whole process, and under load the kernel may let this
                # thread finish the answer before the process dumps core (that once passed a full answer and
                # failed this test in CI). So: signal this thread, and never answer in any case.
                signal.pthread_kill(threading.get_ident(), {"sigill": signal.SIGILL, "sigsegv": signal.SIGSEGV}[args.mode])
                time.sleep(3600)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in ANSWER:
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "local",
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
