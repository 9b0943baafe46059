"""Read files into raw articles, one loader per format, all registered in `LOADERS`.

Every loader has one signature, `(data, doc_id, path) -> LoadResult`. A file that cannot be read at all
raises `IngestError` naming it; the record formats (JSONL, JSON, CSV) collect the records that fail, each
named by file and line, and go on with the rest. The pipeline reports both and continues with the next file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import IngestError
from rag.types import Article

# Common column names in scraped news dumps, mapped onto our fields.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "doc_id", "article_id", "guid", "uuid", "_id"),
    "title": ("title", "headline", "heading", "name"),
    "text": ("text", "body", "content", "article", "article_text", "maintext", "full_text", "story"),
    "date": ("date", "publish_date", "published", "published_at", "pubdate", "publication_date",
             "datetime", "created_at", "date_publish", "time", "timestamp"),
    "url": ("url", "link", "article_source_link", "source_url", "href", "permalink"),
    "source": ("source", "outlet", "publisher", "site", "sitename", "source_name", "domain", "newspaper"),
    "lang": ("lang", "language", "locale"),
    "author": ("author", "authors", "byline", "creator"),
}


@dataclass
class LoadResult:
    """What one file gave: its raw articles (not yet cleaned) and the records that failed."""

    articles: list[Article]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path or path:line, reason)


def decode_bytes(data: bytes, path: str) -> str:
    """UTF-8 when it is, else the best guess (German cp1252/latin-1 decodes correctly)."""
    if not data.strip():
        raise IngestError(path, "empty file")
    head = data[:8192]
    if b"\x00" in head and not (head.startswith((b"\xff\xfe", b"\xfe\xff"))):
        raise IngestError(path, "binary file (NUL bytes), not text")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding:
        text = str(best)
        # charset-normalizer sometimes picks an exotic code page for short German text;
        # cp1252 is the right answer for Western European text that is not UTF-8.
        if best.encoding not in ("cp1252", "latin_1", "iso8859_15", "utf_16", "utf_16_le", "utf_16_be"):
            cp = data.decode("cp1252", errors="replace")
            if _looks_western(cp) and not _looks_western(text):
                return cp
        if _control_ratio(text) > 0.05:
            raise IngestError(path, f"binary or undecodable content (guessed {best.encoding})")
        return text
    text = data.decode("cp1252", errors="replace")
    if _control_ratio(text) > 0.05:
        raise IngestError(path, "binary or undecodable content")
    return text


def _looks_western(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    western = sum(ch.isascii() or ch in "äöüÄÖÜßéèêàâçñóòúùíìÉÈ" for ch in text if ch.isalpha())
    return letters > 0 and western / letters > 0.97


def _control_ratio(text: str) -> float:
    if not text:
        return 1.0
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\n\r\t") or ch == "\ufffd")
    return bad / len(text)


def read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise IngestError(str(path), f"too large ({size / 1e6:.1f} MB > limit {max_bytes / 1e6:.1f} MB; raise RAG_MAX_FILE_MB)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot read: {exc.strerror or exc}") from exc


def load_text(data: bytes, doc_id: str, path: str) -> LoadResult:
    text = decode_bytes(data, path)
    if not text.strip():
        raise IngestError(path, "empty file")
    return LoadResult([Article(doc_id=doc_id, text=text, path=path, title_from_text=True)])


def load_html(data: bytes, doc_id: str, path: str) -> LoadResult:
    import trafilatura

    html = decode_bytes(data, path)
    try:
        doc = trafilatura.bare_extraction(
            html, with_metadata=True, include_comments=False, include_tables=True, favor_recall=True
        )
    except Exception as exc:  # trafilatura/lxml raise many kinds on broken markup
        raise IngestError(path, f"malformed HTML ({type(exc).__name__}: {exc})") from exc
    text = (getattr(doc, "text", None) or "") if doc is not None else ""
    if not text.strip():
        raise IngestError(path, "no article text found in the HTML")
    return LoadResult([Article(
        doc_id=doc_id,
        text=text,
        title=getattr(doc, "title", None) or "",
        date=getattr(doc, "date", None) or "",
        url=getattr(doc, "url", None) or "",
        source=getattr(doc, "sitename", None) or getattr(doc, "hostname", None) or "",
        author=getattr(doc, "author", None) or "",
        lang=getattr(doc, "language", None) or "",
        path=path,
    )])


def load_pdf(data: bytes, doc_id: str, path: str) -> LoadResult:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata or {}
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise IngestError(path, f"malformed PDF ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # pypdf raises assorted errors on hostile files
        raise IngestError(path, f"malformed PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise IngestError(path, "PDF has no extractable text (scanned image?)")
    title = str(meta.get("/Title") or "").strip()
    date = str(meta.get("/CreationDate") or "")
    m = re.match(r"D:(\d{4})(\d{2})(\d{2})", date)
    return LoadResult([Article(
        doc_id=doc_id, text=text, title=title, date="-".join(m.groups()) if m else "",
        author=str(meta.get("/Author") or ""), path=path, title_from_text=not title,
    )])


def _map_record(rec: dict[str, object], fallback_id: str, path: str) -> Article:
    lower = {str(k).strip().lower(): v for k, v in rec.items()}
    picked: dict[str, str] = {}
    used: set[str] = set()
    for fld, names in COLUMN_ALIASES.items():
        for name in names:
            value = lower.get(name)
            if value not in (None, "") and not (isinstance(value, float) and value != value):
                picked[fld] = _as_text(value)
                used.add(name)
                break
    text = picked.get("text", "")
    if not text.strip():
        raise IngestError(path, "record has no text")
    extra = {k: _as_text(v)[:500] for k, v in lower.items() if k not in used and v not in (None, "")}
    return Article(
        doc_id=picked.get("id") or fallback_id,
        text=text,
        title=picked.get("title", ""),
        date=picked.get("date", ""),
        url=picked.get("url", ""),
        source=picked.get("source", ""),
        author=picked.get("author", ""),
        lang=picked.get("lang", ""),
        path=path,
        extra=extra,
    )


def _as_text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _records(items: Iterable[tuple[str, str, str, object]], path: str) -> LoadResult:
    """The loop every record format shares. Items are (where, label, fallback id, record), where `label`
    ("line 3", "record 2") starts each record's error message."""
    articles, errors = [], []
    for where, label, fallback_id, rec in items:
        if isinstance(rec, Exception):
            errors.append((where, f"{label}: {rec}"))
            continue
        if not isinstance(rec, dict):
            errors.append((where, f"{label}: expected a JSON object, got {type(rec).__name__}"))
            continue
        try:
            articles.append(_map_record(rec, fallback_id, where))
        except IngestError as exc:
            errors.append((where, f"{label}: {exc.reason}"))
    if not articles and not errors:
        raise IngestError(path, "no records")
    return LoadResult(articles, errors)


