"""`rag doctor`: does each part work on this machine? The LLM is tried in a child process, so a build
that cannot run here (SIGILL) is reported instead of ending the check."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from rag.settings import Settings, get_settings

# Exit codes: make chat starts the app with extractive answers when only the LLM fails.
OK, BROKEN, LLM_BROKEN = 0, 2, 3


@dataclass
class Check:
    part: str
    ok: bool
    detail: str
    fix: str = ""


def llama_cpu_features(settings: Settings) -> Check:
    """The CPU features of the llama.cpp build the LLM child loads (rag/cpu_variants.py), read in a child of
    its own (loading the library is native code too)."""
    from rag.cpu_variants import child_env

    variant, env = child_env(settings.llm_cpu_variant, settings.llm_cpu_variants_dir)
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return Check("llama.cpp build", False, "timed out reading the build info", "run `make setup`")
    if out.returncode != 0:
        from rag.llm_process import describe_exit

        return Check("llama.cpp build", False, f"cannot load llama.cpp ({describe_exit(out.returncode)})",
                     "rebuild it with `make setup`")
    # "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | ..." -> the features that are on
    parts = out.stdout.replace("\n", "|").replace(":", "|").split("|")
    features = [part.split("=")[0].strip() for part in parts if part.strip().endswith("= 1")]
    return Check("llama.cpp build", True, f"{variant} build, CPU features: " + (" ".join(features) or "baseline only"))


def llm_check(settings: Settings) -> Check:
    if settings.llm_provider == "extractive":
        return Check("LLM", True, "none configured (extractive answers)")
    from rag.errors import NewsragError
    from rag.llm import get_chat_model, stream_with_timeout

    try:
        model = get_chat_model(settings.llm_provider, settings)
        t = time.perf_counter()
        text = "".join(stream_with_timeout(model, [{"role": "user", "content": "Count from one to five in words."}],
                                           max_tokens=16, temperature=0.0, timeout=settings.llm_timeout))
        took = time.perf_counter() - t
    except NewsragError as exc:
        fix = ("rebuild llama.cpp with `make setup` (portable flags) or set RAG_LLM_PROVIDER=extractive"
               if settings.llm_provider == "local" else "check RAG_OPENAI_BASE_URL and that the server runs")
        return Check("LLM", False, str(exc), fix)
    if not text.strip():
        return Check("LLM", False, "the model answered nothing", "delete the GGUF file and run `rag models fetch`")
    return Check("LLM", True, f"{model.name}: answered {text.strip()[:40]!r} in {took:.1f}s (load and answer)")


def embedder_check(settings: Settings) -> Check:
    from rag.errors import EmbedderUnavailableError, NewsragError
    from rag.models import load_embedder, load_scorer

    try:
        embedder = load_embedder(settings)
        vec = embedder.embed_queries(["Wann besuchte Lawrow Pjöngjang?"])[0]
        scorer = load_scorer(settings)
        scorer.embed_queries(["Wann besuchte Lawrow Pjöngjang?"])
    except EmbedderUnavailableError as exc:
        return Check("embedder", False, str(exc), "start the embedding server or fix RAG_EMBED_BASE_URL")
    except NewsragError as exc:
        return Check("embedder", False, str(exc), "run `rag models fetch`")
    scoring = "" if scorer is embedder else f"; answers scored with {scorer.signature}"
    return Check("embedder", True, f"{embedder.signature} ({embedder.backend}): {len(vec)} dimensions{scoring}")


def store_check(settings: Settings) -> Check:
    from rag.errors import NewsragError
    from rag.store import Store

    where = f"server {settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_dir)
    try:
        names = Store(settings).collection_names()
    except NewsragError as exc:
        return Check("Chroma", False, str(exc), "start the Chroma server or unset RAG_CHROMA_HOST")
    return Check("Chroma", True, f"{where}: {len(names)} collection(s)")


def run_checks(settings: Settings | None = None) -> list[Check]:
    settings = settings or get_settings()
    checks = [llama_cpu_features(settings)] if settings.llm_provider == "local" and not settings.llm_server_command else []
    return checks + [embedder_check(settings), store_check(settings), llm_check(settings)]


def exit_code(checks: list[Check]) -> int:
    failed = {c.part for c in checks if not c.ok}
    if not failed:
        return OK
    return LLM_BROKEN if failed <= {"LLM", "llama.cpp build"} else BROKEN
