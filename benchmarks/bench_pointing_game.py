"""Pointing game of notebook 09: does an attention / relevancy map's peak land on the object a
text names? Every method of ``vlmstudy.pointing.METHODS`` on the same ShapesWorld test scenes
with 2-3 objects (every object a target once), side by side with the chance level.

    python benchmarks/bench_pointing_game.py            # 200 scenes (about 500 objects), ~30 s on 2 idle cores
    python benchmarks/bench_pointing_game.py --n 40     # quicker

A hit: the map's maximum, bilinearly upsampled to 64 px, inside the target's mask dilated by 2 px
(``--tolerance``). Chance: the mean share of the image the dilated target covers. Writes
``benchmarks/results/pointing_game.json`` (``--out``) with the rows, the settings, the models'
training status and the machine. Same as ``python -m vlmstudy.pointing``.
"""

from __future__ import annotations

import sys

from vlmstudy import pointing


def main(argv=None) -> int:
    return pointing.main(sys.argv[1:] if argv is None else argv, prog="python benchmarks/bench_pointing_game.py")


if __name__ == "__main__":
    raise SystemExit(main())
