"""ask() and ask_stream(): question -> query -> passages -> evidence -> prompt -> LLM -> verified Answer.

Citations are checked in code, not trusted (rag/verify.py): unknown [n] are dropped, every cited
sentence is compared with its source, the best supporting sentence becomes the quote with its exact
span, and sentences no source supports are flagged or removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag import prompts
from rag.dates import question_dates
from rag.errors import LLMError, NewsragError
from rag.evidence import Source, build_sources, closest, dates_note, extractive_text, select_evidence, source_citation
from rag.lang import LANGUAGE_NAMES, detect_language
from rag.retrieval import hybrid_search
from rag.settings import Settings, get_settings
from rag.text import FOLLOW_UP_WORDS, WORD
from rag.types import Answer, ClaimCheck, Filters, Passage, Stage
from rag.verify import MARKER, Claim, MarkerFilter, confirm_claims, split_claims, verify_claims

log = logging.getLogger("newsrag.answer")


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


@dataclass
class Evidence:
    """What retrieval found for one question: numbered sources with their prompt sentences."""

    sources: list[Source]
    relevant: bool  # something reached RAG_MIN_RELEVANCE; otherwise the sources are only the closest
    qvec: np.ndarray
    embedder: Any
    notice: str = ""
    best: float = 0.0  # the closest passage's dense score (scorer scale)


def gather_evidence(question: str, query: str, lang: str, collection: str | None, user_filters: Filters,
                    settings: Settings, timings: dict[str, float]) -> Evidence:
    from rag.models import load_embedder, load_scorer

    since, until = question_dates(question)
    flt = user_filters.merged(Filters(since=since, until=until)) if since else user_filters
    # In a new process the scorer and retrieval's embedder load in threads while retrieval opens the store:
    # onnxruntime releases the GIL while it prepares a graph, so the loads overlap (cold `rag ask`,
    # bench/cold_start.py: loading the embedder only after the store opened cost ~2 s on 2 cores).
    # hybrid_search waits for the embedder's load rather than starting a second one (rag.models).
    with ThreadPoolExecutor(2) as pool:
        scorer = pool.submit(load_scorer, settings)
        pool.submit(load_embedder, settings)
        passages = hybrid_search(query, collection=collection, filters=flt, query_lang=lang, settings=settings,
                                 timings=timings, articles=answer_articles(settings))
        embedder = scorer.result()
    rescore = embedder is not load_embedder(settings)
    started = time.perf_counter()
    # The scorer re-scores exactly the retrieval_k passages that can become sources. Re-embedding is most of
    # retrieval's time (e5 on ~220-token chunks: ~0.05 s each on 2 cores) and comes before the first token. On
    # the answer bench's 117 questions, re-scoring 6 instead of 15 changed no refusal and no prompt's evidence
    # (stop 13); 4 instead of 6 put the accepted answer into the prompt for 82 of 91 instead of 81, let the same
    # questions past the relevance gate and cut re-scoring and evidence from 0.60 to 0.44 s p50 (stop 23).
    if rescore:
        rescore_passages(passages, query, embedder, settings.retrieval_k)
    timings["rescore"] = time.perf_counter() - started
    notice = ""
    relevant = [p for p in passages if (p.dense_score or 0) >= settings.min_relevance]
    if since and not relevant:
        # The date in the question may be the event's, not the publication's: try without it.
        passages = hybrid_search(query, collection=collection, filters=user_filters, query_lang=lang,
                                 settings=settings, articles=answer_articles(settings))
        if rescore:
            rescore_passages(passages, query, embedder, settings.retrieval_k)
        relevant = [p for p in passages if (p.dense_score or 0) >= settings.min_relevance]
        if relevant:
            notice = prompts.localized(prompts.DATE_FILTER_RELAXED, lang, span=f"{since} – {until}")
    if relevant:
        # Sources far below the best one add prompt tokens (seconds on a CPU) and little evidence.
        best = max(p.dense_score or 0 for p in relevant)
        relevant = [p for p in relevant if (p.dense_score or 0) >= best - settings.relevance_margin]
    sources = build_sources(relevant or passages[: settings.retrieval_k], settings.retrieval_k)
    started = time.perf_counter()
    qvec = embedder.embed_queries([query])[0]
    select_evidence(sources, qvec, embedder, question, settings.evidence_sentences,
                    token_budget=settings.evidence_tokens)
    timings["evidence"] = time.perf_counter() - started
    best = max((p.dense_score or 0.0 for p in passages), default=0.0)
    return Evidence(sources, bool(relevant), qvec, embedder, notice, best)


def answer_articles(settings: Settings) -> int:
    """How many of the best articles' chunks retrieval reads for an answer. Only the first retrieval_k passages
    are re-scored, and only re-scored ones pass the relevance gate; without re-scoring (the scorer is the
    retrieval embedder) any passage may, so read three articles per source."""
    return 3 * settings.retrieval_k


def rescore_passages(passages: list[Passage], query: str, scorer, n: int) -> None:
    """Dense scores of the best n passages on the scorer's calibrated scale (the retrieval embedder is
    another model); passages further down get none, so they never pass the relevance gate. A chunk's scorer
    vector stored at ingest is used as it is; a chunk without one (ingested before, or by another scorer)
    is embedded now, the same way."""
    from rag.embedding import unpack_vector
    from rag.text import scorer_text

    top = passages[:n]
    if top:
        qvec = scorer.embed_queries([query])[0]
        vectors = [unpack_vector(p.scorer_vector, scorer.signature) for p in top]
        missing = [i for i, vec in enumerate(vectors) if vec is None]
        if missing:
            texts = [scorer_text(str(top[i].metadata.get("title", "")), str(top[i].metadata.get("date", "")),
                                 top[i].text) for i in missing]
            for i, vec in zip(missing, scorer.embed_passages(texts, cache=True), strict=True):
                vectors[i] = vec
        for p, vec in zip(top, vectors, strict=True):
            p.dense_score = float(vec @ qvec)
    for p in passages[n:]:
        p.dense_score = None


def answer_messages(question: str, lang: str, sources: list[Source], history: list[tuple[str, str]]) -> list[dict]:
    blocks = [prompts.format_source(src.n, str(src.meta.get("title", "")), str(src.meta.get("source", "")),
                                    str(src.meta.get("date", "")), " ".join(src.sentences[i][2] for i in src.selected))
              for src in sources if src.selected]
    return prompts.answer_messages(question, blocks, LANGUAGE_NAMES.get(lang, "English"), history)


def generate(model, messages: list[dict], valid: set[int], settings: Settings, out: list[str]) -> Iterator[str]:
    """Stream what the reader may see; the model's raw text is collected in `out`. LLMError on failure."""
    from rag.llm import looks_like_garbage, stream_with_timeout

    filt = MarkerFilter(valid)
    for piece in stream_with_timeout(model, messages, max_tokens=settings.llm_max_tokens,
                                     temperature=settings.llm_temperature, timeout=settings.llm_timeout):
        out.append(piece)
        shown = filt.feed(piece)
        if shown:
            yield shown
    tail = filt.flush()
    if tail:
        yield tail
    raw = "".join(out)
    if not said_not_covered(raw) and looks_like_garbage(MARKER.sub("", raw.replace(prompts.NOT_COVERED, ""))):
        raise LLMError("the LLM returned no usable text")


