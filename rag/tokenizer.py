"""A model folder's tokenizer, read by `tokenizers` (the Rust library under transformers' fast tokenizers).

Why not `transformers.AutoTokenizer`: in a new process it imports transformers' configuration modules, which
import PyTorch, and parses the 33 MB tokenizer.json of EmbeddingGemma in Python. Measured on a cold
`rag ask` (bench/cold_start.py, RESULTS.md "Stop 18"): AutoTokenizer took ~3.8 s for the two embedders'
tokenizers, `tokenizers.Tokenizer.from_file` a few hundred milliseconds, with the same ids, masks and
offsets (tests/test_embedders.py compares them text by text). AutoTokenizer stays the fallback for a model
folder without a tokenizer.json.

Only the calls newsrag makes are offered, with AutoTokenizer's keyword names: special tokens added, optional
truncation at `max_length` (specials included), padding to the longest text of the batch on the side the
model's tokenizer_config.json names, numpy tensors and character offsets.

Parsing a tokenizer.json holds the GIL (so the two embedders' tokenizers cannot load side by side) and is
slow for big vocabularies: EmbeddingGemma's (262k tokens, 515k merges) 1.6-2.3 s, e5's (250k unigram pieces)
1.1-1.5 s on 2 cores. The same vocabularies as SentencePiece models load in 0.15-0.5 s with `sentencepiece`:
EmbeddingGemma's folder ships the tokenizer.model its tokenizer.json was converted from, and
`rag models fetch` writes e5's (rag.convert.write_sentencepiece; identity normaliser, XLM-R's normalisation
done here first). A SentencePiece model is used only when its sha256 is in `SENTENCEPIECE_CHECKED`, whose
output was checked equal to its tokenizer.json's: ids on 899 news texts and edge cases, and offsets after one
fix-up (tests/test_embedders.py repeats the check against AutoTokenizer). Where they differ, tokenizer.json's
tokenizer answers, loaded on first need: a text that writes a special token literally ("<s>", "<eos>"), and
e5's offsets (its normalisation moves characters). Any other folder reads tokenizer.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class FastTokenizer:
    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        pad = config.get("pad_token") or "<pad>"
        pad = pad.get("content", "<pad>") if isinstance(pad, dict) else pad
        pad_id = self._tok.token_to_id(pad)
        self._pad = (pad, 0 if pad_id is None else pad_id)
        self._pad_side = config.get("padding_side", "right")
        # Truncation and padding are state of the Rust tokenizer, set per call (as transformers does).
        self._lock = threading.Lock()

    def __call__(self, texts: list[str], *, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, padding: bool = False, return_tensors: str | None = None,
                 return_offsets_mapping: bool = False) -> dict[str, Any]:
        with self._lock:
            if truncation and max_length:
                self._tok.enable_truncation(max_length)
            if padding:
                self._tok.enable_padding(direction=self._pad_side, pad_id=self._pad[1], pad_token=self._pad[0])
            try:
                encodings = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
            finally:
                self._tok.no_truncation()
                self._tok.no_padding()
        return batch_output([e.ids for e in encodings], [e.attention_mask for e in encodings],
                            [e.offsets for e in encodings] if return_offsets_mapping else None, return_tensors)


def batch_output(ids: list[list[int]], masks: list[list[int]], offsets: list[list[tuple[int, int]]] | None,
                 return_tensors: str | None) -> dict[str, Any]:
    """A tokenizer call's result as AutoTokenizer shapes it: lists, or int64 numpy arrays for "np"."""
    out: dict[str, Any] = {"input_ids": ids, "attention_mask": masks}
    if offsets is not None:
        out["offset_mapping"] = offsets
    if return_tensors == "np":
        import numpy as np

        out = {k: np.array(v, dtype=np.int64) for k, v in out.items()}
    return out


@dataclass(frozen=True)
class CheckedSentencePiece:
    """A SentencePiece model that tokenizes as the tokenizer.json beside it, within these limits."""

    literals: tuple[str, ...]  # special tokens tokenizer.json matches when a text writes them; SentencePiece does not
    xlmr_normalized: bool = False  # the model's normaliser is the identity: xlmr_normalize runs first
    offsets: bool = True  # its character offsets equal tokenizer.json's


# sha256 of checked SentencePiece models (see the module docstring).
SENTENCEPIECE_CHECKED = {
    # EmbeddingGemma-300M's tokenizer.model
    "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c":
        CheckedSentencePiece(("<bos>", "<eos>", "<pad>", "<unk>")),
    # multilingual-e5-small's vocabulary, written by rag.convert.write_sentencepiece
    "d0535307a889bd2b639deadbd15a2f840e439781ede0095d9e1ca6f924014c43":
        CheckedSentencePiece(("<s>", "</s>", "<pad>", "<unk>", "<mask>"), xlmr_normalized=True, offsets=False),
}
SENTENCEPIECE_FILES = ("tokenizer.model", "sentencepiece.newsrag.model")

