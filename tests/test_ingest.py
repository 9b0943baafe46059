"""Ingestion on real files into real Chroma with the real embedder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SEED_FILE, SEED_ID, SEED_TITLE, use_settings
from helpers import NEWS_HTML, make_pdf
from ingest.chunk import chunk_article
from ingest.clean import clean_text
from ingest.pipeline import ingest
from rag.store import Store
from rag.text import split_sentences
from rag.types import Article


def stored(collection: str) -> dict[str, list[tuple[str, str, dict]]]:
    by_doc: dict[str, list] = {}
    for cid, doc, meta in Store().iter_chunks(collection):
        by_doc.setdefault(meta["doc_id"], []).append((cid, doc, meta))
    return by_doc


def article_text(doc_id: str, collection: str) -> str:
    """Reassemble an article's cleaned text from its chunks and spans."""
    parts = sorted(((m["start"], m["end"], d) for _, d, m in stored(collection)[doc_id]))
    text = ""
    for start, end, doc in parts:
        assert end - start == len(doc)
        text = text[:start] + doc if start <= len(text) else text + " " * (start - len(text)) + doc
    return text


def test_seed_boilerplate_gone_no_invented_date_spans_exact(data_dir, seed_copy):
    report = ingest([seed_copy], collection="seed")
    assert report.added == [SEED_ID] and not report.failed
    rec = Store().manifest("seed")[SEED_ID]
    assert rec.title == SEED_TITLE
    # The seed names 16 January 2024 only as the date of a meeting in a photo caption; it states no
    # publication date, so none is invented (it appeared days later: it reports 21 January).
    assert rec.date == "" and rec.date_ord == 0
    assert rec.lang == "de"
    assert rec.author == "Quang Dung"
    assert rec.source == "VOVWORLD"
    chunks = stored("seed")[SEED_ID]
    body = article_text(SEED_ID, "seed")
    assert "Chia sẻ" not in body and "ảnh 1" not in body
    assert "Russlands Außenminister Sergej Lawrow" in body  # the caption's content is kept
    assert "Quang Dung" not in body
    for _, doc, meta in chunks:
        assert body[meta["start"] : meta["end"]] == doc
        assert meta["title"] == SEED_TITLE and meta["date_ord"] == 0


