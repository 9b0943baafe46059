"""Text utilities shared by ingestion and answering: sentence splitting and the multilingual word lists.

Both packages read text the same way (a chunk's sentences at ingest are the citation units at answer
time), so the splitter and the word lists live here, below both.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)
NUMBER = re.compile(r"\d+")

# Words after which a period does not end a sentence (de/en/fr/es/it/nl).
ABBREVIATIONS = {
    "dr", "prof", "nr", "no", "bzw", "ca", "vgl", "usw", "etc", "z", "b", "d", "h", "u", "s", "mr", "mrs", "ms",
    "st", "jr", "sr", "vs", "gen", "col", "lt", "sgt", "rep", "sen", "gov", "inc", "ltd", "co", "corp", "jan",
    "feb", "febr", "mär", "apr", "jun", "jul", "aug", "sep", "sept", "okt", "oct", "nov", "dez", "dec", "abs",
    "art", "bd", "hrsg", "mio", "mrd", "tel", "str", "min", "max", "ggf", "evtl", "inkl", "zzgl", "mme", "mlle",
    "sig", "sra", "ing", "dipl", "fig", "al", "approx", "dept", "est", "u.s", "e.g", "i.e", "a.m", "p.m",
}
SENTENCE_END = re.compile(r"[.!?…]+[\"'”“»«)\]]*(?=\s+)|\n+")


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Spans (start, end) of sentences in `text`, shifted by `offset`; newlines always split."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in SENTENCE_END.finditer(text):
        end = m.end()
        if m.group(0)[0] != "\n":
            before = text[start : m.start()].rsplit(None, 1)
            word = before[-1].lower().strip("(\"'„“") if before else ""
            nxt = text[end : end + 3].lstrip()
            # "16. Januar", "z. B.", "Dr. Meier", "U.S. officials": not an end.
            if (word.isdigit() and len(word) <= 2) or word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            if nxt[:1].islower():
                continue
        _add_span(text, start, end, offset, spans)
        start = end
    _add_span(text, start, len(text), offset, spans)
    return spans


def _add_span(text: str, start: int, end: int, offset: int, spans: list[tuple[int, int]]) -> None:
    seg = text[start:end]
    stripped = seg.strip()
    if not stripped:
        return
    lead = len(seg) - len(seg.lstrip())
    s = start + lead
    spans.append((s + offset, s + len(stripped) + offset))


# Dropped before BM25 (en/de/fr/es): they match everywhere and carry no topic.
STOPWORDS = set(["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i", "in", "is", "it", "its", "of", "on", "or", "our", "she", "that", "the", "their", "them", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "do", "does", "did", "not", "no", "how", "than", "then", "there", "der", "die", "das", "den", "dem", "des", "ein", "eine", "einer", "eines", "einem", "einen", "und", "oder", "aber", "ist", "sind", "war", "waren", "wird", "werden", "hat", "haben", "hatte", "ich", "du", "er", "sie", "es", "wir", "ihr", "mit", "von", "zu", "zur", "zum", "im", "in", "am", "an", "auf", "aus", "bei", "für", "um", "über", "unter", "nach", "vor", "wie", "was", "wer", "wo", "wann", "warum", "welche", "welcher", "welches", "nicht", "kein", "keine", "auch", "noch", "nur", "schon", "so", "sich", "dass", "als", "bis", "durch", "gegen", "ohne", "le", "la", "les", "un", "une", "des", "du", "de", "et", "ou", "est", "sont", "dans", "pour", "sur", "par", "avec", "qui", "que", "quoi", "el", "los", "las", "y", "en", "es", "por", "para", "con"])

# Words that make a short question refer back to the previous turn ("Und wann war das?").
FOLLOW_UP_WORDS = set(["das", "dies", "diese", "dieser", "dieses", "es", "er", "sie", "ihn", "ihm", "ihr", "ihre", "dort", "damals", "dabei", "davon", "darüber", "dafür", "wann", "wo", "warum", "wie", "that", "this", "these", "those", "it", "its", "they", "them", "their", "he", "him", "his", "she", "her", "there", "then", "when", "why", "how", "which", "what", "also", "too", "cela", "ça", "il", "elle", "ils", "elles", "alors", "ese", "esa", "eso", "ellos", "entonces"])


def lexical_overlap(claim: str, evidence: str) -> float:
    a = {w.lower() for w in WORD.findall(claim) if len(w) > 2 or w.isdigit()}
    if not a:
        return 0.0
    b = {w.lower() for w in WORD.findall(evidence)}
    return len(a & b) / len(a)


def embed_header(title: str, date: str | None) -> str:
    """What the embedder reads before a chunk's text (and before an article's, for its article vector):
    the title and the date. Answering re-embeds chunks the same way when it scores them."""
    parts = [(title or "").strip()[:300]]
    if date:
        parts.append(date[:10])
    return "\n".join(p for p in parts if p)


def scorer_text(title: str, date: str | None, text: str) -> str:
    """What the answer scorer reads for a chunk: its header and text, the same at ingest (stored vectors) and
    when answering re-embeds a chunk that has none."""
    return f"{embed_header(title, date)}\n{text}"
