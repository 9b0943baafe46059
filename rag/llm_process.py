"""The local LLM in a child process: llama.cpp's OpenAI-compatible server, started and supervised here.

Why a child: llama.cpp is native code. An illegal instruction (SIGILL on a CPU that advertises AMX or
AVX-512 that it cannot run), a segfault or an OOM kill inside it would end the process that asked, and
with it every Streamlit session and every `rag serve` request. In a child the same fault is only an exit
status: the question gets the extractive answer with a notice, and the next question starts a new child.

One child per (model, settings) serves every thread of the parent: the UI's sessions, `rag serve`'s
requests and `ask()` calls. It listens on 127.0.0.1 on a free port and watches its parent, so it never
outlives it. `RAG_LLM_SERVER_COMMAND` replaces the default command (for example llama.cpp's own
`llama-server` binary); the tests use it to start children that crash or hang on purpose.

    python -m rag.llm_process --model FILE --port N [--ctx 2048 --threads 2]   (the child; started for you)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from rag import cpu_variants
from rag.errors import LLMError, exit_status
from rag.settings import Settings

log = logging.getLogger("newsrag.llm")

READY_POLL_S = 0.1
N_BATCH = 256  # prompt tokens per llama.cpp batch (bench/RESULTS.md stop 21: 128 and 512 were not faster)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def describe_exit(code: int | None) -> str:
    """'signal SIGILL (illegal instruction)' for -4, 'exit code 1' for 1."""
    if code is None:
        return "still running"
    if code < 0:
        sig = signal.Signals(-code)
        hint = {signal.SIGILL: " (illegal instruction: llama.cpp was built for a CPU feature this machine "
                               "cannot run; rebuild with `make setup`, which uses portable flags)",
                signal.SIGKILL: " (killed: out of memory, or stopped by newsrag after a timeout)",
                signal.SIGSEGV: " (segmentation fault)"}.get(sig, "")
        return exit_status(code) + hint
    return exit_status(code)


class LlamaServerProcess:
    """Starts, watches and restarts the child. Thread-safe; every method may be called from any thread."""

    def __init__(self, settings: Settings, model_path: Path) -> None:
        self.settings = settings
        self.model_path = model_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.ready = False
        self.lock = threading.RLock()
        self.log_path = Path(settings.data_dir) / "logs" / "llm-server.log"
        self.reported: set[int] = set()  # pids whose death was logged (once each)
        self.variant = cpu_variants.PORTABLE  # the llama.cpp CPU build the running child loaded
        self.variant_failed = False  # a child on a faster variant died of a signal: portable from then on

    # ------------------------------------------------------------------ process
    def command(self, port: int) -> list[str]:
        s = self.settings
        if s.llm_server_command:
            return shlex.split(s.llm_server_command.format(port=port, model=self.model_path, ctx=s.llm_context,
                                                           threads=s.llm_threads, python=sys.executable))
        return [sys.executable, "-m", "rag.llm_process", "--model", str(self.model_path), "--port", str(port),
                "--ctx", str(s.llm_context), "--threads", str(s.llm_threads), "--parent", str(os.getpid()),
                "--state-dir", str(prefix_state_dir(s))]

    def start(self) -> None:
        """Start the child if none is running; returns at once (the model loads while retrieval runs)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self._note_death()
            self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.variant, env = cpu_variants.PORTABLE, None
            if not self.settings.llm_server_command and not self.variant_failed:
                self.variant, env = cpu_variants.child_env(self.settings.llm_cpu_variant,
                                                           self.settings.llm_cpu_variants_dir)
            with self.log_path.open("ab") as out:
                out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting the local LLM server "
                          f"(llama.cpp CPU build: {self.variant})\n".encode())
                out.flush()
                self.proc = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
            self.ready = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float, start: bool = True) -> str:
        """Start the child if needed (unless `start` is False: then LLMError if none runs) and wait until it
        answers; its base URL. LLMError when it dies or does not come up within `timeout` seconds."""
        import httpx

        with self.lock:
            if not start and not self.alive():
                raise LLMError("the local LLM process is not running")
            self.start()
            if self.ready:
                return self.base_url
            proc, url = self.proc, self.base_url
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                code = proc.poll()
                if code is not None:
                    self._note_death()
                    raise LLMError(f"the local LLM process ended while loading ({describe_exit(code)}); "
                                   f"see {self.log_path}")
                try:
                    if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                        self.ready = True
                        return url
                except httpx.HTTPError:
                    pass
                time.sleep(READY_POLL_S)
            self.kill("did not start in time")
            raise LLMError(f"the local LLM did not start within {timeout:.0f}s; see {self.log_path}")

    def check_crash(self) -> str | None:
        """After a failed request: a description of the child's death, or None if it is alive."""
        with self.lock:
            if self.proc is None:
                return None
            try:
                code = self.proc.wait(timeout=0.5)  # a crashing child may need a moment to be reaped
            except subprocess.TimeoutExpired:
                return None
            self._note_death()
            return describe_exit(code)

    def kill(self, why: str) -> None:
        """Stop the child now (a hang past the timeout, or shutdown); the next question starts a new one."""
        with self.lock:
            if self.proc is None:
                return
            if self.proc.poll() is None:
                log.error("local LLM process %s %s: killing it; the next question restarts it", self.proc.pid, why)
                self.reported.add(self.proc.pid)
                self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a kernel that does not reap
                pass
            self.ready = False

    def close(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.reported.add(self.proc.pid)
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.proc = None
            self.ready = False

    def _note_death(self) -> None:
        """Log a dead child once, with its exit signal."""
        if self.proc is None or self.proc.poll() is None or self.proc.pid in self.reported:
            return
        self.reported.add(self.proc.pid)
        self.ready = False
        log.error("local LLM process %s died: %s; it restarts on the next question (log: %s)",
                  self.proc.pid, describe_exit(self.proc.returncode), self.log_path)
        # It may have died loading a kept prompt-prefix state: the next child starts without them (they are
        # written again after its first answer).
        shutil.rmtree(prefix_state_dir(self.settings), ignore_errors=True)
        if self.proc.returncode < 0 and self.variant not in (cpu_variants.PORTABLE, cpu_variants.USER_LIB_PATH):
            self.variant_failed = True
            log.error("the local LLM died on llama.cpp's %s CPU build: it restarts on the portable build "
                      "(set RAG_LLM_CPU_VARIANT=portable to skip the faster build on this machine)", self.variant)


# ---------------------------------------------------------------------- the child
def _watch_parent(parent: int) -> None:
    """End this child when the process that started it is gone (even if it was SIGKILLed)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rag.llm_process", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--state-dir", default="", help="keep the prompt prefixes' states here across children")
    args = parser.parse_args(argv)
    if args.parent:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    app = create_app(
        # interrupt_requests=False: a second session's question waits for the first instead of cutting it off.
        server_settings=ServerSettings(host="127.0.0.1", port=args.port, interrupt_requests=False),
        model_settings=[ModelSettings(model=args.model, model_alias="local", n_ctx=args.ctx, n_threads=args.threads,
                                      n_threads_batch=args.threads, n_batch=N_BATCH, verbose=False,
                                      # The server's default (True) computes logits for every prompt token, not
                                      # only the last: time to first token was 25% worse than in-process.
                                      logits_all=False)],
    )
    install_prefix_cache(Path(args.state_dir) if args.state_dir else None,
                         {"model": args.model, "ctx": args.ctx, "n_batch": N_BATCH})
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def prefix_state_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "cache" / "llm-prefix"


def install_prefix_cache(state_dir: Path | None = None, params: dict | None = None) -> None:
    """Give the served model a prefix_state_cache() (llama-cpp-python's own prompt cache hook), with the
    states earlier children kept in `state_dir` when they fit this model and build."""
    from llama_cpp.server import app as server_app

    llama = server_app._llama_proxy(None)  # the one model this child serves
    states_without_logits(llama)
    cache = prefix_state_cache()
    if state_dir is not None:
        cache.keep_on_disk(state_dir, state_identity(params or {}), llama)
    llama.set_cache(cache)


def states_without_logits(llama) -> None:
    """Save and load the model's KV state without llama-cpp-python's copies of its logits buffer.

    Llama.save_state copies the logits buffer (n_batch x vocabulary floats: 155 MB for Qwen2.5) and load_state
    copies it back; the first load also touches every page of it. With logits_all=False nothing here reads
    that buffer (llama.cpp samples from its own logits), and prefix_state_cache() already kept zeros in its
    place. The same as the library's code but for those copies. Measured in-process (bench/RESULTS.md "Stop
    23"): save 0.05-0.08 s -> 0.005-0.014 s, load 0.08 s (0.36-0.44 s the first time in a process) -> 0.01-0.02 s.
    A new child loads its two kept states and each question restores and saves one per prompt."""
    import ctypes

    import llama_cpp
    import numpy as np
    from llama_cpp.llama import LlamaState

    def save_state() -> LlamaState:
        size = llama_cpp.llama_state_get_size(llama._ctx.ctx)
        buffer = (ctypes.c_uint8 * int(size))()
        n_bytes = int(llama_cpp.llama_state_get_data(llama._ctx.ctx, buffer, size))
        if n_bytes > int(size):
            raise RuntimeError("Failed to copy llama state data")
        return LlamaState(input_ids=llama.input_ids.copy(), scores=np.zeros((1, llama.n_vocab()), dtype=np.single),
                          n_tokens=llama.n_tokens, llama_state=bytes(memoryview(buffer)[:n_bytes]),
                          llama_state_size=n_bytes, seed=llama._seed)

    def load_state(state: LlamaState) -> None:
        llama.input_ids = state.input_ids.copy()
        llama.n_tokens = state.n_tokens
        llama._requires_eval = True
        llama._seed = state.seed
        data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
        if llama_cpp.llama_state_set_data(llama._ctx.ctx, data, state.llama_state_size) != state.llama_state_size:
            raise RuntimeError("Failed to set llama state data")

    llama.save_state, llama.load_state = save_state, load_state


def state_identity(params: dict) -> dict:
    """What a kept state is valid for: the same model file, llama.cpp build and context settings."""
    import llama_cpp

    model = Path(params.get("model", ""))
    stat = model.stat() if model.is_file() else None
    return {"format": 1, "model": str(model.resolve()), "size": stat.st_size if stat else 0,
            "mtime_ns": stat.st_mtime_ns if stat else 0, "llama_cpp": llama_cpp.__version__,
            "lib": os.environ.get("LLAMA_CPP_LIB_PATH", ""), "ctx": params.get("ctx"),
            "n_batch": params.get("n_batch")}


def prefix_state_cache():
    """llama-cpp-python's RAM prompt cache, keeping one KV state per kind of prompt (answer, claim check).

    The claim check runs its own short prompt after each answer. Without a cache the model's KV cache then
    holds the check, and the next question re-reads the whole fixed answer prefix (rules and worked example,
    ~350 tokens, 4-5 s on 2 cores). With it, the next answer reloads the state saved after the last answer
    (a memory copy) and reads only its own sources and question.

    Why not LlamaRAMCache as it is: it evicts by the bytes of KV state only, so its default 2 GiB keeps ~100
    states, and each also holds a copy of the logits buffer (n_batch x vocabulary floats, 155 MB for
    Qwen2.5). Here: one state per first-tokens group, and the logits copy is dropped; with logits_all=False
    sampling never reads it (llama_cpp.Llama._create_completion samples inside llama.cpp).
    """
    import numpy as np  # imported here: the parent process never imports llama_cpp
    from llama_cpp.llama import LlamaState
    from llama_cpp.llama_cache import LlamaRAMCache

    def zero_scores(shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.broadcast_to(np.zeros((1, shape[1]), dtype=dtype), shape)

    class _PrefixStateCache(LlamaRAMCache):
        group_tokens = 16  # the chat template's system line: differs between the answer and check prompts
        max_states = 2

        def __init__(self) -> None:
            super().__init__()
            self.state_dir: Path | None = None
            self.identity: dict = {}
            self.kept: set[tuple[int, ...]] = set()  # groups this child has written to state_dir

        def __setitem__(self, key, value) -> None:
            key = tuple(key)
            for old in [k for k in self.cache_state if k[: self.group_tokens] == key[: self.group_tokens]]:
                del self.cache_state[old]
            value.scores = zero_scores(value.scores.shape, value.scores.dtype)
            self.cache_state[key] = value
            while len(self.cache_state) > self.max_states:
                self.cache_state.popitem(last=False)
            group = key[: self.group_tokens]
            if self.state_dir is not None and group not in self.kept:
                # The fixed part of a kind of prompt does not change while this child runs: once is enough.
                self.kept.add(group)
                threading.Thread(target=self._write, args=(key, value), daemon=True).start()

        # A new child (each `rag ask` process starts one) would read the answer prompt's fixed part (rules and
        # worked example, ~350 tokens) and the claim check's again: 4-6 s on 2 cores. The states kept on disk
        # (the KV cache after the last prompt of each kind, ~17 MB; never pickled) spare it that.
        def keep_on_disk(self, state_dir: Path, identity: dict, llama) -> None:
            self.state_dir, self.identity = state_dir, identity
            for partial in state_dir.glob("prefix-*.partial"):  # a child stopped while it wrote
                with contextlib.suppress(OSError):
                    if time.time() - partial.stat().st_mtime > 60:
                        partial.unlink()
            for path in sorted(state_dir.glob("prefix-*.npz")):
                try:
                    with np.load(path, allow_pickle=False) as data:
                        meta = json.loads(bytes(data["meta"]).decode())
                        blob = data["state"].tobytes()
                        if meta["identity"] != identity:
                            continue  # another model, build or context size: not this child's to use
                        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
                            raise ValueError("its checksum does not match")
                        input_ids = data["input_ids"].astype(np.intc)
                    state = LlamaState(input_ids=input_ids, scores=zero_scores(tuple(meta["scores_shape"]), np.single),
                                       n_tokens=int(meta["n_tokens"]), llama_state=blob,
                                       llama_state_size=len(blob), seed=int(meta["seed"]))
                    llama.load_state(state)  # a state this build cannot load fails here, not in a question
                except Exception as exc:  # noqa: BLE001 - a kept state is an optimisation: skip what does not load
                    log.warning("ignoring the kept LLM prefix state %s: %s", path, exc)
                    continue
                key = tuple(int(t) for t in input_ids[: state.n_tokens])
                self.cache_state[key] = state
            # to the child's log (DATA_DIR/logs/llm-server.log)
            print(f"newsrag: {len(self.cache_state)} kept prompt-prefix state(s) loaded from {state_dir}",
                  file=sys.stderr, flush=True)

        def _write(self, key: tuple[int, ...], value) -> None:
            try:
                assert self.state_dir is not None
                self.state_dir.mkdir(parents=True, exist_ok=True)
                meta = {"identity": self.identity, "n_tokens": int(value.n_tokens), "seed": int(value.seed),
                        "scores_shape": list(value.scores.shape),
                        "sha256": hashlib.sha256(value.llama_state).hexdigest()}
                buffer = io.BytesIO()
                np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                         input_ids=np.asarray(value.input_ids, dtype=np.int32),
                         state=np.frombuffer(value.llama_state, dtype=np.uint8))
                name = hashlib.sha256(json.dumps(key[: self.group_tokens]).encode()).hexdigest()[:16]
                target = self.state_dir / f"prefix-{name}.npz"
                partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
                partial.write_bytes(buffer.getvalue())
                partial.replace(target)
            except Exception as exc:  # noqa: BLE001 - the next child reads the prefix again, nothing worse
                log.warning("could not keep the LLM prefix state: %s", exc)

    return _PrefixStateCache()


if __name__ == "__main__":
    main()
