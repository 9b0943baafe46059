"""Evidence: retrieved passages grouped into numbered sources, their sentences, the ones that go into
the prompt, and the citations built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag import facts, prompts
from rag.retrieval import collapse
from rag.text import lexical_overlap, split_sentences
from rag.types import Citation, Passage

# Evidence ranking: cosine to the question, plus a small bonus for the question's own words (names and
# numbers that the multilingual embedder blurs), minus a small penalty per rank of the source so that
# near-ties go to the better-retrieved article.
EVIDENCE_LEXICAL_WEIGHT = 0.05
EVIDENCE_SOURCE_RANK_PENALTY = 0.01
# ...and, for a who-question, a bonus for a sentence that writes a full name the question does not: a paraphrased
# question resembles the sentences restating its topic more than the one naming the person (answer bench q059:
# "course designer Bernhard Russi" scored 0.05 below the article's four opening sentences). Measured with
# bench/evidence_recall.py: 0.05 put one more answer into the prompt and took none out; a bonus for any asked
# kind of fact (numbers, dates, names for which-questions) did not help (bench/RESULTS.md, stop 21).
PERSON_BONUS = 0.05
# A source's header in the prompt (<source n= title= outlet= date=>…</source>) costs its title plus about this.
SOURCE_HEADER_TOKENS = 20


@dataclass
class Source:
    """One numbered source in the prompt: an article with its selected sentences."""

    n: int
    lead: Passage
    passages: list[Passage]
    sentences: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, text) in article coords
    selected: list[int] = field(default_factory=list)  # indexes into sentences, in text order

    @property
    def meta(self) -> dict[str, Any]:
        return self.lead.metadata


def passage_sentences(p: Passage) -> list[tuple[int, int, str]]:
    offset = int(p.metadata.get("start", 0) or 0)
    return [(offset + s, offset + e, p.text[s:e]) for s, e in split_sentences(p.text)]


def build_sources(passages: list[Passage], k: int) -> list[Source]:
    stories = collapse(list(passages), k, per_story=2)
    by_doc: dict[str, Source] = {}
    order: list[Source] = []
    for p in stories:
        src = by_doc.get(p.doc_id)
        if src is None:
            src = Source(n=len(order) + 1, lead=p, passages=[])
            by_doc[p.doc_id] = src
            order.append(src)
        src.passages.append(p)
    for src in order:
        seen: set[tuple[int, int]] = set()
        for p in sorted(src.passages, key=lambda x: int(x.metadata.get("start", 0) or 0)):
            for s, e, t in passage_sentences(p):
                if (s, e) not in seen and not any(s < e2 and s2 < e for s2, e2 in seen):
                    seen.add((s, e))
                    src.sentences.append((s, e, t))
        src.sentences.sort()
    return order


def select_evidence(sources: list[Source], qvec: np.ndarray, embedder, question: str, limit: int,
                    per_source: int = 4, token_budget: int = 0) -> None:
    """Keep the sentences that best match the question, within `limit` sentences and about
    `token_budget` tokens of source text (0 = no budget). On 2 CPU cores the 1.5B model reads ~80
    prompt tokens/s, so every sentence left out is ~0.3-0.5 s sooner to the first token."""
    flat = [(si, i) for si, src in enumerate(sources) for i in range(len(src.sentences))]
    if not flat:
        return
    texts = [sources[si].sentences[i][2] for si, i in flat]
    vecs = embedder.embed_passages(texts, cache=True)
    scores = vecs @ qvec + EVIDENCE_LEXICAL_WEIGHT * np.array([lexical_overlap(question, t) for t in texts])
    scores -= EVIDENCE_SOURCE_RANK_PENALTY * np.array([si for si, _ in flat])
    if PERSON_BONUS:
        langs = [str(src.meta.get("lang", "")) for src in sources]
        scores += PERSON_BONUS * np.array([facts.names_a_person_for(t, question, langs[si])
                                           for t, (si, _) in zip(texts, flat, strict=True)])
    costs = embedder.count_tokens(texts) if token_budget else [0] * len(texts)
    titles = embedder.count_tokens([str(src.meta.get("title", "")) for src in sources]) if token_budget else []
    header_cost = [n + SOURCE_HEADER_TOKENS for n in titles] or [0] * len(sources)
    picked: dict[int, list[int]] = {}
    used = 0
    for j in np.argsort(-scores):
        si, i = flat[int(j)]
        if len(picked.get(si, [])) >= per_source:
            continue
        cost = costs[int(j)] + (0 if si in picked else header_cost[si])
        if token_budget and picked and used + cost > token_budget:
            continue  # a shorter, slightly weaker sentence may still fit
        picked.setdefault(si, []).append(i)
        used += cost
        if sum(len(v) for v in picked.values()) >= limit:
            break
    for si, src in enumerate(sources):
        src.selected = sorted(picked.get(si, []))


def is_heading(sentence: str) -> bool:
    """A line that does not end as a sentence does (no closing punctuation): a subheading or a label."""
    text = sentence.rstrip()
    return not text or text[-1] not in ".!?…:;\"'»«“”„)]"


def extractive_text(sources: list[Source], qvec: np.ndarray, embedder, limit: int = 3,
                    min_score: float = 0.0) -> str:
    """The best evidence sentences, quoted with their source numbers; "" when even the best one
    is less similar to the question than `min_score`."""
    picked = [(src.n, i) for src in sources for i in src.selected]
    by_n = {src.n: src for src in sources}
    # A subheading is context for a model, not an answer to quote ("Neue Impulse für die Russland-Nordkorea-
    # Beziehungen [1]" read as a claim); quoted only when the evidence holds nothing else.
    quotable = [(n, i) for n, i in picked if not is_heading(by_n[n].sentences[i][2])]
    picked = quotable or picked
    if not picked:
        return ""
    texts = [by_n[n].sentences[i][2] for n, i in picked]
    scores = embedder.embed_passages(texts, cache=True) @ qvec
    if float(scores.max()) < min_score:
        return ""
    best = sorted(np.argsort(-scores)[:limit].tolist(), key=lambda j: (picked[j][0], picked[j][1]))
    return " ".join(f"{texts[j]} [{picked[j][0]}]" for j in best)


def source_citation(src: Source, n: int, sentence: tuple[int, int, str] | None, score: float,
                     verified: bool) -> Citation:
    meta = src.meta
    passage = src.lead
    if sentence is not None:
        for p in src.passages:
            ps = int(p.metadata.get("start", 0) or 0)
            if ps <= sentence[0] and sentence[1] <= ps + len(p.text):
                passage = p
                break
    also = meta.get("also_in") or []
    return Citation(
        n=n, doc_id=src.lead.doc_id, chunk_id=passage.chunk_id, title=str(meta.get("title", "")),
        source=str(meta.get("source", "")), url=str(meta.get("url", "")), date=str(meta.get("date", "")) or None,
        quote=sentence[2] if sentence else "", start=sentence[0] if sentence else 0,
        end=sentence[1] if sentence else 0, passage=passage.text, score=round(float(score), 4),
        verified=verified, also_in=list(also) if isinstance(also, list) else [],
    )


def closest(sources: list[Source]) -> list[Citation]:
    out = []
    for i, src in enumerate(sources[:5], start=1):
        best = src.sentences[src.selected[0]] if src.selected else (src.sentences[0] if src.sentences else None)
        out.append(source_citation(src, i, best, src.lead.dense_score or 0.0, False))
    return out


def dates_note(citations: list[Citation], lang: str) -> str:
    dates = sorted({c.date[:10] for c in citations if c.date})
    return prompts.localized(prompts.DATES_NOTE, lang, dates=", ".join(dates)) if dates else ""

