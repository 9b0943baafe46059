"""Cold start of `rag ask` (issue 16): the wall time of new processes, and where the time goes.

Two measurements, both in new Python processes against an existing collection:
- `rag ask ... --llm P` as a user runs it: wall time and the process's own peak memory (VmHWM), for the
  extractive answerer and the local LLM, alternating, `--runs` times each.
- One phase-timed process per answerer: the same work as `rag ask`, with a timer around each thing a new
  process has to load first (imports, the Chroma store, the retrieval embedder, the answer scorer, the BM25
  index, the language detector, the LLM child) and then the answer itself, which finds them loaded.
Each run asks a different seed question. `local-fresh` is the local LLM with the prompt-prefix states that
earlier LLM children kept (DATA_DIR/cache/llm-prefix) deleted first, as on the first `rag ask` ever.

    python -m bench.cold_start -c news --runs 3 [--llm extractive local local-fresh]
    python -m bench.cold_start -c news --runs 3 --chat "Wann traf Lawrow Choe Son-hui?"

`--chat` measures instead what the chat and `rag serve` meet: the first question after the process started
and the reader took 20 s to type, with and without `rag.answer.warm_up` at start. `--serve` measures new
`rag ask` processes while a `rag serve` for the same data folder runs and answers them (rag/serve_client.py);
the plain runs pass `--in-process`, so a server that happens to run does not change them.

    python -m bench.cold_start -c news --runs 3 --serve

The collection must exist (`rag ingest ... -c NAME`); RAG_DATA_DIR picks the data folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

QUESTION = "When will Putin visit North Korea?"

# Runs in the new process: each phase loads one thing the first answer needs, in the order ask() needs it.
PHASES = r"""
import json, sys, time
T0 = time.perf_counter()
question, collection, provider = sys.argv[1:4]
out = {}
def phase(name, fn):
    t = time.perf_counter(); value = fn(); out[name] = time.perf_counter() - t; return value
phase("imports", lambda: __import__("rag.cli") and __import__("rag.answer"))
from rag.settings import get_settings
settings = get_settings()
from rag.store import Store
def open_store():
    store = Store(settings)
    assert store.exists(collection), f"no collection {collection!r}"
    return store
store = phase("store open", open_store)
from rag import keyword, lang, models
phase("retrieval embedder", lambda: models.load_embedder(settings))
phase("answer scorer", lambda: models.load_scorer(settings))
phase("BM25 index", lambda: keyword.get_index(store, collection, settings))
phase("language", lambda: lang.detect_language(question, short=True, default="en"))
if provider != "extractive":
    from rag.llm import get_chat_model
    model = get_chat_model(provider, settings)
    prepare = getattr(model, "prepare", None)
    phase("LLM child start", lambda: prepare and prepare())
from rag.answer import ask
answer = phase("answer (retrieval, generation, checks)", lambda: ask(question, collection=collection, llm=provider))
out["in process"] = time.perf_counter() - T0
out["first token (in ask)"] = answer.timings.get("first_token", 0.0)
print("PHASES " + json.dumps(out))
"""

# The chat's (and `rag serve`'s) first question: the process starts, loads what it loads at start, the reader
# takes `pause` seconds to type, then asks. "before" = the retrieval embedder loaded at start (what the chat
# did until stop 18), "warm_up" = rag.answer.warm_up (embedders, LLM child, the child reading the fixed prefix).
FIRST_QUESTION = r"""
import json, sys, time
question, collection, mode, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
from rag.answer import ask, warm_up
from rag.models import load_embedder
warm_up("local") if mode == "warm_up" else load_embedder()
time.sleep(pause)
answer = ask(question, collection=collection, llm="local")
print("FIRST " + json.dumps({"first_token": answer.timings.get("first_token", 0.0),
                             "total": answer.timings.get("total", 0.0), "answered": answer.answered}))
"""

# `rag ask` exactly as the CLI runs it, reporting this process's own peak memory. VmHWM, not ru_maxrss:
# Linux carries the parent's high-water mark into ru_maxrss across fork+exec.
CLI = (
    "import re, runpy, sys; sys.argv = ['rag', 'ask', sys.argv[1], '-c', sys.argv[2], '--llm', sys.argv[3], "
    "*sys.argv[4:]]\n"
    # atexit, not `finally`: `rag ask` ends its process without the interpreter's teardown (rag.cli._end_program)
    "import atexit\natexit.register(lambda: print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', "
    "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
    "runpy.run_module('rag.cli', run_name='__main__')"
)


def run_child(code: str, tag: str, *args: str) -> tuple[float, str]:
    """Run `code` in a new Python process: its wall time, and what its last line starting with `tag` says."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=dict(os.environ), capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [x for x in (proc.stdout + "\n" + proc.stderr).splitlines() if x.startswith(tag + " ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"new process {args} failed: {proc.stderr[-800:]}")
    return wall, lines[-1][len(tag) + 1 :]


def cold_cli(collection: str, provider: str, question: str = QUESTION, in_process: bool = True) -> tuple[float, float]:
    """Seconds and peak memory (MB) of one new `rag ask` process (answering in its own process, or through a
    running `rag serve`)."""
    flags = ("--in-process",) if in_process else ()
    seconds, peak_kb = run_child(CLI, "PEAK", question, collection, provider, *flags)
    return seconds, int(peak_kb) / 1024


