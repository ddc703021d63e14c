"""Write the model-zoo table into README.md between <!-- zoo-table --> markers.

    python tools/update_readme_zoo.py           # rewrite the block
    python tools/update_readme_zoo.py --check   # exit 1 if README's block is out of date

The table is ``vlmstudy.zoo_table(markdown=True, metrics=True)``: numbers come from the model
cards and from building the real architectures on the meta device, never typed by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- zoo-table -->\n).*?(<!-- /zoo-table -->)", re.S)


def rendered() -> str:
    from vlmstudy.zoo.table import zoo_table

    text = README.read_text(encoding="utf-8")
    return BLOCK.sub(lambda m: m.group(1) + zoo_table(markdown=True, metrics=True) + "\n" + m.group(2), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    new = rendered()
    if args.check:
        if new != README.read_text(encoding="utf-8"):
            print("README.md's zoo table is out of date: run python tools/update_readme_zoo.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
