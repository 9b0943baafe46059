"""Which build of llama.cpp's CPU backend the local LLM child loads: the portable one, or a faster variant
that `make setup` compiles beside it and that is used only where the CPU can run it.

Why: `make setup` compiles llama.cpp for a fixed x86-64 level (AVX2/FMA/F16C/BMI2), so that a venv never
holds code its CPU cannot run (issue 11: a native build crashes in its AMX kernels on an Intel VM that
advertises AMX). On a CPU with AVX-512 that leaves prompt evaluation slower: bench/llama_build.py measured
68.7 against 97.9 prompt tokens/s on a 2-core Sapphire Rapids VM, and prompt evaluation is most of the time
to the first token. So `make setup` also compiles llama.cpp's CPU backend alone (libggml-cpu, ~30 s; the
rest of llama.cpp has no CPU-specific kernels) with AVX-512 kernels, into `.venv/llama-cpu/avx512/` beside
copies of the portable libraries. The child loads that folder (llama-cpp-python's `LLAMA_CPP_LIB_PATH`)
only when /proc/cpuinfo lists every instruction set the variant was compiled for. AMX is never compiled in.
If a child that loaded a variant dies of a signal, the next start uses the portable build.

This is llama.cpp's own idea (GGML_CPU_ALL_VARIANTS picks a backend library by the CPU's features), done
here because llama-cpp-python does not load dynamic backends, and because one variant costs 30 s of
compiling where all of them would cost minutes.

    python -m rag.cpu_variants build      (run by `make setup`; does nothing when the variants are current)
    python -m rag.cpu_variants show       (the variant this machine's LLM child would load)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

PORTABLE = "portable"
USER_LIB_PATH = "LLAMA_CPP_LIB_PATH"  # llama-cpp-python's own override; when the user set it, theirs


@dataclass(frozen=True)
class Variant:
    name: str
    cmake_args: str
    needs: frozenset[str]  # /proc/cpuinfo flags the compiled code uses
    cpus: str


# Fastest first. llama.cpp's "icelake" variant: AVX-512 F/CD/VL/DQ/BW with VBMI and VNNI (no BF16, which
# Ice Lake lacks and the packaged Q4_K_M model does not use; no AVX-VNNI, which Zen 4 lacks; never AMX).
VARIANTS: tuple[Variant, ...] = (
    Variant("avx512",
            "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
            "-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=OFF "
            "-DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
            frozenset({"avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
                       "avx512bw", "avx512vbmi", "avx512_vnni"}),
            "Intel Ice Lake / Sapphire Rapids and later, AMD Zen 4 and later"),
)
# The same options as llama-cpp-python's own build, apart from the instruction sets.
COMMON_CMAKE_ARGS = ("-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=OFF -DGGML_LLAMAFILE=ON "
                     "-DGGML_OPENMP=ON -DGGML_CPU_REPACK=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF "
                     "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
                     "-DLLAMA_BUILD_SERVER=OFF")


def default_root() -> Path:
    return Path(sys.prefix) / "llama-cpu"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def installed(root: Path) -> list[str]:
    return [v.name for v in VARIANTS if (root / v.name / "libllama.so").is_file()]


def choose(setting: str, flags: frozenset[str], available: list[str]) -> str:
    """The variant to load: `setting` is "auto" (the fastest installed one this CPU can run), "portable", or a
    variant's name (used when installed, whatever the CPU says: the user asked for it)."""
    if setting == PORTABLE:
        return PORTABLE
    if setting != "auto":
        return setting if setting in available else PORTABLE
    for variant in VARIANTS:
        if variant.name in available and variant.needs <= flags:
            return variant.name
    return PORTABLE


def child_env(setting: str, root: Path | None = None) -> tuple[str, dict[str, str] | None]:
    """(variant name, environment for the child) — None means the parent's environment, unchanged. A
    LLAMA_CPP_LIB_PATH the user set is theirs and is left alone."""
    if USER_LIB_PATH in os.environ:
        return USER_LIB_PATH, None
    root = root or default_root()
    name = choose(setting, cpu_flags(), installed(root))
    if name == PORTABLE:
        return PORTABLE, None
    return name, {**os.environ, USER_LIB_PATH: str(root / name)}