def said_not_covered(raw: str) -> bool:
    return prompts.NOT_COVERED in raw[:40] and not MARKER.search(raw)


def ask_stream(
    question: str,
    *,
    collection: str | None = None,
    history: Any = None,
    filters: Filters | dict | None = None,
    llm: str | None = None,
    settings: Settings | None = None,
    on_stage: Callable[[Stage], None] | None = None,
) -> Iterator[str | Answer]:
    """Yield the answer text as it is generated, then the final verified `Answer`. `on_stage` is told
    when retrieval, the model's reading of the sources and the claim check begin (a UI's progress line)."""
    settings = settings or get_settings()
    stage = on_stage or (lambda _: None)
    t0 = time.perf_counter()
    question = (question or "").strip()
    if not question:
        raise NewsragError("empty question")
    provider = llm or settings.llm_provider
    lang = detect_language(question, short=True, default="en")
    pairs = normalise_history(history)[-settings.history_turns :]
    query = condense_query(question, pairs)
    timings: dict[str, float] = {}
    model, model_error = None, ""
    if provider != "extractive":
        # Before retrieval: the local LLM's child process loads while the question is retrieved.
        try:
            from rag.llm import get_chat_model

            model = get_chat_model(provider, settings)
        except NewsragError as exc:
            model_error = str(exc)
    stage("retrieving")
    ev = gather_evidence(question, query, lang, collection, Filters.of(filters), settings, timings)
    timings["retrieve"] = time.perf_counter() - t0
    answer = Answer(question=question, text="", language=lang, provider=provider, query=query, notice=ev.notice,
                    relevance=round(ev.best, 4))

    def refusal() -> Answer:
        """The one way newsrag declines: the localized refusal and the closest sources."""
        answer.answered = False
        answer.text = prompts.localized(prompts.REFUSAL, lang)
        answer.sources = closest(ev.sources)
        answer.timings = {**timings, "total": time.perf_counter() - t0}
        return answer

    if not ev.relevant:
        yield refusal().text
        yield answer
        return
    raw: list[str] = []
    if model is not None:
        stage("answering")
        try:
            for shown in generate(model, answer_messages(question, lang, ev.sources, pairs),
                                  {s.n for s in ev.sources if s.selected}, settings, raw):
                timings.setdefault("first_token", time.perf_counter() - t0)
                yield shown
        except LLMError as exc:
            model_error, raw = str(exc), []
            yield "\n\n"
        if not model_error and said_not_covered("".join(raw)):
            yield refusal()
            return
    if model is None or model_error:
        if model_error:
            answer.notice = " ".join(x for x in (answer.notice, prompts.localized(
                prompts.FALLBACK_NOTICE, lang, reason=model_error)) if x)
        answer.provider = provider = "extractive"
        raw = [extractive_text(ev.sources, ev.qvec, ev.embedder, min_score=settings.extractive_min_score)]
        if not raw[0]:
            # Without a model to say NOT_IN_SOURCES, a quote this far from the question is not an answer.
            yield refusal().text
            yield answer
            return
        timings.setdefault("first_token", time.perf_counter() - t0)
        yield prompts.localized(prompts.EXTRACTIVE_NOTE, lang) + "\n" + raw[0]
    check = None
    if provider != "extractive" and settings.verify_llm:
        check = model_check(model, question, settings, timings)
        stage("checking")
    final = finish(answer, "".join(raw).replace(prompts.NOT_COVERED, ""), ev.sources, ev.embedder, settings,
                   extractive=provider == "extractive", check=check)
    final.timings = {**timings, "total": time.perf_counter() - t0}
    yield final


