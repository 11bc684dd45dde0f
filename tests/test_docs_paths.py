"""Every module path a doc or a docstring names exists, so a file that moves takes its mentions with it.

A path is read from the repository's root (`tests/helpers.py`, `livesight/protocols/web/server.py`), from livesight/
(`protocols/web/server.py`) or, in a docstring or comment, beside its own module (`fleet_service.py` in gateway/); a
bare file name in a doc (README.md, docs/) must be some module of the repository. A dotted `livesight.x.y` name is a
module or a name in one. Docstrings and comments of every module in livesight/ and tests/ are read (this file's
examples aside)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "livesight"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SOURCES = sorted(PKG.rglob("*.py"))
PROSE = [*SOURCES, *(p for p in sorted((REPO / "tests").rglob("*.py")) if p != Path(__file__).resolve())]
EXTERNAL = {"convert_hf_to_gguf.py"}  # llama.cpp's converter (docs/remote.md), not ours
# modules a package's docstring plans before they exist (none now: the timeline's are all there)
PLANNED: dict[str, set[str]] = {}

# a path ending in .py, as prose names it (not inside a longer word, not a glob)
PY_PATH = re.compile(r"(?<![\w./*-])((?:[\w.-]+/)*[A-Za-z_]\w*\.py)(?![\w/])")
DOTTED = re.compile(r"(?<![\w./-])(livesight(?:\.\w+)+)")
MODULES = {
    ".".join(
        p.relative_to(REPO).with_suffix("").parts[:-1]
        if p.name == "__init__.py"
        else p.relative_to(REPO).with_suffix("").parts
    )
    for p in SOURCES
}
FILE_NAMES = {p.name for d in ("livesight", "tests", "scripts") for p in (REPO / d).rglob("*.py")}


def prose_of_module(path: Path) -> str:
    """A module's docstrings (module, classes, functions) and comments."""
    text = path.read_text()
    out: list[str] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append(doc)
    out += [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    return "\n".join(out)


def path_exists(name: str, here: Path | None) -> bool:
    """`name` as a doc means it: from the repository's root, from livesight/, or beside `here` (a docstring's
    module); a bare file name from a doc: some module of the package has it."""
    bases = [REPO, PKG] + ([here.parent] if here is not None else [])
    if any((b / name).is_file() for b in bases):
        return True
    return name in EXTERNAL or (here is None and "/" not in name and name in FILE_NAMES)


def dotted_exists(name: str) -> bool:
    """A module, or a name in one (`livesight.protocols.contract.api.ServiceAPI`, `livesight.__version__`)."""
    parts = name.split(".")
    return ".".join(parts) in MODULES or ".".join(parts[:-1]) in MODULES


def _missing(text: str, here: Path | None) -> list[str]:
    bad = [m for m in PY_PATH.findall(text) if not path_exists(m, here)]
    bad += [m for m in DOTTED.findall(text) if not dotted_exists(m.rstrip("."))]
    return sorted(set(bad))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    assert _missing(doc.read_text(), None) == []


def test_every_path_a_docstring_names_exists() -> None:
    bad = {}
    for p in PROSE:
        rel = str(p.relative_to(REPO))
        if missing := [m for m in _missing(prose_of_module(p), p) if m not in PLANNED.get(rel, ())]:
            bad[rel] = missing
    assert bad == {}


def test_the_check_can_fail() -> None:
    here = PKG / "gateway" / "hub.py"
    assert _missing("see fleet_service.py, protocols/web/server.py and livesight/protocols/mqtt/bridge.py", here) == []
    assert _missing("see web/server.py, contract/session.py and livesight.web.server", here) == [
        "contract/session.py",
        "livesight.web.server",
        "web/server.py",
    ]


def folder_listing() -> dict[str, list[str]]:
    """docs/architecture.md's "Folders" block: each folder (as a path from the repository's root) → the file names its
    lines name (a folder's line and the lines indented under it)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("## Folders", 1)[1].split("```")[1]
    stack: list[tuple[int, str]] = []  # (indent, folder) of the headings above the line
    out: dict[str, list[str]] = {}
    current = ""
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if indent < DESCRIPTION_COLUMN:  # a heading: a folder (`memory/`, `  contract/`) or files of the one above
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            head = line.split()[0]
            if head.endswith("/"):
                current = parent + head
                stack.append((indent, current))
            else:
                current = parent
        out.setdefault(current, []).extend(PY_PATH.findall(line))
    return out


DESCRIPTION_COLUMN = 22  # where the Folders block's descriptions start


def test_the_folder_listing_names_each_file_in_its_folder() -> None:
    listing = folder_listing()
    assert {"livesight/", "livesight/protocols/contract/", "livesight/timeline/", "tests/"} <= set(listing)
    bad = [
        f"{folder}: {name}"
        for folder, names in listing.items()
        for name in names
        if not ((REPO / folder / name).is_file() or ("/" in name and path_exists(name, None)))
    ]
    assert bad == []