def test_every_format_ingests_with_metadata(data_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "plain.txt").write_text("Bridge closed for repairs\n\nULM, 3 May 2022 (dpa) - The old bridge in Ulm "
                                      "closed for repairs that will last a year.", encoding="utf-8")
    (folder / "note.md").write_text("# Stadtrat beschließt Radwege\n\nDer Stadtrat von Kiel beschloss neue Radwege "
                                    "entlang der Förde.\n\nVeröffentlicht am 12. März 2021", encoding="utf-8")
    (folder / "event.txt").write_text("Storm anniversary\n\nThe storm of 16 October 1987 felled 15 million trees "
                                      "in southern England.", encoding="utf-8")
    (folder / "page.html").write_text(NEWS_HTML, encoding="utf-8")
    make_pdf(folder / "report.pdf", "Wind farm approved",
             ["The regional council approved a wind farm with twelve turbines.",
              "Construction starts next spring near the village of Hollum."])
    (folder / "feed.jsonl").write_text(
        json.dumps({"id": "j1", "headline": "Zoo welcomes panda", "body": "The city zoo welcomed a panda cub.",
                    "published": "2019-08-01", "link": "https://zoo.example/panda", "outlet": "Zoo News",
                    "section": "animals"}) + "\n", encoding="utf-8")
    (folder / "list.json").write_text(json.dumps({"articles": [
        {"article_id": "a7", "title": "Le marché ouvre", "content": "Le nouveau marché de Lyon a ouvert ses portes "
         "le 2 février 2020 avec quarante stands.", "date": "2 février 2020", "language": "fr"}]}), encoding="utf-8")
    (folder / "table.csv").write_text("article_id,publish_date,article_source_link,title,text\n"
                                      "c1,2017/2/7,http://abcnews.go.com/x,Budget passes,"
                                      "\"The state budget passed the senate on Tuesday by 31 votes to 19.\"\n",
                                      encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    report = ingest([folder], collection="formats")
    assert not report.failed, report.failed
    assert sorted(report.added) == sorted(["plain.txt", "note.md", "event.txt", "page.html", "report.pdf", "j1", "a7",
                                           "c1"])
    assert [s.path.endswith("image.png") for s in report.skipped] == [True]
    m = Store().manifest("formats")
    assert m["plain.txt"].title == "Bridge closed for repairs" and m["plain.txt"].date == "2022-05-03"
    assert m["note.md"].title == "Stadtrat beschließt Radwege" and m["note.md"].lang == "de"
    assert m["note.md"].date == "2021-03-12"
    assert m["event.txt"].date == "" and m["event.txt"].lang == "en"  # an event's date is no publication date
    assert m["page.html"].title == "Harbour reopens after storm"
    assert m["page.html"].date == "2023-03-14" and m["page.html"].source == "Coastal Times"
    assert m["page.html"].url == "https://coastal.example/harbour-reopens"
    assert m["report.pdf"].title == "Wind farm approved" and m["report.pdf"].date == "2024-03-05"
    assert m["j1"].title == "Zoo welcomes panda" and m["j1"].source == "Zoo News"
    assert m["j1"].extra["section"] == "animals"  # unknown columns are kept as metadata
    assert m["a7"].lang == "fr" and m["a7"].date == "2020-02-02"
    assert m["c1"].date == "2017-02-07" and m["c1"].source == "abcnews.go.com"
    html_text = article_text("page.html", "formats")
    assert "cookies" not in html_text.lower() and "Subscribe" not in html_text
    assert "300 containers" in html_text


def test_reingest_unchanged_embeds_nothing_and_changed_file_replaces_chunks(data_dir, seed_copy):
    first = ingest([seed_copy], collection="inc")
    assert first.chunks_written > 0
    again = ingest([seed_copy], collection="inc")
    assert again.unchanged == [SEED_ID] and again.chunks_written == 0 and not again.added
    before = {cid for cid, _, _ in stored("inc")[SEED_ID]}
    path = seed_copy / SEED_ID
    path.write_text(path.read_text(encoding="utf-8") + "\nNeuer Absatz: Die Gespräche gehen im Februar weiter.\n",
                    encoding="utf-8")
    changed = ingest([seed_copy], collection="inc")
    assert changed.updated == [SEED_ID]
    after = stored("inc")[SEED_ID]
    assert not before & {cid for cid, _, _ in after}  # old chunks are gone, not duplicated
    assert Store().chunk_count("inc") == len(after) == after[0][2]["n_chunks"]
    assert any("Februar weiter" in doc for _, doc, _ in after)


def test_sync_removes_deleted_files_but_never_on_failure(data_dir, seed_copy):
    (seed_copy / "other.txt").write_text("Hafen wieder offen\n\nDer Hafen von Kiel ist seit Montag wieder offen.",
                                         encoding="utf-8")
    ingest([seed_copy], collection="sync")
    assert Store().article_count("sync") == 2
    (seed_copy / "other.txt").write_bytes(b"")  # broken now: must not delete its article
    report = ingest([seed_copy], collection="sync", sync=True)
    assert report.deleted == [] and report.failed
    (seed_copy / "other.txt").unlink()
    report = ingest([seed_copy], collection="sync", sync=True)
    assert report.deleted == ["other.txt"]
    assert set(stored("sync")) == {SEED_ID}
    assert Store().docs("sync").get()["ids"] == [SEED_ID]  # its article vector went with it


def test_article_vectors_kept_beside_chunks_and_optional(data_dir, seed_copy):
    """One vector per article in NAME__docs (hidden from the collection list, deleted with it); a collection
    without them (made before they existed) is still searched, by its chunks."""
    from rag.errors import NewsragError
    from rag.retrieval import retrieve
    from rag.store import check_name

    ingest([seed_copy], collection="docvec")
    store = Store()
    got = store.docs("docvec").get(include=["embeddings", "metadatas"])
    assert got["ids"] == [SEED_ID] and len(got["embeddings"][0]) == 384
    assert got["metadatas"][0]["lang"] == "de" and got["metadatas"][0]["doc_id"] == SEED_ID
    assert store.collection_names() == ["docvec"]
    with pytest.raises(NewsragError):
        check_name("docvec__docs")
    question = "How many Russian delegations visited North Korea?"
    assert retrieve(question, collection="docvec")[0].doc_id == SEED_ID
    store.client.delete_collection("docvec__docs")
    assert store.docs("docvec", create=False) is None
    assert retrieve(question, collection="docvec")[0].doc_id == SEED_ID
    store.delete_collection("docvec")
    assert store.collection_names() == []


def test_warm_reads_a_collection_and_creates_nothing(data_dir, seed_copy):
    """Retrieval's head start in a new process (Store.warm): it queries what exists and never creates a
    collection, also for a name that does not exist."""
    ingest([seed_copy], collection="warm")
    store = Store()
    store.warm("warm")
    store.warm("absent")
    assert store.collection_names() == ["warm"] and not store.exists("absent")


def test_identical_text_under_two_names_is_stored_once(data_dir, seed_copy):
    (seed_copy / "copy.txt").write_bytes(SEED_FILE.read_bytes())
    report = ingest([seed_copy], collection="dups")
    assert sorted(report.added) == sorted([SEED_ID, "copy.txt"])
    manifest = Store().manifest("dups")
    assert manifest["copy.txt"].duplicate_of == SEED_ID
    assert set(stored("dups")) == {"000_0fd9f7e43df4576e.txt"}


def test_wire_copies_share_a_group_id(data_dir, tmp_path):
    folder = tmp_path / "wire"
    folder.mkdir()
    story = ("Officials in Brussels agreed on Thursday to extend sanctions against the regime for another six months, "
             "citing continued violations of the ceasefire and the detention of journalists. The decision was taken "
             "unanimously by the foreign ministers, who also pledged 40 million euros in humanitarian aid for refugees "
             "in neighbouring countries. Diplomats said further measures could follow in the spring.")
    (folder / "a.txt").write_text("EU extends sanctions\n\n" + story, encoding="utf-8")
    (folder / "b.txt").write_text("EU extends sanctions for six months\n\n" + story.replace("Thursday", "Thursday evening"),
                                  encoding="utf-8")
    (folder / "c.txt").write_text("Local team wins cup\n\nThe local football team won the regional cup on Sunday "
                                  "after a penalty shoot-out in front of 8,000 fans.", encoding="utf-8")
    ingest([folder], collection="wire")
    m = Store().manifest("wire")
    assert m["a.txt"].group_id == m["b.txt"].group_id == "a.txt"
    assert m["c.txt"].group_id == "c.txt"


def test_broken_files_one_error_each_good_files_searchable(data_dir, tmp_path):
    from rag.retrieval import retrieve

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "good.txt").write_text("Glacier retreat measured\n\nScientists measured that the Rhone glacier "
                                     "retreated by 40 metres in 2022.", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (folder / "latin1.txt").write_bytes("Müller über Straßen\n\nDer Bürgermeister Müller ließ die Straßen "
                                        "in Görlitz sanieren.".encode("cp1252"))
    (folder / "broken.html").write_text("<html><body><div><p>" + "<div>" * 50 + "</html>", encoding="utf-8")
    (folder / "bad.jsonl").write_text(json.dumps({"id": "ok1", "title": "Fine", "text": "A fine record about rain."})
                                      + "\n{not json\n", encoding="utf-8")
    (folder / "nocol.csv").write_text("id,headline\n1,No body here\n", encoding="utf-8")
    (folder / "huge.txt").write_text("Big\n\n" + "word " * 400_000, encoding="utf-8")
    os.environ["RAG_MAX_FILE_MB"] = "1"
    from rag.settings import reset_settings

    reset_settings()
    report = ingest([folder], collection="broken")
    failed = {Path(f.path.split(":")[0]).name: f.error for f in report.failed}
    assert set(failed) == {"empty.txt", "binary.txt", "broken.html", "bad.jsonl", "nocol.csv", "huge.txt"}, failed
    assert "empty" in failed["empty.txt"]
    assert "binary" in failed["binary.txt"]
    assert "line 2" in failed["bad.jsonl"]
    assert "text column" in failed["nocol.csv"]
    assert "too large" in failed["huge.txt"]
    assert sorted(report.added) == ["good.txt", "latin1.txt", "ok1"]
    assert Store().manifest("broken")["latin1.txt"].title == "Müller über Straßen"
    hits = retrieve("How much did the Rhone glacier retreat?", collection="broken", k=1)
    assert hits[0].doc_id == "good.txt"


def test_chunks_never_exceed_the_embedder_window():
    from rag.models import load_embedder

    emb = load_embedder()
    text = " ".join(f"Satz Nummer {i} über die Beziehungen zwischen Russland und Nordkorea." for i in range(400))
    text += " " + "Donaudampfschifffahrtsgesellschaftskapitän" * 300  # one gigantic 'word'
    art = Article(doc_id="long", title="Ein sehr langer Titel " * 20, text=text, date="2024-01-16", content_hash="x")
    chunks = chunk_article(art, emb.count_tokens, max_tokens=emb.max_tokens, target_tokens=220)
    counts = emb.count_tokens(["passage: " + c.embed_text for c in chunks])
    assert max(counts) <= 512
    for c in chunks:
        assert art.text[c.start : c.end] == c.text


def test_sentence_splitter_keeps_german_dates_and_abbreviations():
    text = "Am 16. Januar 2024 trafen sich z. B. Dr. Meier und Prof. Kim. Danach sprach U.S. official Pak. Ende."
    sents = [text[s:e] for s, e in split_sentences(text)]
    assert sents[0] == "Am 16. Januar 2024 trafen sich z. B. Dr. Meier und Prof. Kim."
    assert sents[-1] == "Ende."


def test_clean_text_removes_share_and_caption_markers():
    raw = "Titel\nChia sẻ\nTitel - ảnh 1Bildunterschrift mit Fakten.\nShare\nWe use cookies to improve.\nText."
    assert clean_text(raw, "Titel") == "Titel\nBildunterschrift mit Fakten.\nText."


def test_cli_json_report_and_collections(data_dir, seed_copy):
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "-c", "clijson", "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["collection"] == "clijson" and report["added"] == [SEED_ID]
    assert set(report) >= {"added", "updated", "unchanged", "deleted", "failed"}
    cols = subprocess.run([sys.executable, "-m", "rag.cli", "collections", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(cols.stdout)}
    assert rows["clijson"]["articles"] == 1 and rows["clijson"]["chunks"] >= 3
    strict = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "/no/such/file", "-c",
                             "clijson", "--strict"], env=env, capture_output=True, text=True, timeout=300)
    assert strict.returncode == 1 and "/no/such/file" in strict.stderr