# XLM-R's normalisation as e5's tokenizer.json writes it (rag.convert._build_tokenizer): control characters
# dropped, other breaks and invisible spaces made spaces, NFKC, runs of spaces collapsed.
_XLMR_DROPPED = re.compile("[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]")
_XLMR_SPACES = re.compile("[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]")
_SPACE_RUNS = re.compile(" {2,}")


def xlmr_normalize(text: str) -> str:
    return _SPACE_RUNS.sub(" ", unicodedata.normalize("NFKC", _XLMR_SPACES.sub(" ", _XLMR_DROPPED.sub("", text))))


class SentencePieceTokenizer:
    """FastTokenizer's calls on a checked SentencePiece model with `<bos> text <eos>` as its template."""

    def __init__(self, model_file: Path, checked: CheckedSentencePiece, folder: Path | None = None) -> None:
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self._checked = checked
        self._bos, self._eos = self._sp.bos_id(), self._sp.eos_id()
        self._pad = max(self._sp.piece_to_id("<pad>"), 0)
        self._folder = folder
        self._fallback: FastTokenizer | None = None
        self._fallback_lock = threading.Lock()

    def _tokenizer_json(self) -> FastTokenizer:
        with self._fallback_lock:
            if self._fallback is None:
                if self._folder is None:
                    raise ValueError("this text needs the folder's tokenizer.json, and no folder was given")
                self._fallback = FastTokenizer(self._folder)
            return self._fallback

    def __call__(self, texts: list[str], *, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, padding: bool = False, return_tensors: str | None = None,
                 return_offsets_mapping: bool = False) -> dict[str, Any]:
        texts = list(texts)
        if (return_offsets_mapping and not self._checked.offsets) or any(
                literal in text for text in texts for literal in self._checked.literals):
            return self._tokenizer_json()(texts, add_special_tokens=add_special_tokens, truncation=truncation,
                                          max_length=max_length, padding=padding, return_tensors=return_tensors,
                                          return_offsets_mapping=return_offsets_mapping)
        read = texts
        if self._checked.xlmr_normalized:
            # tokenizer.json's Metaspace adds "▁" only to a text that does not start with one; SentencePiece
            # always does, so one leading space goes. (Offsets are tokenizer.json's, above: these move.)
            read = [x[1:] if x.startswith(" ") else x for x in map(xlmr_normalize, texts)]
        encoded = self._sp.encode(read, out_type="offset_mapping")
        if self._checked.xlmr_normalized:
            # A text of spaces alone is one "▁" for tokenizer.json, nothing for SentencePiece.
            for i, text in enumerate(texts):
                if not read[i] and xlmr_normalize(text) == " ":
                    encoded[i] = {"ids": [self._sp.piece_to_id("▁")], "offsets": [(0, len(text))]}
        specials = 2 if add_special_tokens else 0
        ids_out: list[list[int]] = []
        offsets_out: list[list[tuple[int, int]]] = []
        for text, enc in zip(texts, encoded, strict=True):
            ids: list[int] = list(enc["ids"])
            # A byte-fallback piece (one byte of a character the vocabulary lacks) comes with an empty span;
            # `tokenizers` gives it the character's span.
            offsets = [(b, b + 1) if b == e and b < len(text) else (b, e) for b, e in enc["offsets"]]
            if truncation and max_length:
                keep = max(max_length - specials, 0)
                ids, offsets = ids[:keep], offsets[:keep]
            if add_special_tokens:
                ids, offsets = [self._bos, *ids, self._eos], [(0, 0), *offsets, (0, 0)]
            ids_out.append(ids)
            offsets_out.append(offsets)
        masks = [[1] * len(ids) for ids in ids_out]
        if padding:
            width = max((len(ids) for ids in ids_out), default=0)
            ids_out = [ids + [self._pad] * (width - len(ids)) for ids in ids_out]
            masks = [m + [0] * (width - len(m)) for m in masks]
            offsets_out = [o + [(0, 0)] * (width - len(o)) for o in offsets_out]
        return batch_output(ids_out, masks, offsets_out if return_offsets_mapping else None, return_tensors)


def checked_sentencepiece(folder: Path) -> tuple[Path, CheckedSentencePiece] | None:
    """The folder's SentencePiece model and what was checked of it, if it is in SENTENCEPIECE_CHECKED (hashing
    it takes ~10 ms)."""
    for name in SENTENCEPIECE_FILES:
        model_file = folder / name
        if model_file.is_file():
            checked = SENTENCEPIECE_CHECKED.get(hashlib.sha256(model_file.read_bytes()).hexdigest())
            if checked is not None:
                return model_file, checked
    return None


def load_tokenizer(folder: Path):  # -> SentencePieceTokenizer | FastTokenizer | transformers tokenizer
    """The folder's tokenizer: a checked SentencePiece model, else tokenizer.json through `tokenizers`, else
    AutoTokenizer."""
    found = checked_sentencepiece(folder)
    if found is not None:
        return SentencePieceTokenizer(*found, folder=folder if (folder / "tokenizer.json").is_file() else None)
    if (folder / "tokenizer.json").is_file():
        return FastTokenizer(folder)
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # no "longer than the maximum" notes when counting
    return AutoTokenizer.from_pretrained(str(folder))