def model_check(model, question: str, settings: Settings, timings: dict[str, float]) -> Callable[[Claim], str | None]:
    """The model copies the answer words from one claim's quote (prompts.check_messages); the reply is
    judged in rag.verify.extraction_problem. None when the model fails (the claim keeps its deterministic
    verdict, and the failure is logged)."""
    from rag.llm import stream_with_timeout

    def ask_model(claim: Claim) -> str | None:
        t = time.perf_counter()
        try:
            return "".join(stream_with_timeout(model, prompts.check_messages(question, claim.context or claim.text),
                                               max_tokens=24, temperature=0.0, timeout=settings.llm_timeout))
        except LLMError as exc:
            log.warning("claim check failed (%s); the claim keeps its deterministic verdict", exc)
            return None
        finally:
            timings["model_check"] = timings.get("model_check", 0.0) + time.perf_counter() - t

    return ask_model


def finish(answer: Answer, raw_text: str, sources: list[Source], embedder, settings: Settings,
           extractive: bool = False, check: Callable[[Claim], str | None] | None = None) -> Answer:
    """Verify citations (and, with `check`, put the survivors to the model), renumber them by first use,
    attach quotes and spans."""
    valid = {s.n for s in sources if s.selected} or {s.n for s in sources}
    claims = split_claims(raw_text, valid)
    by_n = {s.n: s for s in sources}
    if extractive:
        for c in claims:
            src = by_n.get(c.cited[0]) if c.cited else None
            sent = next((s for s in (src.sentences if src else []) if s[2] == c.text), None)
            c.source, c.sentence, c.support = (src.n if src else None), sent, 1.0
    else:
        verify_claims(claims, sources, embedder, settings.verify_threshold, question=answer.question,
                      claim_lang=answer.language, min_relevance=settings.quote_min_relevance)
        if check is not None:
            confirm_claims(claims, check, answer.question, answer.language)
    answer.checks = [ClaimCheck(text=c.text, support=round(c.support, 4), verified=c.source is not None,
                                problems=c.problems, model_check=c.model_check) for c in claims]
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
    # Every numbered source backs a claim that passed all checks (verify_claims, and the model's claim check):
    # that is what its ✓ says, also when the claim reached its quote by the number or name it adds (verify.anchored)
    # rather than by a support score above RAG_VERIFY_THRESHOLD.
    answer.citations = [
        source_citation(by_n[src_n], final_n, best_quote[src_n][1], best_quote[src_n][0], True)
        for src_n, final_n in sorted(numbering.items(), key=lambda kv: kv[1])
    ]
    if not answer.citations:
        # Nothing the model wrote is backed by a source: say so instead of showing it.
        answer.answered = False
        answer.sources = closest(sources)
        answer.text = prompts.localized(prompts.REFUSAL, answer.language)
    else:
        note = dates_note(answer.citations, answer.language)
        if note:
            answer.text += f"\n\n{note}"
    return answer


def warm_up(provider: str | None = None, settings: Settings | None = None) -> None:
    """Load what the first answer needs, in the background: both embedders, and for the local LLM its child,
    which then reads the answer prompt's fixed part (rag.llm.LocalLLM.read_prefix_ahead). For processes
    that start before anyone asks (the chat, `rag serve`); returns at once. Failures are left to the first
    question, which reports them."""
    import threading

    from rag.models import load_embedder, load_scorer

    settings = settings or get_settings()
    provider = provider or settings.llm_provider

    def load() -> None:
        try:
            # Each graph's first run is slower than later ones (onnxruntime sizes its buffers): one run on a
            # chunk-sized text here, so the first question does not pay it.
            sample = " ".join([prompts.EXAMPLE_USER] * 4)
            load_scorer(settings).embed_passages([sample])
            load_embedder(settings).embed_queries([sample], cache=False)
        except NewsragError as exc:
            log.info("warm-up: %s", exc)

    threading.Thread(target=load, name="newsrag-warm-up", daemon=True).start()
    if provider == "local":
        from rag.llm import get_chat_model

        try:
            model = get_chat_model(provider, settings)
        except NewsragError as exc:
            log.info("warm-up: %s", exc)
            return
        model.read_prefix_ahead()


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