def test_if_empty_finishes_an_interrupted_first_ingest_and_then_does_nothing(data_dir, seed_copy):
    """`make chat` runs `rag ingest --demo small ... --if-empty`: stopped during that first ingest, the
    collection holds some articles but no revision (recorded when an ingest ends); the next `make chat` must
    finish it, not keep the partial corpus."""
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "-c", "demo", "--if-empty"]
    ingest([seed_copy], collection="demo")
    store = Store()
    col = store.articles("demo")
    col.modify(metadata={k: v for k, v in (col.metadata or {}).items() if k != "revision"})  # as a kill leaves it
    (seed_copy / "later.txt").write_text("Fähre fährt wieder\n\nDie Fähre nach Sylt fährt seit Montag wieder.",
                                         encoding="utf-8")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "did not finish" in out.stdout, out.stdout + out.stderr
    assert store.article_count("demo") == 2 and store.revision("demo")
    (seed_copy / "much-later.txt").write_text("Neue Brücke\n\nDie Brücke wurde eröffnet.", encoding="utf-8")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "nothing to do" in out.stdout and store.article_count("demo") == 2


@pytest.mark.slow
def test_kill_9_then_rerun_equals_clean_ingest(data_dir, tmp_path):
    """Really kill the ingest process at several moments; the rerun must converge on a clean index."""
    from rag.provision import demo_corpus

    csv_path = demo_corpus("small")
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    subset = tmp_path / "subset.csv"
    subset.write_text("".join(lines[:41]), encoding="utf-8")  # the header and 40 articles (one per line)
    env = {**os.environ, "RAG_INGEST_BATCH_ARTICLES": "4"}  # many writes, so every kill lands between or inside one
    # `--if-empty` as `make chat` runs its demo ingest: a killed first ingest is finished by the next run
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(subset), "--if-empty", "-c"]
    started = time.monotonic()
    clean = subprocess.run([*cmd, "clean"], env=env, capture_output=True, text=True, timeout=900)
    assert clean.returncode == 0, clean.stderr
    # kill at fractions of a whole run on this machine (start-up included), so the kills land mid-ingest on
    # slow and fast CPUs alike
    whole = time.monotonic() - started
    partial = []
    for fraction in (0.45, 0.65, 0.85):
        proc = subprocess.Popen([*cmd, "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole * fraction)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial.append(Store().article_count("killed"))
    assert any(0 < n < 40 for n in partial), partial  # a kill landed mid-ingest
    done = subprocess.run([*cmd, "killed"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([*cmd, "killed"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    killed, fresh = stored("killed"), stored("clean")
    assert set(killed) == set(fresh) and len(fresh) == 40
    for doc_id in fresh:
        assert sorted(c for c, _, _ in killed[doc_id]) == sorted(c for c, _, _ in fresh[doc_id])
    assert Store().chunk_count("killed") == Store().chunk_count("clean")
    assert Store().article_count("killed") == Store().article_count("clean")


def test_collection_records_its_embedder_and_refuses_another(data_dir, seed_copy):
    from rag.errors import EmbedderMismatchError
    from rag.models import load_embedder
    from rag.retrieval import retrieve

    ingest([seed_copy], collection="emb")
    store = Store()
    assert store.embedder_of("emb") == load_embedder().signature == "multilingual-e5-small:384:fp32"
    store.bump_revision("emb", "other-model:768:fp32")  # as if another embedder had made it
    with pytest.raises(EmbedderMismatchError, match="rebuild"):
        retrieve("Putin", collection="emb")
    (seed_copy / "new.txt").write_text("Ferry resumes\n\nThe ferry to Sylt resumed on Monday.", encoding="utf-8")
    with pytest.raises(EmbedderMismatchError):
        ingest([seed_copy], collection="emb")
    assert ingest([seed_copy], collection="emb", rebuild=True).chunks_written > 0  # re-embedded with the current one
    assert store.embedder_of("emb") == load_embedder().signature and retrieve("Putin", collection="emb")


def test_scorer_vectors_stored_at_ingest_are_the_ones_answering_would_compute(data_dir, seed_copy):
    """Each chunk carries the answer scorer's vector (RAG_INGEST_SCORER_VECTORS); answering reads it instead of
    re-embedding the chunk, with the same score. Passages shown or handed on never carry it."""
    import numpy as np

    from rag.answer import rescore_passages
    from rag.embedding import SCORER_FIELD, unpack_vector
    from rag.models import load_scorer
    from rag.retrieval import hybrid_search
    from rag.settings import Settings
    from rag.text import scorer_text

    use_settings(data_dir, embed_precision="fp32")  # retrieval by another graph than the scorer's: both stored
    ingest([seed_copy], collection="scored")
    scorer = load_scorer()
    chunks = list(Store().iter_chunks("scored"))
    assert chunks
    stored_vecs = np.stack([unpack_vector(meta[SCORER_FIELD], scorer.signature) for _, _, meta in chunks])
    fresh = scorer.embed_passages([scorer_text(meta["title"], meta["date"], doc) for _, doc, meta in chunks])
    assert float((stored_vecs * fresh).sum(1).min()) > 0.9999
    question = "Wann traf Lawrow Choe Son-hui?"
    passages = hybrid_search(question, collection="scored")
    assert passages[0].scorer_vector and SCORER_FIELD not in passages[0].metadata
    assert "scorer_vector" not in passages[0].model_dump()
    recomputed = [p.model_copy(update={"scorer_vector": ""}) for p in passages]
    rescore_passages(passages, question, scorer, 4)
    rescore_passages(recomputed, question, scorer, 4)
    # int8 graphs quantise activations per batch, so a chunk embedded with other chunks at ingest and with
    # the other candidates here differ slightly: up to 0.0044 on an AVX2-only Zen 3, whose int8 kernels lack
    # VNNI, under 0.004 on the AVX-512 machines of earlier stops (fp32 vs int8: ~0.02; bench/RESULTS.md, stop 27)
    for a, b in zip(passages[:4], recomputed[:4], strict=True):
        assert abs(a.dense_score - b.dense_score) < 0.01
    # another scorer (here: fp32) finds no vector of its own and embeds the chunk, as before
    assert unpack_vector(passages[0].scorer_vector, load_scorer(Settings(scorer_precision="fp32")).signature) is None

    ingest([seed_copy], collection="unscored", settings=Settings(ingest_scorer_vectors=False))
    assert all(SCORER_FIELD not in meta for _, _, meta in Store().iter_chunks("unscored"))
