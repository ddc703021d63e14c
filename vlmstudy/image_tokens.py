"""How many image tokens one picture costs: LLaVA-1.5, LLaVA-NeXT, SmolVLM (Idefics3) and Qwen2-VL.

Each count is arithmetic on the picture's size, ``(height, width)`` in pixels, and the numbers in
the real checkpoint's processor files (:data:`REAL_SCHEMES`, each with its source); nothing is
loaded. tests/test_image_tokens.py checks every formula against the installed transformers
processors (``<image>`` tokens in ``processor(...).input_ids``) for many sizes, and, in hub mode,
that the simulated Hub's processors hold the same numbers (:func:`scheme_from_processor`).

The four schemes:

* ``fixed`` (LLaVA-1.5): every picture is squashed to ``image_size``; (image_size / patch)**2
  tokens whatever its size;
* ``anyres`` (LLaVA-NeXT): a grid of ``tile`` px tiles picked from ``pinpoints``, plus an
  overview; the tiles' patch grid loses its padding rows/columns ("unpadding") and every row
  ends with a newline token;
* ``split`` (SmolVLM / Idefics3): the longest edge resized to ``longest_edge``, cut into ``tile``
  px squares plus one global image; each square costs ``image_seq_len`` tokens after pixel
  shuffle (:func:`vlmstudy.assemble.projectors.pixel_shuffle`);
* ``dynamic`` (Qwen2-VL): the picture resized to multiples of ``patch * merge`` px with its
  pixel count inside ``[min_pixels, max_pixels]``; one token per ``merge x merge`` patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ConfigError

KINDS = ("fixed", "anyres", "split", "dynamic")


@dataclass(frozen=True)
class TokenScheme:
    """One model's image-token arithmetic: ``kind`` (one of :data:`KINDS`) and the processor
    numbers it needs (``settings``); ``label`` for plots, ``source`` says where the numbers are from."""

    label: str
    hub_id: str
    kind: str
    settings: dict = field(compare=False)
    source: str = field(default="", compare=False)

    def tokens(self, height: int, width: int) -> int:
        """Image tokens for one ``height x width`` picture."""
        return count(self, height, width)


#: The real checkpoints' numbers, from their Hub processor files (checked in the tests against
#: the simulated Hub's copies). Sources:
#: llava-hf/llava-1.5-7b-hf and llava-v1.6-mistral-7b-hf: preprocessor_config.json /
#: processor_config.json (336 px crops, patch 14, the five pinpoints, num_additional_image_tokens
#: 1, strategy "default"), as in vlmstudy.zoo.registry; HuggingFaceTB/SmolVLM-256M-Instruct:
#: processor_config.json {"image_seq_len": 64, "processor_class": "Idefics3Processor"}, the 256M
#: preprocessor_config.json size {"longest_edge": 2048}, max_image_size {"longest_edge": 512},
#: do_image_splitting true, config.json scale_factor 4 (vision 512 px, patch 16: 32**2 / 4**2 = 64);
#: Qwen/Qwen2-VL-2B(-Instruct) preprocessor_config.json: min_pixels 3136, max_pixels 12845056,
#: patch_size 14, temporal_patch_size 2, merge_size 2.
REAL_SCHEMES: dict[str, TokenScheme] = {s.hub_id: s for s in (
    TokenScheme("LLaVA-1.5", "llava-hf/llava-1.5-7b-hf", "fixed",
                {"image_size": 336, "patch_size": 14, "num_additional_image_tokens": 1, "strategy": "default"},
                "preprocessor_config.json crop 336, processor_config.json patch_size 14"),
    TokenScheme("LLaVA-NeXT", "llava-hf/llava-v1.6-mistral-7b-hf", "anyres",
                {"tile": 336, "patch_size": 14, "num_additional_image_tokens": 1, "strategy": "default",
                 "pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]},
                "preprocessor_config.json image_grid_pinpoints, crop 336; processor_config.json patch_size 14"),
    TokenScheme("SmolVLM-256M", "HuggingFaceTB/SmolVLM-256M-Instruct", "split",
                {"longest_edge": 2048, "tile": 512, "image_seq_len": 64, "do_image_splitting": True,
                 "do_resize": True},
                "processor_config.json image_seq_len 64; preprocessor_config.json size 2048, max_image_size 512"),
    TokenScheme("Qwen2-VL-2B", "Qwen/Qwen2-VL-2B-Instruct", "dynamic",
                {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056},
                "preprocessor_config.json min_pixels 3136, max_pixels 12845056, patch 14, merge 2"),
)}


def real_scheme(name: str) -> TokenScheme:
    """The scheme of a real checkpoint by Hub id, zoo name (``"llava"``, ``"llava-next"``, any
    registry card) or label (``"SmolVLM-256M"``), case-insensitive."""
    key = str(name).strip().lower()
    for scheme in REAL_SCHEMES.values():
        if key in (scheme.hub_id.lower(), scheme.label.lower(), scheme.hub_id.split("/")[-1].lower()):
            return scheme
    try:
        from .zoo.registry import get_card

        hub_id = get_card(name).hub_id
    except Exception:  # noqa: BLE001 - an unknown name gets the list below
        hub_id = None
    if hub_id in REAL_SCHEMES:
        return REAL_SCHEMES[hub_id]
    raise ConfigError(f"No image-token scheme for {name!r}. Known: "
                      f"{', '.join(s.label + ' (' + s.hub_id + ')' for s in REAL_SCHEMES.values())}.")


def _size(height, width) -> tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError):
        raise ConfigError(f"An image size is two whole numbers (height, width) in pixels; got {height!r}, {width!r}.") from None
    if h < 1 or w < 1:
        raise ConfigError(f"An image size must be at least 1 x 1 pixels; got {h} x {w}.")
    return h, w


# ----------------------------------------------------------------------------- the four formulas

def llava_tokens(height: int, width: int, image_size: int = 336, patch_size: int = 14,
                 num_additional_image_tokens: int = 1, strategy: str = "default") -> int:
    """LLaVA-1.5: the picture is resized to ``image_size`` whatever its shape; one token per
    patch (the CLS token is dropped with the ``default`` strategy). 576 for the real one."""
    _size(height, width)
    n = (image_size // patch_size) ** 2
    return n + (num_additional_image_tokens if strategy == "full" else 0)


def best_grid(height: int, width: int, pinpoints) -> tuple[int, int]:
    """LLaVA-NeXT's canvas ``(height, width)`` for a picture: the pinpoint that keeps the most of
    its pixels, then the least padding (transformers' ``select_best_resolution``)."""
    from transformers.image_processing_utils import select_best_resolution

    h, w = _size(height, width)
    best = select_best_resolution((h, w), [list(p) for p in pinpoints])
    return int(best[0]), int(best[1])


def llava_next_tokens(height: int, width: int, pinpoints, tile: int = 336, patch_size: int = 14,
                      num_additional_image_tokens: int = 1, strategy: str = "default") -> int:
    """LLaVA-NeXT: overview patches + the tiles' patch grid with the padding cut off + one newline
    token per remaining row (the arithmetic of ``LlavaNextProcessor._get_number_of_features``)."""
    h, w = _size(height, width)
    best_h, best_w = best_grid(h, w, pinpoints)
    side = tile // patch_size                       # patches per tile side (24 for 336 / 14)
    rows, cols = side * (best_h // tile), side * (best_w // tile)
    if w / h > cols / rows:                         # wider than the canvas: padding above and below
        kept = int(round(h * (cols / w), 7))
        rows -= 2 * ((rows - kept) // 2)
    else:                                           # taller: padding left and right
        kept = int(round(w * (rows / h), 7))
        cols -= 2 * ((cols - kept) // 2)
    base = side * side + num_additional_image_tokens
    n = rows * cols + rows + base                   # tiles, newlines, overview
    return n - 1 if strategy == "default" else n    # "default" drops the overview's CLS token


def split_grid(height: int, width: int, longest_edge: int = 2048, tile: int = 512,
               do_resize: bool = True, **_) -> tuple[int, int]:
    """SmolVLM / Idefics3: ``(rows, cols)`` of ``tile`` px squares (``(0, 0)``: no split, the
    picture is one square). The longest edge is first resized to ``longest_edge`` (up or down,
    even sides), then to whole tiles (``resize_for_vision_encoder``: the longer side rounded *up*
    to a multiple of ``tile``, the other side scaled with it and rounded up too)."""
    h, w = _size(height, width)
    if do_resize:
        if w >= h:
            h, w = max(1, int(longest_edge / (w / h))), longest_edge
            h += h % 2
        else:
            h, w = longest_edge, max(1, int(longest_edge * (w / h)))
            w += w % 2
    if w >= h:   # the longer side rounded up to whole tiles, the other side follows the shape, then rounded up too
        cols = math.ceil(w / tile)
        rows = math.ceil(int(cols * tile / (w / h)) / tile)
    else:
        rows = math.ceil(h / tile)
        cols = math.ceil(int(rows * tile * (w / h)) / tile)
    return (rows, cols) if rows > 1 or cols > 1 else (0, 0)


def smolvlm_tokens(height: int, width: int, longest_edge: int = 2048, tile: int = 512, image_seq_len: int = 64,
                   do_image_splitting: bool = True, do_resize: bool = True) -> int:
    """SmolVLM / Idefics3: ``image_seq_len`` tokens per tile plus the global image (the
    ``<image>`` tokens; the ``<fake_token_around_image>``, ``<row_i_col_j>`` and newline markers
    around them come on top)."""
    _size(height, width)
    if not do_image_splitting:
        return image_seq_len
    rows, cols = split_grid(height, width, longest_edge, tile, do_resize)
    return image_seq_len * (rows * cols + 1)


def dynamic_resize(height: int, width: int, patch_size: int = 14, merge_size: int = 2, min_pixels: int = 3136,
                   max_pixels: int = 12845056) -> tuple[int, int]:
    """Qwen2-VL's resize: each side rounded to a multiple of ``patch * merge`` (28 px), then scaled
    (keeping the shape) until the pixel count is inside ``[min_pixels, max_pixels]``."""
    h, w = _size(height, width)
    if max(h, w) / min(h, w) > 200:
        raise ConfigError(f"Qwen2-VL refuses pictures more than 200 times longer than wide; got {h} x {w}.")
    f = patch_size * merge_size
    hb, wb = round(h / f) * f, round(w / f) * f
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
    return hb, wb


def qwen2_vl_tokens(height: int, width: int, patch_size: int = 14, merge_size: int = 2, min_pixels: int = 3136,
                    max_pixels: int = 12845056) -> int:
    """Qwen2-VL: (H / 14) * (W / 14) patches of the resized picture, merged 2 x 2 into one token."""
    hb, wb = dynamic_resize(height, width, patch_size, merge_size, min_pixels, max_pixels)
    return (hb // patch_size) * (wb // patch_size) // merge_size ** 2


_FORMULAS = {"fixed": llava_tokens, "anyres": llava_next_tokens, "split": smolvlm_tokens, "dynamic": qwen2_vl_tokens}


def count(scheme, height: int, width: int) -> int:
    """Image tokens for one picture under ``scheme`` (a :class:`TokenScheme` or a name for
    :func:`real_scheme`)."""
    if not isinstance(scheme, TokenScheme):
        scheme = real_scheme(scheme)
    if scheme.kind not in _FORMULAS:
        raise ConfigError(f"Unknown image-token scheme kind {scheme.kind!r}; use one of {', '.join(KINDS)}.")
    return _FORMULAS[scheme.kind](height, width, **scheme.settings)


def token_table(sizes, schemes=None) -> list[dict]:
    """One row per ``(height, width)`` in ``sizes``: ``size`` and each scheme's label -> tokens."""
    schemes = list(REAL_SCHEMES.values()) if schemes is None else [
        s if isinstance(s, TokenScheme) else real_scheme(s) for s in schemes]
    return [{"size": f"{h} x {w}", **{s.label: count(s, h, w) for s in schemes}} for h, w in sizes]


# ----------------------------------------------------------------------------- from a processor

def _edge(size, key: str):
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def scheme_from_processor(processor, label: str | None = None, hub_id: str = "") -> TokenScheme:
    """Read the numbers of the scheme from a loaded processor (a stand-in's, the simulated Hub's or
    the real one): LlavaProcessor, LlavaNextProcessor, Idefics3Processor / SmolVLMProcessor or
    Qwen2VLProcessor."""
    name = type(processor).__name__
    ip = getattr(processor, "image_processor", None)
    if name in ("LlavaProcessor", "LlavaNextProcessor"):
        crop = ip.crop_size
        common = {"patch_size": int(processor.patch_size),
                  "num_additional_image_tokens": int(processor.num_additional_image_tokens),
                  "strategy": processor.vision_feature_select_strategy}
        if name == "LlavaProcessor":
            kind, settings = "fixed", {"image_size": int(_edge(crop, "height")), **common}
        else:
            kind, settings = "anyres", {"tile": int(_edge(crop, "height")), **common,
                                        "pinpoints": [list(p) for p in ip.image_grid_pinpoints]}
    elif name in ("Idefics3Processor", "SmolVLMProcessor"):
        kind, settings = "split", {"longest_edge": int(_edge(ip.size, "longest_edge")),
                                   "tile": int(_edge(ip.max_image_size, "longest_edge")),
                                   "image_seq_len": int(processor.image_seq_len),
                                   "do_image_splitting": bool(ip.do_image_splitting), "do_resize": bool(ip.do_resize)}
    elif name in ("Qwen2VLProcessor", "Qwen2_5_VLProcessor"):
        size = ip.size
        kind, settings = "dynamic", {"patch_size": int(ip.patch_size), "merge_size": int(ip.merge_size),
                                     "min_pixels": int(_edge(size, "shortest_edge") or ip.min_pixels),
                                     "max_pixels": int(_edge(size, "longest_edge") or ip.max_pixels)}
    else:
        raise ConfigError(f"{name} has no image-token scheme here: pass a LLaVA, LLaVA-NeXT, Idefics3 / SmolVLM "
                          "or Qwen2-VL processor.")
    return TokenScheme(label or name.replace("Processor", ""), hub_id, kind, settings, f"read from a {name}")


def processor_count(processor, height: int, width: int) -> int:
    """The processor's own count: image tokens in ``input_ids`` for a blank ``height x width``
    picture (what the formulas must equal)."""
    from PIL import Image

    from .tasks import _quiet_tokenizer

    h, w = _size(height, width)
    token = str(processor.image_token)
    with _quiet_tokenizer():
        enc = processor(images=[Image.new("RGB", (w, h), (128, 128, 128))], text=[token], return_tensors="pt")
    tok_id = processor.tokenizer.convert_tokens_to_ids(token)
    return int((enc["input_ids"] == tok_id).sum())
