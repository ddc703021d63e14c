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

The format (cell splitting, the notebook JSON) is :mod:`vlmstudy.notebook_format`; this script
is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout: the package next to this file
    sys.path.insert(0, str(REPO))

# the format itself lives in the package (the graded exercises are written with it too)
from vlmstudy.notebook_format import METADATA, build, notebook_json, percent_cells  # noqa: E402

__all__ = ["METADATA", "build", "notebook_json", "percent_cells", "main"]

SOURCES = REPO / "tools" / "notebooks"
NOTEBOOKS = REPO / "notebooks"


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
