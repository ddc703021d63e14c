"""Plotting helpers the notebooks call: small, named for what they show.

Every function returns the matplotlib ``Figure`` (works off-screen with ``MPLBACKEND=Agg``) and
checks its inputs: a label list of the wrong length raises :class:`~vlmstudy.errors.PlotError`
(a ``ValueError``) saying which.
"""

from __future__ import annotations

import contextvars
import math
import textwrap
from collections.abc import Sequence
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np

from .errors import PlotError

#: True inside :func:`offscreen`: the figures are built without pyplot.
_OFFSCREEN = contextvars.ContextVar("vlmstudy_plotting_offscreen", default=False)


@contextmanager
def offscreen():
    """Inside this block the plotting functions build their figures without pyplot: a bare
    ``Figure`` on its own Agg canvas, never registered with pyplot's figure manager, whatever the
    backend. Widget callbacks draw this way (then :func:`figure_png`): the notebook's inline
    backend (its post-execute ``close('all')``, its queue of figures to show, interactive-mode
    redraws while the figure is being built) and any "current figure" code cannot touch a chart
    that is half drawn, and nothing is shown a second time below the cell."""
    token = _OFFSCREEN.set(True)
    try:
        yield
    finally:
        _OFFSCREEN.reset(token)


def _subplots(*args, figsize=None, **kwargs):
    """``plt.subplots``, or inside :func:`offscreen` the same figure and axes built without pyplot."""
    if not _OFFSCREEN.get():
        return plt.subplots(*args, figsize=figsize, **kwargs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def set_figsize(width: float = 6.0, height: float = 4.0) -> None:
    """Default figure size for the following plots (inches)."""
    plt.rcParams["figure.figsize"] = (width, height)


def show_images(images: Sequence, titles: Sequence[str] | None = None, rows: int | None = None,
                cols: int | None = None, scale: float = 2.2, wrap: int = 28):
    """Show images in a grid; ``titles`` are wrapped under each. Returns the figure."""
    n = len(images)
    if n == 0:
        raise PlotError("show_images needs at least one image")
    if cols is None:
        cols = min(n, 4) if rows is None else math.ceil(n / rows)
    rows = rows or math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(cols * scale, rows * (scale + 0.35)), squeeze=False)
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
        raise PlotError(f"{what} must be numbers (an array, tensor or list): {err}") from None
    if ndim is not None and arr.ndim != ndim:
        shape = "(rows, cols)" if ndim == 2 else "(n,)"
        raise PlotError(f"{what} must be {ndim}-dimensional {shape}, not shape {arr.shape}.")
    if arr.size == 0:
        raise PlotError(f"{what} is empty; pass at least one value.")
    if not np.isfinite(arr).all():
        raise PlotError(f"{what} contains NaN or infinite values; clean them first (np.nan_to_num).")
    return arr


