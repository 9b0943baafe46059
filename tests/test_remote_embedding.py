"""Remote embedding (RAG_EMBED_PROVIDER=openai): newsrag embeds on an OpenAI-compatible /v1/embeddings server.

The server is a real `rag serve` child process with the packaged e5-small (its POST /v1/embeddings route);
the client is newsrag in this process. The retry and garbage tests put httpx.MockTransport under the client:
transport plumbing for failures a real server does not produce on demand (503 twice, then 200).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import SEED_ID, use_settings
from helpers import free_port, wait_http
from rag.errors import EmbedderMismatchError, EmbedderUnavailableError
from rag.settings import Settings

E5 = "multilingual-e5-small"
TOKEN = "sk-newsrag-test-3f9a1c"  # the server's RAG_API_TOKEN and the client's RAG_EMBED_API_KEY
SENTENCES = [
    "Russland und Nordkorea verstärken ihre Beziehungen.",
    "Russia and North Korea are strengthening their relations.",
    "Am 21. Januar teilte die nordkoreanische Nachrichtenagentur KCNA mit, dass Putin Nordkorea bald besuchen werde.",
    "Ärger über die Straßenbahn: Größe, Maß und „Anführungszeichen“ … ß ü ö ä",
    "How much protein should a female eat per day?",
]
LONG = "Die USA und Japan sind besorgt über die Lage in Nordostasien. " * 120  # far past the 512-token window


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rag serve` with the local e5-small and a bearer token; yields its /v1 base URL."""
    base = tmp_path_factory.mktemp("embed-server")
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(base / "data"), "RAG_EMBED_MODEL": E5, "RAG_EMBED_PROVIDER": "local",
           "RAG_API_TOKEN": TOKEN}
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def remote(data_dir: Path, embed_server: str) -> Path:
    """This process embeds on the server (the data_dir fixture restores the environment afterwards)."""
    use_settings(data_dir, embed_provider="openai", embed_base_url=embed_server, embed_api_model=E5,
                 embed_api_key=TOKEN)
    return data_dir


def local_e5():
    from rag.models import load_embedder

    return load_embedder(Settings(embed_provider="local", embed_model=E5))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


# ------------------------------------------------------------------ a real server
def test_remote_vectors_equal_the_local_embedders(remote):
    from rag.models import load_embedder, load_scorer
    from rag.remote_embedder import RemoteEmbedder

    emb, local = load_embedder(), local_e5()
    assert isinstance(emb, RemoteEmbedder) and emb.signature == f"openai:{E5}:384:remote"
    scorer = load_scorer()  # answers are still scored with the local, calibrated e5 (RAG_SCORER_PRECISION)
    assert not isinstance(scorer, RemoteEmbedder) and scorer.signature == f"{E5}:384:int8"
    assert (emb.query_prefix, emb.passage_prefix) == ("query: ", "passage: ")  # the packaged model's prompts
    assert emb.max_tokens == local.max_tokens and emb.count_tokens(SENTENCES) == local.count_tokens(SENTENCES)
    for fn in ("embed_queries", "embed_passages"):
        got = getattr(emb, fn)(SENTENCES + [LONG], cache=False)
        want = getattr(local, fn)(SENTENCES + [LONG], cache=False)
        assert got.shape == want.shape == (len(SENTENCES) + 1, 384)
        assert cosines(got, want).min() >= 0.9999, cosines(got, want)
    # recurring questions come from the cache, as with the local embedder
    emb.clear_cache()
    first = emb.embed_queries(SENTENCES[:2])
    emb._model_encode = lambda *_: pytest.fail("a cached question went to the server again")
    try:
        assert np.array_equal(emb.embed_queries(SENTENCES[:2]), first)
    finally:
        del emb._model_encode