# ---------------------------------------------------------------------- building (make setup)
def portable_lib_dir() -> Path:
    """llama-cpp-python's own library folder, found without importing it (that would load native code)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llama-cpp-python is not installed: run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def build(version: str, cache: Path, root: Path) -> None:
    """Compile each variant's libggml-cpu from the llama-cpp-python sdist of `version` and put it beside
    copies of the portable libraries. Skips variants that are current; never fails the setup: a variant
    that cannot be built is reported and the portable build is used."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return  # the variants are x86-64 instruction sets
    lib = portable_lib_dir()
    for variant in VARIANTS:
        dest = root / variant.name
        stamp = f"{version} {variant.cmake_args} {COMMON_CMAKE_ARGS}\n"
        if (dest / ".built").is_file() and (dest / ".built").read_text() == stamp:
            continue
        try:
            _build_one(variant, version, cache, lib, dest, stamp)
        except (OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
            print(f"newsrag: could not build the {variant.name} llama.cpp CPU variant ({exc}); the portable build "
                  "is used everywhere", file=sys.stderr)


def _build_one(variant: Variant, version: str, cache: Path, lib: Path, dest: Path, stamp: str) -> None:
    if shutil.which("cmake") is None:
        raise OSError("cmake is not on PATH")
    sdist = cache / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "-d", str(cache), f"llama-cpp-python=={version}"], check=True)
    print(f"building llama.cpp's CPU backend for {variant.cpus} ({variant.name}, ~30 s, once)", flush=True)
    with tempfile.TemporaryDirectory(prefix="llama-variant-") as tmp:
        vendored = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, members=[m for m in tar.getmembers() if m.name.startswith(vendored)], filter="data")
        src, out = Path(tmp) / vendored, Path(tmp) / "build"
        _quiet(["cmake", "-S", str(src), "-B", str(out), *COMMON_CMAKE_ARGS.split(), *variant.cmake_args.split()])
        _quiet(["cmake", "--build", str(out), "--target", "ggml-cpu", "-j", str(os.cpu_count() or 2)])
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        # Copies, not links: llama-cpp-python loads libllama.so from LLAMA_CPP_LIB_PATH, and libllama finds
        # libggml and libggml-cpu through its RUNPATH ($ORIGIN), so all of them must sit in this folder.
        for path in sorted(lib.glob("*.so*")):
            if not path.name.startswith("libggml-cpu"):
                shutil.copy2(path, staging / path.name)
        built = next(out.rglob("libggml-cpu.so.*.*"))
        for name in ("libggml-cpu.so", "libggml-cpu.so.0", built.name):
            shutil.copy2(built, staging / name)
        (staging / ".built").write_text(stamp)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)  # a killed build leaves a .partial folder, never a half-filled variant


def _quiet(cmd: list[str]) -> None:
    """Run a build step; its output (pages of compiler warnings) is shown only when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, cmd[:3])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rag.cpu_variants", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the variants (make setup)")
    b.add_argument("--version", required=True, help="the llama-cpp-python version installed")
    b.add_argument("--cache", type=Path, required=True, help="folder for the downloaded sdist")
    b.add_argument("--root", type=Path, default=default_root())
    b.add_argument("--remove", action="store_true", help="remove the variants instead (a native build needs none)")
    sub.add_parser("show", help="the variant this machine's LLM child loads")
    args = parser.parse_args(argv)
    if args.cmd == "build" and args.remove:
        shutil.rmtree(args.root, ignore_errors=True)
    elif args.cmd == "build":
        build(args.version, args.cache, args.root)
    else:
        from rag.settings import get_settings

        print(child_env(get_settings().llm_cpu_variant)[0])


if __name__ == "__main__":
    main()
