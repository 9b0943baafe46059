"""Chroma, embedded (PersistentClient) or a server (HttpClient), and the collections newsrag keeps there.

Each corpus is three Chroma collections:
- `NAME`: one record per chunk (embedding, chunk text, article metadata, span, and the answer scorer's
  vector of the chunk as text in `_scorer_vector`, rag.embedding.pack_vector);
- `NAME__docs`: one vector per article (title and lead up to the embedder's window), with the chunks'
  filter fields, for article-level dense retrieval (collections made before it existed lack it);
- `NAME__articles`: the ingest manifest, one record per article (hash, chunk count,
  metadata, MinHash signature). It is written *after* an article's chunks and vector, so a crash
  in between leaves the article looking unfinished and the next run redoes it.
Keeping the manifest in Chroma (not in a local file) lets several processes share a server.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rag.chroma_client import get_client, unavailable_error
from rag.errors import CollectionNotFoundError, EmbedderMismatchError, NewsragError, StoreUnavailableError
from rag.settings import Settings, get_settings
from rag.types import ArticleRecord

ARTICLES_SUFFIX = "__articles"
DOCS_SUFFIX = "__docs"
SUFFIXES = (ARTICLES_SUFFIX, DOCS_SUFFIX)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,60}[A-Za-z0-9]$")
PAGE = 2000
DIMENSION_MISMATCH = re.compile(r"expecting embedding with dimension of (\d+), got (\d+)")


def check_name(name: str) -> str:
    if not NAME_RE.match(name or "") or any(x in name for x in SUFFIXES) or ".." in name:
        raise NewsragError(
            f"invalid collection name {name!r}: use 3-62 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def clean_metadata(meta: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Chroma takes str/int/float/bool only (no None, lists or dicts)."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif isinstance(value, (list, tuple, set)):
            out[key] = " | ".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def _not_found(exc: Exception) -> bool:
    """Chroma's "collection does not exist" (NotFoundError, or ValueError from older servers)."""
    return "does not exist" in str(exc) or "NotFound" in type(exc).__name__


