"""Block diagrams of the four families of vision-language models, drawn with matplotlib.

::

    vlmstudy.diagrams.draw_families()          # all four side by side (notebook 01)
    vlmstudy.diagrams.draw_family("qformer")   # one of them (the notebook on that family)

Each diagram is plain data (:data:`FAMILIES`: boxes and arrows), so a new family is a new entry,
not new drawing code. Colours say which side a block belongs to (image, text, bridge, language
model); a hatched box is *frozen* (kept fixed while the rest trains).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch, Patch

#: block kind -> (face colour, legend label)
KINDS: dict[str, tuple[str, str]] = {
    "input": ("#f2f2f2", "input / output"),
    "vision": ("#cfe2f3", "image side"),
    "text": ("#d9ead3", "text side"),
    "bridge": ("#fce5cd", "bridge / projector"),
    "llm": ("#e1d5e7", "language model"),
    "score": ("#fff2cc", "score"),
}

WIDTH, HEIGHT = 10.0, 6.0  # drawing units of one panel


@dataclass(frozen=True)
class Box:
    """A block: ``key`` (for arrows), lower-left corner ``(x, y)``, size ``(w, h)``, ``label``,
    ``kind`` (a key of :data:`KINDS`), ``frozen`` (hatched)."""

    key: str
    x: float
    y: float
    w: float
    h: float
    label: str
    kind: str
    frozen: bool = False


@dataclass(frozen=True)
class Diagram:
    """One family: its title, the models in it, a one-line idea, boxes and arrows
    ``(from_key, to_key, label)``."""

    title: str
    models: str
    idea: str
    boxes: tuple[Box, ...]
    arrows: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


FAMILIES: dict[str, Diagram] = {
    "dual-encoder": Diagram(
        "Dual encoder", "CLIP, SigLIP",
        "two separate encoders map image and text into one space; a similarity scores the pair",
        (
            Box("img", 0.2, 4.0, 1.6, 1.0, "image", "input"),
            Box("venc", 2.5, 4.0, 2.4, 1.0, "image encoder\n(ViT)", "vision"),
            Box("iv", 5.6, 4.0, 1.7, 1.0, "image\nvector", "vision"),
            Box("txt", 0.2, 1.0, 1.6, 1.0, "text", "input"),
            Box("tenc", 2.5, 1.0, 2.4, 1.0, "text encoder\n(Transformer)", "text"),
            Box("tv", 5.6, 1.0, 1.7, 1.0, "text\nvector", "text"),
            Box("sim", 7.9, 2.2, 2.0, 1.6, "cosine\nsimilarity\n(softmax or\nsigmoid)", "score"),
        ),
        (("img", "venc", ""), ("venc", "iv", ""), ("txt", "tenc", ""), ("tenc", "tv", ""),
         ("iv", "sim", ""), ("tv", "sim", "")),
    ),
    "encoder-decoder": Diagram(
        "Encoder-decoder", "BLIP",
        "a text transformer reads the image features through cross-attention and writes text",
        (
            Box("img", 0.2, 4.0, 1.6, 1.0, "image", "input"),
            Box("venc", 2.5, 4.0, 2.6, 1.0, "image encoder\n(ViT)", "vision"),
            Box("feat", 5.8, 4.0, 2.0, 1.0, "patch\nfeatures", "vision"),
            Box("txt", 0.2, 1.0, 1.9, 1.0, "prompt or\nquestion", "input"),
            Box("dec", 3.0, 1.0, 3.6, 1.0, "text encoder / decoder\n(cross-attends to the image)", "text"),
            Box("out", 7.6, 1.0, 2.2, 1.0, "caption or\nanswer", "input"),
        ),
        (("img", "venc", ""), ("venc", "feat", ""), ("feat", "dec", "cross-attention"), ("txt", "dec", ""),
         ("dec", "out", "")),
    ),
    "qformer": Diagram(
        "Q-Former bridge", "BLIP-2, InstructBLIP",
        "a small transformer with 32 learned queries condenses the image for a frozen LLM",
        (
            Box("img", 0.2, 4.2, 1.3, 1.0, "image", "input"),
            Box("venc", 1.85, 4.1, 2.2, 1.2, "image encoder\n(ViT)", "vision", frozen=True),
            Box("qf", 4.4, 4.0, 2.7, 1.4, "Q-Former\n32 learned queries\n(+ instruction)", "bridge"),
            Box("lin", 7.6, 4.2, 2.2, 1.0, "linear\nprojection", "bridge"),
            Box("txt", 0.2, 1.0, 1.9, 1.0, "prompt", "input"),
            Box("llm", 4.4, 1.0, 2.7, 1.0, "language model\n(OPT, Vicuna)", "llm", frozen=True),
            Box("out", 7.8, 1.0, 2.0, 1.0, "answer", "input"),
        ),
        (("img", "venc", ""), ("venc", "qf", ""), ("qf", "lin", ""), ("lin", "llm", "32 soft tokens"),
         ("txt", "llm", ""), ("llm", "out", "")),
    ),
    "projector-llm": Diagram(
        "Projector + LLM", "LLaVA-1.5, LLaVA-NeXT",
        "an MLP turns every image patch into a word-like token; the LLM reads them with the chat",
        (
            Box("img", 0.2, 4.2, 1.4, 1.0, "image", "input"),
            Box("venc", 2.0, 4.2, 2.2, 1.0, "CLIP image\nencoder (ViT)", "vision", frozen=True),
            Box("proj", 4.7, 4.2, 2.0, 1.0, "MLP\nprojector", "bridge"),
            Box("tok", 7.3, 4.2, 2.5, 1.0, "image tokens\n(one per patch)", "bridge"),
            Box("txt", 0.2, 1.0, 2.3, 1.0, "chat template\nwith <image>", "input"),
            Box("llm", 3.3, 1.0, 3.4, 1.0, "language model\n(Vicuna, Mistral)", "llm"),
            Box("out", 7.5, 1.0, 2.3, 1.0, "reply", "input"),
        ),
        (("img", "venc", ""), ("venc", "proj", ""), ("proj", "tok", ""), ("tok", "llm", ""), ("txt", "llm", ""),
         ("llm", "out", "")),
    ),
}

#: other names a family answers to in :func:`draw_family`
ALIASES = {"clip": "dual-encoder", "siglip": "dual-encoder", "blip": "encoder-decoder", "blip2": "qformer",
           "instructblip": "qformer", "llava": "projector-llm", "llava-next": "projector-llm"}


def _family(name: str) -> Diagram:
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)} (or a model name: {', '.join(ALIASES)}).")
    return FAMILIES[key]


def _draw(ax, diagram: Diagram) -> None:
    patches = {}
    for b in diagram.boxes:
        if b.kind not in KINDS:
            raise ValueError(f"box {b.key!r} has unknown kind {b.kind!r}; known: {', '.join(KINDS)}.")
        patch = FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0.02,rounding_size=0.15",
                               facecolor=KINDS[b.kind][0], edgecolor="#444444", linewidth=1.2,
                               hatch="//" if b.frozen else None)
        ax.add_patch(patch)
        patches[b.key] = (patch, b)
        label = b.label + ("\n(frozen)" if b.frozen else "")
        ax.text(b.x + b.w / 2, b.y + b.h / 2, label, ha="center", va="center", fontsize=8,
                bbox=dict(facecolor=KINDS[b.kind][0], edgecolor="none", pad=0.5) if b.frozen else None)
    for start, end, label in diagram.arrows:
        (pa, a), (pb, b) = patches[start], patches[end]
        ca, cb = (a.x + a.w / 2, a.y + a.h / 2), (b.x + b.w / 2, b.y + b.h / 2)
        ax.annotate("", xy=cb, xytext=ca, arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.3,
                                                          patchA=pa, patchB=pb, shrinkA=2, shrinkB=2))
        if label:
            ax.text((ca[0] + cb[0]) / 2 + 0.1, (ca[1] + cb[1]) / 2, label, fontsize=7, style="italic",
                    ha="left", va="center", color="#333333")
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{diagram.title} ({diagram.models})\n{diagram.idea}", fontsize=9)


def _legend(fig, ncol: int = 7) -> None:
    handles = [Patch(facecolor=c, edgecolor="#444444", label=label) for c, label in KINDS.values()]
    handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="//", label="frozen"))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)


def draw_family(name: str, ax=None):
    """One family's block diagram: ``name`` is a key of :data:`FAMILIES` (``"qformer"``) or a
    model name (``"llava"``). Draws into ``ax`` if given; returns the figure."""
    diagram = _family(name)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.0, 5.0))
        _draw(ax, diagram)
        _legend(fig, ncol=4)
        fig.tight_layout(rect=(0, 0.1, 1, 0.97))
        return fig
    _draw(ax, diagram)
    return ax.figure


def draw_families():
    """The four families of vision-language models in one figure (2 x 2), with a colour legend.
    Returns the figure."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.2))
    for ax, diagram in zip(axes.flat, FAMILIES.values()):
        _draw(ax, diagram)
    _legend(fig)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