def run_serve(collection: str, runs: int, providers: tuple[str, ...]) -> dict:
    """New `rag ask` processes while a `rag serve` for the same data folder runs (rag/serve_client.py): the
    server answers. Each run asks a different seed question (the server caches query vectors, so a repeated
    question would flatter it); one question before the runs, as after any server start."""
    import httpx

    from bench.answer import QUESTIONS
    from rag.llm_process import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        cold_cli(collection, providers[-1], "What happened at the Winter Olympics?", in_process=False)
        walls: dict[str, list[float]] = {p: [] for p in providers}
        peaks: dict[str, list[float]] = {p: [] for p in providers}
        for i in range(runs):
            for j, p in enumerate(providers):
                question = QUESTIONS[(i * len(providers) + j) % len(QUESTIONS)]["query"]
                seconds, peak = cold_cli(collection, p, question, in_process=False)
                walls[p].append(seconds)
                peaks[p].append(peak)
                print(f"run {i + 1} {p} via rag serve: {seconds:.2f} s, peak {peak:.0f} MB ({question})", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {p: {"wall_s": walls[p], "wall_p50_s": statistics.median(walls[p]),
                "peak_mb_p50": statistics.median(peaks[p])} for p in providers}


def cold_phases(collection: str, provider: str) -> dict[str, float]:
    """Seconds per phase of one new process, plus its wall time as seen from outside."""
    wall, payload = run_child(PHASES, "PHASES", QUESTION, collection, provider)
    phases = json.loads(payload)
    phases["process wall"] = wall
    phases["interpreter start and exit"] = wall - phases["in process"]
    return phases


def first_question(collection: str, mode: str, question: str, pause: float = 20.0) -> dict[str, float]:
    return json.loads(run_child(FIRST_QUESTION, "FIRST", question, collection, mode, str(pause))[1])


def run_chat(collection: str, runs: int, question: str) -> dict:
    """The first question after start, without and with warm_up, alternating."""
    out: dict[str, list[dict[str, float]]] = {"before": [], "warm_up": []}
    for i in range(runs):
        for mode in out:
            out[mode].append(first_question(collection, mode, question))
            print(f"run {i + 1} {mode}: {json.dumps(out[mode][-1])}", flush=True)
    return {mode: {"first_token_p50_s": statistics.median(r["first_token"] for r in rows),
                   "total_p50_s": statistics.median(r["total"] for r in rows), "runs": rows}
            for mode, rows in out.items()}


def run(collection: str, runs: int, providers: tuple[str, ...]) -> dict:
    """New `rag ask` processes, providers alternating, each run a different seed question, the same for every
    provider in the run (the LLM child keeps the state after its last prompt of each kind on disk, so a
    question asked again would flatter it). "local-fresh" is the local LLM with no kept state: the first
    `rag ask` after installing or upgrading; put it after "local", whose kept state is then the previous
    run's question."""
    import shutil

    from bench.answer import QUESTIONS
    from rag.llm_process import prefix_state_dir
    from rag.settings import get_settings

    walls: dict[str, list[float]] = {p: [] for p in providers}
    peaks: dict[str, list[float]] = {p: [] for p in providers}
    for i in range(runs):
        question = QUESTIONS[i % len(QUESTIONS)]["query"]
        for p in providers:  # alternating, so drift in the machine's load hits all alike
            if p == "local-fresh":
                shutil.rmtree(prefix_state_dir(get_settings()), ignore_errors=True)
            seconds, peak = cold_cli(collection, "local" if p == "local-fresh" else p, question)
            walls[p].append(seconds)
            peaks[p].append(peak)
            print(f"run {i + 1} {p}: {seconds:.2f} s, peak {peak:.0f} MB ({question})", flush=True)
    out: dict = {"collection": collection, "runs": runs, "cli": {}, "phases": {}}
    for p in providers:
        out["cli"][p] = {"wall_s": walls[p], "wall_p50_s": statistics.median(walls[p]),
                         "peak_mb_p50": statistics.median(peaks[p])}
        if p != "local-fresh":
            out["phases"][p] = cold_phases(collection, p)
    return out


def table(result: dict) -> str:
    providers = list(result["cli"])
    lines = ["| phase | " + " | ".join(providers) + " |", "|---|" + "---|" * len(providers)]
    names = list(dict.fromkeys(k for p in providers for k in result["phases"].get(p, {})))
    for name in names:
        cells = [f"{result['phases'][p][name]:.2f}" if name in result["phases"].get(p, {}) else ""
                 for p in providers]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **`rag ask` wall, p50 of runs** | " + " | ".join(
        f"**{result['cli'][p]['wall_p50_s']:.2f}**" for p in providers) + " |")
    lines.append("| `rag ask` peak memory, MB | " + " | ".join(
        f"{result['cli'][p]['peak_mb_p50']:.0f}" for p in providers) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--collection", default="news")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--llm", nargs="+", default=["extractive", "local"])
    parser.add_argument("--out", default="")
    parser.add_argument("--chat", metavar="QUESTION", default="",
                        help="instead: the chat's first question after start, without and with warm_up")
    parser.add_argument("--serve", action="store_true",
                        help="instead: new `rag ask` processes answered by a running `rag serve`")
    args = parser.parse_args()
    if args.serve:
        result = run_serve(args.collection, args.runs, tuple(args.llm))
        print(json.dumps({p: {k: v for k, v in r.items() if k != "wall_s"} for p, r in result.items()}))
    elif args.chat:
        result = run_chat(args.collection, args.runs, args.chat)
        print(json.dumps({m: {k: v for k, v in r.items() if k != "runs"} for m, r in result.items()}))
    else:
        result = run(args.collection, args.runs, tuple(args.llm))
        print(table(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