class Store:
    """Typed access to the chunk and article collections of one Chroma."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = get_client(self.settings)

    # ----------------------------------------------------------- collections
    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (NewsragError, ValueError, KeyError, TypeError):
            raise
        except Exception as exc:  # connection refused, server gone, ...
            if _not_found(exc):
                raise
            found = DIMENSION_MISMATCH.search(str(exc))
            if found:
                # A collection made before collections recorded their embedder, queried or extended with
                # another one: Chroma only sees the dimensions differ.
                raise self.dimension_mismatch(int(found[1]), int(found[2])) from exc
            raise unavailable_error(exc, self.settings) from exc

    def dimension_mismatch(self, held: int, made: int) -> EmbedderMismatchError:
        return EmbedderMismatchError(
            f"this collection holds {held}-dimension vectors, but the embedder in use ({self.settings.embed_model}) "
            f"makes {made}: set RAG_EMBED_MODEL to the embedder that made it, or re-embed it with "
            "`rag ingest --rebuild -c NAME`")

    def chunks(self, name: str, create: bool = True):
        check_name(name)
        if create:
            return self._call(self.client.get_or_create_collection, name,
                              metadata={"hnsw:space": "cosine"}, embedding_function=None)
        return self._call(self.client.get_collection, name, embedding_function=None)

    def articles(self, name: str, create: bool = True):
        check_name(name)
        if create:
            return self._call(self.client.get_or_create_collection, name + ARTICLES_SUFFIX, embedding_function=None)
        return self._call(self.client.get_collection, name + ARTICLES_SUFFIX, embedding_function=None)

    def docs(self, name: str, create: bool = True):
        """The article-vector collection, or None when the collection predates it (create=False)."""
        check_name(name)
        if create:
            return self._call(self.client.get_or_create_collection, name + DOCS_SUFFIX,
                              metadata={"hnsw:space": "cosine"}, embedding_function=None)
        try:
            return self._call(self.client.get_collection, name + DOCS_SUFFIX, embedding_function=None)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise

    def upsert_docs(self, name: str, ids: list[str], embeddings: Any, metadatas: list[dict[str, Any]]) -> None:
        if ids:
            self._call(self.docs(name).upsert, ids=ids, embeddings=embeddings,
                       metadatas=[clean_metadata(m) for m in metadatas])

    def delete_docs(self, name: str, doc_ids: list[str]) -> None:
        col = self.docs(name, create=False)
        if col is not None and doc_ids:
            self._call(col.delete, ids=doc_ids)

    def query_docs(self, name: str, embedding: list[float], n: int, where: dict | None) -> dict[str, float] | None:
        """doc_id -> cosine of its article vector, best n (None when the collection has no article vectors)."""
        col = self.docs(name, create=False)
        if col is None:
            return None
        got = self._call(col.query, query_embeddings=[embedding], n_results=n, where=where or None,
                         include=["distances"])
        return {doc: 1.0 - float(dist) for doc, dist in zip(got["ids"][0], got["distances"][0], strict=False)}

    def exists(self, name: str) -> bool:
        # One lookup, not a listing: listing every collection cost ~9 ms per question at 40 collections.
        try:
            check_name(name)
            self._call(self.client.get_collection, name, embedding_function=None)
        except NewsragError as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            return False
        except Exception as exc:
            if _not_found(exc):
                return False
            raise
        return not name.endswith(SUFFIXES)

    def collection_names(self) -> list[str]:
        cols = self._call(self.client.list_collections)
        names = [getattr(c, "name", c) for c in cols]
        return sorted(n for n in names if not n.endswith(SUFFIXES))

    def delete_collection(self, name: str) -> None:
        check_name(name)
        names = self.collection_names()
        if name not in names:
            raise CollectionNotFoundError(f"no collection named {name!r} (have: {', '.join(names) or 'none'})")
        for full in (name, name + DOCS_SUFFIX, name + ARTICLES_SUFFIX):
            try:
                self._call(self.client.delete_collection, full)
            except Exception as exc:
                if not _not_found(exc):
                    raise

    def replace_collection(self, name: str, staging: str) -> None:
        """Put a fully written staging collection (a rebuild) in place of `name`: the old one is deleted and
        the staging one renamed. Readers see the old collection or the new one, never a half-written one."""
        new_chunks = self.chunks(staging, create=False)
        new_docs = self.docs(staging)
        new_articles = self.articles(staging, create=False)
        if self.exists(name):
            self.delete_collection(name)
        self._call(new_chunks.modify, name=name)
        self._call(new_docs.modify, name=name + DOCS_SUFFIX)
        self._call(new_articles.modify, name=name + ARTICLES_SUFFIX)

    def sources(self, name: str) -> list[str]:
        """The files a collection's articles were read from (what a rebuild without paths reads again)."""
        return sorted({rec.path for rec in self.manifest(name).values() if rec.path})

    def article_count(self, name: str) -> int:
        if not self.exists(name):
            return 0
        return int(self._call(self.articles(name).count))

    def chunk_count(self, name: str) -> int:
        if not self.exists(name):
            return 0
        return int(self._call(self.chunks(name).count))

    def revision(self, name: str) -> str:
        """Changes whenever an ingest changed the collection (keyword caches key on it)."""
        try:
            meta = self.articles(name, create=False).metadata or {}
        except Exception as exc:
            if _not_found(exc):
                return ""
            raise
        return str(meta.get("revision", ""))

    def bump_revision(self, name: str, embedder: str = "") -> str:
        """A new revision; `embedder` records which embedder made the collection's vectors."""
        rev = uuid.uuid4().hex
        col = self.articles(name)
        meta = {k: v for k, v in (col.metadata or {}).items() if not k.startswith("hnsw:")}
        meta["revision"] = rev
        if embedder:
            meta["embedder"] = embedder
        self._call(col.modify, metadata=meta)
        return rev

    def embedder_of(self, name: str) -> str:
        """The embedder signature recorded with the collection ("" for one made before newsrag recorded it)."""
        try:
            return str((self.articles(name, create=False).metadata or {}).get("embedder", ""))
        except Exception as exc:
            if _not_found(exc):
                return ""
            raise

    def check_embedder(self, name: str, signature: str) -> None:
        """Refuse to mix vectors: the collection must have been made by the embedder in use."""
        recorded = self.embedder_of(name)
        if recorded and recorded != signature:
            remote = "openai:" in (recorded[:7], signature[:7])  # an embedding server made one of them
            setting = "RAG_EMBED_PROVIDER, RAG_EMBED_API_MODEL and RAG_EMBED_MODEL" if remote else "RAG_EMBED_MODEL"
            raise EmbedderMismatchError(
                f"collection {name!r} holds vectors of the embedder {recorded}, but the embedder in use is "
                f"{signature}: set {setting} back, or re-embed it with `rag ingest --rebuild -c {name}`")

    # --------------------------------------------------------------- manifest
    def manifest(self, name: str) -> dict[str, ArticleRecord]:
        """doc_id -> its manifest record."""
        if not self.exists(name):
            return {}
        out: dict[str, ArticleRecord] = {}
        for got in self._pages(self.articles(name), ["metadatas"]):
            for doc_id, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
                out[doc_id] = ArticleRecord.from_metadata(dict(meta or {}))
        return out

    def _pages(self, col, include: list[str]) -> Iterator[dict[str, Any]]:
        """A whole collection, read PAGE records at a time."""
        offset = 0
        while True:
            got = self._call(col.get, include=include, limit=PAGE, offset=offset)
            yield got
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def put_articles(self, name: str, records: dict[str, ArticleRecord]) -> None:
        if not records:
            return
        col = self.articles(name)
        ids = list(records)
        batch = max(1, min(self.client.get_max_batch_size(), 4000))
        for i in range(0, len(ids), batch):
            part = ids[i : i + batch]
            self._call(col.upsert, ids=part, embeddings=[[1.0]] * len(part),
                       metadatas=[clean_metadata(records[d].to_metadata()) for d in part])

    def delete_articles(self, name: str, doc_ids: list[str]) -> None:
        if doc_ids:
            self._call(self.articles(name).delete, ids=doc_ids)

    # ----------------------------------------------------------------- chunks
    def upsert_chunks(self, name: str, ids: list[str], embeddings: Any, documents: list[str],
                      metadatas: list[dict[str, Any]]) -> None:
        col = self.chunks(name)
        batch = max(1, min(self.client.get_max_batch_size(), 4000))
        for i in range(0, len(ids), batch):
            self._call(col.upsert, ids=ids[i : i + batch], embeddings=embeddings[i : i + batch],
                       documents=documents[i : i + batch],
                       metadatas=[clean_metadata(m) for m in metadatas[i : i + batch]])

    def chunk_ids_of(self, name: str, doc_ids: list[str]) -> dict[str, list[str]]:
        """doc_id -> its chunk ids currently stored."""
        out: dict[str, list[str]] = {d: [] for d in doc_ids}
        col = self.chunks(name)
        for i in range(0, len(doc_ids), 200):
            part = doc_ids[i : i + 200]
            got = self._call(col.get, where={"doc_id": {"$in": part}}, include=["metadatas"])
            for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
                out.setdefault(str((meta or {}).get("doc_id")), []).append(cid)
        return out

    def delete_chunks(self, name: str, ids: list[str]) -> None:
        col = self.chunks(name)
        for i in range(0, len(ids), 4000):
            self._call(col.delete, ids=ids[i : i + 4000])

    def get_chunks(self, name: str, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        if not ids:
            return {}
        got = self._call(self.chunks(name).get, ids=ids, include=["documents", "metadatas"])
        return {cid: (doc or "", dict(meta or {})) for cid, doc, meta in
                zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False)}

    def iter_chunks(self, name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for cid, doc, meta, _ in self.iter_chunk_rows(name):
            yield cid, doc, meta

    def iter_chunk_rows(self, name: str, vectors: bool = False) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
        """Every chunk: id, text, metadata and (with `vectors`, else None) its vector."""
        include = ["documents", "metadatas", "embeddings"] if vectors else ["documents", "metadatas"]
        for got in self._pages(self.chunks(name), include):
            embs = got["embeddings"] if vectors else None
            for i, (cid, doc, meta) in enumerate(zip(got["ids"], got["documents"] or [], got["metadatas"] or [],
                                                     strict=False)):
                yield cid, doc or "", dict(meta or {}), (embs[i] if embs is not None else None)

    def article_vectors(self, name: str) -> tuple[list[str], list[Any]]:
        """Every whole-article vector (ids and vectors; none when the collection predates them)."""
        col = self.docs(name, create=False)
        ids: list[str] = []
        vectors: list[Any] = []
        for got in self._pages(col, ["embeddings"]) if col is not None else []:
            ids += got["ids"]
            vectors += list(got["embeddings"] if got["embeddings"] is not None else [])
        return ids, vectors

    def query(self, name: str, embedding: list[float], n: int, where: dict | None) -> list[tuple[str, str, dict, float]]:
        col = self.chunks(name)
        # Chroma returns fewer rows when n exceeds the collection (no count() round trip needed).
        got = self._call(col.query, query_embeddings=[embedding], n_results=n, where=where or None,
                         include=["documents", "metadatas", "distances"])
        return [
            (cid, doc or "", dict(meta or {}), 1.0 - float(dist))
            for cid, doc, meta, dist in zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                                            got["distances"][0], strict=False)
        ]

    def warm(self, name: str) -> None:
        """Have Chroma read the collection's vector indexes from disk now. The first query in a process pays
        for it (on the ~19k-chunk bench collection ~0.25 s for the chunks and ~0.3 s for the article vectors,
        bench/RESULTS.md stop 25); retrieval calls this while the embedders are still loading, so the question's
        own queries find them read. A query for a unit vector of the recorded dimension, one result each.
        Failures are left to the real queries, which report them."""
        try:
            dim = int(self.embedder_of(name).rsplit(":", 2)[-2])
        except (ValueError, IndexError):  # a collection from before collections recorded their embedder
            return
        probe = [1.0] + [0.0] * (dim - 1)
        try:
            self._call(self.chunks(name, create=False).query, query_embeddings=[probe], n_results=1, include=[])
            docs = self.docs(name, create=False)
            if docs is not None:
                self._call(docs.query, query_embeddings=[probe], n_results=1, include=[])
        except Exception:  # noqa: BLE001 - only a head start; the question's queries raise what is wrong
            return

    def has_node_fields(self, name: str) -> bool:
        """Whether the chunks carry llama-index's node fields (collections from before they were written do not)."""
        got = self._call(self.chunks(name).get, limit=1, include=["metadatas"])
        metas = got["metadatas"] or []
        return not metas or "_node_content" in (metas[0] or {})

    # ------------------------------------------------------------------ stats
    def collections(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.collection_names():
            manifest = self.manifest(name)
            live = [m for m in manifest.values() if not m.duplicate_of]
            dates = sorted(m.date[:10] for m in live if m.date)
            langs = dict(Counter(m.lang for m in live if m.lang))
            sources = dict(Counter(m.source for m in live if m.source))
            ingested = max((m.ingested_at for m in manifest.values()), default="")
            rows.append({
                "name": name,
                "articles": len(manifest),
                "chunks": self.chunk_count(name),
                "languages": sorted(langs, key=lambda k: -langs[k]),
                "language_counts": langs,
                "sources": sorted(sources, key=lambda k: -sources[k]),
                "date_min": dates[0] if dates else None,
                "date_max": dates[-1] if dates else None,
                "last_ingest": ingested or None,
                "llama_index_fields": self.has_node_fields(name),
            })
        return rows
