"""ingest(): files -> articles -> chunks -> vectors -> Chroma, incrementally and crash-safe.

Order of writes per batch of articles: chunks (deterministic ids, upsert), then
stale chunks of those articles deleted, then the article records (the manifest).
An article counts as done only once its record carries the new content hash, so
`kill -9` at any moment followed by the same command converges on the index a
clean run would build: same ids, same chunk count, no duplicates.

With `shard=(i, n)` a run writes only its n-th of the articles (ingest/workers.py starts n of them, on one
machine or several, against one Chroma server). Shards own disjoint articles, so they coordinate through
the manifest in Chroma and take no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from ingest.chunk import chunk_article, chunk_header, chunk_metadata
from ingest.clean import clean_text, split_title
from ingest.dedup import StoryGrouper
from ingest.load import LOADERS, iter_files, load_file
from rag.dates import date_ordinal, find_text_date, parse_date
from rag.embedding import SCORER_FIELD, pack_vector
from rag.errors import IngestError, NewsragError
from rag.lang import detect_language
from rag.settings import Settings, get_settings
from rag.text import scorer_text
from rag.types import Article, ArticleRecord, FailedFile, IngestReport

DATELINE = re.compile(r"^\(([A-Z][A-Za-z0-9 .-]{1,24})\)\s*[-–—]\s*")
ProgressFn = Callable[[int, int, str], None]
Shard = tuple[int, int]  # (index, count): this run writes the articles whose key hashes to `index` mod `count`


def in_shard(key: str, shard: Shard | None) -> bool:
    """A stable split (the same on every machine and run, unlike Python's salted hash())."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) % count == index


def parse_shard(text: str) -> Shard:
    """'0/2' -> (0, 2); ValueError with the expected form otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"shard {text!r} is not of the form i/N with 0 <= i < N (e.g. 0/2)")
    return int(m.group(1)), int(m.group(2))


def to_article(raw: Article) -> Article:
    """Clean a raw record into an Article with title, date, language, source and hash."""
    text, title, author = raw.text, raw.title.strip(), raw.author.strip()
    if raw.title_from_text:
        t, a, body = split_title(text)
        title, author, text = title or t, author or a, body
    text = clean_text(text, title)
    if not text.strip():
        text = clean_text(raw.text, title)
    if not text.strip():
        raise IngestError(raw.path, "no article text after cleaning")
    lang = (raw.lang or "").lower()[:2] or detect_language(text)
    date = parse_date(raw.date, [lang] if lang else None) if raw.date else None
    if raw.date and not date:
        date = parse_date(raw.date)
    if not date:
        date = find_text_date(text, lang)
    source = raw.source.strip()
    if not source:
        m = DATELINE.match(text)
        if m:
            source = m.group(1).strip()
        elif raw.url:
            host = urlparse(raw.url).hostname or ""
            source = host.removeprefix("www.")
    article = Article(
        doc_id=raw.doc_id, title=title, text=text, date=date, source=source, url=raw.url.strip(),
        author=author, lang=lang, path=raw.path, extra=raw.extra, raw_hash=raw.raw_hash,
    )
    article.content_hash = content_hash(article)
    return article


def raw_hash(raw: Article) -> str:
    """Hash of what the loader read: equal hashes mean cleaning would give the same article."""
    payload = json.dumps([raw.doc_id, raw.text, raw.title, raw.date or "", raw.url, raw.source, raw.author, raw.lang,
                          raw.title_from_text, sorted(raw.extra.items())], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def content_hash(article: Article) -> str:
    payload = json.dumps([article.title, article.text, article.date, article.source, article.url, article.lang,
                          article.author], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).lower().encode("utf-8")).hexdigest()


def manifest_record(article: Article, now: str, n_chunks: int = 0, minhash: str = "",
                    duplicate_of: str = "") -> ArticleRecord:
    """The manifest entry of an ingested article (or of a duplicate that points at the stored one)."""
    return ArticleRecord(
        title=article.title, date=article.date or "", date_ord=date_ordinal(article.date), source=article.source,
        url=article.url, author=article.author, lang=article.lang, path=article.path,
        content_hash=article.content_hash, raw_hash=article.raw_hash, text_hash=text_hash(article.text),
        group_id=article.group_id, minhash=minhash, n_chunks=n_chunks, chars=len(article.text), ingested_at=now,
        complete=True, duplicate_of=duplicate_of, extra=dict(list(article.extra.items())[:8]),
    )


@contextlib.contextmanager
def collection_lock(settings: Settings, name: str) -> Iterator[None]:
    """One ingest per collection at a time on this machine (a second waits). filelock works on every OS."""
    from filelock import FileLock

    lock_dir = settings.data_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{name}.lock")):
        yield


def ingest(
    paths: list[Path | str],
    *,
    collection: str | None = None,
    rebuild: bool = False,
    sync: bool = False,
    progress: bool | ProgressFn = False,
    settings: Settings | None = None,
    shard: Shard | None = None,
) -> IngestReport:
    """Ingest files/folders into a collection; returns what was added/updated/unchanged/deleted/failed.

    `rebuild=True` re-reads and re-embeds everything (with the current embedder) into a staging collection
    and swaps it in only when it is complete: a kill or a failure leaves the old collection as it was.
    Without paths, a rebuild reads the files the collection's articles came from.
    `shard=(i, n)` writes only this run's share of the articles (see ingest/workers.py); every shard still
    reads all files, so each reports the files that failed."""
    from rag.models import load_embedder
    from rag.store import Store, check_name

    settings = settings or get_settings()
    name = check_name(collection or settings.collection)
    if rebuild:
        if shard is not None:
            raise NewsragError("--rebuild cannot be split into shards: run it as one process")
        return _rebuild(paths, name, sync, progress, settings)
    started = time.perf_counter()
    report = IngestReport(collection=name)
    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    for m in missing:
        report.failed.append(FailedFile(path=m, error="no such file or directory"))
    roots = [p for p in roots if p.exists()]

    store = Store(settings)
    early_manifest = store.manifest(name)

    # 1. load and clean (no model needed yet); unchanged records skip cleaning entirely
    articles: list[Article] = []
    unchanged_early: dict[str, tuple[Article, str, Path]] = {}

    def prepare(raw: Article, rh: str, file: Path) -> Article | None:
        """Clean one raw record into an Article, or record why it failed."""
        try:
            article = to_article(raw)
        except IngestError as exc:
            report.failed.append(FailedFile(path=exc.path, error=exc.reason))
            return None
        except Exception as exc:  # a cleaning bug must not stop the run
            report.failed.append(FailedFile(path=raw.path, error=f"{type(exc).__name__}: {exc}"))
            return None
        article.raw_hash = rh
        article.path = str(file.resolve())
        return article

    failed_files: set[str] = set()
    seen_ids: set[str] = set()
    max_bytes = int(settings.max_file_mb * 1e6)
    for file, root in iter_files(roots):
        if file.suffix.lower() not in LOADERS:
            report.skipped.append(FailedFile(path=str(file), error=f"unsupported format '{file.suffix or file.name}'"))
            continue
        rel = file.relative_to(root).as_posix() if file != root else file.name
        try:
            loaded = load_file(file, rel, max_bytes)
        except IngestError as exc:
            report.failed.append(FailedFile(path=exc.path, error=exc.reason))
            failed_files.add(str(file.resolve()))
            continue
        except Exception as exc:  # a loader bug must not stop the run
            report.failed.append(FailedFile(path=str(file), error=f"{type(exc).__name__}: {exc}"))
            failed_files.add(str(file.resolve()))
            continue
        for where, reason in loaded.errors:
            report.failed.append(FailedFile(path=where, error=reason))
        if loaded.errors:
            failed_files.add(str(file.resolve()))
        for raw in loaded.articles:
            rh = raw_hash(raw)
            old = early_manifest.get(raw.doc_id)
            if raw.doc_id in seen_ids:
                report.failed.append(FailedFile(path=raw.path, error=f"duplicate id {raw.doc_id!r} in this run; kept the first"))
                continue
            if old and old.raw_hash == rh and old.complete:
                seen_ids.add(raw.doc_id)
                if in_shard(raw.doc_id, shard):
                    unchanged_early[raw.doc_id] = (raw, rh, file)
                continue
            article = prepare(raw, rh, file)
            if article is not None:
                seen_ids.add(article.doc_id)
                articles.append(article)

    # Shards own disjoint articles: no lock between them (they may run on different machines).
    with collection_lock(settings, name) if shard is None else contextlib.nullcontext():
        manifest = store.manifest(name)
        for doc_id, (raw, rh, file) in unchanged_early.items():
            now_rec = manifest.get(doc_id)
            if now_rec and now_rec.raw_hash == rh and now_rec.complete:
                report.unchanged.append(doc_id)
            elif (article := prepare(raw, rh, file)) is not None:
                articles.append(article)  # another process changed it since we looked: redo it
        grouper = StoryGrouper()
        by_text: dict[str, str] = {}
        for doc_id, rec in sorted(manifest.items()):
            if rec.duplicate_of:
                continue
            grouper.add_existing(doc_id, rec.minhash, rec.group_id)
            if rec.text_hash:
                by_text.setdefault(rec.text_hash, doc_id)

        todo: list[Article] = []
        duplicates: dict[str, ArticleRecord] = {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for article in articles:
            th = text_hash(article.text)
            # Split by text, not by id: two files with the same text meet in one shard, which stores it once
            # (as one process would) and records the second as a duplicate.
            if not in_shard(th, shard):
                continue
            old = manifest.get(article.doc_id)
            if old and old.content_hash == article.content_hash and old.complete:
                report.unchanged.append(article.doc_id)
                continue
            first = by_text.get(th)
            if first and first != article.doc_id:
                # The same text under a second name: stored once, the record points at the first.
                duplicates[article.doc_id] = manifest_record(article, now, duplicate_of=first)
                (report.updated if old else report.added).append(article.doc_id)
                continue
            by_text[th] = article.doc_id
            todo.append(article)
            (report.updated if old else report.added).append(article.doc_id)

        deleted: list[str] = []
        if sync:
            # Articles from files under the given folders that were not seen this run are gone,
            # except those of files that failed to load now (bad input never deletes anything).
            dirs = [str(p.resolve()) + "/" for p in roots if p.is_dir()]
            for doc_id, rec in manifest.items():
                path = rec.path
                if (doc_id in seen_ids or path in failed_files or not any(path.startswith(d) for d in dirs)
                        or not in_shard(doc_id, shard)):
                    continue
                deleted.append(doc_id)

        embedder = load_embedder(settings) if todo else None
        if embedder is not None:
            store.check_embedder(name, embedder.signature)
            _write(store, name, todo, grouper, embedder, settings, report, progress, now, shard)
        if duplicates:
            store.put_articles(name, duplicates)
        if deleted:
            chunk_map = store.chunk_ids_of(name, deleted)
            store.delete_chunks(name, [c for ids in chunk_map.values() for c in ids])
            store.delete_docs(name, deleted)
            store.delete_articles(name, deleted)
            report.deleted = sorted(deleted)
        if todo or duplicates or deleted or not store.revision(name):
            store.chunks(name)  # make sure an empty collection exists too
            store.bump_revision(name, embedder.signature if embedder is not None else "")
    report.seconds = time.perf_counter() - started
    return report


def staging_name(name: str) -> str:
    return f"rebuild-{hashlib.sha1(name.encode()).hexdigest()[:16]}"


def _rebuild(paths: list[Path | str], name: str, sync: bool, progress: bool | ProgressFn,
             settings: Settings) -> IngestReport:
    from rag.store import Store

    store = Store(settings)
    re_embed = not paths  # the same articles again (a new embedder), not a new selection of files
    if re_embed:
        if not store.exists(name):
            raise NewsragError(f"no collection named {name!r} to rebuild; give the files or folders to ingest")
        sources = store.sources(name)
        gone = [s for s in sources if not Path(s).exists()]
        if gone:
            raise NewsragError(
                f"cannot rebuild {name!r} from its own sources: {len(gone)} of {len(sources)} files are gone "
                f"(first: {gone[0]}); nothing was changed. Give the files or folders: "
                f"`rag ingest --rebuild PATH -c {name}`")
        paths = list(sources)
    staging = staging_name(name)
    if store.exists(staging):  # left by a rebuild that was killed: start it again
        store.delete_collection(staging)
    report = ingest(paths, collection=staging, sync=sync, progress=progress, settings=settings)
    before = set(store.manifest(name)) if store.exists(name) else set()
    after = set(store.manifest(staging))
    lost = sorted(before - after) if re_embed else ([] if after or not before else sorted(before))
    if lost:
        store.delete_collection(staging)
        raise NewsragError(
            f"rebuild of {name!r} stopped, nothing was changed: {len(lost)} of its articles would be lost "
            f"(first: {lost[0]}; failed files: {'; '.join(f'{f.path}: {f.error}' for f in report.failed[:3]) or 'none'})")
    with collection_lock(settings, name):
        store.replace_collection(name, staging)
    report.collection = name
    return report


def ingest_scorer(embedder, settings: Settings):
    """The answer scorer, when its chunk vectors are stored at ingest (RAG_INGEST_SCORER_VECTORS): answering
    then reads them instead of embedding its candidates before the first token. None when the retrieval
    embedder is the scorer (answering does not re-score then) or embeds on a server (an ingest machine that
    uses one needs no local model; answering embeds the candidates it meets)."""
    from rag.models import load_scorer

    if not settings.ingest_scorer_vectors or settings.embed_provider != "local":
        return None
    scorer = load_scorer(settings)
    return None if scorer is embedder else scorer


def _write(store, name: str, todo: list[Article], grouper: StoryGrouper, embedder, settings: Settings,
           report: IngestReport, progress: bool | ProgressFn, now: str, shard: Shard | None = None) -> None:
    from tqdm import tqdm

    bar = None
    if progress is True and shard is not None:  # each worker on its own line of the terminal
        bar = tqdm(total=len(todo), desc=f"ingest {name} shard {shard[0] + 1}/{shard[1]}", unit="article",
                   position=shard[0])
    elif progress is True:
        bar = tqdm(total=len(todo), desc=f"ingest {name}", unit="article")
    scorer = ingest_scorer(embedder, settings)
    done = 0
    for i in range(0, len(todo), settings.ingest_batch_articles):
        batch = todo[i : i + settings.ingest_batch_articles]
        ids: list[str] = []
        texts: list[str] = []
        scorer_texts: list[str] = []
        docs: list[str] = []
        metas: list[dict[str, object]] = []
        records: dict[str, ArticleRecord] = {}
        doc_ids: list[str] = []
        doc_texts: list[str] = []
        doc_metas: list[dict[str, object]] = []
        for article in batch:
            article.group_id, signature = grouper.assign(article.doc_id, article.text)
            chunks = chunk_article(
                article, embedder.count_tokens, max_tokens=embedder.max_tokens,
                target_tokens=settings.chunk_tokens, overlap_sentences=settings.chunk_overlap,
                prefix=embedder.passage_prefix,
            )
            for c in chunks:
                ids.append(c.chunk_id)
                texts.append(c.embed_text)
                scorer_texts.append(scorer_text(article.title, article.date, c.text))
                docs.append(c.text)
                metas.append(chunk_metadata(article, c, len(chunks)))
            if chunks and settings.article_vectors:
                # One vector for the whole article: title, date and lead up to the embedder's window
                # (it cuts there; the slice only spares the tokenizer a very long text).
                header = chunk_header(article)
                doc_ids.append(article.doc_id)
                doc_texts.append(f"{header}\n{article.text[: embedder.max_tokens * 8]}" if header
                                 else article.text[: embedder.max_tokens * 8])
                doc_metas.append({k: v for k, v in metas[-1].items() if not k.startswith("_") and k not in
                                  ("start", "end", "index", "document_id", "ref_doc_id")})
            records[article.doc_id] = manifest_record(article, now, n_chunks=len(chunks), minhash=signature)
        vectors = embedder.embed_passages(texts, batch_size=settings.embed_batch_size)
        if scorer is not None:
            scorer_vectors = scorer.embed_passages(scorer_texts, batch_size=settings.embed_batch_size)
            for meta, vec in zip(metas, scorer_vectors, strict=True):
                meta[SCORER_FIELD] = pack_vector(scorer.signature, vec)
        store.upsert_chunks(name, ids, vectors.tolist(), docs, metas)
        if doc_ids:
            store.upsert_docs(name, doc_ids, embedder.embed_passages(doc_texts, batch_size=8).tolist(), doc_metas)
        current = store.chunk_ids_of(name, [a.doc_id for a in batch])
        keep = set(ids)
        stale = [cid for cids in current.values() for cid in cids if cid not in keep]
        if stale:
            store.delete_chunks(name, stale)
        store.put_articles(name, records)
        report.chunks_written += len(ids)
        done += len(batch)
        if bar is not None:
            bar.update(len(batch))
        elif callable(progress):
            progress(done, len(todo), batch[-1].doc_id)
    if bar is not None:
        bar.close()
