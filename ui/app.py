"""newsrag chat (Streamlit): layout and session state only; rag/ and ingest/ do the work."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.load import LOADERS, suffix_list  # noqa: E402
from rag.errors import NewsragError  # noqa: E402
from rag.settings import PROVIDERS, get_settings  # noqa: E402
from ui import components as ui  # noqa: E402

st.set_page_config(page_title="newsrag", page_icon="📰", layout="wide")


@st.cache_resource(show_spinner="Loading the embedder…")
def embedder():
    from rag.models import load_embedder

    return load_embedder()


@st.cache_resource
def store():
    from rag.store import Store

    return Store()


@st.cache_resource(show_spinner="Loading the language model…")
def chat_model(provider: str):
    from rag.llm import get_chat_model

    try:
        return get_chat_model(provider)
    except NewsragError as exc:
        return str(exc)


@st.cache_resource
def warmed_up(provider: str) -> bool:
    """Once per chat process and provider: the models load while the reader looks at the page."""
    from rag.answer import warm_up

    warm_up(provider)
    return True


settings = get_settings()
state = st.session_state
state.setdefault("messages", [])
state.setdefault("collection", settings.collection)
state.setdefault("report", None)

# ------------------------------------------------------------------ sidebar
with st.sidebar:
    st.title("📰 newsrag")
    try:
        names = store().collection_names()
    except NewsragError as exc:
        st.error(str(exc))
        st.stop()
    options = sorted(set(names) | {state.collection})
    state.collection = st.selectbox("Collection", options, index=options.index(state.collection), key="collection_pick")
    new_name = st.text_input("New collection", placeholder="name, then Enter")
    if new_name:
        from rag.store import check_name

        try:
            state.collection = check_name(new_name.strip())
            st.rerun()
        except NewsragError as exc:
            st.error(str(exc))

    stats = next((r for r in store().collections() if r["name"] == state.collection), None)
    if stats:
        c1, c2 = st.columns(2)
        c1.metric("Articles", stats["articles"])
        c2.metric("Chunks", stats["chunks"])
        st.caption(f"Languages: {', '.join(stats['languages']) or '–'}  \n"
                   f"Dates: {stats['date_min'] or '?'} → {stats['date_max'] or '?'}  \n"
                   f"Last ingest: {(stats['last_ingest'] or '–')[:19]}")
        months = ui.timeline(store().manifest(state.collection))
        if months:
            st.bar_chart({"articles": months}, height=140)
    else:
        st.info("This collection is empty: add articles below.")

    st.subheader("Filters")
    use_dates = st.toggle("Limit publication dates", value=False)
    since = until = None
    if use_dates:
        lo = date.fromisoformat(stats["date_min"]) if stats and stats["date_min"] else date(2000, 1, 1)
        hi = date.fromisoformat(stats["date_max"]) if stats and stats["date_max"] else date.today()
        picked = st.date_input("Published between", value=(lo, hi))
        if isinstance(picked, tuple) and len(picked) == 2:
            since, until = picked[0].isoformat(), picked[1].isoformat()
    outlets = st.multiselect("Outlets", (stats or {}).get("sources", []))
    langs = st.multiselect("Languages", (stats or {}).get("languages", []))
    state.filters = {"since": since, "until": until, "sources": outlets, "languages": langs}

    st.subheader("Model")
    provider = st.selectbox("Answer with", list(PROVIDERS), index=list(PROVIDERS).index(settings.llm_provider),
                            help="\n".join(f"**{name}**: {what}" for name, what in PROVIDERS.items()))
    warmed_up(provider)
    k = st.slider("Sources per answer (top-k)", 1, 10, settings.retrieval_k)
    st.caption(f"Embedder: {settings.embed_model}  \nLLM: "
               + (settings.openai_model if provider == "openai" else
                  (str(settings.llm_model_path or settings.llm_model) if provider == "local" else "none (quotes)")))

    if st.button("Clear conversation", use_container_width=True):
        state.messages = []
        st.rerun()
    if state.messages:
        st.download_button("Download conversation (Markdown)", ui.conversation_markdown(state.messages),
                           file_name="newsrag-conversation.md", use_container_width=True)
        st.download_button("Download conversation (JSON)",
                           json.dumps([{k2: v for k2, v in m.items()} for m in state.messages], ensure_ascii=False,
                                      indent=2), file_name="newsrag-conversation.json", use_container_width=True)

# ------------------------------------------------------------------ ingest panel
with st.expander("➕ Add articles to this collection", expanded=not stats):
    uploads = st.file_uploader(f"Files ({suffix_list()})", accept_multiple_files=True,
                               type=[s.lstrip(".") for s in LOADERS])
    folder = st.text_input("…or a folder on the server", key="ingest_folder")
    if st.button("Ingest", type="primary", disabled=not (uploads or folder)):
        from ingest.pipeline import ingest

        paths: list[Path] = []
        if uploads:
            upload_dir = settings.data_dir / "uploads" / state.collection
            upload_dir.mkdir(parents=True, exist_ok=True)
            for f in uploads:
                try:
                    target = ui.safe_upload_path(upload_dir, f.name)
                except ValueError as exc:
                    st.error(str(exc))
                    continue
                target.write_bytes(f.getvalue())
                paths.append(target)
        if folder:
            paths.append(Path(folder).expanduser())
        with st.status("Ingesting…", expanded=True) as status:
            bar = st.progress(0.0, text="reading files")

            def on_progress(done: int, total: int, doc_id: str) -> None:
                bar.progress(done / max(total, 1), text=f"{done}/{total} articles embedded ({doc_id})")

            try:
                embedder()
                report = ingest(paths, collection=state.collection, progress=on_progress)
                state.report = report.model_dump()
                status.update(label=report.summary(), state="complete" if not report.failed else "error")
            except NewsragError as exc:
                status.update(label=f"Ingest failed: {exc}", state="error")
    if state.report:
        r = state.report
        st.markdown(f"**Report for {ui.escape_md(r['collection'])}**: {len(r['added'])} added, {len(r['updated'])} "
                    f"updated, {len(r['unchanged'])} unchanged, {len(r['deleted'])} deleted, {len(r['failed'])} failed")
        rows = ([{"status": s, "article": d} for s in ("added", "updated", "unchanged", "deleted") for d in r[s]]
                + [{"status": "failed", "article": f"{f['path']}: {f['error']}"} for f in r["failed"]]
                + [{"status": "skipped", "article": f"{f['path']}: {f['error']}"} for f in r.get("skipped", [])])
        st.dataframe(rows, hide_index=True, use_container_width=True)

# ------------------------------------------------------------------ another embedder's vectors
recorded = store().embedder_of(state.collection) if stats else ""
if recorded:
    try:
        current = embedder().signature
    except NewsragError as exc:
        current = ""
        st.error(str(exc))
    if current and recorded != current:
        st.warning(f"This collection was embedded with **{ui.escape_md(recorded)}**, the embedder in use is "
                   f"**{ui.escape_md(current)}**: questions are refused until it is re-embedded. Re-embedding reads "
                   "its source files again; the old collection stays in use until the new one is complete.")
        if st.button(f"Re-embed with {settings.embed_model}", type="primary"):
            from ingest.pipeline import ingest

            with st.status("Re-embedding…", expanded=True) as status:
                bar = st.progress(0.0, text="reading files")

                def on_rebuild_progress(done: int, total: int, doc_id: str) -> None:
                    bar.progress(done / max(total, 1), text=f"{done}/{total} articles embedded ({doc_id})")

                try:
                    report = ingest([], collection=state.collection, rebuild=True, progress=on_rebuild_progress)
                    state.report = report.model_dump()
                    status.update(label=report.summary(), state="complete")
                except NewsragError as exc:
                    status.update(label=f"Re-embedding failed: {exc}", state="error")

# ------------------------------------------------------------------ chat
st.header(f"Ask the news · {state.collection}")
for i, m in enumerate(state.messages):
    with st.chat_message(m["role"]):
        if m["role"] == "user":
            st.markdown(ui.escape_md(m["content"]))
        else:
            ui.render_answer(m["answer"], i)

question = st.chat_input("Ask about the articles, in any language")
if question:
    from rag.answer import ask_stream
    from rag.types import Answer

    history = [m["answer"] for m in state.messages if m["role"] == "assistant"]
    state.messages.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(ui.escape_md(question))
    with st.chat_message("assistant"):
        final: dict = {}
        progress = st.empty()  # what newsrag is doing while no text is coming (ui.STAGE_LABELS)
        placeholder = st.empty()

        def pieces():
            cleared = False
            for item in ask_stream(
                question, collection=state.collection, filters=state.filters, llm=provider,
                history=[Answer(**h) for h in history],
                settings=settings.model_copy(update={"retrieval_k": k}),
                on_stage=lambda stage: progress.caption(ui.STAGE_LABELS[stage]),
            ):
                if isinstance(item, Answer):
                    final.update(item.model_dump())
                else:
                    if not cleared:  # once, not per token: each call is a message to the browser
                        progress.empty()  # the text itself shows progress now
                        cleared = True
                    yield ui.escape_md(item)

        try:
            if provider != "extractive" and isinstance(chat_model(provider), str):
                st.info(chat_model(provider))
            with placeholder.container():
                st.write_stream(pieces())
            placeholder.empty()
            progress.empty()
            ui.render_answer(final, len(state.messages))
            state.messages.append({"role": "assistant", "content": final.get("text", ""), "answer": final})
        except NewsragError as exc:
            placeholder.empty()
            progress.empty()
            st.error(str(exc))
            state.messages.pop()
