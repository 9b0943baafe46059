"""Dates: an article's publication date from its metadata or text, and the dates named in a question
("last week", "im Januar 2024", "in March 2017") as a filter. Ingestion and answering share this module."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta

# ------------------------------------------------------------------ article dates
ISO = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
DMY = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})")


def parse_date(raw: str, languages: list[str] | None = None) -> str | None:
    """A date string in any common form or language -> 'YYYY-MM-DD' (None if not a date)."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 80:
        return None
    m = ISO.match(raw)
    if m:
        return _iso(int(m[1]), int(m[2]), int(m[3]))
    m = DMY.match(raw)
    if m:
        return _iso(int(m[3]), int(m[2]), int(m[1]))
    if raw.isdigit() and len(raw) >= 9:  # unix timestamp
        try:
            return datetime.utcfromtimestamp(int(raw) / (1000 if len(raw) > 11 else 1)).date().isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    import dateparser

    try:
        parsed = dateparser.parse(
            raw, languages=languages, settings={"PREFER_DAY_OF_MONTH": "first", "REQUIRE_PARTS": ["year"]}
        )
    except Exception:  # dateparser raises assorted errors on odd strings
        return None
    return parsed.date().isoformat() if parsed else None


def _iso(y: int, m: int, d: int) -> str | None:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


# Where a text states its own publication date: a dateline ("MOSCOW, Jan 16 (Reuters) -", "16.01.2024 -"),
# or words that say so ("Published on", "Veröffentlicht am", "Stand:"). Any other date in the text is the date
# of some event (a meeting, a war, a birth) and says nothing about when the article appeared.
_DATE_TEXT = (r"(\d{4}-\d{2}-\d{2}|\d{1,2}\.\s?\d{1,2}\.\s?\d{4}|\d{1,2}\.?\s+[^\W\d_]{3,12}\.?\s+\d{4}"
              r"|[^\W\d_]{3,12}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})")
DATELINE = re.compile(rf"^\s*(?:[A-ZÄÖÜ][\w .'/-]{{1,40}},\s*)?{_DATE_TEXT}\s*(?:\([^)]{{1,40}}\)\s*)?[-–—:|\n]")
PUBLISHED = re.compile(rf"\b(?:published|posted|updated|last updated|veröffentlicht|erschienen|aktualisiert|stand|"
                       rf"publié|publicado|pubblicato)\b(?:\s+(?:on|am|le|el|il))?\s*:?\s*{_DATE_TEXT}", re.I)


def find_text_date(text: str, lang: str = "") -> str | None:
    """The publication date the text states itself (a dateline at its start, or "Published on ..." near
    its start or end); None when it states none. Never a date of an event mentioned in the text."""
    langs = [lang] if lang else None
    candidates = []
    if m := DATELINE.match(text[:200]):
        candidates.append(m.group(1))
    for part in (text[:600], text[-400:]):
        candidates += [m.group(1) for m in PUBLISHED.finditer(part)]
    for raw in candidates:
        parsed = parse_date(raw, langs) or (parse_date(raw) if langs else None)
        if parsed and "1900" < parsed[:4] <= str(date.today().year + 1):
            return parsed
    return None


def date_ordinal(iso: str | None) -> int:
    """Days since 0001-01-01, for numeric range filters in Chroma (0 = unknown)."""
    if not iso:
        return 0
    try:
        return date.fromisoformat(iso[:10]).toordinal()
    except ValueError:
        return 0


# ------------------------------------------------------------------ dates in questions
MONTHS = {
    # en, de, fr, es, it, nl (lowercase, accents kept)
    "january": 1, "januar": 1, "jänner": 1, "janvier": 1, "enero": 1, "gennaio": 1, "januari": 1, "jan": 1,
    "february": 2, "februar": 2, "février": 2, "fevrier": 2, "febrero": 2, "febbraio": 2, "februari": 2, "feb": 2,
    "march": 3, "märz": 3, "maerz": 3, "mars": 3, "marzo": 3, "maart": 3, "mar": 3,
    "april": 4, "avril": 4, "abril": 4, "aprile": 4, "apr": 4,
    "may": 5, "mai": 5, "mayo": 5, "maggio": 5, "mei": 5,
    "june": 6, "juni": 6, "juin": 6, "junio": 6, "giugno": 6, "jun": 6,
    "july": 7, "juli": 7, "juillet": 7, "julio": 7, "luglio": 7, "jul": 7,
    "august": 8, "août": 8, "aout": 8, "agosto": 8, "augustus": 8, "aug": 8,
    "september": 9, "septembre": 9, "septiembre": 9, "settembre": 9, "sep": 9, "sept": 9,
    "october": 10, "oktober": 10, "octobre": 10, "octubre": 10, "ottobre": 10, "oct": 10, "okt": 10,
    "november": 11, "novembre": 11, "noviembre": 11, "nov": 11,
    "december": 12, "dezember": 12, "décembre": 12, "decembre": 12, "diciembre": 12, "dicembre": 12, "dec": 12,
    "dez": 12,
}
_MONTH_ALT = "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True))
DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})\.?\s+({_MONTH_ALT})\.?,?\s+(\d{{4}})\b", re.IGNORECASE)
MONTH_DAY_YEAR = re.compile(rf"\b({_MONTH_ALT})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE)
MONTH_YEAR = re.compile(rf"\b({_MONTH_ALT})\.?\s+(\d{{4}})\b", re.IGNORECASE)
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
YEAR = re.compile(r"\b(?:in|im|jahr|year|en|nel|dans l'année|during)\s+((?:19|20)\d{2})\b", re.IGNORECASE)

# Relative expressions, en/de/fr/es: (pattern, function(today) -> (since, until))
def _week(today: date, weeks_back: int) -> tuple[date, date]:
    start = today - timedelta(days=today.weekday() + 7 * weeks_back)
    return start, start + timedelta(days=6)


def _month(today: date, back: int) -> tuple[date, date]:
    y, m = today.year, today.month - back
    while m < 1:
        y, m = y - 1, m + 12
    return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])


