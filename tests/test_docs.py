"""The documentation: docstrings cite only what the repository holds, and the pages keep up.

The site itself is built by ``make docs`` (mkdocs, warnings as errors); these tests check what
a build cannot: that the reference pages name every column, key, kind, command and figure the
code has.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from critbatch import results, spec
from critbatch.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Files of the development set-up that are not in the repository.
OUTSIDE = re.compile(r"THEORY\.md|DESIGN\.md|STYLE\.md|EXACT_JUMPS\.md|\.\./shared|\bshared/")


def _docstrings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    return found


def test_no_docstring_cites_a_file_outside_the_repository():
    cited = [
        f"{path.relative_to(ROOT)}:{line}: {OUTSIDE.search(doc).group()}"
        for path in sorted((ROOT / "python").rglob("*.py*"))
        if path.suffix in (".py", ".pyi")
        for line, doc in _docstrings(path)
        if OUTSIDE.search(doc)
    ]
    assert cited == []


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def test_results_page_describes_every_column_and_stop_reason():
    page = _code_spans(_page("results.md"))
    names = (*results.COLUMNS, *results.OPTIONAL_COLUMNS, *results.STOP_REASONS, "trajectory")
    assert [n for n in names if n not in page] == []


def test_spec_page_describes_every_key_and_kind():
    page = _code_spans(_page("spec.md"))
    keys = [
        *spec._TOP_KEYS,
        *spec._TARGET_KEYS,
        *spec._SCHEDULE_KEYS,
        *spec.PROBLEM_KINDS,
        *spec._OPTIMIZER_BUILDERS,
        *spec._RULES,
    ]
    for builder in spec.PROBLEM_KINDS.values():
        keys += list(inspect.signature(builder).parameters)
    for _, rule_keys in spec._RULES.values():
        keys += list(rule_keys)
    assert sorted({k for k in keys if k not in page}) == []


def test_spec_page_shows_every_example_spec():
    page = _page("spec.md")
    for path in sorted((ROOT / "examples" / "specs").glob("*.toml")):
        assert f'--8<-- "examples/specs/{path.name}"' in page


def test_cli_page_lists_every_command():
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    page = _page("cli.md")
    assert [c for c in commands if f"`critbatch {c}" not in page] == []


def test_gallery_shows_every_figure():
    page = _page("gallery.md")
    figures = sorted((ROOT / "examples" / "figures").glob("*.png"))
    assert figures
    assert [f.name for f in figures if f"(examples/figures/{f.name})" not in page] == []


#: Modules documented by the command-line page rather than the API reference.
COMMAND_MODULES = ("cli", "demo", "crosscheck")


@pytest.mark.parametrize(
    "module",
    sorted(
        p.stem
        for p in (ROOT / "python" / "critbatch").glob("*.py")
        if not p.stem.startswith("_") and p.stem not in COMMAND_MODULES
    ),
)
def test_every_public_module_is_in_the_api_reference(module):
    pages = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    assert f"::: critbatch.{module}" in pages
