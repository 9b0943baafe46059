"""Tokens/s of the portable llama.cpp build (what `make setup` installs) against a native build
(`-DGGML_NATIVE=ON`, compiled for this machine's CPU), side by side in one run, same model and prompt.

    python -m bench.llama_build            (builds the native wheel once into ~/.cache/newsrag/llama-wheels/native)

Each build runs in its own child process (the native one from the unpacked wheel put first on PYTHONPATH);
each reports prompt evaluation and generation speed, the median of REPEATS runs after a warm-up.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

VERSION = "0.3.36"
NATIVE_DIR = Path.home() / ".cache" / "newsrag" / "llama-wheels" / "native"
REPEATS = 3

PROBE = r"""
import json, sys, time
import llama_cpp
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=1024, n_threads=int(sys.argv[2]), n_batch=256, verbose=False)
prompt = ("Russland und Nordkorea verstärken ihre Beziehungen. " * 12).strip()
n_prompt = len(llm.tokenize(prompt.encode()))
pp, tg = [], []
for i in range(int(sys.argv[3]) + 1):
    llm.reset()
    t = time.perf_counter()
    llm.eval(llm.tokenize(prompt.encode()))
    t_pp = time.perf_counter() - t
    t = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=48, temperature=0.0)
    n_gen = out["usage"]["completion_tokens"]
    t_tg = time.perf_counter() - t
    if i:  # the first run warms caches
        pp.append(n_prompt / t_pp)
        tg.append(n_gen / t_tg)
info = llama_cpp.llama_print_system_info().decode()
print(json.dumps({"prompt_tps": pp, "gen_tps": tg, "system_info": info.strip()}))
"""


def native_wheel() -> Path:
    found = sorted(NATIVE_DIR.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    NATIVE_DIR.mkdir(parents=True, exist_ok=True)
    print("building a native llama-cpp-python wheel (once, ~10 min on 2 cores)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--no-deps", "--no-binary",
                    "llama-cpp-python", "-w", str(NATIVE_DIR), f"llama-cpp-python=={VERSION}"],
                   env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"}, check=True)
    return sorted(NATIVE_DIR.glob("llama_cpp_python-*.whl"))[0]


def probe(model: Path, threads: int, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", PROBE, str(model), str(threads), str(REPEATS)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> dict:
    from rag.models import PACKAGED_LLMS, gguf_path

    model = gguf_path(PACKAGED_LLMS["qwen2.5-1.5b"])
    threads = os.cpu_count() or 2
    unpacked = NATIVE_DIR / "unpacked"
    if not (unpacked / "llama_cpp").exists():
        with zipfile.ZipFile(native_wheel()) as wheel:
            wheel.extractall(unpacked)
    results = {}
    # Interleaved so that load on the machine affects both alike.
    for build, path in (("portable", None), ("native", str(unpacked)), ("portable", None), ("native", str(unpacked))):
        r = probe(model, threads, path)
        row = results.setdefault(build, {"prompt_tps": [], "gen_tps": [], "system_info": r["system_info"]})
        row["prompt_tps"] += r["prompt_tps"]
        row["gen_tps"] += r["gen_tps"]
    summary = {b: {"prompt_tps": statistics.median(r["prompt_tps"]), "gen_tps": statistics.median(r["gen_tps"]),
                   "system_info": r["system_info"]} for b, r in results.items()}
    summary["ratio"] = {k: summary["portable"][k] / summary["native"][k] for k in ("prompt_tps", "gen_tps")}
    return summary


def table(summary: dict) -> str:
    lines = ["| build | prompt tokens/s | generated tokens/s | llama.cpp CPU features |", "|---|---|---|---|"]
    for build in ("portable", "native"):
        r = summary[build]
        feats = " ".join(p.split("=")[0].strip() for p in r["system_info"].replace(":", "|").split("|")
                         if p.strip().endswith("= 1"))
        lines.append(f"| {build} | {r['prompt_tps']:.1f} | {r['gen_tps']:.1f} | {feats} |")
    ratio = summary["ratio"]
    lines.append(f"\nportable / native: prompt {ratio['prompt_tps']:.2f}, generation {ratio['gen_tps']:.2f} "
                 f"(qwen2.5-1.5b Q4_K_M, {os.cpu_count()} threads, median of {2 * REPEATS} runs each).")
    return "\n".join(lines)


if __name__ == "__main__":
    res = main()
    print(table(res))
    print(json.dumps(res, indent=2))
