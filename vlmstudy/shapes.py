"""ShapesWorld: procedurally generated scenes of coloured shapes, with text for every task.

Every scene is 1-3 objects (colour x shape x size at a named position) on a light background.
From a scene come its picture (:func:`render`), object boxes and masks, a caption, VQA pairs
(colour, shape, count, position, yes/no), short instruction dialogues whose follow-up turns need
the earlier ones, and two-image questions. Everything is deterministic from ``(split, seed)``.

Some colour-shape combinations (``HELD_OUT_COMBOS``) never appear in the train split, so a model
can be tested on compositions it has never seen. ``NOVEL_COLORS`` / ``NOVEL_SHAPES`` appear in no
zoo training at all: the fine-tuning notebook teaches one of them to a trained model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "orange": (245, 135, 25),
    "purple": (135, 55, 185),
    "pink": (245, 135, 195),
    "cyan": (40, 200, 215),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")

#: Never used by the zoo's training: the LoRA notebook teaches one of these to a trained model.
NOVEL_COLORS: dict[str, tuple[int, int, int]] = {"brown": (125, 75, 35)}
NOVEL_SHAPES: tuple[str, ...] = ("hexagon",)
ALL_COLORS = {**COLORS, **NOVEL_COLORS}
ALL_SHAPES = SHAPES + NOVEL_SHAPES

#: Colour-shape pairs that never appear in the train split (compositional generalisation tests).
#: Each colour and each shape still appears in training, only not together.
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("green", "star"), ("blue", "cross"),
     ("yellow", "circle"), ("purple", "square"), ("orange", "diamond")}
)

#: Object radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.11, "large": 0.15}
#: Anchor centres (x, y) as fractions of the image side; objects jitter by +-JITTER around them.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.18, 0.5), "right": (0.82, 0.5), "top": (0.5, 0.18), "bottom": (0.5, 0.82), "centre": (0.5, 0.5),
}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
JITTER = 0.015
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
SPLITS = ("train", "val", "test", "heldout")
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003, "heldout": 3_000_017}
#: Prompt templates for zero-shot classification and prompt ensembles.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a picture of a {}.", "a drawing of a {}.", "an image of a {}.",
    "a rendering of a {}.", "a {}.",
)
#: Every word ShapesWorld text uses (the tiny models' word-level vocabulary is built from it).
BASE_WORDS: tuple[str, ...] = (
    "a", "an", "the", "and", "of", "on", "at", "in", "is", "are", "there", "it", "what", "which",
    "where", "how", "many", "shape", "shapes", "colour", "color", "object", "objects", "image",
    "images", "picture", "photo", "drawing", "rendering", "first", "second", "has", "more", "fewer",
    "same", "number", "both", "yes", "no", "large", "small", "big", "size", "describe", "this",
    "question", "answer", "short", "one", "two", "three", "to", "left", "right", "top", "bottom",
    "centre", "center", "of", "than", "do", "does", "have", "see", "you", "can", "please", "with",
    "word", "us", "tell", "me", "about", "kind", "name", "any", "empty", "scene", "user",
    "assistant", "system", "?", ".", ",", ":", "'", "!",
    # chat-template markup of the real checkpoints ("[INST] ... [/INST]", "<<SYS>>")
    "[", "]", "[/", "inst", "<<", ">>", "sys",
)


@dataclass(frozen=True)
class ShapeObject:
    """One object: ``shape`` in ALL_SHAPES, ``color`` in ALL_COLORS, ``size`` in SIZES,
    ``position`` in POSITIONS, and its exact centre ``(x, y)`` in [0, 1] image units."""

    shape: str
    color: str
    size: str
    position: str
    x: float
    y: float

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    """A ShapesWorld scene: objects in reading order (left to right, top to bottom)."""

    objects: tuple[ShapeObject, ...]
    background: tuple[int, int, int]
    texture_seed: int

    def render(self, size: int = 64, varied: bool = False) -> Image.Image:
        return render(self, size, varied)

    @property
    def caption(self) -> str:
        return caption(self)

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "background": list(self.background),
                "texture_seed": self.texture_seed}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(tuple(ShapeObject(**o) for o in data["objects"]), tuple(data["background"]), data["texture_seed"])


# ----------------------------------------------------------------------------- sampling

def _reading_order(objects: Iterable[ShapeObject]) -> tuple[ShapeObject, ...]:
    return tuple(sorted(objects, key=lambda o: (round(o.x, 1), o.y)))


def allowed_combos(split: str) -> list[tuple[str, str]]:
    """Colour-shape pairs a split may use: held-out pairs only in ``heldout``, novel words never."""
    combos = [(c, s) for c in COLORS for s in SHAPES]
    if split == "heldout":
        return sorted(HELD_OUT_COMBOS)
    return [cs for cs in combos if cs not in HELD_OUT_COMBOS]


def sample_scene(
    rng: random.Random,
    n_objects: int | None = None,
    combos: Sequence[tuple[str, str]] | None = None,
    max_objects: int = 3,
) -> Scene:
    """Draw one scene with ``rng``: distinct positions, no two objects of the same colour-shape pair."""
    n = n_objects or rng.choices(range(1, max_objects + 1), weights=[4] + [3] * (max_objects - 1))[0]
    combos = list(combos or allowed_combos("train"))
    positions = rng.sample(list(POSITIONS), n)
    chosen = rng.sample(combos, n)
    objects = []
    for (color, shape), position in zip(chosen, positions):
        ax, ay = POSITIONS[position]
        size = rng.choice(list(SIZES))
        x, y = round(ax + rng.uniform(-JITTER, JITTER), 4), round(ay + rng.uniform(-JITTER, JITTER), 4)
        if any(np.hypot(x - o.x, y - o.y) < SIZES[size] + o.radius + 0.01 for o in objects):
            x, y = ax, ay  # anchors alone never overlap
        objects.append(ShapeObject(shape=shape, color=color, size=size, position=position, x=x, y=y))
    tint = rng.randint(225, 250)
    background = tuple(min(255, tint + rng.randint(-8, 8)) for _ in range(3))
    return Scene(_reading_order(objects), background, rng.randrange(2**31))


def make_scenes(split: str = "train", n: int = 100, seed: int = 0, n_objects: int | None = None,
                max_objects: int = 3) -> list[Scene]:
    """``n`` scenes of a split, identical for the same ``(split, n, seed, n_objects)``.

    ``train``, ``val`` and ``test`` use every colour-shape pair except ``HELD_OUT_COMBOS``; their
    random streams differ, so no split repeats another. ``heldout`` scenes are made only of
    held-out pairs (compositional generalisation). ``n_objects`` fixes the object count.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    rng = random.Random(seed * 7_919 + _SPLIT_OFFSET[split])
    combos = allowed_combos(split)
    if split == "heldout":
        # one held-out object, the others (if any) from the ordinary pairs
        scenes = []
        for _ in range(n):
            scene = sample_scene(rng, n_objects, allowed_combos("train"), max_objects)
            objs = list(scene.objects)
            i = rng.randrange(len(objs))
            color, shape = rng.choice(combos)
            while any(o.color == color and o.shape == shape for o in objs):
                color, shape = rng.choice(combos)
            objs[i] = ShapeObject(shape, color, objs[i].size, objs[i].position, objs[i].x, objs[i].y)
            scenes.append(Scene(_reading_order(objs), scene.background, scene.texture_seed))
        return scenes
    return [sample_scene(rng, n_objects, combos, max_objects) for _ in range(n)]


