"""Turn scraped article text into clean paragraphs.

Scraped news carries page debris: share-button labels, photo-caption markers,
cookie and subscription lines. They are removed here so that they are neither
embedded nor quoted. Paragraphs are kept (one per line).
"""

from __future__ import annotations

import re
import unicodedata

# Lines that are page furniture, whole-line matches (case-insensitive), many languages.
BOILERPLATE_LINE = re.compile(
    r"""^(?:
        chia\s+sẻ | share(?:\s+(?:this|on\s+\w+|article|story))? | teilen | tweet | drucken | print |
        e-?mail | whatsapp | facebook | twitter | linkedin | telegram | pinterest | reddit | copy\s+link |
        link\s+kopieren | partager | compartir | condividi | delen |
        advertisement | anzeige | werbung | publicité | sponsored |
        (?:read|see)\s+(?:more|also)\b.* | lesen\s+sie\s+(?:auch|mehr)\b.* | mehr\s+zum\s+thema\b.* |
        related(?:\s+(?:articles|stories|content))?:? | skip\s+to\s+(?:main\s+)?content |
        (?:we\s+use\s+)?cookies?\b.* | .*\b(?:accept|akzeptieren)\s+(?:all\s+)?cookies\b.* |
        .*\b(?:subscribe|abonnieren|newsletter)\b.{0,60} | sign\s+up\b.{0,60} | log\s*in | anmelden |
        (?:ảnh|photo|foto|bild|image)\s*\d+ | \d+\s*(?:comments?|kommentare) | back\s+to\s+top | nach\s+oben
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

# "Headline - ảnh 1Caption text": a caption marker glued to the caption (VOV-style pages).
CAPTION_MARKER = re.compile(r"^.{0,300}?\s[-–—]\s(?:ảnh|photo|foto|bild|image)\s*\d+\s*", re.IGNORECASE)
INLINE_MARKER = re.compile(r"\s*[-–—]\s(?:ảnh)\s*\d+\s*", re.IGNORECASE)
ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise(text: str) -> str:
    """NFC, no zero-width or control characters, single spaces, paragraphs on their own lines."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    text = ZERO_WIDTH.sub("", text)
    text = CONTROL.sub(" ", text)
    lines = [SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(lines)


def is_boilerplate(line: str) -> bool:
    stripped = line.strip(" |•·-–—:")
    return bool(stripped) and len(stripped) < 120 and bool(BOILERPLATE_LINE.match(stripped))


def clean_text(text: str, title: str = "") -> str:
    """Clean article text; `title` helps remove caption markers that repeat the headline."""
    out: list[str] = []
    for line in normalise(text).split("\n"):
        if not line:
            continue
        if is_boilerplate(line):
            continue
        line = CAPTION_MARKER.sub("", line) if (title and line.startswith(title[:40])) else line
        line = INLINE_MARKER.sub(" ", line).strip()
        if line and not is_boilerplate(line):
            out.append(line)
    return "\n".join(out)


def looks_like_byline(line: str) -> bool:
    """A short name line under the title ("Quang Dung", "Von Anna Meier")."""
    words = line.split()
    if not 1 <= len(words) <= 5 or len(line) > 60 or re.search(r"[.!?:;,\d]$", line):
        return False
    if words[0].lower() in ("von", "by", "par", "di", "por", "door"):
        words = words[1:]
    return bool(words) and all(w[:1].isupper() for w in words if w.isalpha())


def split_title(text: str) -> tuple[str, str, str]:
    """(title, author, body) for plain-text articles whose first line is the title."""
    lines = [line for line in normalise(text).split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return "", "", ""
    title = lines[0].strip().lstrip("#").strip()
    rest = lines[1:]
    while rest and not rest[0].strip():
        rest.pop(0)
    author = ""
    if rest and looks_like_byline(rest[0]) and not is_boilerplate(rest[0]):
        author = re.sub(r"^(von|by)\s+", "", rest[0].strip(), flags=re.IGNORECASE)
        rest = rest[1:]
    return title, author, "\n".join(rest)
