"""Tokens/s of the portable llama.cpp build (what `make setup` installs) against another build of the same
llama-cpp-python, side by side in one run, same model and prompt.

    python -m bench.llama_build                 native: `-DGGML_NATIVE=ON`, compiled for this machine's CPU
    python -m bench.llama_build avx512          the avx512 CPU variant's flags (AVX-512 + VBMI/VNNI, no AMX)
    python -m bench.llama_build native-avx2     native code generation with AVX-512 off (a CPU without it)

Three rows: "portable" is the wheel `make setup` installs, alone; "shipped" is what the LLM child runs on this
machine, the same wheel with the CPU variant rag.cpu_variants picks for this CPU (the portable one again
where no variant fits, then the row is left out); and the other build.

Each other build is compiled once into ~/.cache/newsrag/llama-wheels/<build>-<cpu key>-<flags key>. Each build runs in
its own child process (the other one from its unpacked wheel put first on PYTHONPATH); each reports prompt
evaluation and generation speed, the median of REPEATS runs after a warm-up. A build that crashes (the
native one does on an Intel VM that advertises AMX, issue 11) is reported as crashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

from rag.cpu_variants import VARIANTS
from rag.errors import exit_status

VERSION = "0.3.36"
WHEELS = Path.home() / ".cache" / "newsrag" / "llama-wheels"


def cpu_key() -> str:
    """A native wheel belongs to the CPU it was compiled on: key its cache by the CPU's model name and flags."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = sorted({ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


# The other builds: a native one, and each CPU variant `make setup` ships (rag/cpu_variants.py), here as a
# whole wheel with the same instruction-set flags. "native-avx2" is a native build with AVX-512 switched off:
# on a CPU with AVX-512 it stands in for a native build on an x86-64 CPU without it (the portable wheel's
# kernels, compiled with -march=native code generation), where no CPU variant fits and the portable wheel runs.
# PORTABLE_FLAGS are the instruction-set part of the Makefile's LLAMA_CMAKE_ARGS.
PORTABLE_FLAGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
                  "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF")
BUILDS = {"native": "-DGGML_NATIVE=ON",
          "native-avx2": f"{PORTABLE_FLAGS} -DCMAKE_C_FLAGS='-march=native -mno-avx512f' "
                         "-DCMAKE_CXX_FLAGS='-march=native -mno-avx512f'",
          **{v.name: v.cmake_args for v in VARIANTS}}
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


def build_dir(build: str) -> Path:
    """One folder per build, CPU and flags: a wheel built with other flags is never reused."""
    return WHEELS / f"{build}-{cpu_key()}-{hashlib.sha256(BUILDS[build].encode()).hexdigest()[:8]}"


def other_wheel(build: str) -> Path:
    folder = build_dir(build)
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building a {build} llama-cpp-python wheel (once, ~10 min on 2 cores): {BUILDS[build]}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--no-deps", "--no-binary",
                    "llama-cpp-python", "-w", str(folder), f"llama-cpp-python=={VERSION}"],
                   env={**os.environ, "CMAKE_ARGS": BUILDS[build]}, check=True)
    return sorted(folder.glob("llama_cpp_python-*.whl"))[0]


def probe(model: Path, threads: int, pythonpath: str | None, child_env: dict[str, str] | None = None) -> dict:
    """One build's speeds, or its crash: a native build can die with SIGILL where the CPU advertises
    instructions that fault (issue 11), and that is a result to report, not a reason to stop."""
    env = dict(child_env or os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", PROBE, str(model), str(threads), str(REPEATS)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        return {"crashed": exit_status(out.returncode), "stderr": out.stderr.strip()[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(other: str = "native") -> dict:
    from rag import cpu_variants
    from rag.models import PACKAGED_LLMS, gguf_path
    from rag.settings import get_settings

    model = gguf_path(PACKAGED_LLMS["qwen2.5-1.5b"])
    threads = os.cpu_count() or 2
    unpacked = build_dir(other) / "unpacked"
    if not (unpacked / "llama_cpp").exists():
        with zipfile.ZipFile(other_wheel(other)) as wheel:
            wheel.extractall(unpacked)
    variant, variant_env = cpu_variants.child_env(get_settings().llm_cpu_variant)
    runs: list[tuple[str, str | None, dict[str, str] | None]] = [("portable", None, None), (other, str(unpacked), None)]
    if variant_env is not None:
        runs.insert(1, ("shipped", None, variant_env))
    results: dict = {}
    # Interleaved so that load on the machine affects every build alike.
    for build, path, env in runs + runs:
        r = probe(model, threads, path, env)
        if "crashed" in r:
            print(f"{build} build crashed: {r['crashed']}: {r['stderr']}", flush=True)
            results.setdefault(f"{build} crashes", []).append(r["crashed"])
            continue
        row = results.setdefault(build, {"prompt_tps": [], "gen_tps": [], "system_info": r["system_info"]})
        row["prompt_tps"] += r["prompt_tps"]
        row["gen_tps"] += r["gen_tps"]
    summary: dict = {b: {"prompt_tps": statistics.median(r["prompt_tps"]), "gen_tps": statistics.median(r["gen_tps"]),
                         "system_info": r["system_info"]} for b, r in results.items() if isinstance(r, dict)}
    summary["crashes"] = {b: r for b, r in results.items() if isinstance(r, list)}
    summary["other"] = other
    summary["shipped_variant"] = variant if variant_env is not None else ""  # "": the child runs the portable wheel
    summary["ratio"] = {f"{mine} / {other}": {k: summary[mine][k] / summary[other][k] for k in ("prompt_tps", "gen_tps")}
                        for mine in ("portable", "shipped") if mine in summary and other in summary}
    return summary


def table(summary: dict) -> str:
    lines = ["| build | prompt tokens/s | generated tokens/s | llama.cpp CPU features |", "|---|---|---|---|"]
    for build in ("portable", "shipped", summary["other"]):
        if build == "shipped" and not summary["shipped_variant"]:
            continue  # no CPU variant fits this machine: the child runs the portable build
        if build not in summary:
            lines.append(f"| {build} | crashed: {summary['crashes']} | | |")
            continue
        r = summary[build]
        feats = " ".join(p.split("=")[0].strip() for p in r["system_info"].replace(":", "|").split("|")
                         if p.strip().endswith("= 1"))
        name = f"shipped ({summary['shipped_variant']} variant)" if build == "shipped" else build
        lines.append(f"| {name} | {r['prompt_tps']:.1f} | {r['gen_tps']:.1f} | {feats} |")
    for pair, ratio in summary["ratio"].items():
        lines.append(f"\n{pair}: prompt {ratio['prompt_tps']:.2f}, generation {ratio['gen_tps']:.2f} "
                     f"(qwen2.5-1.5b Q4_K_M, {os.cpu_count()} threads, median of {2 * REPEATS} runs each).")
    return "\n".join(lines)


if __name__ == "__main__":
    res = main(sys.argv[1] if len(sys.argv) > 1 else "native")
    print(table(res))
    print(json.dumps(res, indent=2))