def test_the_serve_endpoint_speaks_openai_embeddings(data_dir, embed_server):
    from openai import OpenAI

    local = local_e5()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # OpenAI's SDK (it asks for base64) gets the local vectors of the texts as given: the client adds prompts
    client = OpenAI(base_url=embed_server, api_key=TOKEN)
    got = client.embeddings.create(model=f"intfloat/{E5}", input=["query: " + s for s in SENTENCES])
    assert [d.index for d in got.data] == list(range(len(SENTENCES))) and got.model == E5
    assert got.usage.prompt_tokens == sum(local.count_tokens(["query: " + s for s in SENTENCES]))
    vectors = np.array([d.embedding for d in got.data])
    assert cosines(vectors, local.embed_queries(SENTENCES, cache=False)).min() >= 0.9999

    r = httpx.post(f"{embed_server}/embeddings", json={"input": SENTENCES[0], "model": E5, "dimensions": 128},
                   headers=auth, timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list" and body["data"][0]["object"] == "embedding"
    assert len(body["data"][0]["embedding"]) == 128
    assert abs(np.linalg.norm(body["data"][0]["embedding"]) - 1) < 1e-5
    raw = httpx.post(f"{embed_server}/embeddings", json={"input": [SENTENCES[0]], "model": E5,
                                                         "encoding_format": "base64"}, headers=auth, timeout=60)
    vec = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert float(vec @ local.embed_texts([SENTENCES[0]])[0]) >= 0.9999
    # the API's bearer token guards it; unknown models and bad input are refused with a reason
    assert httpx.post(f"{embed_server}/embeddings", json={"input": "x", "model": E5}).status_code == 401
    unknown = httpx.post(f"{embed_server}/embeddings", json={"input": "x", "model": "bge-m3"}, headers=auth)
    assert unknown.status_code == 404 and E5 in unknown.json()["error"]
    assert httpx.post(f"{embed_server}/embeddings", json={"input": [], "model": E5}, headers=auth).status_code == 422


def test_ingest_and_retrieve_through_the_server_and_refuse_mixing(remote, seed_copy):
    from ingest.pipeline import ingest
    from rag.answer import ask
    from rag.models import load_embedder
    from rag.retrieval import retrieve
    from rag.store import Store

    report = ingest([seed_copy], collection="remote")
    assert report.added == [SEED_ID] and not report.failed and report.chunks_written >= 3
    store = Store()
    signature = load_embedder().signature
    assert store.embedder_of("remote") == signature != local_e5().signature
    assert retrieve("When will Putin visit North Korea?", collection="remote", k=3)[0].doc_id == SEED_ID
    ans = ask("Wie viele russische Delegationen besuchten Nordkorea?", collection="remote", llm="extractive")
    assert ans.answered and ans.citations[0].doc_id == SEED_ID  # scored with the local e5 (load_scorer)

    # the same machine with its local embedder: questions and new articles are refused, not mixed in
    use_settings(remote, embed_provider="local")
    with pytest.raises(EmbedderMismatchError, match=f"holds vectors of the embedder {signature}.*RAG_EMBED_PROVIDER"):
        retrieve("When will Putin visit North Korea?", collection="remote")
    (seed_copy / "ferry.txt").write_text("Ferry resumes\n\nThe ferry to Sylt resumed on Monday.", encoding="utf-8")
    with pytest.raises(EmbedderMismatchError):
        ingest([seed_copy], collection="remote")
    assert store.article_count("remote") == 1


def test_server_down_fails_with_one_clear_line_and_changes_nothing(remote, seed_copy):
    from ingest.pipeline import ingest
    from rag.store import Store

    assert ingest([seed_copy], collection="kept").added == [SEED_ID]
    store = Store()
    before = (store.article_count("kept"), store.chunk_count("kept"), store.revision("kept"))
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    use_settings(remote, embed_base_url=dead, embed_retries="1")
    (seed_copy / "ferry.txt").write_text("Ferry resumes\n\nThe ferry to Sylt resumed on Monday.", encoding="utf-8")
    with pytest.raises(EmbedderUnavailableError) as caught:
        ingest([seed_copy], collection="kept")
    message = str(caught.value)
    assert f"{dead}/embeddings cannot be reached" in message and "2 tries" in message and "RAG_EMBED_BASE_URL" in message
    assert "\n" not in message and TOKEN not in message
    assert (store.article_count("kept"), store.chunk_count("kept"), store.revision("kept")) == before

    # the command line says the same in one line, without a traceback, and exits non-zero
    env = {**os.environ, "RAG_EMBED_RETRIES": "0"}
    done = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "-c", "kept"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr and TOKEN not in done.stderr + done.stdout
    assert len([line for line in done.stderr.splitlines() if dead in line]) == 1, done.stderr
    assert (store.article_count("kept"), store.chunk_count("kept"), store.revision("kept")) == before


def test_token_estimate_over_counts_the_real_tokenizer():
    from rag.remote_embedder import approx_cut, approx_tokens

    local = local_e5()
    texts = SENTENCES + [LONG, "東京で地震があり、多くの建物が被害を受けた。", "Lawrow traf Choe Son-hui am 16. Januar."]
    assert all(a >= n for a, n in zip([approx_tokens(t) for t in texts], local.count_tokens(texts), strict=True))
    cut = approx_cut(LONG, 100)
    assert LONG.startswith(cut) and approx_tokens(cut) <= 100 < approx_tokens(cut + LONG[len(cut)])


# ------------------------------------------------------- failures, under a mock transport
class MockServer:
    """Answers `statuses` in turn, the last one forever (200 = vectors; "html", "short", "echo" = garbage), and
    records the requests and the backoff waits the embedder asked for."""

    def __init__(self, *statuses: int | str, reports: str = "served-name") -> None:
        self.statuses, self.reports = list(statuses), reports
        self.requests: list[list[str]] = []
        self.headers: list[httpx.Headers] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        texts = httpx.Response(200, content=request.content).json()["input"]
        self.requests.append(texts)
        self.headers.append(request.headers)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status == "html":
            return httpx.Response(200, text="<html>Bad gateway</html>")
        if status == "echo":  # a server that quotes the request's credentials back
            return httpx.Response(400, text=f"bad request from {request.headers['authorization']}")
        if status == "short":
            texts = texts[:-1]
        elif status != 200:
            return httpx.Response(int(status), text="overloaded", headers={"Retry-After": "3"} if status == 429 else {})
        # out of order and not normalised, as some servers answer
        data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(texts)][::-1]
        return httpx.Response(200, json={"object": "list", "data": data, "model": self.reports})

    def embedder(self, retries: int = 3, model: str = "test-model", **extra: object):
        from rag.remote_embedder import RemoteEmbedder

        settings = Settings(embed_provider="openai", embed_base_url="http://embed.test/v1/", embed_api_model=model,
                            embed_api_key="sk-very-secret", embed_retries=retries, **extra)
        return RemoteEmbedder(settings, transport=httpx.MockTransport(self.handler), sleep=self.sleeps.append)


