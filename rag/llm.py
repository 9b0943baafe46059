"""LLM providers: local (llama.cpp in a supervised child process) and openai (any compatible server).

The extractive answerer (no LLM at all) lives in rag/answer.py.
Generation runs in a worker thread that feeds a queue, so a hung model is noticed
after `llm_timeout` seconds and the caller can fall back to the extractive answer.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from rag.errors import LLMError
from rag.settings import PROVIDERS, Settings, get_settings

log = logging.getLogger("newsrag.llm")


class ChatModel(Protocol):
    name: str

    def stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
               stop: threading.Event) -> Iterator[str]: ...

    def abort(self) -> None:
        """Give up on the current generation (it timed out)."""


class OpenAILLM:
    """Any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp server)."""

    def __init__(self, settings: Settings) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=settings.openai_base_url, api_key=settings.openai_api_key.get_secret_value(),
                             timeout=settings.llm_timeout, max_retries=0)
        self.model = settings.openai_model
        self.name = f"openai:{settings.openai_model}@{settings.openai_base_url}"

    def abort(self) -> None:
        """Nothing to stop on our side: the worker thread ends when the server closes the stream."""

    def stream(self, messages, max_tokens, temperature, stop):
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True,
            )
            for event in response:
                if stop.is_set():
                    response.close()
                    break
                if event.choices and event.choices[0].delta and event.choices[0].delta.content:
                    yield event.choices[0].delta.content
        except openai.APIConnectionError as exc:
            raise LLMError(f"the LLM server at {self.client.base_url} is unreachable ({exc})") from exc
        except openai.APIStatusError as exc:
            raise LLMError(f"the LLM server answered {exc.status_code}: {str(exc.message)[:200]}") from exc
        except openai.APITimeoutError as exc:
            raise LLMError("the LLM server timed out") from exc


class LocalLLM(OpenAILLM):
    """The packaged (or any) GGUF model, served by a child process that this process supervises
    (rag/llm_process.py). A crash of the child is an LLMError here, never the end of this process."""

    def __init__(self, settings: Settings) -> None:
        from rag.llm_process import LlamaServerProcess
        from rag.models import llm_model_file

        path = llm_model_file(settings)
        self.settings = settings
        self.server = LlamaServerProcess(settings, path)
        self.server.start()  # loads while the question is embedded and retrieved
        self.model = "local"
        self.name = f"local:{path.name}"
        self.client = None
        self.client_url = ""
        self.lock = threading.Lock()  # one generation at a time: the child serves one anyway

    def read_prefix_ahead(self) -> None:
        """Start the child now and have it read the answer prompt's fixed part (rules and worked example, ~350
        tokens, ~4 s on 2 cores) in the background. llama-cpp-python keeps it in its KV cache and prompt cache
        (rag.llm_process.prefix_state_cache), so the first question reads only its sources and question, as
        later ones do. For processes that start before anyone asks (the chat, `rag serve`), where the cores
        are idle until the first question (bench/RESULTS.md "Stop 18"). Not for a one-shot `rag ask`: on 2
        cores it competes with loading the embedders and gained nothing there.
        Only newsrag's own child: another RAG_LLM_SERVER_COMMAND may keep no prefix."""
        if not self.settings.llm_server_command:
            threading.Thread(target=self._read_prefix, name="newsrag-llm-prefix", daemon=True).start()

    def _read_prefix(self) -> None:
        """Best effort: a child that fails here fails again on the question, which reports it."""
        from rag import prompts

        try:
            self.connect(start=False)  # never starts a child (one closed at exit stays closed)
            self.client.chat.completions.create(model=self.model, messages=prompts.answer_prefix_messages(),
                                                max_tokens=1, temperature=0.0)
        except Exception as exc:  # noqa: BLE001 - the question itself reports what is wrong
            log.debug("reading the answer prefix ahead failed: %s", exc)

    def prepare(self) -> None:
        """Wait until the child has loaded the model (LLMError if it dies or does not come up in time)."""
        self.connect()

    def connect(self, start: bool = True) -> None:
        from openai import OpenAI

        url = self.server.wait_ready(self.settings.llm_start_timeout, start=start)
        if url != self.client_url:
            self.client = OpenAI(base_url=url, api_key="local", timeout=self.settings.llm_timeout, max_retries=0)
            self.client_url = url

    def stream(self, messages, max_tokens, temperature, stop):
        with self.lock:
            self.connect()
            try:
                yield from super().stream(messages, max_tokens, temperature, stop)
            except Exception as exc:
                died = self.server.check_crash()
                if died:
                    raise LLMError(f"the local LLM process died ({died.split(' (')[0]}); "
                                   "it restarts on the next question") from exc
                raise
            died = self.server.check_crash() if not self.server.alive() else None
            if died:  # a stream that ended early because the child died mid-answer
                raise LLMError(f"the local LLM process died ({died.split(' (')[0]}) while answering; "
                               "it restarts on the next question")

    def count_tokens(self, text: str) -> int:
        import httpx

        self.connect()
        r = httpx.post(f"http://127.0.0.1:{self.server.port}/extras/tokenize",
                       json={"input": text, "model": self.model}, timeout=30)
        r.raise_for_status()
        return len(r.json()["tokens"])

    def abort(self) -> None:
        self.server.kill(f"hung past RAG_LLM_TIMEOUT={self.settings.llm_timeout:.0f}s")

    def close(self) -> None:
        self.server.close()