RELATIVE: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"\b(today|heute|aujourd'hui|hoy)\b", re.I), lambda t: (t, t)),
    (re.compile(r"\b(yesterday|gestern|hier|ayer)\b", re.I), lambda t: (t - timedelta(1), t - timedelta(1))),
    (re.compile(r"\b(last|past|previous)\s+week\b|\bletzte[nr]?\s+woche\b|\bvergangene[nr]?\s+woche\b|\bvorige[nr]?\s+woche\b|\bla semaine (dernière|passée)\b|\bla semana pasada\b", re.I),
     lambda t: _week(t, 1)),
    (re.compile(r"\bthis\s+week\b|\bdiese[nr]?\s+woche\b|\bcette semaine\b|\besta semana\b", re.I), lambda t: _week(t, 0)),
    (re.compile(r"\b(last|past|previous)\s+month\b|\bletzte[nr]?\s+monat\b|\bvergangene[nr]?\s+monat\b|\ble mois dernier\b|\bel mes pasado\b", re.I),
     lambda t: _month(t, 1)),
    (re.compile(r"\bthis\s+month\b|\bdiese[nr]?\s+monat\b|\bce mois\b|\beste mes\b", re.I), lambda t: _month(t, 0)),
    (re.compile(r"\b(last|previous)\s+year\b|\bletzte[sn]?\s+jahr\b|\bvergangene[sn]?\s+jahr\b|\bl'année dernière\b|\bel año pasado\b", re.I),
     lambda t: (date(t.year - 1, 1, 1), date(t.year - 1, 12, 31))),
    (re.compile(r"\bthis\s+year\b|\bdiese[sn]?\s+jahr\b|\bcette année\b|\beste año\b", re.I),
     lambda t: (date(t.year, 1, 1), date(t.year, 12, 31))),
]
_RELATIVE_HIT = re.compile("|".join(p.pattern for p, _ in RELATIVE) + r"|\b(?:last|past)\s+\d|\bletzten\s+\d", re.I)
LAST_N_DAYS = re.compile(r"\b(?:last|past)\s+(\d{1,3})\s+days\b|\bletzten\s+(\d{1,3})\s+tage[n]?\b", re.I)


# Reports about an event appear on its day and in the days after it.
REPORTING_LAG = timedelta(days=7)


def question_dates(question: str, today: date | None = None) -> tuple[str | None, str | None]:
    """(since, until) publication dates for a date named in the question, else (None, None)."""
    today = today or date.today()
    since, until = _named_span(question, today)
    if since and until and since != until and len(since) == 10 and not _RELATIVE_HIT.search(question):
        until = min(date.fromisoformat(until) + REPORTING_LAG, max(today, date.fromisoformat(until))).isoformat()
    return since, until


def _named_span(question: str, today: date) -> tuple[str | None, str | None]:
    for m in DAY_MONTH_YEAR.finditer(question):
        d = _safe(int(m[3]), MONTHS[m[2].lower()], int(m[1]))
        if d:
            return d.isoformat(), (d + REPORTING_LAG).isoformat()
    for m in MONTH_DAY_YEAR.finditer(question):
        d = _safe(int(m[3]), MONTHS[m[1].lower()], int(m[2]))
        if d:
            return d.isoformat(), (d + REPORTING_LAG).isoformat()
    for m in ISO_DATE.finditer(question):
        d = _safe(int(m[1]), int(m[2]), int(m[3]))
        if d:
            return d.isoformat(), (d + REPORTING_LAG).isoformat()
    m = MONTH_YEAR.search(question)
    if m and not (m[1].lower() == "may" and not re.search(rf"\bmay\s+{m[2]}\b", question, re.I)):
        y, mo = int(m[2]), MONTHS[m[1].lower()]
        return date(y, mo, 1).isoformat(), date(y, mo, calendar.monthrange(y, mo)[1]).isoformat()
    m = YEAR.search(question)
    if m:
        y = int(m[1])
        return date(y, 1, 1).isoformat(), date(y, 12, 31).isoformat()
    m = LAST_N_DAYS.search(question)
    if m:
        n = int(m[1] or m[2])
        return (today - timedelta(days=n)).isoformat(), today.isoformat()
    for pattern, fn in RELATIVE:
        if pattern.search(question):
            span = fn(today)  # type: ignore[operator]
            if span:
                return span[0].isoformat(), span[1].isoformat()
    return None, None


def _safe(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None
