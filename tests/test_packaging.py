"""Packaging: one version, a license, optional extras that say their name when missing."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path

import pytest

import critbatch as cb

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_version_has_one_source():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert "version" not in PYPROJECT
    assert PYPROJECT["dynamic"] == ["version"]
    assert cb.__version__ == cargo


def test_license_file_and_metadata_agree():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "critbatch developers" in text
    assert PYPROJECT["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in PYPROJECT["classifiers"]
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(PYPROJECT["urls"])


def test_plotting_and_hypothesis_are_extras_and_the_test_set_up_installs_every_extra():
    hard = " ".join(PYPROJECT["dependencies"])
    assert "matplotlib" not in hard
    assert "hypothesis" not in hard
    extras = PYPROJECT["optional-dependencies"]
    assert any(r.startswith("matplotlib") for r in extras["plot"])
    assert any(r.startswith("hypothesis") for r in extras["testing"])
    makefile = (ROOT / "Makefile").read_text()
    installed = re.search(r"^EXTRAS := (.+)$", makefile, re.MULTILINE).group(1).split(",")
    assert set(installed) == set(extras) - {"docs"}


def test_figures_without_matplotlib_name_the_plot_extra(monkeypatch):
    from critbatch import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'critbatch[plot]'")):
        plots.pyplot()


def test_testing_helpers_without_hypothesis_name_the_testing_extra(monkeypatch):
    for name in [
        m
        for m in sys.modules
        if m == "critbatch.testing" or m.startswith(("critbatch.testing.", "hypothesis"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    before = set(sys.modules)
    try:
        with pytest.raises(ImportError, match=re.escape("pip install 'critbatch[testing]'")):
            importlib.import_module("critbatch.testing")
    finally:  # drop what the failed import left half-built; monkeypatch restores the rest
        for name in set(sys.modules) - before:
            if name.startswith("critbatch.testing"):
                del sys.modules[name]
