"""Streamlit AppTest: chat flow, sidebar, ingest report, safe rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SEED_TITLE
from ui.components import answer_markdown, escape_md, safe_upload_path

APP = str(ROOT / "ui" / "app.py")


def test_escape_makes_html_inert():
    s = escape_md('<script>alert("x")</script><img src=x onerror=alert(1)> **bold** [link](http://x)')
    assert "<" not in s and ">" not in s and "**bold**" not in s
    md = answer_markdown("Putin kommt bald [1]. Erfunden [?].", 0)
    assert "(#src-0-1)" in md and r"\[?\]" in md


def test_upload_names_cannot_escape(tmp_path: Path):
    up = tmp_path / "uploads"
    up.mkdir()
    assert safe_upload_path(up, "../../etc/passwd").parent == up.resolve()
    assert safe_upload_path(up, "..\\..\\x.txt").name == "x.txt"
    assert safe_upload_path(up, "a/b/../c.html").name == "c.html"


def test_chat_flow_sidebar_and_follow_up(corpus):
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "news"
    assert [m.value for m in at.sidebar.metric] == ["101", at.sidebar.metric[1].value]
    at.sidebar.selectbox[1].set_value("extractive").run()
    at.chat_input[0].set_value("Wie viele russische Delegationen besuchten Nordkorea?").run()
    assert not at.exception
    texts = " ".join(m.value for m in at.markdown)
    assert "(#src-" in texts  # [n] markers link to source cards
    assert any(SEED_TITLE in m.value for m in at.markdown)
    assert any("verified" in c.value for c in at.caption)
    from ui.components import STAGE_LABELS

    assert not [c.value for c in at.caption if c.value in STAGE_LABELS.values()]  # the progress line is gone
    at.chat_input[0].set_value("Und wann traf Lawrow die Außenministerin?").run()
    assert len([c for c in at.chat_message if c.name == "assistant"]) == 2
    at.sidebar.button[0].click().run()  # clear conversation
    assert not [c for c in at.chat_message if c.name == "assistant"]


def test_unanswerable_question_looks_different(corpus):
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.sidebar.selectbox[1].set_value("extractive").run()
    at.chat_input[0].set_value("Wie heißt der Bürgermeister von Flensburg?").run()
    assert at.warning and "nicht" in at.warning[0].value
    assert any("Nächstliegende Quellen" in m.value for m in at.markdown)  # in the question's language


@pytest.mark.slow
def test_ingest_folder_from_the_ui_shows_report(data_dir, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "good.txt").write_text("Ferry resumes\n\nThe ferry to Sylt resumed service on Monday.", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "evil.html").write_text("<html><body><article><h1>Evil</h1><p>Harmless text about tides and the "
                                      "harbour of Husum.</p><script>alert(1)</script></article></body></html>",
                                      encoding="utf-8")
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.text_input(key="ingest_folder").set_value(str(folder)).run()
    ingest_button = next(b for b in at.button if b.label == "Ingest")
    ingest_button.click().run()
    assert not at.exception
    report = " ".join(m.value for m in at.markdown)
    assert "2 added" in report and "1 failed" in report
    rows = at.dataframe[0].value
    assert "empty" in " ".join(rows["article"].tolist())
