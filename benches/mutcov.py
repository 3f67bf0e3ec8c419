"""pytest plugin for benches/mutants.py: which lines of the package each test executes.

Loaded with ``-p mutcov`` (``benches/`` on ``sys.path``); writes ``$MUTCOV_OUT`` as JSON
``{nodeid: {file: [lines]}}``, with ``"<outside>"`` for lines run outside any test (imports,
collection, fixtures of wider scope are counted with the test that first set them up).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import defaultdict
from pathlib import Path

_PKG = str(Path(os.environ.get("MUTCOV_ROOT", ".")).resolve() / "python" / "critbatch")
_current = "<outside>"
_lines: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))


def _local(frame, event, arg):
    if event == "line":
        _lines[_current][frame.f_code.co_filename].add(frame.f_lineno)
    return _local


def _global(frame, event, arg):
    if frame.f_code.co_filename.startswith(_PKG):
        _lines[_current][frame.f_code.co_filename].add(frame.f_lineno)
        return _local
    return None


# Traced from the plugin's import on, so that the package's module-level lines, run when the
# conftest imports it (before any pytest_configure), count as run outside the tests. Only when
# asked for: pytest's doctest collection imports every module of benches/, this one included.
if os.environ.get("MUTCOV_OUT"):
    sys.settrace(_global)
    threading.settrace(_global)


def pytest_runtest_setup(item):
    global _current
    _current = item.nodeid


def pytest_runtest_teardown(item):
    global _current
    _current = "<outside>"


def pytest_unconfigure(config):
    sys.settrace(None)
    out = os.environ.get("MUTCOV_OUT")
    if out:
        root = str(Path(_PKG).parent.parent) + "/"
        data = {
            test: {f.replace(root, ""): sorted(ls) for f, ls in files.items()}
            for test, files in _lines.items()
        }
        Path(out).write_text(json.dumps(data))