def load_jsonl(data: bytes, doc_id: str, path: str) -> LoadResult:
    def items() -> Iterator[tuple[str, str, str, object]]:
        for lineno, line in enumerate(decode_bytes(data, path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec: object = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                rec = ValueError(f"invalid JSON ({getattr(exc, 'msg', 'too deeply nested')})")
            yield f"{path}:{lineno}", f"line {lineno}", f"{doc_id}#{lineno}", rec

    return _records(items(), path)


def load_json(data: bytes, doc_id: str, path: str) -> LoadResult:
    text = decode_bytes(data, path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # A .json file holding JSON lines is common; try that before giving up.
        if text.lstrip().startswith("{") and "\n{" in text:
            return load_jsonl(data, doc_id, path)
        raise IngestError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise IngestError(path, "invalid JSON: nested too deeply") from exc
    if isinstance(obj, dict):
        for key in ("articles", "items", "data", "records", "results", "documents"):
            if isinstance(obj.get(key), list):
                obj = obj[key]
                break
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise IngestError(path, f"expected a list of article objects, got {type(obj).__name__}")
    return _records(((f"{path}[{i}]", f"record {i}", f"{doc_id}#{i}", rec) for i, rec in enumerate(obj)), path)


def load_csv(data: bytes, doc_id: str, path: str, delimiter: str | None = None) -> LoadResult:
    text = decode_bytes(data, path)
    csv.field_size_limit(50_000_000)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip().lower() for c in (reader.fieldnames or []) if c]
    if not any(c in COLUMN_ALIASES["text"] for c in columns):
        raise IngestError(path, f"CSV has no text column (looked for {', '.join(COLUMN_ALIASES['text'][:4])}…; found {', '.join(columns[:12]) or 'none'})")

    def items() -> Iterator[tuple[str, str, str, object]]:
        try:
            for i, row in enumerate(reader, start=2):
                row.pop(None, None)  # extra cells beyond the header
                yield f"{path}:{i}", f"line {i}", f"{doc_id}#{i}", row
        except csv.Error as exc:  # the rest of the file is unreadable; the rows before it are kept
            yield path, "CSV error", "", ValueError(f"near line {reader.line_num}: {exc}")

    return _records(items(), path)


def load_tsv(data: bytes, doc_id: str, path: str) -> LoadResult:
    return load_csv(data, doc_id, path, delimiter="\t")


Loader = Callable[[bytes, str, str], LoadResult]


@dataclass(frozen=True)
class Format:
    """One input format: the file suffixes it covers and its loader."""

    name: str
    suffixes: tuple[str, ...]
    load: Loader
    what: str  # one line for the README table, the CLI help and the UI uploader


FORMATS: list[Format] = [
    Format("text", (".txt", ".md", ".markdown"), load_text, "one article; the first line is its title"),
    Format("HTML", (".html", ".htm", ".xhtml"), load_html, "a saved web page; trafilatura finds the article, title, date"),
    Format("PDF", (".pdf",), load_pdf, "text PDFs (not scans); title and date from the PDF's metadata"),
    Format("JSON lines", (".jsonl", ".ndjson"), load_jsonl, "one article object per line"),
    Format("JSON", (".json",), load_json, "a list of article objects (or {\"articles\": [...]})"),
    Format("CSV", (".csv",), load_csv, "one article per row; delimiter sniffed"),
    Format("TSV", (".tsv",), load_tsv, "one article per row, tab-separated"),
]
# suffix -> format: the one registry that load_file, the CLI help, the UI uploader and README read.
LOADERS: dict[str, Format] = {suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes}


def load_file(path: Path, doc_id: str, max_bytes: int) -> LoadResult:
    """Load one file into raw articles; raises IngestError for the file as a whole."""
    fmt = LOADERS.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(str(path), f"unsupported format '{path.suffix.lower() or path.name}'")
    data = read_bytes(path, max_bytes)
    if not data.strip():
        raise IngestError(str(path), "empty file")
    return fmt.load(data, doc_id, str(path))


def iter_files(paths: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) for every file under the given files/directories, sorted, hidden ones skipped."""
    for root in paths:
        if root.is_dir():
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in file.relative_to(root).parts):
                    continue
                yield file, root
        else:
            yield root, root.parent


def formats_table() -> str:
    """The README's table of input formats, made from FORMATS (a test keeps README equal to it)."""
    rows = ["| format | files | what newsrag reads |", "|---|---|---|"]
    rows += [f"| {f.name} | {' '.join(f'`{s}`' for s in f.suffixes)} | {f.what} |" for f in FORMATS]
    return "\n".join(rows)


def suffix_list() -> str:
    """'txt, md, …' for the CLI help and the UI uploader."""
    return ", ".join(s.lstrip(".") for s in LOADERS)