def variant(scene: Scene, rng: random.Random, kind: str | None = None,
            combos: Sequence[tuple[str, str]] | None = None) -> Scene:
    """A minimally different scene: one object's ``shape`` or ``color`` changed, or two objects'
    positions ``swap``-ed (``kind``; random if None). Used as hard negatives: telling the two
    apart needs exactly the detail that changed (contrastive models are weak at binding).
    """
    allowed = set(combos or allowed_combos("train"))
    objs = list(scene.objects)
    kind = kind or rng.choices(["shape", "color", "swap"], weights=[0.6, 0.25, 0.15])[0]
    if kind == "swap" and len(objs) >= 2:
        i, j = rng.sample(range(len(objs)), 2)
        a, b = objs[i], objs[j]
        objs[i] = ShapeObject(b.shape, b.color, b.size, a.position, a.x, a.y)
        objs[j] = ShapeObject(a.shape, a.color, a.size, b.position, b.x, b.y)
    else:
        i = rng.randrange(len(objs))
        o = objs[i]
        taken = {(p.color, p.shape) for p in objs}
        options = [(c, o.shape) for c in COLORS] if kind == "color" else [(o.color, sh) for sh in SHAPES]
        options = [cs for cs in options if cs in allowed and cs not in taken]
        if options:
            color, shape = rng.choice(options)
            objs[i] = ShapeObject(shape, color, o.size, o.position, o.x, o.y)
    return Scene(_reading_order(objs), scene.background, scene.texture_seed)


