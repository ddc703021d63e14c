"""The course's notebook format: plain-Python "percent" sources to ``.ipynb`` JSON.

Every notebook of the course is written by :func:`notebook_json`: the lessons
(``tools/notebooks/NAME.py`` -> ``notebooks/NAME.ipynb``, by ``tools/build_notebooks.py``) and the
graded exercises (``tools/exercises/NN_name.py`` -> ``exercises/`` and ``solutions/``, by
:mod:`vlmstudy.grading.build`). A source is in the "percent" format (the one Jupytext and VS Code
use)::

    # %% [markdown]
    # # A title
    # Some prose.

    # %%
    import vlmstudy

The notebooks come out with no outputs and stable cell ids, so an unchanged source always gives
the same file byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import VlmStudyError

__all__ = ["METADATA", "NotebookSourceError", "percent_cells", "notebook_json", "build"]

#: The notebook metadata every built notebook carries (plus what a caller adds).
METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


class NotebookSourceError(VlmStudyError, ValueError):
    """A percent-format source that cannot be split into cells."""


def percent_cells(text: str) -> list[tuple[str, str]]:
    """The cells of a percent-format source: ``(kind, body)`` pairs, ``kind`` ``"markdown"`` or
    ``"code"``; markdown lines lose their leading ``# ``; empty cells are dropped."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise NotebookSourceError("text before the first '# %%' marker: start the file with '# %%' "
                                      "(a code cell) or '# %% [markdown]'.")
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in lines]
        body = "\n".join(lines).strip("\n")
        if body.strip():
            out.append((kind, body))
    return out


def notebook_json(stem: str, cells, metadata: dict | None = None) -> str:
    """The notebook JSON for ``cells``: ``(kind, body)`` pairs, or ``(kind, body, number)`` where
    ``number`` (default: the position) makes the stable cell id ``STEM-NN``. ``metadata`` is
    added to the notebook's. No outputs; the same cells always give the same bytes (the graded
    exercises of ``vlmstudy exercises build`` are written by this function too)."""
    out = []
    for i, cell in enumerate(cells):
        kind, body = cell[0], cell[1]
        number = cell[2] if len(cell) > 2 else i
        entry = {"cell_type": kind, "id": f"{stem}-{number:02d}".replace(".", "-")[:64], "metadata": {},
                 "source": body.splitlines(keepends=True)}
        if kind == "code":
            entry.update(execution_count=None, outputs=[])
        out.append(entry)
    nb = {"cells": out, "metadata": {**METADATA, **(metadata or {})}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def build(source: Path) -> str:
    """The notebook JSON for one percent-format source file."""
    source = Path(source)
    return notebook_json(source.stem, percent_cells(source.read_text(encoding="utf-8")))
