"""Sentence-aware chunking sized to the embedder's window, with exact spans.

The naive llama-index pipeline lets the embedder silently truncate chunks longer
than its window (e5 reads 512 tokens); here every chunk's embedded text
(prefix + title + date + chunk) is counted with the embedder's own tokenizer
and kept under the window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from rag.dates import date_ordinal
from rag.text import embed_header, split_sentences
from rag.types import Article, Chunk


def chunk_header(article: Article) -> str:
    return embed_header(article.title, article.date)


def chunk_embed_text(header: str, body: str) -> str:
    """What the retrieval embedder reads for a chunk: its header (title, date), if any, then its text."""
    return f"{header}\n{body}" if header else body


def chunk_id(doc_id: str, content_hash: str, index: int) -> str:
    doc_key = hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:16]
    return f"{doc_key}-{content_hash[:10]}-{index:04d}"


def chunk_article(
    article: Article,
    count_tokens: Callable[[list[str]], list[int]],
    max_tokens: int = 512,
    target_tokens: int = 220,
    overlap_sentences: int = 1,
    prefix: str = "passage: ",
) -> list[Chunk]:
    """Cut an article into chunks of whole sentences; `text` is exactly article.text[start:end]."""
    text = article.text
    spans = split_sentences(text)
    if not spans:
        return []
    header = chunk_header(article)
    header_tokens = count_tokens([prefix + header])[0] if header else count_tokens([prefix])[0]
    window = max_tokens - header_tokens - 4  # room for the newline and safety
    target = max(16, min(target_tokens, window))
    # Sentences longer than the window are cut at word boundaries first.
    spans = _fit_long(text, spans, count_tokens, window)
    sizes = [max(1, n - 2) for n in count_tokens([text[s:e] for s, e in spans])]

    groups: list[tuple[int, int]] = []  # sentence index ranges [i, j)
    i = 0
    while i < len(spans):
        j, total = i, 0
        while j < len(spans) and (j == i or total + sizes[j] <= target):
            total += sizes[j]
            j += 1
        groups.append((i, j))
        if j >= len(spans):
            break
        i = max(i + 1, j - overlap_sentences)
    chunks: list[Chunk] = []
    for index, (i, j) in enumerate(groups):
        start, end = spans[i][0], spans[j - 1][1]
        body = text[start:end]
        chunks.append(Chunk(
            chunk_id=chunk_id(article.doc_id, article.content_hash, index),
            doc_id=article.doc_id, index=index, text=body, start=start, end=end,
            embed_text=chunk_embed_text(header, body),
        ))
    # Proof, not hope: nothing the embedder reads may exceed its window.
    counts = count_tokens([prefix + c.embed_text for c in chunks])
    for chunk, n in zip(chunks, counts, strict=True):
        if n > max_tokens:
            raise ValueError(f"chunk {chunk.chunk_id} has {n} tokens > window {max_tokens}")
    return chunks


def _fit_long(text: str, spans: list[tuple[int, int]], count_tokens: Callable[[list[str]], list[int]],
              window: int) -> list[tuple[int, int]]:
    counts = count_tokens([text[s:e] for s, e in spans])
    out: list[tuple[int, int]] = []
    for (s, e), n in zip(spans, counts, strict=True):
        if n <= window:
            out.append((s, e))
            continue
        # split into pieces of about window*0.8 tokens at whitespace
        pieces = max(2, int(n / (window * 0.8)) + 1)
        step = (e - s) / pieces
        cut = s
        for p in range(1, pieces + 1):
            target = e if p == pieces else int(s + p * step)
            if target < e:
                ws = text.rfind(" ", cut + 1, target)
                target = ws if ws > cut else target
            if target > cut:
                seg = text[cut:target]
                lead = len(seg) - len(seg.lstrip())
                if seg.strip():
                    out.append((cut + lead, cut + lead + len(seg.strip())))
            cut = target
        # pieces may still be too long for texts without spaces (CJK): recurse on counts
    recount = count_tokens([text[s:e] for s, e in out])
    final: list[tuple[int, int]] = []
    for (s, e), n in zip(out, recount, strict=True):
        if n <= window or e - s < 8:
            final.append((s, e))
        else:
            mid = (s + e) // 2
            final.extend(_fit_long(text, [(s, mid), (mid, e)], count_tokens, window))
    return final


def chunk_metadata(article: Article, chunk: Chunk, n_chunks: int) -> dict[str, object]:
    """A chunk's Chroma metadata: newsrag's fields, plus the node fields llama-index's ChromaVectorStore reads."""
    from rag.llamaindex import chroma_node_fields

    meta: dict[str, object] = {
        "doc_id": article.doc_id, "title": article.title, "date": article.date or "",
        "date_ord": date_ordinal(article.date), "source": article.source, "url": article.url,
        "lang": article.lang, "author": article.author, "group_id": article.group_id,
        "content_hash": article.content_hash, "start": chunk.start, "end": chunk.end,
        "index": chunk.index, "n_chunks": n_chunks,
    }
    return {**chroma_node_fields(chunk.chunk_id, article.doc_id, meta, chunk.start, chunk.end), **meta}