# ----------------------------------------------------------------------------- rendering

def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.radians([-90, 30, 150])]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = np.radians(-90 + 36 * k)
            pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
        return pts
    if shape == "cross":
        t = r * 0.36
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
                (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
                (cx - r, cy - t), (cx - t, cy - t)]
    if shape == "hexagon":
        return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.radians(np.arange(0, 360, 60))]
    raise ValueError(f"unknown shape {shape!r}; known: {ALL_SHAPES}")


def _draw(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: int, fill) -> None:
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r), fill=fill)


_SUPERSAMPLE = 4


def render(scene: Scene, size: int = 64, varied: bool = False) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``size`` x ``size`` pixels (anti-aliased).

    varied: draw it one of the many ways a picture of the same scene can look (training
    variety, :func:`render_varied`); the default is the plain, canonical rendering.
    """
    if varied:
        return render_varied(scene, size)
    big = size * _SUPERSAMPLE
    rng = np.random.default_rng(scene.texture_seed)
    # a lightly varied background: base tint plus a soft low-frequency texture
    texture = rng.normal(0, 4, (8, 8, 3))
    texture = np.asarray(Image.fromarray(np.uint8(np.clip(texture + 128, 0, 255))).resize((big, big), Image.BILINEAR),
                         dtype=np.float32) - 128
    canvas = np.clip(np.asarray(scene.background, np.float32) + texture, 0, 255).astype(np.uint8)
    img = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj, big, ALL_COLORS[obj.color])
    return img.resize((size, size), Image.BOX)


#: How far :func:`render_varied` may move an object from its scene position (image units):
#: it stays inside its named region.
VARIED_SHIFT = 0.04


def _varied_color(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """Another shade of the same named colour: hue +-0.02, saturation and brightness scaled."""
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    h = (h + rng.uniform(-0.02, 0.02)) % 1.0
    s = float(np.clip(s * rng.uniform(0.8, 1.1), 0, 1))
    v = float(np.clip(v * rng.uniform(0.82, 1.08), 0, 1))
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def _rotate(points: list[tuple[float, float]], cx: float, cy: float, degrees: float) -> list[tuple[float, float]]:
    a = np.radians(degrees)
    c, s_ = np.cos(a), np.sin(a)
    return [(cx + (x - cx) * c - (y - cy) * s_, cy + (x - cx) * s_ + (y - cy) * c) for x, y in points]


def _varied_background(scene: Scene, big: int, rng: np.random.Generator) -> np.ndarray:
    """A light background: the plain texture, a gradient, noise or faint stripes ``(big, big, 3)``."""
    base = np.asarray(scene.background, np.float32) - rng.uniform(0, 30)
    kind = rng.choice(["texture", "gradient", "noise", "stripes"])
    if kind == "gradient":
        other = base + rng.uniform(-25, 10, 3)
        t = np.linspace(0, 1, big, dtype=np.float32)
        ramp = t[None, :, None] if rng.random() < 0.5 else t[:, None, None]
        canvas = base + (other - base) * ramp
        canvas = np.broadcast_to(canvas, (big, big, 3))
    elif kind == "noise":
        canvas = base + rng.normal(0, rng.uniform(4, 10), (big // 4, big // 4, 3)).repeat(4, 0).repeat(4, 1)
    elif kind == "stripes":
        period = rng.integers(big // 10, big // 4)
        canvas = base + (((np.arange(big) // period) % 2) * rng.uniform(6, 14))[:, None, None] * np.ones((1, big, 3))
        if rng.random() < 0.5:
            canvas = canvas.transpose(1, 0, 2)
    else:
        texture = rng.normal(0, 6, (8, 8, 3))
        texture = np.asarray(Image.fromarray(np.uint8(np.clip(texture + 128, 0, 255))).resize((big, big), Image.BILINEAR),
                             dtype=np.float32) - 128
        canvas = base + texture
    return np.clip(canvas, 0, 255).astype(np.uint8)


def render_varied(scene: Scene, size: int = 64) -> Image.Image:
    """Draw ``scene`` one of many ways, all still true to its caption: another shade of each
    named colour, size x0.85-1.15, a small rotation, filled or outlined, the object moved a
    little within its region, a textured / gradient / noisy / striped background, sometimes
    blurred or JPEG-compressed. Deterministic from ``scene.texture_seed``; used for training
    variety (the plain :func:`render` stays the canonical picture)."""
    import io

    from PIL import ImageFilter

    rng = np.random.default_rng(scene.texture_seed + 7)
    big = size * _SUPERSAMPLE
    img = Image.fromarray(_varied_background(scene, big, rng), "RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        scale = rng.uniform(0.85, 1.1 if obj.size == "large" else 1.2)
        cx = (obj.x + rng.uniform(-VARIED_SHIFT, VARIED_SHIFT)) * big
        cy = (obj.y + rng.uniform(-VARIED_SHIFT, VARIED_SHIFT)) * big
        r = obj.radius * scale * big
        fill = _varied_color(ALL_COLORS[obj.color], rng)
        outlined = rng.random() < 0.25
        width = max(2, int(r * rng.uniform(0.22, 0.32)))
        if obj.shape == "circle":
            box = [cx - r, cy - r, cx + r, cy + r]
            draw.ellipse(box, fill=None if outlined else fill, outline=fill if outlined else None, width=width)
        else:
            limit = 10 if obj.shape in ("square", "diamond") else 20  # 45 degrees would turn one into the other
            pts = _rotate(_polygon(obj.shape, cx, cy, r), cx, cy, rng.uniform(-limit, limit))
            if outlined:
                draw.line(pts + pts[:1], fill=fill, width=width, joint="curve")
            else:
                draw.polygon(pts, fill=fill)
    img = img.resize((size, size), Image.BOX)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    if rng.random() < 0.3:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(45, 85)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def masks(scene: Scene, size: int = 64) -> np.ndarray:
    """Boolean object masks, shape ``(n_objects, size, size)``, in ``scene.objects`` order."""
    out = np.zeros((len(scene.objects), size, size), dtype=bool)
    big = size * _SUPERSAMPLE
    for i, obj in enumerate(scene.objects):
        m = Image.new("L", (big, big), 0)
        _draw(ImageDraw.Draw(m), obj, big, 255)
        out[i] = np.asarray(m.resize((size, size), Image.BOX)) >= 128
    return out


def boxes(scene: Scene, size: int = 64) -> np.ndarray:
    """Object boxes ``(n_objects, 4)`` as ``x0, y0, x1, y1`` pixels (from the masks)."""
    result = []
    for m in masks(scene, size):
        ys, xs = np.nonzero(m)
        result.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(result, dtype=np.int64)


def render_batch(scenes: Sequence[Scene], size: int = 64) -> np.ndarray:
    """Render many scenes at once: ``uint8`` array ``(N, size, size, 3)``."""
    return np.stack([np.asarray(render(s, size)) for s in scenes])


# ----------------------------------------------------------------------------- text

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(obj: ShapeObject, with_size: bool = False) -> str:
    """``"a red circle"`` (or ``"a large red circle"``)."""
    words = f"{obj.size} {obj.color} {obj.shape}" if with_size else f"{obj.color} {obj.shape}"
    return f"{_article(words)} {words}"


def caption(scene: Scene, with_size: bool = False) -> str:
    """Canonical caption in reading order: ``"a red circle on the left and a blue square on the right"``."""
    return " and ".join(f"{object_phrase(o, with_size)} {POSITION_PHRASES[o.position]}" for o in scene.objects)


def short_description(scene: Scene) -> str:
    """Objects without positions: ``"a red circle and a blue square"`` (for contrastive prompts)."""
    return " and ".join(object_phrase(o) for o in scene.objects)


@dataclass(frozen=True)
class QA:
    """One question about a scene: ``kind`` is colour, shape, count, position or exists.

    ``form`` names the question's template (``"colour_at"``, ``"count"`` ...) and ``slots`` its
    fillers (``(("where", "on the left"),)``), so :func:`paraphrase` can say it another way.
    """

    question: str
    answer: str
    kind: str
    form: str = ""
    slots: tuple[tuple[str, str], ...] = ()


def questions(scene: Scene, rng: random.Random | None = None, combos: Sequence[tuple[str, str]] | None = None) -> list[QA]:
    """Every unambiguous VQA pair about ``scene`` (one absent-object "no" question drawn with ``rng``)."""
    rng = rng or random.Random(scene.texture_seed)
    objs = scene.objects
    shape_counts = {s: sum(o.shape == s for o in objs) for s in ALL_SHAPES}
    color_counts = {c: sum(o.color == c for o in objs) for c in ALL_COLORS}
    out = [QA("how many shapes are there?", COUNT_WORDS[len(objs)], "count", "count")]
    for o in objs:
        where = POSITION_PHRASES[o.position]
        out.append(QA(f"what colour is the shape {where}?", o.color, "colour", "colour_at", (("where", where),)))
        out.append(QA(f"what shape is {where}?", o.shape, "shape", "shape_at", (("where", where),)))
        if shape_counts[o.shape] == 1:
            out.append(QA(f"what colour is the {o.shape}?", o.color, "colour", "colour_of", (("shape", o.shape),)))
        if color_counts[o.color] == 1:
            out.append(QA(f"what shape is the {o.color} object?", o.shape, "shape", "shape_of", (("color", o.color),)))
        out.append(QA(f"where is the {o.color} {o.shape}?", o.position, "position", "position",
                      (("color", o.color), ("shape", o.shape))))
        out.append(QA(f"is there {object_phrase(o)}?", "yes", "exists", "exists", (("obj", object_phrase(o)),)))
    present = {(o.color, o.shape) for o in objs}
    absent = [cs for cs in (combos or allowed_combos("train")) if cs not in present]
    color, shape = rng.choice(absent)
    out.append(QA(f"is there {_article(color)} {color} {shape}?", "no", "exists", "exists",
                  (("obj", f"{_article(color)} {color} {shape}"),)))
    return out


def dialogue(scene: Scene, rng: random.Random | None = None) -> list[tuple[str, str]]:
    """A 2-3 turn dialogue ``[(question, answer), ...]`` whose follow-ups refer back with "it".

    The follow-up ("and what colour is it?") can only be answered with the earlier turn, which
    is what makes history matter for the chat models.
    """
    rng = rng or random.Random(scene.texture_seed)
    obj = rng.choice(scene.objects)
    where = POSITION_PHRASES[obj.position]
    openers = [
        (f"what shape is {where}?", obj.shape, [("and what colour is it?", obj.color), ("and where is it?", obj.position)]),
        (f"what colour is the shape {where}?", obj.color, [("and what shape is it?", obj.shape)]),
        (f"where is the {obj.color} {obj.shape}?", obj.position, [("and what size is it?", obj.size)]),
    ]
    if sum(o.shape == obj.shape for o in scene.objects) == 1:
        openers.append((f"what colour is the {obj.shape}?", obj.color,
                        [("and where is it?", obj.position), ("and what size is it?", obj.size)]))
    first_q, first_a, followups = rng.choice(openers)
    turns = [(first_q, first_a), rng.choice(followups)]
    if rng.random() < 0.5:
        turns.append(("how many shapes are there?", COUNT_WORDS[len(scene.objects)]))
    return turns


def two_image_questions(first: Scene, second: Scene) -> list[QA]:
    """Questions about a pair of scenes (multi-image prompts)."""
    out = [QA("what is in the first image?", caption(first), "describe"),
           QA("what is in the second image?", caption(second), "describe")]
    n1, n2 = len(first.objects), len(second.objects)
    if n1 != n2:
        out.append(QA("which image has more shapes?", "the first" if n1 > n2 else "the second", "compare"))
    out.append(QA("do both images have the same number of shapes?", "yes" if n1 == n2 else "no", "compare"))
    return out


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and extra spaces: how answers are compared."""
    kept = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in str(text).lower())
    return " ".join(kept.split())


