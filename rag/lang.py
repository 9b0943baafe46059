"""Language: detection (lingua, offline), names for prompts, and which Snowball stemmer fits a language."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

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
    # Capitalised words after the first are names (or German nouns), never function words: the "Son" of
    # "Wann traf Lawrow Choe Son-hui?" once voted Spanish ("son"), tied with "wann", and lingua said Dutch.
    words = [w.lower() for i, w in enumerate(re.findall(r"[^\W\d_]+", text)) if i == 0 or not w[:1].isupper()]
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in FUNCTION_WORDS.items()}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if ranked[0][1] >= 1 and ranked[0][1] >= ranked[1][1] + 1:
        return ranked[0][0]
    return ""


SURE_LENGTH = 400
MIN_CONFIDENCE = 0.5


def detect_language(text: str, short: bool = False, default: str = "") -> str:
    """ISO 639-1 code of the text's language (offline, lingua)."""
    sample = text[:2000].strip()
    if len(sample) < 3:
        return default
    if short:
        voted = _function_word_vote(sample)
        if voted:
            return voted
    if not short and len(sample) < SURE_LENGTH:
        # A few words of an article can look like anything to the all-language detector ("tl" for an
        # English test file): below SURE_LENGTH characters, the function words or the high-accuracy
        # detector over common languages decide, and only when it is confident.
        voted = _function_word_vote(sample)
        if voted:
            return voted
        with _lock:
            ranked = _detector(True).compute_language_confidence_values(sample)
        lang = ranked[0].language if ranked and ranked[0].value >= MIN_CONFIDENCE else None
    else:
        with _lock:
            lang = _detector(short).detect_language_of(sample)
    return lang.iso_code_639_1.name.lower() if lang else default


LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch",
    "pt": "Portuguese", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian", "cs": "Czech", "sv": "Swedish",
    "da": "Danish", "nb": "Norwegian", "fi": "Finnish", "tr": "Turkish", "vi": "Vietnamese", "zh": "Chinese",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "el": "Greek", "hu": "Hungarian", "ro": "Romanian",
}

# Snowball stemmers (PyStemmer) by ISO 639-1 code; BM25 stems each text with its own language's.
STEMMER_LANGS = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
    "pt": "portuguese", "ru": "russian", "sv": "swedish", "da": "danish", "nb": "norwegian", "no": "norwegian",
    "fi": "finnish", "hu": "hungarian", "ro": "romanian", "tr": "turkish",
}
