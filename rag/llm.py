"""LLM providers: local (llama-cpp-python), openai (any compatible server), extractive (none).

Generation runs in a worker thread that feeds a queue, so a hung model is noticed
after `llm_timeout` seconds and the caller can fall back to the extractive answer.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from rag.errors import LLMError
from rag.settings import Settings, get_settings


class ChatModel(Protocol):
    name: str

    def stream(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
               stop: threading.Event) -> Iterator[str]: ...


class LocalLLM:
    """A GGUF model through llama-cpp-python, loaded once per process."""

    def __init__(self, settings: Settings) -> None:
        from rag.models import llm_model_file

        path = llm_model_file(settings)
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a dependency
            raise LLMError("llama-cpp-python is not installed: run `make setup`") from exc
        try:
            self.llama = Llama(model_path=str(path), n_ctx=settings.llm_context, n_threads=settings.llm_threads,
                               n_batch=256, verbose=False)
        except Exception as exc:
            raise LLMError(f"cannot load the local model {path}: {exc}. Delete it and run `make setup`") from exc
        self.name = f"local:{path.name}"
        self.lock = threading.Lock()  # one generation at a time: llama.cpp contexts are not thread-safe

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False))

    def stream(self, messages, max_tokens, temperature, stop):
        with self.lock:
            # llama-cpp-python keeps the evaluated tokens; a prompt that starts with the
            # same system text reuses that KV cache, so only the new part is evaluated.
            for chunk in self.llama.create_chat_completion(
                messages, max_tokens=max_tokens, temperature=temperature, stream=True, repeat_penalty=1.1,
            ):
                if stop.is_set():
                    break
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece


class OpenAILLM:
    """Any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp server)."""

    def __init__(self, settings: Settings) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=settings.openai_base_url, api_key=settings.openai_api_key.get_secret_value(),
                             timeout=settings.llm_timeout, max_retries=0)
        self.model = settings.openai_model
        self.name = f"openai:{settings.openai_model}@{settings.openai_base_url}"

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


_models: dict[tuple, ChatModel] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown (its __del__ fails once modules are gone)."""
    for model in _models.values():
        close = getattr(getattr(model, "llama", None), "close", None)
        if close:
            close()
    _models.clear()


def get_chat_model(provider: str, settings: Settings | None = None) -> ChatModel | None:
    """The process-wide model for a provider; None for `extractive`."""
    settings = settings or get_settings()
    if provider == "extractive":
        return None
    key = (provider, str(settings.llm_model_path or settings.llm_model), settings.openai_base_url, settings.openai_model)
    with _models_lock:
        if key not in _models:
            if provider == "local":
                _models[key] = LocalLLM(settings)
            elif provider == "openai":
                _models[key] = OpenAILLM(settings)
            else:
                raise LLMError(f"unknown LLM provider {provider!r} (local, openai or extractive)")
        return _models[key]


_DONE = object()


def stream_with_timeout(model: ChatModel, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
                        timeout: float) -> Iterator[str]:
    """Yield the model's pieces; raise LLMError if it errors or stalls past `timeout` seconds."""
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
            if remaining <= 0:
                raise LLMError(f"the LLM timed out after {timeout:.0f}s")
            try:
                item = q.get(timeout=remaining)
            except queue.Empty as exc:
                raise LLMError(f"the LLM timed out after {timeout:.0f}s") from exc
            if item is _DONE:
                return
            if isinstance(item, LLMError):
                raise item
            if isinstance(item, Exception):
                raise LLMError(f"the LLM failed: {type(item).__name__}: {item}") from item
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