def vocabulary() -> list[str]:
    """Every word ShapesWorld text can contain (novel words included, so a fine-tune can learn
    them later without changing the tokenizer).

    The first zoo's words come first, sorted; words added with the paraphrase templates
    (:func:`vlmstudy.phrasings.training_words`) follow, sorted, so every earlier word keeps its id.
    """
    from .phrasings import training_words

    words = set(BASE_WORDS) | set(ALL_COLORS) | set(ALL_SHAPES) | set(SIZES) | set(POSITIONS)
    for template in PROMPT_TEMPLATES:
        words.update(template.replace("{}", " ").replace(".", " . ").split())
    return sorted(words) + sorted(training_words() - words)


# ----------------------------------------------------------------------------- export

def export_dataset(scenes: Sequence[Scene], out_dir: str | Path, size: int = 64, seed: int = 0) -> dict[str, Path]:
    """Write PNGs and the three seed formats (caption, vqa, instruction JSON) under ``out_dir``.

    Returns ``{"caption": path, "vqa": path, "instruction": path, "scenes": path}``. Image paths in
    the JSON are relative to ``out_dir`` (``images/0000.png``), as in the course's data formats.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    caption_rows, vqa_rows, instruction_rows, scene_rows = [], [], [], []
    for i, scene in enumerate(scenes):
        rel = f"images/{i:04d}.png"
        scene.render(size).save(out / rel)
        caption_rows.append({"image": rel, "caption": caption(scene)})
        for qa in questions(scene, rng):
            vqa_rows.append({"image": rel, "question": qa.question, "answer": qa.answer})
        turns = dialogue(scene, rng)
        conv = []
        for k, (q, a) in enumerate(turns):
            conv.append({"from": "human", "value": ("<image>\n" if k == 0 else "") + q})
            conv.append({"from": "gpt", "value": a})
        instruction_rows.append({"image": rel, "conversations": conv})
        scene_rows.append({"image": rel, **scene.to_dict()})
    paths = {}
    for name, rows in (("caption", caption_rows), ("vqa", vqa_rows), ("instruction", instruction_rows),
                       ("scenes", scene_rows)):
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(rows, indent=1))
    return paths


def show_scenes(scenes: Sequence[Scene], cols: int = 4, size: int = 128, with_size: bool = False):
    """Plot scenes in a grid with their captions; returns the matplotlib figure."""
    from .plotting import show_images

    return show_images([s.render(size) for s in scenes], titles=[caption(s, with_size) for s in scenes], cols=cols)