def _labels(labels, n: int, what: str, counted: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str):
        raise PlotError(f"{what} must be a list of strings, not one string.")
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise PlotError(f"{what} has {len(labels)} entries but there are {n} {counted}; pass one per {counted[:-1]}.")
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
    fig, ax = _subplots(figsize=(min(width, 14.0), min(height, 12.0)))
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
        raise PlotError(f"probs must be one row of probabilities (n,), not shape {p.shape}; plot one image at a time.")
    names = _labels(labels, len(p), "labels", "probabilities")
    if top is not None and (not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1):
        raise PlotError(f"top must be a positive integer or None, not {top!r}.")
    order = np.argsort(-p, kind="stable")[: top or len(p)]
    vals, names = p[order], [names[i] for i in order]
    fig, ax = _subplots(figsize=(6, 0.6 + 0.32 * len(vals)))
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
        raise PlotError("search_strip needs at least one result image.")
    s = _array(scores, "scores").reshape(-1)
    if len(s) != len(images):
        raise PlotError(f"scores has {len(s)} entries but there are {len(images)} images; pass one score per image.")
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
    fig, axes = _subplots(1, n, figsize=(n * scale, scale + 0.2 * lines + 0.5 * isinstance(query, str)),
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
        raise PlotError("history is empty; pass the list of {'step': ..., key: ...} dicts training returned.")
    if not all(isinstance(h, dict) for h in history):
        raise PlotError("history must be a list of dicts like {'step': 0, 'loss': 2.3}.")
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise PlotError("key must name at least one metric, for example key='loss'.")
    if not isinstance(smooth, (int, np.integer)) or smooth < 1:
        raise PlotError(f"smooth must be a positive integer window (1: no smoothing), not {smooth!r}.")
    missing_step = sum("step" not in h for h in history)
    if missing_step:
        raise PlotError(f"{missing_step} history entries have no 'step'; every entry needs one.")
    available = sorted({k for h in history for k in h} - {"step"})
    fig, ax = _subplots(figsize=(6, 3.5))
    for name in keys:
        points = [(h["step"], h[name]) for h in history if name in h and h[name] is not None]
        if not points:
            plt.close(fig)
            raise PlotError(f"No history entry has {name!r}; the metrics there are: {', '.join(available) or 'none'}.")
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
        raise PlotError(f"alpha must be a number between 0 (image only) and 1 (map only), not {alpha!r}.")
    img = _image_array(image)
    heat = upsample_heatmap(heatmap, img.shape[:2])
    if normalize:
        lo, hi = float(heat.min()), float(heat.max())
        heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    fig, ax = _subplots(figsize=(4, 4 * img.shape[0] / img.shape[1]))
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


def probability_panels(panels: dict, labels: Sequence[str], top: int | None = 8, title: str | None = None,
                       show_sum: bool = True, color: str = "tab:blue", highlight: str = "tab:orange"):
    """Several rows of probabilities over the same ``labels``, one panel each, side by side.

    panels: ``{"CLIP (softmax)": probs, "SigLIP (sigmoid)": probs, ...}``, each ``(n,)``. Every
    panel shows the same labels in the same order, so the panels compare bar by bar: ordered by
    their highest value in any panel (``top``: only the best ``top``, so each panel's best label
    is shown as long as ``top`` is at least the number of panels). show_sum: write each row's total
    in its title (a softmax's is 1, independent sigmoids' need not be). Returns the figure.
    """
    if not isinstance(panels, dict) or not panels:
        raise PlotError("panels must be a non-empty dict {title: probabilities}.")
    rows = {str(k): _array(v, f"panels[{k!r}]").reshape(-1) for k, v in panels.items()}
    n = len(next(iter(rows.values())))
    bad = [k for k, v in rows.items() if len(v) != n]
    if bad:
        raise PlotError(f"every panel needs {n} values (one per label); {bad[0]!r} has {len(rows[bad[0]])}.")
    names = _labels(labels, n, "labels", "probabilities")
    if top is not None and (not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1):
        raise PlotError(f"top must be a positive integer or None, not {top!r}.")
    order = np.argsort(-np.max(np.stack(list(rows.values())), axis=0), kind="stable")[: top or n]
    fig, axes = _subplots(1, len(rows), figsize=(3.4 * len(rows) + 1.2, 0.8 + 0.3 * len(order)),
                             sharey=True, squeeze=False)
    for ax, (name, p) in zip(axes.flat, rows.items()):
        vals = p[order]
        best = int(np.argmax(vals))
        ax.barh(range(len(vals)), vals, color=[highlight if i == best else color for i in range(len(vals))])
        ax.set_xlim(0, max(1.0, float(vals.max())) * 1.15)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
        ax.set_title(f"{name}\n(row sums to {p.sum():.3f})" if show_sum else name, fontsize=9)
        ax.set_xlabel("probability")
    axes.flat[0].set_yticks(range(len(order)), [names[i] for i in order], fontsize=8)
    axes.flat[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def temperature_bars(similarities, labels: Sequence[str], scales: Sequence[float] = (1.0, 10.0, 100.0),
                     top: int | None = 8, title: str | None = None):
    """What the temperature does: ``softmax(scale * similarities)`` of one image, one panel per
    logit scale (scale = 1 / temperature). Small scales give nearly uniform probabilities even
    when the best label is clear; large scales give almost all the mass to it. Returns the figure."""
    import torch

    sims = torch.as_tensor(_array(similarities, "similarities")).reshape(-1)
    if not scales:
        raise PlotError("scales must list at least one logit scale, for example (1, 10, 100).")
    if any(float(s) <= 0 for s in scales):
        raise PlotError(f"scales must be positive (scale = 1 / temperature), not {list(scales)}.")
    panels = {f"logit scale {float(s):g} (T = {1 / float(s):.3g})": (float(s) * sims).softmax(-1).numpy()
              for s in scales}
    return probability_panels(panels, labels, top=top, title=title, show_sum=False)


def curves(x, series: dict, xlabel: str = "x", ylabel: str = "value", title: str | None = None,
           logx: bool = False, logy: bool = False, styles: dict | None = None):
    """Line plot of several named series over the same ``x`` (markers on every point).

    series: ``{"CLIP loss": values, "log(batch size)": values, ...}``, each as long as ``x``;
    styles: optional matplotlib keyword arguments per series (``{"log(batch size)": {"ls": "--"}}``).
    Returns the figure.
    """
    xs = _array(x, "x", ndim=1)
    if not isinstance(series, dict) or not series:
        raise PlotError("series must be a non-empty dict {name: values}.")
    fig, ax = _subplots(figsize=(6, 3.6))
    for name, values in series.items():
        ys = _array(values, f"series[{name!r}]", ndim=1)
        if len(ys) != len(xs):
            plt.close(fig)
            raise PlotError(f"series {name!r} has {len(ys)} values but x has {len(xs)}; pass one per x.")
        ax.plot(xs, ys, marker="o", markersize=4, label=str(name), **(styles or {}).get(name, {}))
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_hits(hits: Sequence, images: Sequence, query=None, titles: Sequence[str] | None = None,
              scale: float = 1.9):
    """Thumbnails of search hits, best first (see :func:`search_strip`).

    hits: one query's hits, ``result[0]`` of a :class:`vlmstudy.retrieval.SearchResult`;
    images: the indexed images in index order (each hit's ``position`` picks its image);
    query: the query text or image; titles: one per hit (default: each hit's metadata when it is
    a string, such as a caption). Returns the figure.
    """
    hits = list(hits)
    if not hits:
        raise PlotError("show_hits needs at least one hit; pass result[0] of a search.")
    bad = [h.position for h in hits if not 0 <= h.position < len(images)]
    if bad:
        raise PlotError(f"hit position {bad[0]} is outside images (length {len(images)}); pass the images in the "
                         f"order they were indexed.")
    if titles is None:
        titles = [h.metadata if isinstance(h.metadata, str) else "" for h in hits]
    return search_strip([images[h.position] for h in hits], [h.score for h in hits], titles=titles, query=query,
                        scale=scale)


# --- quantization (notebook 10; data from vlmstudy.quantize) -------------------------------------

_PRECISION_COLORS = {"fp32": "tab:gray", "fp16": "tab:blue", "bf16": "tab:cyan", "int8": "tab:orange",
                     "nf4": "tab:green", "nf4-dq": "tab:olive", "dynamic-int8": "tab:red"}


def precision_bars(rows: Sequence[dict], metrics: Sequence[tuple[str, str]] = (
        ("footprint_mb", "footprint (MB)"), ("latency_ms", "latency per batch (ms)"), ("accuracy", "accuracy")),
                   title: str | None = None):
    """One panel per metric, one bar per precision: rows from :func:`vlmstudy.precision_benchmark.compare_precisions`.

    Each bar is labelled with its value and, when the row has it, its ratio to the baseline
    (``x0.18``). Rows with an ``error`` are left out. Returns the figure.
    """
    rows = [r for r in rows if "error" not in r]
    if not rows:
        raise PlotError("precision_bars needs at least one measured row (every row has an 'error').")
    missing = [k for k, _ in metrics if any(k not in r for r in rows)]
    if missing:
        raise PlotError(f"rows lack {missing[0]!r}; pass rows from vlmstudy.precision_benchmark.compare_precisions().")
    ratio_of = {"footprint_mb": "size_ratio", "latency_ms": "latency_ratio"}
    names = [r["precision"] for r in rows]
    fig, axes = _subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        vals = [float(r[key]) for r in rows]
        bars = ax.bar(range(len(rows)), vals, color=[_PRECISION_COLORS.get(n, "tab:purple") for n in names])
        ax.set_xticks(range(len(rows)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, max(vals) * 1.25 if max(vals) > 0 else 1)
        for bar, r, v in zip(bars, rows, vals):
            text = f"{v:.3g}" if key != "accuracy" else f"{v:.3f}"
            if ratio_of.get(key) in r:
                text += f"\nx{r[ratio_of[key]]:.2f}"
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), text, ha="center", va="bottom", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def estimate_bars(rows: Sequence[dict], precisions: Sequence[str] = ("fp16", "int8", "nf4-dq"), log: bool = True,
                  title: str | None = None, limits: Sequence[tuple[float, str]] = ((8, "8 GB"), (24, "24 GB"))):
    """Grouped bars: estimated GB of each real architecture at each precision (rows from
    :func:`vlmstudy.quantize.estimate_table`), with dashed lines at common memory sizes. Returns the figure."""
    rows = list(rows)
    if not rows:
        raise PlotError("estimate_bars needs at least one row from vlmstudy.quantize.estimate_table().")
    missing = [p for p in precisions if any(p not in r for r in rows)]
    if missing:
        raise PlotError(f"rows have no {missing[0]!r} column; call estimate_table(precisions=...) with it.")
    width = 0.8 / len(precisions)
    fig, ax = _subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 3.8))
    for i, p in enumerate(precisions):
        xs = [j + (i - (len(precisions) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [r[p] for r in rows], width, label=p, color=_PRECISION_COLORS.get(p, "tab:purple"))
    for value, label in limits:
        ax.axhline(value, color="k", ls="--", lw=0.8, alpha=0.6)
        ax.text(len(rows) - 0.5, value, f" {label}", va="bottom", ha="right", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("GB (weights + scales)")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def gpu_bars(table: dict, title: str | None = None):
    """Memory and tokens/s per precision of :func:`vlmstudy.precision_benchmark.gpu_results`, titled with its
    ``source`` (measured here, or the reference figures). Returns the figure."""
    rows = [r for r in table.get("rows", []) if "skipped" not in r]
    if not rows:
        raise PlotError("gpu_bars needs a table with measured rows (vlmstudy.precision_benchmark.gpu_results()).")
    names = [r["precision"] for r in rows]
    colors = [_PRECISION_COLORS.get(n, "tab:purple") for n in names]
    fig, axes = _subplots(1, 2, figsize=(8, 3.4))
    for ax, key, label, fmt in ((axes[0], "memory_footprint_gb", "get_memory_footprint (GB)", "{:.2f}"),
                                (axes[1], "tokens_per_s", "generate bs1 (tokens/s)", "{:.1f}")):
        vals = [float(r[key]) for r in rows]
        bars = ax.bar(names, vals, color=colors)
        for bar, v in zip(bars, vals):
            ax.text(bar.get_x() + bar.get_width() / 2, v, fmt.format(v), ha="center", va="bottom", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, max(vals) * 1.2)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"LLaVA-1.5-7B, {table.get('device', '?')}\n{table.get('source', '')}", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- generative models (05-08)

def accuracy_bars(values: dict, title: str | None = None, ylabel: str = "accuracy", target: float | None = None):
    """Bars of accuracies in [0, 1]: ``{"colour": 0.9, ...}`` (one series) or
    ``{"LLaVA-1.5": {"colour": 0.9, ...}, "LLaVA-NeXT": {...}}`` (grouped, one colour per series).
    ``target``: a dashed line at the goal. Returns the figure."""
    if not values:
        raise PlotError("accuracy_bars needs at least one value.")
    series = values if all(isinstance(v, dict) for v in values.values()) else {"": values}
    groups = list(dict.fromkeys(k for s in series.values() for k in s))
    width = 0.8 / len(series)
    fig, ax = _subplots(figsize=(max(4.5, 0.9 * len(groups) * max(1, len(series) / 1.5) + 1.5), 3.4))
    for i, (name, s) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        vals = [float(s.get(g, float("nan"))) for g in groups]
        bars = ax.bar(xs, vals, width, label=name or None)
        for bar, v in zip(bars, vals):
            if np.isfinite(v):
                ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=0.8, alpha=0.6)
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def token_strip(tokens: Sequence[str], highlight: str = "<image>", title: str | None = None, per_row: int = 24):
    """A prompt as the model reads it: one cell per token, ``highlight`` tokens (the image
    tokens) shaded and counted, text tokens written in. ``per_row`` cells per row keep the
    figure about 9 inches wide, so a notebook shows it unscaled and the 8 pt labels stay
    readable. Returns the figure."""
    tokens = [str(t) for t in tokens]
    if not tokens:
        raise PlotError("token_strip needs at least one token.")
    rows = math.ceil(len(tokens) / per_row)
    fig, ax = _subplots(figsize=(min(16.0, 0.34 * min(per_row, len(tokens)) + 1.0), 0.85 * rows + 0.7))
    for i, tok in enumerate(tokens):
        r, c = divmod(i, per_row)
        special = tok == highlight
        ax.add_patch(plt.Rectangle((c, -r), 0.95, 0.9, facecolor="#fce5cd" if special else "#d9ead3",
                                   edgecolor="#888888", linewidth=0.4))
        if not special:
            ax.text(c + 0.47, -r + 0.45, tok, ha="center", va="center", fontsize=8, rotation=90, color="#222222")
    n = sum(t == highlight for t in tokens)
    ax.set_xlim(-0.2, min(per_row, len(tokens)) + 0.2)
    ax.set_ylim(-rows + 0.8, 1.0)
    ax.axis("off")
    ax.set_title(title or f"{len(tokens)} tokens, {n} of them {highlight} (shaded)", fontsize=9)
    fig.tight_layout()
    return fig


def anyres_tiles(image, layout: dict, title: str | None = None):
    """LLaVA-NeXT's any-resolution split of ``image``, from :func:`vlmstudy.tasks.anyres_layout`:
    the picture, the picture resized into the chosen grid resolution with the tile grid drawn
    on it, and the downscaled overview image the model also sees. Returns the figure."""
    from PIL import Image

    from .images import load_image

    img = load_image(image)
    best_w, best_h = layout["best_resolution"]
    tile_w, tile_h = layout["tile_size"]
    rows, cols = layout["grid"]
    rw, rh = layout["resized"]
    canvas = Image.new("RGB", (best_w, best_h), (0, 0, 0))
    canvas.paste(img.resize((rw, rh), Image.BICUBIC), ((best_w - rw) // 2, (best_h - rh) // 2))
    base = img.resize((tile_w, tile_h), Image.BICUBIC)
    fig, axes = _subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1, 0.6]})
    axes[0].imshow(np.asarray(img))
    axes[0].set_title(f"the picture: {img.size[0]} x {img.size[1]}", fontsize=9)
    axes[1].imshow(np.asarray(canvas), extent=(0, best_w, best_h, 0))
    for c in range(1, cols):
        axes[1].axvline(c * tile_w, color="red", lw=2)
    for r in range(1, rows):
        axes[1].axhline(r * tile_h, color="red", lw=2)
    axes[1].add_patch(plt.Rectangle((0, 0), best_w, best_h, fill=False, edgecolor="red", lw=2))
    axes[1].set_title(f"resized into {best_w} x {best_h}: {rows} x {cols} tiles of {tile_w} px", fontsize=9)
    axes[2].imshow(np.asarray(base))
    axes[2].set_title(f"+ overview, {tile_w} x {tile_h}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{layout['crops']} crops -> {layout['image_tokens']} image tokens", fontsize=10)
    fig.tight_layout()
    return fig


# --- attention maps (notebook 09; maps from vlmstudy.attention) ----------------------------------

def heatmap_grid(images, maps, titles: Sequence[str] | None = None, cols: int | None = None, alpha: float = 0.5,
                 cmap: str = "jet", scale: float = 1.8, title: str | None = None, show_image: bool = False):
    """Several patch-resolution maps ``(n, h, w)`` overlaid on their images, one panel each.

    images: one image for every map (a word's map on the same picture) or one per map. Each map
    is upsampled bilinearly and scaled to [0, 1] as in :func:`overlay_heatmap` (drawn more opaque
    where it is high, so the picture shows through elsewhere); its peak is marked with a white ``+``.
    show_image: a first panel with the bare image. Returns the figure.
    """
    m = _array(maps, "maps")
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise PlotError(f"maps must be (n, h, w) (one map per panel), not shape {m.shape}.")
    if isinstance(images, (list, tuple)):
        imgs = [_image_array(im) for im in images]
    else:
        imgs = [_image_array(images)]
    if len(imgs) not in (1, len(m)):
        raise PlotError(f"got {len(imgs)} images for {len(m)} maps; pass one image, or one per map.")
    imgs = imgs * len(m) if len(imgs) == 1 else imgs
    if titles is not None:
        titles = _labels(titles, len(m), "titles", "maps")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= alpha <= 1.0:
        raise PlotError(f"alpha must be a number between 0 (image only) and 1 (map only), not {alpha!r}.")
    n = len(m) + int(show_image)
    cols = cols or min(n, 6)
    rows = math.ceil(n / cols)
    wrapped = ["\n".join(textwrap.wrap(t, 20)) for t in titles] if titles is not None else []
    lines = max([t.count("\n") + 1 for t in wrapped if t] or [0])
    fig, axes = _subplots(rows, cols, figsize=(cols * scale, rows * (scale + 0.2 + 0.17 * lines) + 0.3 * bool(title)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    panels = list(axes.flat)
    if show_image:
        panels.pop(0).imshow(imgs[0])
        axes.flat[0].set_title("image", fontsize=9)
    for i, (ax, img, heat) in enumerate(zip(panels, imgs, m)):
        up = upsample_heatmap(heat, img.shape[:2])
        lo, hi = float(up.min()), float(up.max())
        up = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
        ax.imshow(img)
        # opacity grows with the map's value: the picture stays visible where the map is low
        ax.imshow(up, cmap=cmap, alpha=float(alpha) * (0.25 + 0.75 * up), vmin=0.0, vmax=1.0)
        r, c = np.unravel_index(int(np.argmax(up)), up.shape)
        ax.plot([c], [r], marker="+", color="white", markersize=10, markeredgewidth=2)
        if wrapped and wrapped[i]:
            ax.set_title(wrapped[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pointing_bars(rows: Sequence[dict], title: str | None = None):
    """Pointing-game accuracy per method (rows of :func:`vlmstudy.pointing.pointing_game_table`),
    with 95% intervals where the rows have them and the chance level as a dashed line. Methods
    that read the text are blue, text-blind baselines grey. Returns the figure."""
    rows = [r for r in rows if r.get("hits") is not None]
    if not rows:
        raise PlotError("pointing_bars needs at least one scored row from pointing_game_table().")
    names = [r["method"] for r in rows]
    acc = np.array([float(r["accuracy"]) for r in rows])
    colors = ["tab:blue" if r.get("text_conditioned", True) else "tab:gray" for r in rows]
    fig, ax = _subplots(figsize=(7, 0.7 + 0.45 * len(rows)))
    ys = np.arange(len(rows))
    err = None
    if all(r.get("ci95") for r in rows):
        err = np.array([[a - r["ci95"][0], r["ci95"][1] - a] for a, r in zip(acc, rows)]).T
    ax.barh(ys, acc, xerr=err, color=colors, capsize=3, ecolor="0.3")
    for y, a in zip(ys, acc):
        ax.text(0.01, y, f"{a:.2f}", va="center", ha="left", fontsize=8, color="white", fontweight="bold")
    chance = float(np.mean([r["chance"] for r in rows]))
    ax.axvline(chance, color="k", ls="--", lw=1, label=f"chance ({chance:.2f})")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(ys, ["\n".join(textwrap.wrap(n, 34)) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("pointing accuracy (map's peak on the named object)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def task_model_chart(rows: Sequence[dict], precision: str = "nf4", title: str | None = None):
    """The task -> model selection chart: tasks down, models across (smallest real checkpoint
    first), a dot where the model does the task, coloured by the real checkpoint's memory at
    ``precision``; a ring marks the smallest model for each task (the first one to try).
    ``rows``: :func:`vlmstudy.compare.model_comparison` rows (need ``name``, ``tasks``,
    ``real_fp16_gb`` and ``real_<precision>_gb``)."""
    from matplotlib.colors import LogNorm

    key = f"real_{precision}_gb"
    if not rows or any(key not in r or "real_fp16_gb" not in r for r in rows):
        raise PlotError(f"task_model_chart needs model_comparison rows with 'real_fp16_gb' and {key!r}")
    ordered = sorted(rows, key=lambda r: r[key])
    tasks = sorted({t for r in rows for t in r["tasks"]}, key=lambda t: min(r[key] for r in rows if t in r["tasks"]))
    smallest = {t: next(r["name"] for r in ordered if t in r["tasks"]) for t in tasks}
    fig, ax = _subplots(figsize=(1.1 * len(ordered) + 2.5, 0.55 * len(tasks) + 2.2))
    norm = LogNorm(vmin=min(r[key] for r in rows), vmax=max(r[key] for r in rows))
    for x, r in enumerate(ordered):
        for y, task in enumerate(tasks):
            if task in r["tasks"]:
                ax.scatter(x, y, s=260, c=[r[key]], cmap="viridis", norm=norm, zorder=3)
                if smallest[task] == r["name"]:
                    ax.scatter(x, y, s=560, facecolors="none", edgecolors="crimson", linewidths=2, zorder=4)
    ax.set_xticks(range(len(ordered)))
    ax.set_xticklabels([f"{r['name']}\n{r['real_fp16_gb']:.1f} GB fp16\n{r[key]:.1f} GB {precision}" for r in ordered],
                       fontsize=7)
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(tasks, fontsize=9)
    ax.set_xlim(-0.6, len(ordered) - 0.4)
    ax.set_ylim(len(tasks) - 0.5, -0.5)
    ax.grid(True, alpha=0.3, zorder=0)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(mappable, ax=ax, label=f"real checkpoint at {precision} (GB)", shrink=0.8, format="%.1f")
    ax.set_title(title or "which model for which task (ring: the smallest that does it)", fontsize=10)
    fig.tight_layout()
    return fig


# --- pictures as PNG bytes (widgets, HTML reports) ------------------------------------------------


def figure_png(fig, dpi: int = 90, close: bool = True) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image`` or an HTML report); ``close``
    releases it, so that a figure drawn inside a widget callback is never shown a second time."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buffer.getvalue()


def image_png(image, size: int | None = None) -> bytes:
    """An image (path, PIL image, array, bytes) as PNG bytes, scaled so its longer side is
    ``size`` pixels when given (the 64 px ShapesWorld pictures are enlarged without blurring)."""
    import io

    from PIL import Image

    from .images import load_image

    img = load_image(image)
    if size is not None:
        scale = size / max(img.size)
        new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(new, Image.NEAREST if scale > 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
