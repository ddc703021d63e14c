"""Build the course notebooks from their plain-Python sources.

Each notebook ``notebooks/NAME.ipynb`` is written from ``tools/notebooks/NAME.py`` in the
"percent" format (the one Jupytext and VS Code use)::

    # %% [markdown]
    # # A title
    # Some prose.

    # %%
    import vlmstudy

Sources diff and review like code; the notebooks come out with no outputs and stable cell ids,
so rebuilding an unchanged source gives the same file byte for byte.

    python tools/build_notebooks.py            # (re)write every notebook that has a source
    python tools/build_notebooks.py --check    # exit 1 if a notebook differs from its source
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "tools" / "notebooks"
NOTEBOOKS = REPO / "notebooks"

METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def _cells(text: str) -> list[tuple[str, str]]:
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError("text before the first '# %%' marker")
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
    return notebook_json(source.stem, _cells(source.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ from their source")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOURCES.glob("*.py")):
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        text = build(source)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(target)
        if not args.check:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO)}")
    if args.check and stale:
        print("out of date (run python tools/build_notebooks.py): " + ", ".join(str(t.relative_to(REPO)) for t in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
