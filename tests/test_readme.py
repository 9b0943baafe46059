"""Every ```bash and ```python block in README.md runs, as written, against a fresh data folder (the way
simonw/llm tests its docs). Blocks fenced as ```text are listings, not examples (`make test` is what CI runs;
`make chat` is covered by the browser test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_has_examples():
    kinds = [kind for kind, _ in readme_blocks()]
    assert "bash" in kinds and "python" in kinds


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("RAG_LLM_SERVER_COMMAND", None)
    for i, (kind, code) in enumerate(readme_blocks()):
        cmd = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"README block {i} ({kind}) failed:\n{code}\n--- stdout\n{out.stdout[-2000:]}" \
                                    f"\n--- stderr\n{out.stderr[-3000:]}"
