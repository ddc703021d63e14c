"""A second, independently written ShapesWorld renderer, used only for evaluation.

A stand-in that is perfect on the pictures it was trained on may only have learned that one
renderer's quirks. This module draws the same scenes (same objects, colour names, shape names,
positions) with different code: shapes are point-in-shape tests on a numpy grid instead of PIL
polygons, with other proportions (a fatter star, a thinner cross, a narrower diamond), its own
shade of every named colour, other sizes and placements, pale backgrounds with a vignette or
paper grain, and sometimes a dark border or a drop shadow. No training code imports it, so every
metric measured on its pictures is a measure of generalisation::

    from vlmstudy import second_renderer, shapes
    scene = shapes.make_scenes("test", 1)[0]
    second_renderer.render(scene, 64)      # PIL image, same caption as scene.render()
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: This renderer's own shade of every named colour (same names as ``shapes.ALL_COLORS``).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (198, 28, 48), "green": (58, 142, 42), "blue": (30, 100, 200), "yellow": (242, 196, 12),
    "orange": (236, 118, 14), "purple": (118, 46, 168), "pink": (236, 118, 180), "cyan": (20, 186, 196),
    "brown": (110, 66, 30),
}
#: Pale backgrounds unlike the first renderer's near-white tints.
BACKGROUNDS = ((236, 232, 214), (222, 230, 238), (232, 226, 236), (226, 236, 224), (244, 240, 232))
_SAMPLES = 3  # supersampling per axis for anti-aliasing


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of points ``(u, v)`` (object frame: centre 0, radius 1, y down) inside ``shape``."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == "diamond":
        return np.abs(u) / 0.7 + np.abs(v) <= 1.0
    if shape == "cross":
        arm = 0.3
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1.0))
    if shape in ("triangle", "star", "hexagon"):
        angle = np.arctan2(v, u)
        dist = np.hypot(u, v)
        if shape == "hexagon":
            sector = np.pi / 3
            local = (angle % sector) - sector / 2
            return dist * np.cos(local) <= np.cos(sector / 2)
        if shape == "triangle":  # equilateral, apex up, as a polygon of three half-planes
            inside = np.ones_like(u, dtype=bool)
            for deg in (90, 210, 330):  # outward normals of the three sides
                a = np.radians(deg)
                inside &= u * np.cos(a) + v * np.sin(a) <= 0.5
            return inside
        # star: five points, inner radius 0.5 of the outer, apex up
        k = (angle + np.pi / 2) % (2 * np.pi / 5) - np.pi / 5
        inner, outer = 0.5, 1.0
        # radius of the star's edge at angle k from a point: interpolate between tip and notch
        t = np.abs(k) / (np.pi / 5)
        edge = 1.0 / ((1 - t) / outer + t / inner)
        return dist <= edge
    raise ValueError(f"the second renderer cannot draw {shape!r}")


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    base = np.asarray(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], np.float32)
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1) - 0.5
    if rng.random() < 0.5:  # vignette
        canvas = base[None, None] - (np.hypot(xx, yy) ** 2 * rng.uniform(20, 45))[..., None]
    else:  # paper grain
        canvas = base[None, None] + rng.normal(0, 5, (n, n, 1))
    return canvas


def render(scene, size: int = 64) -> Image.Image:
    """Draw ``scene`` (a :class:`vlmstudy.shapes.Scene`) as a ``size`` x ``size`` RGB image."""
    rng = np.random.default_rng([scene.texture_seed, 2024])
    n = size * _SAMPLES
    canvas = _background(rng, n)
    ys, xs = (np.mgrid[0:n, 0:n] + 0.5) / n
    for obj in scene.objects:
        cx = obj.x + rng.uniform(-0.045, 0.045)
        cy = obj.y + rng.uniform(-0.045, 0.045)
        r = obj.radius * rng.uniform(0.9, 1.15)
        a = np.radians(rng.uniform(-12, 12)) if obj.shape != "circle" else 0.0
        du, dv = (xs - cx) / r, (ys - cy) / r
        u, v = du * np.cos(a) + dv * np.sin(a), -du * np.sin(a) + dv * np.cos(a)
        color = np.asarray(PALETTE[obj.color], np.float32) + rng.uniform(-10, 10, 3)
        style = rng.choice(["flat", "border", "shadow"], p=[0.5, 0.25, 0.25])
        if style == "shadow":
            off = 0.06
            shadow = _inside(obj.shape, u - off, v - off)
            canvas[shadow] = canvas[shadow] * 0.75
        body = _inside(obj.shape, u, v)
        if style == "border":
            canvas[body] = color * 0.55
            core = _inside(obj.shape, u * 1.18, v * 1.18)
            canvas[core] = color
        else:
            canvas[body] = color
    canvas = np.clip(canvas, 0, 255)
    # box-filter the supersampled grid down to the output size
    small = canvas.reshape(size, _SAMPLES, size, _SAMPLES, 3).mean(axis=(1, 3))
    return Image.fromarray(small.round().astype(np.uint8), "RGB")


def render_batch(scenes, size: int = 64) -> np.ndarray:
    """Many scenes at once: ``uint8`` array ``(N, size, size, 3)``."""
    return np.stack([np.asarray(render(s, size)) for s in scenes])


def show_renderers(scenes, size: int = 128):
    """The same scenes drawn by both renderers, in two rows (own renderer above); returns the figure."""
    from . import shapes
    from .plotting import show_images

    images = [s.render(size) for s in scenes] + [render(s, size) for s in scenes]
    titles = [shapes.caption(s) for s in scenes] + ["second renderer"] * len(scenes)
    return show_images(images, titles=titles, cols=len(scenes))
