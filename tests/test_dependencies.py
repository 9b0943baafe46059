"""Every third-party import is declared in pyproject.toml: the product's in `dependencies`, bench/'s in the
`bench` extra (or the product's), tests' in `dev`. A package that only arrives through another one breaks
the day that one drops it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import ROOT

FIRST_PARTY = {"rag", "ingest", "ui", "bench", "tests", "conftest", "helpers", "fake_llm_server"}


def requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def third_party_imports(folders: list[str]) -> dict[str, set[str]]:
    """top-level module -> files that import it."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if "cache" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(folders: list[str], declared: set[str]) -> list[str]:
    dists = packages_distributions()
    missing = []
    for module, files in sorted(third_party_imports(folders).items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        assert names, f"{module} (imported by {sorted(files)}) is not installed"
        if not names & declared:
            missing.append(f"{module} ({'/'.join(sorted(names))}) imported by {sorted(files)[:3]}")
    return missing


def test_every_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = requirement_names(project["dependencies"])
    extras = {k: requirement_names(v) for k, v in project["optional-dependencies"].items()}
    assert not undeclared(["rag", "ingest", "ui"], runtime)
    assert not undeclared(["bench"], runtime | extras["bench"])
    assert not undeclared(["tests"], runtime | extras["bench"] | extras["dev"])


def test_declared_runtime_packages_are_used():
    """A runtime dependency nobody imports is weight every user installs (llama-cpp-python's [server] extra
    and the libraries loaded by name at run time are the exceptions listed here)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dists = packages_distributions()
    used = {d.lower().replace("_", "-") for m in third_party_imports(["rag", "ingest", "ui"]) for d in dists.get(m, [])}
    loaded_by_name = {"onnx", "pystemmer", "safetensors", "llama-index-core"}
    unused = requirement_names(project["dependencies"]) - used - loaded_by_name
    assert not unused, unused


def test_no_pickle_anywhere():
    for folder in ("rag", "ingest", "ui"):
        for path in Path(ROOT / folder).rglob("*.py"):
            assert not re.search(r"^\s*(import pickle|from pickle)", path.read_text(encoding="utf-8"), re.M), path
