"""The local LLM runs in a child process: when it crashes (SIGILL, SIGSEGV, SIGKILL mid-answer) or hangs,
the asking process (HTTP API, Streamlit, CLI) stays alive, answers extractively with the notice, and the
next question starts a new child. Real child processes throughout; nothing about the crash is mocked."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, SEED_ID, use_settings

FAKE = Path(__file__).resolve().parent / "fake_llm_server.py"
QUESTION = "Wie viele russische Delegationen besuchten Nordkorea?"


@pytest.fixture
def fake_llm(corpus, tmp_path):
    """Point the local provider at the stand-in child; yields a function that picks its failure mode."""
    from rag import llm

    saved = dict(os.environ)
    state = tmp_path / "llm-state"

    def use(mode: str, timeout: str = "120") -> Path:
        command = f"{sys.executable} {FAKE} --port {{port}} --mode {mode} --state {state}"
        use_settings(corpus, llm_server_command=command, llm_provider="local", llm_timeout=timeout)
        return state

    yield use
    llm._close_models()
    os.environ.clear()
    os.environ.update(saved)
    use_settings(Path(saved.get("RAG_DATA_DIR", "data")))


def starts(state: Path) -> int:
    return int((state / "starts").read_text())


def local_server():
    from rag.llm import get_chat_model

    return get_chat_model("local").server


def ask_api(client: TestClient, question: str = QUESTION) -> dict:
    r = client.post("/ask", json={"question": question, "collection": "news", "llm": "local"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode", ["sigill", "sigsegv"])
def test_child_that_dies_by_signal_falls_back_and_restarts_http_api(fake_llm, mode, caplog):
    from rag.api import create_app

    state = fake_llm(mode)
    client = TestClient(create_app())
    with caplog.at_level(logging.ERROR, logger="newsrag.llm"):
        first = ask_api(client)
    # The whole answer in the message, should this ever fail again (the stand-in once answered before dying).
    assert first["provider"] == "extractive" and first["answered"], (first, list(state.glob("*")))
    assert "Sprachmodell" in first["notice"] and ("SIGILL" in first["notice"] or "SIGSEGV" in first["notice"])
    assert first["citations"][0]["doc_id"] == SEED_ID
    crash_lines = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(crash_lines) == 1 and f"SIG{mode[3:].upper()}" in crash_lines[0]  # logged once, with the signal
    second = ask_api(client)  # the same process serves the next question through a new child
    assert second["provider"] == "local" and not second["notice"], second
    assert second["answered"] and "vier" in second["text"]
    assert starts(state) == 2


def test_child_that_hangs_is_killed_and_restarted_streamlit(fake_llm):
    from streamlit.testing.v1 import AppTest

    state = fake_llm("hang", timeout="3")
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=300)
    at.run()
    at.sidebar.selectbox[1].set_value("local").run()
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown) + " ".join(w.value for w in at.warning) + " ".join(
        c.value for c in at.caption) + " ".join(i.value for i in at.info)
    assert "Sprachmodell" in shown and "3s" in shown, shown
    hung_pid = local_server().pid
    assert local_server().proc.poll() is not None  # the hung child was killed
    at.chat_input[0].set_value("Und wie viele Delegationen waren es genau?").run()
    assert not at.exception
    assert local_server().pid != hung_pid and local_server().alive()
    assert starts(state) == 2
    assert len([c for c in at.chat_message if c.name == "assistant"]) == 2


def test_cli_survives_a_crashing_child(fake_llm, tmp_path):
    state = tmp_path / "cli-state"
    env = {**os.environ, "RAG_LLM_SERVER_COMMAND": f"{sys.executable} {FAKE} --port {{port}} --mode sigill --state {state}"}
    out = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "-c", "news", "--llm", "local", "--json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["provider"] == "extractive" and data["answered"] and "SIGILL" in data["notice"]


def test_cli_stops_its_llm_child_when_it_ends(fake_llm, tmp_path):
    """`rag ask` ends without the interpreter's teardown (rag.cli._end_program), and still stops its child."""
    state = tmp_path / "cli-state"
    env = {**os.environ, "RAG_LLM_SERVER_COMMAND": f"{sys.executable} {FAKE} --port {{port}} --mode ok --state {state}"}
    out = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "-c", "news", "--llm", "local"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "— final answer —" in out.stdout and "[1]" in out.stdout  # everything printed reached the pipe
    child = int((state / "pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the LLM child outlived `rag ask`"


@pytest.mark.slow
def test_real_llama_server_killed_mid_answer(corpus):
    """The real llama.cpp child, SIGKILLed after its first token: extractive answer, then a new child."""
    from rag import llm
    from rag.api import create_app

    saved = dict(os.environ)
    use_settings(corpus, llm_provider="local")
    try:
        client = TestClient(create_app())
        killed: list[int] = []
        with client.stream("POST", "/ask", json={"question": "When did Lavrov meet Choe Son-hui in Moscow?",
                                                 "collection": "news", "llm": "local", "stream": True}) as resp:
            body = ""
            for chunk in resp.iter_text():
                body += chunk
                if not killed and "event: token" in body:
                    pid = local_server().pid
                    killed.append(pid)
                    threading.Thread(target=os.kill, args=(pid, signal.SIGKILL)).start()
        final = json.loads(body.split("event: answer\ndata: ")[1].split("\n\n")[0])
        assert killed and final["provider"] == "extractive" and "SIGKILL" in final["notice"], final["notice"]
        again = ask_api(client, "When did Lavrov meet Choe Son-hui in Moscow?")
        assert again["provider"] == "local" and not again["notice"] and "16" in again["text"]
        assert local_server().pid != killed[0]
    finally:
        llm._close_models()
        os.environ.clear()
        os.environ.update(saved)
        use_settings(Path(saved.get("RAG_DATA_DIR", "data")))


def test_prefix_state_cache_keeps_the_answer_state_through_a_claim_check():
    """The child's prompt cache holds one KV state per kind of prompt: after a claim check, the next
    answer still finds the state saved after the last answer (so it re-reads only its own sources)."""
    import numpy as np
    from llama_cpp.llama import LlamaState

    from rag.llm_process import prefix_state_cache

    def state(tokens: list[int]) -> LlamaState:
        ids = np.array(tokens, dtype=np.intc)
        return LlamaState(input_ids=ids, scores=np.ones((4, 10), dtype=np.single), n_tokens=len(tokens),
                          llama_state=b"kv", llama_state_size=2, seed=0)

    answer_prefix = list(range(100, 140))  # the chat template, rules and worked example of every answer
    check_prefix = list(range(100, 105)) + list(range(500, 535))  # the same template start, another system text
    cache = prefix_state_cache()
    cache[answer_prefix + [1, 2, 3]] = state(answer_prefix + [1, 2, 3])
    cache[check_prefix + [7]] = state(check_prefix + [7])
    cache[check_prefix + [8]] = state(check_prefix + [8])  # a second claim: replaces the first check state

    assert len(cache.cache_state) == 2
    hit = cache[answer_prefix + [9, 9]]  # the next question
    assert hit.input_ids.tolist()[: len(answer_prefix)] == answer_prefix
    assert cache[check_prefix + [9]].input_ids.tolist() == check_prefix + [8]
    # the logits copy is not kept (sampling happens inside llama.cpp), but loads back in its shape
    assert hit.scores.shape == (4, 10) and hit.scores.strides[0] == 0  # one row, broadcast
    cache[answer_prefix + [4]] = state(answer_prefix + [4])  # the next answer replaces the last one
    assert sorted(len(k) for k in cache.cache_state) == [41, 41]


# ---------------------------------------------------------------------- llama.cpp CPU variants
SAPPHIRE_RAPIDS = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse4_2 avx avx2 fma f16c "
                   "bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512vbmi avx512_vnni avx512_bf16 amx_tile "
                   "amx_int8\n")
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 vaes\n"


def test_cpu_variant_is_chosen_only_where_the_cpu_runs_every_instruction_it_uses():
    from rag.cpu_variants import choose, cpu_flags

    spr, zen3 = cpu_flags(SAPPHIRE_RAPIDS), cpu_flags(ZEN3)
    assert "avx512_vnni" in spr and "avx512f" not in zen3
    assert choose("auto", spr, ["avx512"]) == "avx512"
    assert choose("auto", zen3, ["avx512"]) == "portable"  # a venv moved to an AVX2-only CPU stays runnable
    assert choose("auto", spr - {"avx512vbmi"}, ["avx512"]) == "portable"  # Skylake-X: AVX-512 without VBMI
    assert choose("auto", spr, []) == "portable"  # not compiled (a native build, or the build failed)
    assert choose("portable", spr, ["avx512"]) == "portable"
    assert choose("avx512", zen3, ["avx512"]) == "avx512"  # named by the user: theirs to decide
    assert choose("avx512", spr, []) == "portable"
    assert cpu_flags("no flags line") == frozenset()


def test_installed_cpu_variant_loads_in_a_child_where_the_cpu_has_it(corpus):
    """On a CPU with AVX-512 (Ice Lake, Sapphire Rapids, Zen 4), `make setup` compiled the avx512 variant and
    the LLM child loads it: the build `rag doctor` reports is that one."""
    from rag.cpu_variants import choose, cpu_flags, default_root, installed
    from rag.doctor import llama_cpu_features
    from rag.settings import get_settings

    if choose("auto", cpu_flags(), installed(default_root())) != "avx512":
        pytest.skip("this CPU has no AVX-512, or the variant was not compiled")
    check = llama_cpu_features(get_settings())
    assert check.ok and check.detail.startswith("avx512 build") and " AVX512 " in check.detail, check.detail
    assert "AMX" not in check.detail


@pytest.mark.slow
def test_real_llama_child_that_dies_on_a_cpu_variant_restarts_on_the_portable_build(corpus, tmp_path, caplog):
    """A variant whose libllama dies with a real SIGILL as it loads (a constructor that raises it). The child
    starts while retrieval runs, so its death is usually seen before the question connects: the same question
    is then answered by a new child on the portable build. Seen later, the question gets the extractive answer
    with the notice. Either way the crash is logged once, and the next child loads the portable build."""
    from rag import llm
    from rag.answer import ask

    compiler = next((c for c in ("cc", "gcc") if shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C compiler (make setup needs one for llama.cpp)")
    variant = tmp_path / "variants" / "avx512"
    variant.mkdir(parents=True)
    (tmp_path / "boom.c").write_text("#include <signal.h>\n"
                                     "__attribute__((constructor)) static void boom(void) { raise(SIGILL); }\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(variant / "libllama.so"), str(tmp_path / "boom.c")],
                   check=True)
    saved = dict(os.environ)
    os.environ.pop("LLAMA_CPP_LIB_PATH", None)
    use_settings(corpus, llm_provider="local", llm_cpu_variant="avx512",
                 llm_cpu_variants_dir=str(tmp_path / "variants"))
    try:
        question = "When did Lavrov meet Choe Son-hui in Moscow?"
        with caplog.at_level(logging.ERROR, logger="newsrag.llm"):
            first = ask(question, collection="news", llm="local")
        if first.provider == "extractive":
            assert "SIGILL" in first.notice, first.notice
        else:
            assert first.provider == "local" and not first.notice and "16" in first.text, first
        died = [r.getMessage() for r in caplog.records if "died:" in r.getMessage()]
        assert len(died) == 1 and "SIGILL" in died[0], died
        assert any("portable build" in r.getMessage() for r in caplog.records)
        again = ask(question, collection="news", llm="local")
        assert again.provider == "local" and not again.notice and "16" in again.text, again
        assert local_server().variant == "portable"
    finally:
        llm._close_models()
        os.environ.clear()
        os.environ.update(saved)
        use_settings(Path(saved.get("RAG_DATA_DIR", "data")))


@pytest.mark.slow
def test_prompt_prefix_states_are_kept_across_children_and_bad_ones_ignored(corpus):
    """Each `rag ask` starts a new LLM child. The first keeps the state after its answer and claim-check
    prompts in DATA_DIR/cache/llm-prefix; the next child loads them (it reads only what follows the prompts'
    fixed parts). A truncated or altered state file is skipped with a line in the child's log, and the answer
    is still given."""
    from rag.llm_process import prefix_state_dir
    from rag.settings import get_settings

    states = prefix_state_dir(get_settings())
    shutil.rmtree(states, ignore_errors=True)
    log_file = corpus / "logs" / "llm-server.log"

    def ask(question: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "rag.cli", "ask", question, "-c", "news", "--llm", "local",
                              "--json", "--in-process"], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def new_log_lines(before: int) -> str:
        return log_file.read_text(errors="replace")[before:]

    first = ask("When did Lavrov meet Choe Son-hui in Moscow?")
    assert first["answered"] and first["provider"] == "local"
    kept = sorted(states.glob("prefix-*.npz"))
    assert len(kept) == 2, kept  # the answer prompt's and the claim check's

    mark = len(log_file.read_text(errors="replace"))
    second = ask("Wann kündigte die KCNA den Besuch Putins an?")
    assert second["answered"] and second["provider"] == "local"
    assert "2 kept prompt-prefix state(s) loaded" in new_log_lines(mark)

    kept[0].write_bytes(kept[0].read_bytes()[: 1000])  # truncated
    data = bytearray(kept[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the KV state changed
    kept[1].write_bytes(bytes(data))
    mark = len(log_file.read_text(errors="replace"))
    third = ask("When did Lavrov meet Choe Son-hui in Moscow?")
    assert third["answered"] and third["provider"] == "local" and not third["notice"]
    lines = new_log_lines(mark)
    assert lines.count("ignoring the kept LLM prefix state") == 2 and "0 kept prompt-prefix state(s)" in lines


# Run in a child: this test process must not import llama_cpp (the answer path never does in the parent).
STATES_WITHOUT_LOGITS_SCRIPT = """
import json
from llama_cpp import Llama
from rag import prompts
from rag.llm_process import N_BATCH, prefix_state_cache, states_without_logits
from rag.models import llm_model_file
from rag.settings import get_settings

source = prompts.format_source(1, "Lawrow trifft Choe", "Beispiel", "2024-01-16", "Der russische Außenminister "
                               "Sergej Lawrow hat am 16. Januar 2024 in Moskau Choe Son-hui empfangen.")
quote = "Sergej Lawrow hat am 16. Januar 2024 in Moskau Choe Son-hui empfangen."

def replies(patched):
    llm = Llama(model_path=str(llm_model_file(get_settings())), n_ctx=2048, n_threads=2, n_batch=N_BATCH,
                verbose=False)
    if patched:
        states_without_logits(llm)
    llm.set_cache(prefix_state_cache())
    loads = []
    load = llm.load_state
    llm.load_state = lambda state: (loads.append(state.n_tokens), load(state))
    out = []
    # answer, claim check, answer: the second answer restores the state kept after the first
    for messages, n in ((prompts.answer_messages("When did Lavrov meet Choe Son-hui?", [source], "English", []), 24),
                        (prompts.check_messages("When did Lavrov meet Choe Son-hui?", quote), 8),
                        (prompts.answer_messages("Wo trafen sie sich?", [source], "German", []), 24)):
        out.append(llm.create_chat_completion(messages, max_tokens=n, temperature=0.0)["choices"][0]["message"]
                   ["content"])
    return {"replies": out, "loads": len(loads)}

print(json.dumps([replies(False), replies(True)]))
"""


@pytest.mark.slow
def test_states_without_logits_give_the_same_replies_as_the_library_states(data_dir):
    """rag.llm_process.states_without_logits saves and restores the KV state without llama-cpp-python's
    155 MB logits copies: the same prompts (answers and claim checks alternating, so the prompt cache
    restores states) give the same greedy replies as with the library's own save_state/load_state."""
    env = {**os.environ, "RAG_LLM_MODEL": "qwen2.5-0.5b"}  # the faster packaged model: same state code
    out = subprocess.run([sys.executable, "-c", STATES_WITHOUT_LOGITS_SCRIPT], capture_output=True, text=True,
                         timeout=600, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    library, patched = json.loads(out.stdout.strip().splitlines()[-1])
    assert patched["loads"] >= 1 and library["loads"] == patched["loads"]  # a cached state was restored
    assert patched["replies"] == library["replies"]
    assert "2024" in patched["replies"][0]
