"""Plotting helpers the notebooks call: small, named for what they show.

Every function returns the matplotlib ``Figure`` (works off-screen with ``MPLBACKEND=Agg``) and
checks its inputs: a label list of the wrong length raises ``ValueError`` saying which.
"""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def set_figsize(width: float = 6.0, height: float = 4.0) -> None:
    """Default figure size for the following plots (inches)."""
    plt.rcParams["figure.figsize"] = (width, height)


def show_images(images: Sequence, titles: Sequence[str] | None = None, rows: int | None = None,
                cols: int | None = None, scale: float = 2.2, wrap: int = 28):
    """Show images in a grid; ``titles`` are wrapped under each. Returns the figure."""
    n = len(images)
    if n == 0:
        raise ValueError("show_images needs at least one image")
    if cols is None:
        cols = min(n, 4) if rows is None else math.ceil(n / rows)
    rows = rows or math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale, rows * (scale + 0.35)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(np.asarray(img))
        if titles is not None and i < len(titles) and titles[i]:
            ax.set_title("\n".join(textwrap.wrap(str(titles[i]), wrap)), fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- helpers


def _array(x, what: str, ndim: int | None = None) -> np.ndarray:
    """A float numpy array from a tensor / array / list, checked for shape and finiteness."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be numbers (an array, tensor or list): {err}") from None
    if ndim is not None and arr.ndim != ndim:
        shape = "(rows, cols)" if ndim == 2 else "(n,)"
        raise ValueError(f"{what} must be {ndim}-dimensional {shape}, not shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{what} is empty; pass at least one value.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values; clean them first (np.nan_to_num).")
    return arr


def _labels(labels, n: int, what: str, counted: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str):
        raise ValueError(f"{what} must be a list of strings, not one string.")
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"{what} has {len(labels)} entries but there are {n} {counted}; pass one per {counted[:-1]}.")
    return labels


def _image_array(img) -> np.ndarray:
    from .images import load_image

    return np.asarray(load_image(img))


# ----------------------------------------------------------------------------- plots


def similarity_heatmap(matrix, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None,
                       title: str | None = None, annotate: bool | None = None, cmap: str = "viridis",
                       vmin: float | None = None, vmax: float | None = None, wrap: int = 24):
    """A matrix of similarities ``(rows, cols)`` (images x texts, say) as a labelled heatmap.

    Cells are written in when the matrix is small (``annotate=None``: up to 12 x 12); the best
    column of each row is outlined. Returns the figure.
    """
    m = _array(matrix, "matrix", ndim=2)
    rows = _labels(row_labels, m.shape[0], "row_labels", "rows")
    cols = _labels(col_labels, m.shape[1], "col_labels", "columns")
    if annotate is None:
        annotate = m.shape[0] <= 12 and m.shape[1] <= 12
    rows = ["\n".join(textwrap.wrap(r, 2 * wrap)) or r for r in rows]
    width = 1.5 + 0.6 * m.shape[1] + 0.065 * max(len(line) for r in rows for line in r.split("\n"))
    height = 1.0 + 0.45 * m.shape[0] + 0.05 * min(wrap, max(len(c) for c in cols))
    fig, ax = plt.subplots(figsize=(min(width, 14.0), min(height, 12.0)))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    slanted = max(len(c) for c in cols) > 6
    ax.set_xticks(range(m.shape[1]), ["\n".join(textwrap.wrap(c, wrap)) or c for c in cols],
                  rotation=45 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    ax.set_yticks(range(m.shape[0]), rows, fontsize=8)
    if annotate:
        lo, hi = im.get_clim()
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                dark = (m[i, j] - lo) < 0.5 * (hi - lo)
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    for i, j in enumerate(m.argmax(axis=1)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def probability_bars(probs, labels: Sequence[str], title: str | None = None, top: int | None = None,
                     color: str = "tab:blue", highlight: str = "tab:orange"):
    """Horizontal bars of class probabilities, highest first (``top``: only the best ``top``).

    The best class is drawn in ``highlight``. Values need not sum to 1 (SigLIP's per-label
    sigmoids do not). Returns the figure.
    """
    p = _array(probs, "probs")
    if p.ndim == 2 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 1:
        raise ValueError(f"probs must be one row of probabilities (n,), not shape {p.shape}; plot one image at a time.")
    names = _labels(labels, len(p), "labels", "probabilities")
    if top is not None and (not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1):
        raise ValueError(f"top must be a positive integer or None, not {top!r}.")
    order = np.argsort(-p, kind="stable")[: top or len(p)]
    vals, names = p[order], [names[i] for i in order]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.32 * len(vals)))
    colors = [highlight] + [color] * (len(vals) - 1)
    bars = ax.barh(range(len(vals)), vals, color=colors)
    ax.set_yticks(range(len(vals)), names, fontsize=9)
    ax.invert_yaxis()
    hi = max(1.0, float(vals.max())) if vals.min() >= 0 else float(vals.max())
    ax.set_xlim(min(0.0, float(vals.min())), hi * 1.12 if hi > 0 else hi)
    for bar, v in zip(bars, vals):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel("probability")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def search_strip(images: Sequence, scores, titles: Sequence[str] | None = None, query=None,
                 scale: float = 1.9, wrap: int = 22):
    """Search results as a row of thumbnails, best first, each with its rank and score.

    images: paths, PIL images or arrays. query: a text (shown as the title) or an image (shown
    first, framed). titles: optional captions under the scores. Returns the figure.
    """
    images = list(images)
    if not images:
        raise ValueError("search_strip needs at least one result image.")
    s = _array(scores, "scores").reshape(-1)
    if len(s) != len(images):
        raise ValueError(f"scores has {len(s)} entries but there are {len(images)} images; pass one score per image.")
    if titles is not None:
        titles = _labels(titles, len(images), "titles", "images")
    query_is_image = query is not None and not isinstance(query, str)
    images = [_image_array(img) for img in images]  # unreadable images fail before a figure exists
    query_image = _image_array(query) if query_is_image else None
    n = len(images) + int(query_is_image)
    labels = []
    for rank, score in enumerate(s, start=1):
        label = f"#{rank}  {score:.3f}"
        if titles is not None and titles[rank - 1]:
            label += "\n" + "\n".join(textwrap.wrap(titles[rank - 1], wrap))
        labels.append(label)
    lines = max(label.count("\n") + 1 for label in labels)
    fig, axes = plt.subplots(1, n, figsize=(n * scale, scale + 0.2 * lines + 0.5 * isinstance(query, str)),
                             squeeze=False)
    axes = list(axes.flat)
    if query_is_image:
        ax = axes.pop(0)
        ax.imshow(query_image)
        ax.set_title("query", fontsize=9, fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_edgecolor("tab:orange")
            side.set_linewidth(3)
    for ax, img, label in zip(axes, images, labels):
        ax.imshow(img)
        ax.axis("off")
        ax.set_title(label, fontsize=8)
    if isinstance(query, str):
        fig.suptitle(f"query: {query}", fontsize=10)
    fig.tight_layout()
    return fig


def training_curve(history: Sequence[dict], key: str | Sequence[str] = "loss", title: str | None = None,
                   smooth: int = 1, log: bool = False):
    """Plot ``key`` (or several keys) against ``"step"`` from a history such as
    ``[{"step": 0, "loss": 2.3}, {"step": 25, "loss": 1.9, "val_loss": 2.0}, ...]``.

    Entries without a key are skipped for that key (evaluation may run less often than logging).
    smooth: moving-average window drawn over the raw curve. log: log-scale y axis. Returns the figure.
    """
    history = list(history)
    if not history:
        raise ValueError("history is empty; pass the list of {'step': ..., key: ...} dicts training returned.")
    if not all(isinstance(h, dict) for h in history):
        raise ValueError("history must be a list of dicts like {'step': 0, 'loss': 2.3}.")
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise ValueError("key must name at least one metric, for example key='loss'.")
    if not isinstance(smooth, (int, np.integer)) or smooth < 1:
        raise ValueError(f"smooth must be a positive integer window (1: no smoothing), not {smooth!r}.")
    missing_step = sum("step" not in h for h in history)
    if missing_step:
        raise ValueError(f"{missing_step} history entries have no 'step'; every entry needs one.")
    available = sorted({k for h in history for k in h} - {"step"})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in keys:
        points = [(h["step"], h[name]) for h in history if name in h and h[name] is not None]
        if not points:
            plt.close(fig)
            raise ValueError(f"No history entry has {name!r}; the metrics there are: {', '.join(available) or 'none'}.")
        steps = np.asarray([p[0] for p in points], dtype=float)
        values = _array([p[1] for p in points], f"history[{name!r}]")
        if smooth > 1 and len(values) >= smooth:
            line, = ax.plot(steps, values, alpha=0.3)
            kernel = np.ones(smooth) / smooth
            ax.plot(steps[smooth - 1:], np.convolve(values, kernel, mode="valid"), color=line.get_color(), label=name)
        else:
            ax.plot(steps, values, marker="o" if len(values) < 30 else None, markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
    if log:
        ax.set_yscale("log")
    if len(keys) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title or ", ".join(keys))
    fig.tight_layout()
    return fig


def upsample_heatmap(heatmap, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a patch-resolution map ``(h, w)`` to ``size = (H, W)`` (pixel centres
    aligned, as ``torch.nn.functional.interpolate(..., align_corners=False)``)."""
    import torch
    import torch.nn.functional as F

    h = _array(heatmap, "heatmap", ndim=2)
    t = torch.from_numpy(h).float()[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay_heatmap(image, heatmap, alpha: float = 0.5, cmap: str = "jet", title: str | None = None,
                    normalize: bool = True, colorbar: bool = False):
    """Overlay a patch-resolution map ``(h, w)`` (attention, relevancy ...) on ``image``.

    The map is upsampled bilinearly to the image size and, with ``normalize``, scaled to [0, 1]
    (min to max). alpha: opacity of the map (0: image only, 1: map only). image: path, PIL image
    or array. Returns the figure (``fig.axes[0]`` is the image axis).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number between 0 (image only) and 1 (map only), not {alpha!r}.")
    img = _image_array(image)
    heat = upsample_heatmap(heatmap, img.shape[:2])
    if normalize:
        lo, hi = float(heat.min()), float(heat.max())
        heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    fig, ax = plt.subplots(figsize=(4, 4 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    im = ax.imshow(heat, cmap=cmap, alpha=float(alpha), vmin=0.0 if normalize else None,
                   vmax=1.0 if normalize else None, interpolation="nearest")
    ax.axis("off")
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
