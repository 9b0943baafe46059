"""What answering in a child process costs: time to first token of the same answer prompts through
(a) llama-cpp-python in the asking process (how newsrag ran the model before) and (b) newsrag's supervised
child (rag/llm_process.py, llama-cpp-python's OpenAI-compatible server over 127.0.0.1), side by side in one
run, interleaved so that load on the machine hits both alike. Also the time until each can answer at all.

    python -m bench.llm_isolation
"""

from __future__ import annotations

import json
import statistics
import threading
import time

QUESTIONS = [
    "Wann trafen sich Lawrow und Choe Son-hui in Moskau?",
    "When did Lavrov meet Choe Son-hui in Moscow?",
    "Wie viele russische Delegationen besuchten Nordkorea von Juli bis November 2023?",
    "How many Russian delegations visited North Korea between July and November 2023?",
    "Which countries are worried about the cooperation between Russia and North Korea?",
    "Was teilte KCNA am 21. Januar mit?",
]


def prompts() -> list[list[dict[str, str]]]:
    """Real answer prompts: the seed's evidence sentences under newsrag's rules and worked example."""
    from rag.answer import answer_messages, gather_evidence
    from rag.lang import detect_language
    from rag.settings import get_settings
    from rag.types import Filters

    out = []
    for q in QUESTIONS:
        lang = detect_language(q, short=True, default="en")
        ev = gather_evidence(q, q, lang, "bench-isolation", Filters(), get_settings(), {})
        out.append(answer_messages(q, lang, ev.sources, []))
    return out


def in_process_ttft(llama, messages) -> float:
    """Time to the first content piece; the answer is read to its end (48 tokens) as an app would."""
    t, first = time.perf_counter(), None
    for chunk in llama.create_chat_completion(messages, max_tokens=48, temperature=0.1, stream=True,
                                              repeat_penalty=1.1):
        if first is None and chunk["choices"][0]["delta"].get("content"):
            first = time.perf_counter() - t
    return first if first is not None else time.perf_counter() - t


def child_ttft(model, messages) -> float:
    t, first = time.perf_counter(), None
    for _ in model.stream(messages, 48, 0.1, threading.Event()):
        if first is None:
            first = time.perf_counter() - t
    return first if first is not None else time.perf_counter() - t


def main() -> dict:
    from llama_cpp import Llama

    from bench.common import SEED_DIR, use_bench_settings
    from ingest.pipeline import ingest
    from rag.llm import LocalLLM
    from rag.models import llm_model_file
    from rag.settings import get_settings

    use_bench_settings()
    ingest([SEED_DIR], collection="bench-isolation")
    settings = get_settings()
    messages = prompts()
    t = time.perf_counter()
    llama = Llama(model_path=str(llm_model_file(settings)), n_ctx=settings.llm_context, n_threads=settings.llm_threads,
                  n_batch=256, verbose=False)
    load_in_process = time.perf_counter() - t
    t = time.perf_counter()
    child = LocalLLM(settings)
    child.prepare()
    load_child = time.perf_counter() - t
    # warm-up: the fixed prefix (rules + example) is cached in both, as in a running app
    in_process_ttft(llama, messages[0])
    child_ttft(child, messages[0])
    a, b = [], []
    for m in messages[1:] + messages[:1]:
        a.append(in_process_ttft(llama, m))
        b.append(child_ttft(child, m))
    child.close()
    res = {"in_process_ttft_p50": statistics.median(a), "child_ttft_p50": statistics.median(b),
           "ratio_child_vs_in_process": statistics.median(b) / statistics.median(a),
           "in_process_load_s": load_in_process, "child_load_s": load_child, "prompts": len(a)}
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