def expect_failure(call: Callable[[], object], *fragments: str) -> None:
    with pytest.raises(EmbedderUnavailableError) as caught:
        call()
    message = str(caught.value)
    assert "http://embed.test/v1/embeddings" in message and "sk-very-secret" not in message, message
    assert "\n" not in message and all(f in message for f in fragments), message


def test_retries_back_off_exponentially_then_succeed():
    server = MockServer(503, 429, 503, 200)
    emb = server.embedder()
    assert len(server.requests) == 4 and server.sleeps == [0.5, 3.0, 2.0]  # doubling; longer if Retry-After asks
    assert server.headers[0]["authorization"] == "Bearer sk-very-secret"
    assert emb.signature == "openai:test-model:3:remote" and (emb.query_prefix, emb.passage_prefix) == ("", "")
    vectors = emb.embed_passages(["a", "bbb", "cc", "d", "eeeee"], batch_size=2)
    assert [len(texts) for texts in server.requests[4:]] == [2, 2, 1]  # batches
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(vectors[:, 0] / vectors[:, 1], [1, 3, 2, 1, 5])  # put back in order by index


def test_retries_give_up_with_one_clear_error():
    server = MockServer(503)
    expect_failure(lambda: server.embedder(retries=3), "HTTP 503", "overloaded", "after 4 tries")
    assert len(server.requests) == 4 and server.sleeps == [0.5, 1.0, 2.0]
    # after a good start (mid-ingest) a batch fails the same way, retried first
    server = MockServer(200, 503)
    emb = server.embedder(retries=2)
    expect_failure(lambda: emb.embed_passages(["x"]), "HTTP 503", "after 3 tries")
    assert len(server.requests) == 1 + 3 and server.sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("status", "fragments"), [
    (401, ("refused the API key", "RAG_EMBED_API_KEY")),
    (404, ("HTTP 404", "RAG_EMBED_API_MODEL")),
    ("html", ("not an embeddings response",)),
    ("short", ("not an embeddings response", "0 vectors for 1 texts")),
    ("echo", ("HTTP 400", "Bearer ***")),
])
def test_what_retrying_cannot_fix_fails_at_once(status, fragments):
    server = MockServer(status)
    expect_failure(lambda: server.embedder(retries=3), *fragments)
    assert len(server.requests) == 1 and server.sleeps == []


def test_a_packaged_model_served_remotely_gets_its_prompts_and_tokenizer(tmp_path):
    # named by the server only ("org/name" as Text Embeddings Inference reports it), provisioned here
    emb = MockServer(200, reports=f"intfloat/{E5}").embedder(model="")
    assert emb.signature == f"openai:intfloat/{E5}:3:remote" and emb.query_prefix == "query: "
    assert emb.tokenizer is not None and emb.count_tokens(SENTENCES) == local_e5().count_tokens(SENTENCES)
    # not provisioned here: the prompts newsrag knows for it, and the token estimate
    gemma = MockServer(200).embedder(model="embeddinggemma-300m", model_dir=tmp_path)
    assert (gemma.query_prefix, gemma.passage_prefix) == ("task: search result | query: ", "title: none | text: ")
    assert gemma.tokenizer is None and gemma.count_tokens(["abcdef"]) == [4]
    # the settings' prefixes win
    custom = MockServer(200).embedder(model=E5, embed_query_prefix="search_query: ")
    assert (custom.query_prefix, custom.passage_prefix) == ("search_query: ", "passage: ")
