"""MkDocs hooks: serve the repository's example files, and list the theory pages in the nav.

* ``examples/figures/*.png``, ``examples/*.py`` and ``examples/specs/*.toml`` are added to the
  site under the same paths, so the gallery (and the README table it includes) links to the
  committed figures, scripts and specs without copies in ``docs/``.
* Every page under ``docs/theory/`` goes into a "Theory" section of the nav (``index.md`` or
  ``README.md`` first, then by file name), so new theory pages appear without editing
  ``mkdocs.yml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("examples/figures/*.png", "examples/*.py", "examples/specs/*.toml")


def on_config(config: Any) -> Any:
    """Append the theory pages to the nav."""
    theory = sorted(Path(config["docs_dir"], "theory").glob("*.md"),
                    key=lambda p: (p.name not in ("index.md", "README.md"), p.name))
    if theory and config["nav"] is not None:
        pages = [f"theory/{p.name}" for p in theory]
        at = next((i for i, item in enumerate(config["nav"])
                   if isinstance(item, dict) and "API reference" in item), len(config["nav"]))
        config["nav"].insert(at, {"Theory": pages})
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the example figures, scripts and specs to the site, at their repository paths."""
    for pattern in SHARED:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
