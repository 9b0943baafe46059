"""Pieces of the chat page: safe text, the answer with linked markers, source cards, the timeline.

The sidebar and the ingest panel are laid out in ui/app.py.

Article text and model output are untrusted: they are rendered as escaped Markdown,
never with unsafe_allow_html, so `<script>` or `<img onerror=…>` shows as inert text.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import streamlit as st

from rag.prompts import CLOSEST, localized
from rag.types import ArticleRecord, Stage

# The progress line while no answer text is coming (rag.types.Stage): retrieval, the model reading the
# sources before its first token, and the claim check after the answer (seconds each on a laptop CPU).
STAGE_LABELS: dict[Stage, str] = {
    "retrieving": "Searching the articles…",
    "answering": "Reading the sources…",
    "checking": "Checking each claim against its source…",
}

MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$=])")
MARKER = re.compile(r"\[(\d{1,3}|\?)\]")


def escape_md(text: str) -> str:
    """Untrusted text as literal Markdown: every special character escaped, HTML brackets inert."""
    escaped = MD_SPECIAL.sub(r"\\\1", (text or "").replace("&", "&amp;"))
    return escaped.replace("<", "&lt;").replace(">", "&gt;").replace("\n", "  \n")


def anchor(msg_index: int, n: int) -> str:
    return f"src-{msg_index}-{n}"


def answer_markdown(text: str, msg_index: int) -> str:
    """The answer, escaped, with each [n] linking to its source card."""
    out, last = [], 0
    for m in MARKER.finditer(text):
        out.append(escape_md(text[last : m.start()]))
        n = m.group(1)
        out.append(r" **\[?\]**" if n == "?" else f" [\\[{n}\\]](#{anchor(msg_index, int(n))})")
        last = m.end()
    out.append(escape_md(text[last:]))
    return "".join(out)


def highlighted_passage(passage: str, quote: str) -> str:
    """The passage with the quote highlighted (both escaped)."""
    if quote and quote in passage:
        i = passage.index(quote)
        return (escape_md(passage[:i]) + " :orange-background[**" + escape_md(quote) + "**] "
                + escape_md(passage[i + len(quote) :]))
    if quote:
        return ":orange-background[**" + escape_md(quote) + "**]"
    return escape_md(passage)


def source_card(c: dict[str, Any], msg_index: int) -> None:
    with st.container(border=True):
        title = c.get("title") or c.get("doc_id")
        st.markdown(f"**\\[{c['n']}\\] {escape_md(title)}**", help=None)
        st.markdown(f'<span id="{anchor(msg_index, int(c["n"]))}"></span>', unsafe_allow_html=True)  # our own anchor
        bits = [escape_md(c.get("source") or "unknown outlet"), escape_md((c.get("date") or "undated")[:10])]
        mark = ":green[✓ verified]" if c.get("verified") else ":orange[? unverified]"
        line = " · ".join(bits) + " · " + mark
        if c.get("also_in"):
            line += " · also in " + escape_md(", ".join(c["also_in"]))
        st.caption(line)
        url = c.get("url") or ""
        if url.startswith(("http://", "https://")):
            st.link_button("Open article", url)
        st.markdown(highlighted_passage(c.get("passage") or "", c.get("quote") or ""))


def render_answer(answer: dict[str, Any], msg_index: int) -> None:
    if not answer.get("answered", True):
        st.warning(answer.get("text", ""), icon="🔎")
        if answer.get("notice"):
            st.caption(escape_md(answer["notice"]))
        if answer.get("sources"):
            st.markdown(f"**{localized(CLOSEST, answer.get('language') or 'en')}**")
            for c in answer["sources"]:
                source_card(c, msg_index)
        return
    st.markdown(answer_markdown(answer.get("text", ""), msg_index))
    if answer.get("notice"):
        st.info(answer["notice"], icon="ℹ️")
    if answer.get("unsupported"):
        st.caption(f"{len(answer['unsupported'])} sentence(s) marked [?] are not supported by any source.")
    for c in answer.get("citations", []):
        source_card(c, msg_index)


def conversation_markdown(messages: list[dict[str, Any]]) -> str:
    lines = ["# newsrag conversation", ""]
    for m in messages:
        if m["role"] == "user":
            lines += [f"**Question:** {m['content']}", ""]
            continue
        a = m.get("answer") or {}
        lines += [f"**Answer:** {a.get('text', m.get('content', ''))}", ""]
        for c in a.get("citations", []):
            lines.append(f"- [{c['n']}] {c.get('title', '')} — {c.get('source', '')} {c.get('date') or ''} "
                         f"{c.get('url', '')}\n  > {c.get('quote', '')}")
        lines.append("")
    return "\n".join(lines)


def timeline(manifest: dict[str, ArticleRecord]) -> dict[str, int]:
    months = Counter(m.date[:7] for m in manifest.values() if m.date)
    return dict(sorted(months.items()))


def safe_upload_path(upload_dir: Path, name: str) -> Path:
    """An uploaded file's name, stripped of any directory parts, inside upload_dir."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^\w.\- ]", "_", base).strip(" .") or "upload"
    target = (upload_dir / base).resolve()
    if upload_dir.resolve() not in target.parents:
        raise ValueError(f"unsafe file name {name!r}")
    return target
