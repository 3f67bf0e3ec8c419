r"""A griffe extension: read critbatch's docstrings (Google style with reST roles) as Markdown.

critbatch's docstrings follow the Google style with Sphinx-flavoured inline markup, the way
``help()`` and doctest read them. For the API pages:

* ``Example:`` headers become ``Examples:``, so the doctests render as code blocks;
* ``:math:`...``` becomes ``\(...\)`` and a ``.. math::`` block becomes ``\[ ... \]``
  (MathJax through pymdownx.arithmatex);
* cross-reference roles (``:func:`x```, ``:class:`~x```, ...) become code spans.

The source is not changed: only the text griffe hands to mkdocstrings.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|ref|term):`~?([^`]+)`")


def _math_blocks(text: str) -> str:
    r"""``.. math::`` and its indented body -> a ``\[ ... \]`` display block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(".. math::"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        body = [stripped[len(".. math::"):].strip()]
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        math = "\n".join(b for b in body if b)
        out.extend([f"{indent}\\[", *(f"{indent}{m}" for m in math.split("\n")), f"{indent}\\]",
                    ""])
    return "\n".join(out)


def markdown(text: str) -> str:
    r"""Translate one docstring's reST inline markup (see the module docstring).

    Example:
        >>> markdown("Example:\n    >>> 1\n:math:`x^2` by :func:`~critbatch.fit.fit`")
        'Examples:\n    >>> 1\n\\(x^2\\) by `critbatch.fit.fit`'

    """
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _math_blocks(text)
    text = _MATH.sub(lambda m: f"\\({m.group(1)}\\)", text)
    return _ROLE.sub(lambda m: f"`{m.group(1)}`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring griffe loads with :func:`markdown`."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        """Translate the docstring of each loaded object."""
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
