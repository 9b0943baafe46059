"""Article metadata: publication dates (multilingual) and language (offline)."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime
from functools import lru_cache

ISO = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
DMY = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})")
# Candidates for a full date inside running text: "16. Januar 2024", "January 16, 2024", "16 janvier 2024".
TEXT_DATE = re.compile(
    r"\b(\d{1,2})\.?\s+([^\W\d_]{3,12})\.?\s+(\d{4})\b|\b([^\W\d_]{3,12})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b"
    r"|\b(\d{4})-(\d{2})-(\d{2})\b"
)


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


def find_text_date(text: str, lang: str = "", window: int = 3000) -> str | None:
    """The latest full date written in the article's opening (publication is on or after it)."""
    found: list[str] = []
    langs = [lang] if lang else None
    for m in TEXT_DATE.finditer(text[:window]):
        parsed = parse_date(m.group(0), langs) or (parse_date(m.group(0)) if langs else None)
        if parsed and "1900" < parsed[:4] <= str(date.today().year + 1):
            found.append(parsed)
        if len(found) >= 8:
            break
    return max(found) if found else None


def date_ordinal(iso: str | None) -> int:
    """Days since 0001-01-01, for numeric range filters in Chroma (0 = unknown)."""
    if not iso:
        return 0
    try:
        return date.fromisoformat(iso[:10]).toordinal()
    except ValueError:
        return 0


# --------------------------------------------------------------------- language
_lock = threading.Lock()
QUESTION_LANGS = (
    "ENGLISH", "GERMAN", "FRENCH", "SPANISH", "ITALIAN", "DUTCH", "PORTUGUESE", "POLISH", "RUSSIAN",
    "UKRAINIAN", "CZECH", "SWEDISH", "DANISH", "BOKMAL", "FINNISH", "TURKISH", "VIETNAMESE", "CHINESE",
    "JAPANESE", "KOREAN", "ARABIC", "GREEK", "HUNGARIAN", "ROMANIAN",
)


@lru_cache(maxsize=2)
def _detector(short: bool):  # -> lingua.LanguageDetector
    from lingua import Language, LanguageDetectorBuilder

    if short:
        # Questions are short: a smaller candidate set keeps "Und wann war das?" German.
        langs = [getattr(Language, name) for name in QUESTION_LANGS]
        return LanguageDetectorBuilder.from_languages(*langs).build()
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


# Function words settle the language of short questions, where lingua alone
# mistakes "When did Lavrov meet Choe Son-hui?" for Dutch (names dominate).
FUNCTION_WORDS = {
    "en": set(["the", "a", "an", "is", "are", "was", "were", "did", "does", "do", "what", "when", "where", "who", "whom", "why", "how", "which", "of", "to", "in", "on", "and", "or", "with", "about", "from", "will", "would", "can", "could", "has", "have", "had", "there", "this", "that"]),
    "de": set(["der", "die", "das", "den", "dem", "des", "ist", "sind", "war", "waren", "wird", "wurde", "was", "wann", "wo", "wer", "wie", "warum", "welche", "welcher", "welches", "und", "oder", "mit", "über", "von", "zu", "im", "am", "ein", "eine", "einen", "nicht", "hat", "haben", "hatte", "gibt", "es", "sich", "auch"]),
    "fr": set(["le", "la", "les", "un", "une", "des", "est", "sont", "était", "quand", "où", "qui", "quoi", "pourquoi", "comment", "quel", "quelle", "du", "de", "et", "ou", "avec", "sur", "dans", "pour", "a", "ont"]),
    "es": set(["el", "la", "los", "las", "un", "una", "es", "son", "fue", "cuándo", "dónde", "quién", "qué", "por", "cómo", "cuál", "del", "y", "o", "con", "sobre", "en", "para", "ha", "han"]),
    "it": set(["il", "lo", "la", "gli", "le", "un", "una", "è", "sono", "era", "quando", "dove", "chi", "cosa", "perché", "come", "quale", "del", "della", "e", "o", "con", "su", "per", "ha", "hanno"]),
    "nl": set(["de", "het", "een", "is", "zijn", "was", "waren", "wanneer", "waar", "wie", "wat", "waarom", "hoe", "welke", "van", "en", "of", "met", "over", "op", "voor", "heeft", "hebben"]),
}


def _function_word_vote(text: str) -> str:
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in FUNCTION_WORDS.items()}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if ranked[0][1] >= 1 and ranked[0][1] >= ranked[1][1] + 1:
        return ranked[0][0]
    return ""


def detect_language(text: str, short: bool = False, default: str = "") -> str:
    """ISO 639-1 code of the text's language (offline, lingua)."""
    sample = text[:2000].strip()
    if len(sample) < 3:
        return default
    if short:
        voted = _function_word_vote(sample)
        if voted:
            return voted
    with _lock:
        lang = _detector(short).detect_language_of(sample)
    return lang.iso_code_639_1.name.lower() if lang else default


LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch",
    "pt": "Portuguese", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian", "cs": "Czech", "sv": "Swedish",
    "da": "Danish", "nb": "Norwegian", "fi": "Finnish", "tr": "Turkish", "vi": "Vietnamese", "zh": "Chinese",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "el": "Greek", "hu": "Hungarian", "ro": "Romanian",
}
