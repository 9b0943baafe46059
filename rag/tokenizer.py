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
"""

from __future__ import annotations

import json
import threading
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
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings],
                               "attention_mask": [e.attention_mask for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_tensors == "np":
            import numpy as np

            out = {k: np.array(v, dtype=np.int64) for k, v in out.items()}
        return out


def load_tokenizer(folder: Path):  # -> FastTokenizer | transformers.PreTrainedTokenizerBase
    """The folder's tokenizer: tokenizer.json through `tokenizers` when there is one, else AutoTokenizer."""
    if (folder / "tokenizer.json").is_file():
        return FastTokenizer(folder)
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # no "longer than the maximum" notes when counting
    return AutoTokenizer.from_pretrained(str(folder))