# Every provider in rag.settings.PROVIDERS but "extractive" (which needs no model) has its class here.
CHAT_MODELS: dict[str, type] = {"local": LocalLLM, "openai": OpenAILLM}
_models: dict[tuple, ChatModel] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Stop the local LLM child with this process."""
    for model in _models.values():
        close = getattr(model, "close", None)
        if close:
            close()
    _models.clear()


def get_chat_model(provider: str, settings: Settings | None = None) -> ChatModel | None:
    """The process-wide model for a provider; None for `extractive`."""
    settings = settings or get_settings()
    if provider == "extractive":
        return None
    key = (provider, str(settings.llm_model_path or settings.llm_model), settings.openai_base_url, settings.openai_model,
           settings.llm_server_command, str(settings.data_dir))
    if provider not in CHAT_MODELS:
        raise LLMError(f"unknown LLM provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    with _models_lock:
        if key not in _models:
            _models[key] = CHAT_MODELS[provider](settings)
        return _models[key]


_DONE = object()


def stream_with_timeout(model: ChatModel, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
                        timeout: float) -> Iterator[str]:
    """Yield the model's pieces; raise LLMError if it errors or sends nothing for `timeout` seconds.
    The clock starts once the model is ready: loading the local model has its own limit
    (RAG_LLM_START_TIMEOUT), and a slow first load is not a hang."""
    prepare = getattr(model, "prepare", None)
    if prepare is not None:
        prepare()
    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            for piece in model.stream(messages, max_tokens, temperature, stop):
                q.put(piece)
        except Exception as exc:  # carried to the caller's thread
            q.put(exc)
        finally:
            q.put(_DONE)

    threading.Thread(target=work, daemon=True, name="llm-stream").start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise queue.Empty
                item = q.get(timeout=remaining)
            except queue.Empty as exc:
                model.abort()
                raise LLMError(f"the LLM timed out after {timeout:.0f}s") from exc
            if item is _DONE:
                return
            if isinstance(item, LLMError):
                raise item
            if isinstance(item, Exception):
                raise LLMError(f"the LLM failed: {type(item).__name__}: {item}") from item
            deadline = time.monotonic() + timeout  # a hang is silence: a slow model that keeps talking is fine
            yield item
    finally:
        stop.set()


def looks_like_garbage(text: str) -> bool:
    """Empty, mostly non-letters, or one token repeated: not an answer."""
    stripped = text.strip()
    if len(stripped) < 2:
        return True
    letters = sum(ch.isalpha() for ch in stripped)
    if letters / len(stripped) < 0.4:
        return True
    words = stripped.split()
    return len(words) >= 12 and len(set(words)) / len(words) < 0.2
