"""Reading a bar chart back from its pixels (tests/test_widgets.py, tests/test_browser.py): does the
PNG the learner sees hold the axes and one bar per probability, each as long as its value?"""

from __future__ import annotations

import io

import numpy as np

#: matplotlib's tab:orange (the best label) and tab:blue (the others), as probability_bars draws them.
ORANGE, BLUE = (255, 127, 14), (31, 119, 180)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True values."""
    runs, start = [], None
    for i, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def read_bars(png: bytes) -> dict:
    """The bars of a :func:`vlmstudy.plotting.probability_bars` chart found in ``png``.

    Returns ``{"size": (width, height), "bars": [(colour, length_px), ...] top to bottom,
    "axes": (left_x, right_x) of the axes frame or None}``. A bar is a band of rows holding
    orange or blue pixels; its length is counted from the left spine.
    """
    from PIL import Image

    with Image.open(io.BytesIO(png)) as decoded:
        rgb = np.asarray(decoded.convert("RGB")).astype(int)
    height, width, _ = rgb.shape
    dark = rgb.max(axis=2) < 90
    # the axes frame: the two columns with the longest runs of dark pixels (left and right spines)
    longest = np.array([max((b - a + 1 for a, b in _runs(dark[:, x])), default=0) for x in range(width)])
    axes = None
    if longest.max() > 0.25 * height:
        tall = np.flatnonzero(longest >= 0.8 * longest.max())
        if tall.size >= 2 and tall[-1] - tall[0] > 0.3 * width:
            axes = (int(tall[0]), int(tall[-1]))
    bars = []
    for name, colour in (("orange", ORANGE), ("blue", BLUE)):
        mask = np.abs(rgb - np.array(colour)).sum(axis=2) < 60
        for top, bottom in _runs(mask.sum(axis=1) > 2):
            if bottom - top < 2:  # anti-aliased text, not a bar
                continue
            cols = np.flatnonzero(mask[top:bottom + 1].any(axis=0))
            start = axes[0] if axes else int(cols[0])
            bars.append((top, name, int(cols[-1]) - start))
    return {"size": (width, height), "bars": [(name, length) for _, name, length in sorted(bars)], "axes": axes}


def check_probability_chart(png: bytes, probabilities: dict[str, float], x_max: float) -> dict:
    """Assert that ``png`` draws ``probabilities`` as probability_bars does (x axis from 0 to
    ``x_max``): a real picture, the axes frame, the best label as the one orange bar on top, and
    every bar of a visible value (> 0.03) as long as its value, within 3 % of the axes width.
    Returns what :func:`read_bars` found."""
    found = read_bars(png)
    width, height = found["size"]
    assert len(png) > 3000 and width > 200 and height > 80, f"a blank or tiny chart: {len(png)} bytes, {found}"
    assert found["axes"] is not None, f"no axes frame in the chart: {found}"
    span = found["axes"][1] - found["axes"][0]
    values = sorted((p for p in probabilities.values() if p > 0.03), reverse=True)
    bars = [bar for bar in found["bars"] if bar[1] > 0.01 * span]
    assert len(bars) == len(values), f"{len(bars)} bars drawn for {len(values)} visible values {values}: {found}"
    assert bars[0][0] == "orange" and all(name == "blue" for name, _ in bars[1:]), found
    for (_, length), p in zip(bars, values):
        assert abs(length / span - p / x_max) < 0.03, f"a bar of {length}/{span} px for p={p:.3f}: {found}"
    return found
