"""The code's shape, checked: imports run one way, modules stay small, and the text that describes the code
(.env.example, README's architecture and formats) is generated from it or matches it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGES = ("rag", "ingest", "ui")
# rag/ is below ingest/: ingestion uses rag's types, settings, store, models, text and language tools,
# and rag never imports ingest, except these entry points that start an ingest for a user.
RAG_ENTRY_POINTS = {"rag/__init__.py", "rag/cli.py", "rag/api.py"}
MAX_LINES = 420


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py"))


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_imports_run_one_way():
    wrong = []
    for path in modules():
        rel = path.relative_to(ROOT).as_posix()
        pkg = rel.split("/")[0]
        imported = imported_packages(path)
        if pkg == "rag" and "ui" in imported:
            wrong.append(f"{rel} imports ui")
        if pkg == "rag" and "ingest" in imported and rel not in RAG_ENTRY_POINTS:
            wrong.append(f"{rel} imports ingest (rag is below ingest)")
        if pkg == "ingest" and "ui" in imported:
            wrong.append(f"{rel} imports ui")
    assert not wrong, wrong


def test_no_module_is_too_long():
    long = {p.relative_to(ROOT).as_posix(): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_env_example_is_generated_from_the_settings():
    from rag.settings import env_example

    assert (ROOT / ".env.example").read_text(encoding="utf-8") == env_example(), (
        "run `.venv/bin/python -m rag.settings > .env.example`")


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README has no section {title!r}"
    return m.group(1)


def test_readme_architecture_names_every_module_and_only_real_ones():
    section = readme_section("Architecture")
    named = set(re.findall(r"`([a-z_]+\.py)`", section)) - {"__init__.py"}
    real = {p.name for p in modules() if p.name != "__init__.py"}
    assert real - named == set(), f"modules missing from README's architecture: {sorted(real - named)}"
    assert named - real == set(), f"README names modules that do not exist: {sorted(named - real)}"


def test_readme_formats_table_is_the_loader_registry():
    from ingest.load import formats_table

    assert formats_table() in readme_section("Input formats"), "paste ingest.load.formats_table() into README"


def test_every_public_name_imports_from_a_fresh_process():
    """`from rag import retrieve` once recursed, and after `from rag import ask` gave the module."""
    import subprocess
    import sys

    import rag

    for name in rag.__all__:
        code = (f"from rag import ask\nfrom rag import {name}\nimport types\n"
                f"assert not isinstance({name}, types.ModuleType), {name}\nprint({name}.__name__)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == name, (name, out.stderr[-500:])
