"""Near-duplicate stories: wire copies republished by several outlets share a group_id."""

from __future__ import annotations

import re

import numpy as np

NUM_PERM = 64
THRESHOLD = 0.7
SHINGLE = 5
_WORD = re.compile(r"\w+", re.UNICODE)


def minhash(text: str):  # -> datasketch.MinHash
    from datasketch import MinHash

    words = _WORD.findall(text.lower())
    shingles = {" ".join(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}
    m = MinHash(num_perm=NUM_PERM, seed=7, scheme="affine32")
    m.update_batch([s.encode("utf-8") for s in shingles])
    return m


def signature_to_str(m) -> str:
    return m.hashvalues.astype(np.uint32).tobytes().hex()


def signature_from_str(s: str):
    from datasketch import MinHash

    values = np.frombuffer(bytes.fromhex(s), dtype=np.uint32).astype(np.uint64)
    return MinHash(num_perm=NUM_PERM, seed=7, hashvalues=values, scheme="affine32")


class StoryGrouper:
    """Assigns group ids: a new article joins the group of its most similar earlier article."""

    def __init__(self) -> None:
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
        self.groups: dict[str, str] = {}
        self.sigs: dict[str, object] = {}

    def add_existing(self, doc_id: str, signature: str, group_id: str) -> None:
        if not signature or doc_id in self.groups:
            return
        m = signature_from_str(signature)
        self.lsh.insert(doc_id, m)
        self.groups[doc_id] = group_id or doc_id
        self.sigs[doc_id] = m

    def assign(self, doc_id: str, text: str) -> tuple[str, str]:
        """(group_id, signature hex) for an article, registering it for later ones."""
        m = minhash(text)
        if doc_id in self.groups:
            self.lsh.remove(doc_id)
            del self.groups[doc_id]
        best, best_sim = None, 0.0
        for other in self.lsh.query(m):
            sim = m.jaccard(self.sigs[other])
            if sim > best_sim or (sim == best_sim and best is not None and other < best):
                best, best_sim = other, sim
        group = self.groups[best] if best else doc_id
        self.lsh.insert(doc_id, m)
        self.groups[doc_id] = group
        self.sigs[doc_id] = m
        return group, signature_to_str(m)
