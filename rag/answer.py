"""ask() and ask_stream(): question -> query -> passages -> evidence -> prompt -> LLM -> verified Answer.

Citations are checked in code, not trusted: unknown [n] are dropped, every cited
sentence is compared with its source (multilingual embedding similarity plus
lexical and number overlap), the best supporting sentence becomes the quote with
its exact span, and sentences no source supports are flagged or removed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.chunk import split_sentences
from ingest.meta import LANGUAGE_NAMES, detect_language
from rag import prompts
from rag.dates import question_dates
from rag.errors import LLMError, NewsragError
from rag.retrieve import Filters, collapse, hybrid_search
from rag.settings import Settings, get_settings
from rag.types import Answer, Citation, Passage

MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
WORD = re.compile(r"\w+", re.UNICODE)
NUMBER = re.compile(r"\d+")
FOLLOW_UP_WORDS = set(["das", "dies", "diese", "dieser", "dieses", "es", "er", "sie", "ihn", "ihm", "ihr", "ihre", "dort", "damals", "dabei", "davon", "darüber", "dafür", "wann", "wo", "warum", "wie", "that", "this", "these", "those", "it", "its", "they", "them", "their", "he", "him", "his", "she", "her", "there", "then", "when", "why", "how", "which", "what", "also", "too", "cela", "ça", "il", "elle", "ils", "elles", "alors", "ese", "esa", "eso", "ellos", "entonces"])


# ------------------------------------------------------------------ history
def normalise_history(history: Any) -> list[tuple[str, str]]:
    """Accept Answers, (question, answer) pairs or chat messages; return (question, answer) pairs."""
    if not history:
        return []
    pairs: list[tuple[str, str]] = []
    pending_q: str | None = None
    for item in history:
        if isinstance(item, Answer):
            pairs.append((item.question, item.text))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        elif isinstance(item, dict) and "role" in item:
            if item["role"] == "user":
                pending_q = str(item.get("content", ""))
            elif item["role"] == "assistant" and pending_q is not None:
                pairs.append((pending_q, str(item.get("content", ""))))
                pending_q = None
    return pairs


def condense_query(question: str, history: list[tuple[str, str]]) -> str:
    """A standalone retrieval query for a follow-up.

    A second LLM round trip costs seconds on a laptop CPU, so follow-ups are made
    standalone by prefixing the previous question when the new one is short or
    refers back ("Und wann war das?"); the LLM still sees the conversation.
    """
    if not history:
        return question
    words = [w.lower() for w in WORD.findall(question)]
    refers_back = len(words) <= 4 or (len(words) <= 12 and any(w in FOLLOW_UP_WORDS for w in words))
    if not refers_back:
        return question
    return f"{history[-1][0]} {question}"


# ------------------------------------------------------------------ evidence
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


def lexical_overlap(claim: str, evidence: str) -> float:
    a = {w.lower() for w in WORD.findall(claim) if len(w) > 2 or w.isdigit()}
    if not a:
        return 0.0
    b = {w.lower() for w in WORD.findall(evidence)}
    return len(a & b) / len(a)


def missing_numbers(claim: str, evidence: str) -> int:
    have = set(NUMBER.findall(evidence))
    return sum(1 for n in set(NUMBER.findall(claim)) if n not in have)


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
    scores = vecs @ qvec + 0.05 * np.array([lexical_overlap(question, t) for t in texts])
    scores -= 0.01 * np.array([si for si, _ in flat])  # gently prefer better-ranked sources
    costs = embedder.count_tokens(texts) if token_budget else [0] * len(texts)
    # a source's header (<source n= title= outlet= date=>...</source>): its title plus ~20 tokens
    titles = embedder.count_tokens([str(src.meta.get("title", "")) for src in sources]) if token_budget else []
    header_cost = [n + 20 for n in titles] or [0] * len(sources)
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


# ------------------------------------------------------------------ verification
@dataclass
class Claim:
    text: str  # without markers
    cited: list[int]
    support: float = 0.0
    source: int | None = None  # final supporting source number (prompt numbering)
    sentence: tuple[int, int, str] | None = None
    auto: bool = False


def split_claims(answer: str, valid: set[int]) -> list[Claim]:
    """Sentences of the answer with the source numbers cited after each (same splitter as chunking)."""
    claims: list[Claim] = []
    text = answer.strip()
    for start, end in split_sentences(text):
        raw = text[start:end]
        numbers = [int(x) for mm in MARKER.finditer(raw) for x in mm.group(1).split(",")]
        lead = re.match(r"^(\s*\[[\d,\s]+\][.!?]?)+", raw)
        if lead and claims:
            # "... 2024. [1]": the marker after the full stop belongs to the previous sentence
            lead_numbers = [int(x) for mm in MARKER.finditer(lead.group(0)) for x in mm.group(1).split(",")]
            claims[-1].cited += [n for n in lead_numbers if n in valid and n not in claims[-1].cited]
            numbers = numbers[len(lead_numbers):]
            raw = raw[lead.end():]
        body = MARKER.sub("", raw).strip()
        if not any(ch.isalpha() for ch in body):
            continue
        claims.append(Claim(text=body, cited=list(dict.fromkeys(n for n in numbers if n in valid))))
    return claims


def verify_claims(claims: list[Claim], sources: list[Source], embedder, threshold: float) -> None:
    if not claims or not sources:
        return
    all_sents = [(src.n, s) for src in sources for s in src.sentences]
    if not all_sents:
        return
    claim_vecs = embedder.embed_queries([c.text for c in claims])
    sent_vecs = embedder.embed_queries([s[2] for _, s in all_sents])
    sims = claim_vecs @ sent_vecs.T
    by_source: dict[int, str] = {src.n: " ".join(s[2] for s in src.sentences) for src in sources}
    for ci, claim in enumerate(claims):
        best: tuple[float, int, int] = (-1.0, 0, -1)  # (score, source n, index into all_sents)
        best_cited: tuple[float, int, int] = (-1.0, 0, -1)
        for j, (n, sent) in enumerate(all_sents):
            score = float(sims[ci, j]) + 0.15 * lexical_overlap(claim.text, sent[2])
            score -= 0.15 * missing_numbers(claim.text, by_source[n])
            if score > best[0]:
                best = (score, n, j)
            if n in claim.cited and score > best_cited[0]:
                best_cited = (score, n, j)
        if best_cited[2] >= 0 and best_cited[0] >= threshold:
            chosen = best_cited
        elif best[2] >= 0 and best[0] >= threshold:
            chosen, claim.auto = best, True  # the model cited the wrong source or none
        else:
            chosen = best_cited if best_cited[2] >= 0 else best
            claim.support = chosen[0]
            claim.source = None
            claim.sentence = all_sents[chosen[2]][1] if chosen[2] >= 0 else None
            continue
        claim.support, claim.source = chosen[0], chosen[1]
        claim.sentence = all_sents[chosen[2]][1]


# ------------------------------------------------------------------ streaming filter
class MarkerFilter:
    """Streams model text while holding back what must not reach the user:
    citation markers with unknown numbers and the NOT_IN_SOURCES signal."""

    def __init__(self, valid: set[int]) -> None:
        self.valid = valid
        self.buffer = ""
        self.started = False
        self.refused = False

    def feed(self, piece: str) -> str:
        self.buffer += piece
        if not self.started:
            probe = self.buffer.lstrip()
            if prompts.NOT_COVERED.startswith(probe[: len(prompts.NOT_COVERED)]) and len(probe) < len(prompts.NOT_COVERED):
                return ""
            if probe.startswith(prompts.NOT_COVERED):
                self.refused = True
            self.started = True
        if self.refused:
            return ""
        out = []
        while self.buffer:
            i = self.buffer.find("[")
            if i < 0:
                out.append(self.buffer)
                self.buffer = ""
                break
            out.append(self.buffer[:i])
            rest = self.buffer[i:]
            j = rest.find("]")
            if j < 0:
                if len(rest) > 16:  # not a marker after all
                    out.append(rest)
                    self.buffer = ""
                else:
                    self.buffer = rest
                break
            token = rest[: j + 1]
            m = re.fullmatch(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]", token)
            if m:
                keep = [x.strip() for x in m.group(1).split(",") if int(x) in self.valid]
                if keep:
                    out.append("[" + ", ".join(keep) + "]")
            else:
                out.append(token)
            self.buffer = rest[j + 1 :]
        return "".join(out)

    def flush(self) -> str:
        if self.refused:
            return ""
        out, self.buffer = self.buffer, ""
        return out if "[" not in out else MARKER.sub("", out)


# ------------------------------------------------------------------ the flow
def _source_citation(src: Source, n: int, sentence: tuple[int, int, str] | None, score: float,
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


def _closest(sources: list[Source]) -> list[Citation]:
    out = []
    for i, src in enumerate(sources[:5], start=1):
        best = src.sentences[src.selected[0]] if src.selected else (src.sentences[0] if src.sentences else None)
        out.append(_source_citation(src, i, best, src.lead.dense_score or 0.0, False))
    return out


def _dates_note(citations: list[Citation], lang: str) -> str:
    dates = sorted({c.date[:10] for c in citations if c.date})
    return prompts.localized(prompts.DATES_NOTE, lang, dates=", ".join(dates)) if dates else ""


def ask_stream(
    question: str,
    *,
    collection: str | None = None,
    history: Any = None,
    filters: Filters | dict | None = None,
    llm: str | None = None,
    settings: Settings | None = None,
) -> Iterator[str | Answer]:
    """Yield the answer text as it is generated, then the final verified `Answer`."""
    from rag.models import load_embedder

    settings = settings or get_settings()
    t0 = time.perf_counter()
    question = (question or "").strip()
    if not question:
        raise NewsragError("empty question")
    provider = llm or settings.llm_provider
    lang = detect_language(question, short=True, default="en")
    pairs = normalise_history(history)[-settings.history_turns :]
    query = condense_query(question, pairs)
    user_filters = Filters.of(filters)
    since, until = question_dates(question)
    flt = user_filters.merged(Filters(since=since, until=until)) if since else user_filters
    timings: dict[str, float] = {}
    passages = hybrid_search(query, collection=collection, filters=flt, query_lang=lang, settings=settings,
                             timings=timings)
    notice = ""
    relevant = [p for p in passages if (p.dense_score or 0) >= settings.min_relevance]
    if since and not relevant:
        # The date in the question may be the event's, not the publication's: try without it.
        passages = hybrid_search(query, collection=collection, filters=user_filters, query_lang=lang,
                                 settings=settings)
        relevant = [p for p in passages if (p.dense_score or 0) >= settings.min_relevance]
        if relevant:
            notice = prompts.localized(prompts.DATE_FILTER_RELAXED, lang, span=f"{since} – {until}")
    embedder = load_embedder(settings)
    if relevant:
        # Sources far below the best one add prompt tokens (seconds on a CPU) and little evidence.
        best = max(p.dense_score or 0 for p in relevant)
        relevant = [p for p in relevant if (p.dense_score or 0) >= best - settings.relevance_margin]
    sources = build_sources(relevant or passages[: settings.retrieval_k], settings.retrieval_k)
    qvec = embedder.embed_queries([query])[0]
    select_evidence(sources, qvec, embedder, question, settings.evidence_sentences,
                    token_budget=settings.evidence_tokens)
    t_retrieved = time.perf_counter()
    timings["retrieve"] = t_retrieved - t0
    answer = Answer(question=question, text="", language=lang, provider=provider, query=query, notice=notice)

    def refuse(extra_notice: str = "") -> Answer:
        answer.answered = False
        answer.text = prompts.localized(prompts.REFUSAL, lang)
        answer.sources = _closest(sources)
        answer.notice = " ".join(x for x in (answer.notice, extra_notice) if x)
        answer.timings = {**timings, "total": time.perf_counter() - t0}
        return answer

    if not relevant:
        refusal = refuse()
        yield refusal.text
        yield refusal
        return

    valid = {s.n for s in sources if s.selected}
    raw_text = ""
    model = None
    if provider != "extractive":
        try:
            from rag.llm import get_chat_model

            model = get_chat_model(provider, settings)
        except NewsragError as exc:
            answer.notice = prompts.localized(prompts.FALLBACK_NOTICE, lang, reason=str(exc))
            provider = "extractive"
    if model is not None:
        from rag.llm import looks_like_garbage, stream_with_timeout

        source_blocks = [
            prompts.format_source(src.n, str(src.meta.get("title", "")), str(src.meta.get("source", "")),
                                  str(src.meta.get("date", "")), " ".join(src.sentences[i][2] for i in src.selected))
            for src in sources if src.selected
        ]
        source_langs = sorted({LANGUAGE_NAMES.get(str(src.meta.get("lang", "")), "") for src in sources if src.selected} - {""})
        messages = prompts.answer_messages(question, source_blocks, LANGUAGE_NAMES.get(lang, "English"), pairs,
                                           source_langs)
        filt = MarkerFilter(valid)
        first = None
        try:
            for piece in stream_with_timeout(model, messages, max_tokens=settings.llm_max_tokens,
                                             temperature=settings.llm_temperature, timeout=settings.llm_timeout):
                if first is None:
                    first = time.perf_counter()
                    timings["first_token"] = first - t0
                raw_text += piece
                shown = filt.feed(piece)
                if shown:
                    yield shown
            tail = filt.flush()
            if tail:
                yield tail
            if prompts.NOT_COVERED in raw_text[:40] and not MARKER.search(raw_text):
                refusal = refuse()
                yield refusal
                return
            if looks_like_garbage(MARKER.sub("", raw_text.replace(prompts.NOT_COVERED, ""))):
                raise LLMError("the LLM returned no usable text")
        except LLMError as exc:
            answer.notice = prompts.localized(prompts.FALLBACK_NOTICE, lang, reason=str(exc))
            provider = "extractive"
            yield "\n\n"
    if provider == "extractive":
        answer.provider = "extractive"
        raw_text = extractive_text(sources, qvec, embedder, min_score=settings.extractive_min_score)
        if not raw_text:
            # Without a model to say NOT_IN_SOURCES, a quote this far from the question is not an answer.
            refusal = refuse()
            yield refusal.text
            yield refusal
            return
        if "first_token" not in timings:
            timings["first_token"] = time.perf_counter() - t0
        yield prompts.localized(prompts.EXTRACTIVE_NOTE, lang) + "\n" + raw_text

    final = finish(answer, raw_text.replace(prompts.NOT_COVERED, ""), sources, embedder, settings,
                   extractive=provider == "extractive")
    final.timings = {**timings, "total": time.perf_counter() - t0}
    yield final


def extractive_text(sources: list[Source], qvec: np.ndarray, embedder, limit: int = 3,
                    min_score: float = 0.0) -> str:
    """The best evidence sentences, quoted with their source numbers; "" when even the best one
    is less similar to the question than `min_score`."""
    picked = [(src.n, i) for src in sources for i in src.selected]
    if not picked:
        return ""
    texts = [next(s for s in sources if s.n == n).sentences[i][2] for n, i in picked]
    scores = embedder.embed_passages(texts, cache=True) @ qvec
    if float(scores.max()) < min_score:
        return ""
    best = sorted(np.argsort(-scores)[:limit].tolist(), key=lambda j: (picked[j][0], picked[j][1]))
    return " ".join(f"{texts[j]} [{picked[j][0]}]" for j in best)


def finish(answer: Answer, raw_text: str, sources: list[Source], embedder, settings: Settings,
           extractive: bool = False) -> Answer:
    """Verify citations, renumber them by first use, attach quotes and spans."""
    valid = {s.n for s in sources if s.selected} or {s.n for s in sources}
    claims = split_claims(raw_text, valid)
    by_n = {s.n: s for s in sources}
    if extractive:
        for c in claims:
            src = by_n.get(c.cited[0]) if c.cited else None
            sent = next((s for s in (src.sentences if src else []) if s[2] == c.text), None)
            c.source, c.sentence, c.support = (src.n if src else None), sent, 1.0
    else:
        verify_claims(claims, sources, embedder, settings.verify_threshold)
    numbering: dict[int, int] = {}
    best_quote: dict[int, tuple[float, tuple[int, int, str] | None]] = {}
    parts: list[str] = []
    for c in claims:
        if c.source is None:
            answer.unsupported.append(c.text)
            if settings.unsupported == "remove":
                continue
            parts.append(f"{c.text} [?]")
            continue
        final_n = numbering.setdefault(c.source, len(numbering) + 1)
        if c.source not in best_quote or c.support > best_quote[c.source][0]:
            best_quote[c.source] = (c.support, c.sentence)
        parts.append(f"{c.text} [{final_n}]")
    answer.text = " ".join(parts).strip()
    answer.citations = [
        _source_citation(by_n[src_n], final_n, best_quote[src_n][1], best_quote[src_n][0],
                         best_quote[src_n][0] >= settings.verify_threshold or extractive)
        for src_n, final_n in sorted(numbering.items(), key=lambda kv: kv[1])
    ]
    if not answer.citations:
        # Nothing the model wrote is backed by a source: say so instead of showing it.
        answer.answered = False
        answer.sources = _closest(sources)
        answer.text = prompts.localized(prompts.REFUSAL, answer.language)
    else:
        note = _dates_note(answer.citations, answer.language)
        if note:
            answer.text += f"\n\n{note}"
    return answer


def ask(question: str, *, collection: str | None = None, history: Any = None, filters: Filters | dict | None = None,
        llm: str | None = None, settings: Settings | None = None) -> Answer:
    """Answer a question from the collection, in the question's language, with verified citations."""
    final: Answer | None = None
    for item in ask_stream(question, collection=collection, history=history, filters=filters, llm=llm,
                           settings=settings):
        if isinstance(item, Answer):
            final = item
    assert final is not None
    return final


class Chat:
    """A conversation: follow-up questions see the earlier turns."""

    def __init__(self, collection: str | None = None, llm: str | None = None,
                 filters: Filters | dict | None = None) -> None:
        self.collection, self.llm, self.filters = collection, llm, filters
        self.history: list[Answer] = []

    def ask(self, question: str) -> Answer:
        answer = ask(question, collection=self.collection, history=self.history, filters=self.filters, llm=self.llm)
        self.history.append(answer)
        return answer

    def clear(self) -> None:
        self.history.clear()
