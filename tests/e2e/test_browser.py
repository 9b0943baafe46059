"""The chat in a real browser: Streamlit on 127.0.0.1, Playwright driving Debian's headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SEED_TITLE
from helpers import free_port, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def app_url(corpus, tmp_path):
    # a copy of the shared corpus: this test ingests an upload and must not change what other tests see
    data = tmp_path / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("keyword", "locks"))
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/_stcore/health", 90)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_chat_in_a_real_browser(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    evil = tmp_path / "evil-notice.txt"
    evil.write_text("Hafenfest in Husum abgesagt\n\nDas Hafenfest in Husum wurde wegen Sturmwarnung abgesagt. "
                    "<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\"> "
                    "Die Veranstalter planen einen Ersatztermin im September.", encoding="utf-8")
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                    env={**os.environ, "HOME": str(tmp_path)})
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(app_url)
        page.get_by_text("Ask the news").wait_for(timeout=120_000)

        box = page.get_by_placeholder("Ask about the articles")
        box.fill("Wann trafen sich Lawrow und Choe Son-hui in Moskau?")
        box.press("Enter")
        assistant = page.locator('[data-testid="stChatMessage"]').nth(1)
        # the progress line while the claim check runs (seconds), gone once the answer is rendered
        expect(assistant.get_by_text("Checking each claim against its source").first).to_be_visible(timeout=240_000)
        expect(assistant.get_by_text(SEED_TITLE).first).to_be_visible(timeout=240_000)
        expect(assistant.get_by_text("Checking each claim against its source")).to_have_count(0)
        expect(assistant.locator('a[href^="#src-"]').first).to_be_visible()
        assert "[1]" in assistant.inner_text()
        page.screenshot(path=str(ARTIFACTS / "answer-with-sources.png"), full_page=True)

        box.fill("Und was teilte KCNA am 21. Januar mit?")
        box.press("Enter")
        second = page.locator('[data-testid="stChatMessage"]').nth(3)
        expect(second.get_by_text(SEED_TITLE).first).to_be_visible(timeout=240_000)

        page.get_by_text("Add articles to this collection").click()
        page.locator('input[type="file"]').set_input_files(str(evil))
        page.get_by_role("button", name="Ingest").click()
        expect(page.get_by_text("1 added").first).to_be_visible(timeout=240_000)  # the ingest report
        expect(page.get_by_text("evil-notice.txt").first).to_be_visible()

        box.fill("Warum wurde das Hafenfest in Husum abgesagt?")
        box.press("Enter")
        third = page.locator('[data-testid="stChatMessage"]').nth(5)
        expect(third.get_by_text("Hafenfest in Husum abgesagt").first).to_be_visible(timeout=240_000)
        expect(third.get_by_text("<script>", exact=False).first).to_be_visible()  # shown as text
        assert page.evaluate("window.__pwned") is None
        assert not dialogs
        page.screenshot(path=str(ARTIFACTS / "hostile-article-inert.png"), full_page=True)
        browser.close()
