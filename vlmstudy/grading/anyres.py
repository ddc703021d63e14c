"""Checks for exercise 09: LLaVA-NeXT's any-resolution tiling and its image token count (notebook 08).

Sizes are ``(height, width)`` and pinpoints ``[height, width]`` pairs, as transformers writes them.

* ``best_resolution(image_hw, pinpoints) -> (height, width)``: the canvas LLaVA-NeXT picks
  (transformers' ``select_best_resolution``: the most of the picture's pixels kept, then the
  least padding);
* ``image_tokens(image_hw, pinpoints, tile, patch) -> int``: how many ``<image>`` placeholder
  tokens the processor puts in the prompt (the ``default`` feature strategy: no CLS token).

The references: ``select_best_resolution`` and the LLaVA-NeXT processor itself. The visible
checks use fixed sizes; the hidden run counts the tokens of new random image sizes by running the
course's LLaVA-NeXT processor on blank images of those sizes, and checks the real checkpoint's
numbers (336-pixel tiles, 14-pixel patches, its five pinpoints) with the processor's own formula.

What the checks cannot tell: a submission that imports ``select_best_resolution`` from
transformers; the package's own helpers (:func:`vlmstudy.tasks.anyres_layout`,
:func:`vlmstudy.tasks.image_token_count`) are out of reach while graded.
"""

from __future__ import annotations

import copy

from .core import Check, CheckFailed, Env

BEST_TARGET = "best_resolution"
TOKENS_TARGET = "image_tokens"
TINY = {"pinpoints": [[64, 64], [64, 128], [128, 64], [128, 128]], "tile": 64, "patch": 8}
REAL = {"pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], "tile": 336, "patch": 14}


def _select(image_hw, pinpoints):
    from transformers.image_processing_utils import select_best_resolution

    return tuple(int(x) for x in select_best_resolution(tuple(image_hw), [list(p) for p in pinpoints]))


def _sizes(env: Env, n: int, largest: int = 400) -> list[tuple[int, int]]:
    rng = env.rng
    out = []
    for _ in range(n):
        h = int(rng.integers(12, largest))
        ratio = float(rng.choice([1.0, 0.5, 2.0, 0.75, 4 / 3])) * float(rng.uniform(0.6, 1.6))
        out.append((h, max(12, min(int(h * ratio), 3 * largest))))
    return out


def _pair(value, what: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise CheckFailed(f"{what} returned {value!r}; return (height, width), two ints")
    return int(value[0]), int(value[1])


def _expect_best(fn, image_hw, pinpoints, what: str) -> None:
    got = _pair(fn(tuple(image_hw), [list(p) for p in pinpoints]), "best_resolution")
    want = _select(image_hw, pinpoints)
    if got != want:
        raise CheckFailed(f"{what}: best_resolution({tuple(image_hw)}, {pinpoints}) gave {got}, LLaVA-NeXT picks {want}")


def check_exact_fit(fn, env: Env) -> None:
    for size in ((64, 128), (128, 64), (128, 128)):
        _expect_best(fn, size, TINY["pinpoints"], "an image that fits a pinpoint exactly")


def check_most_pixels(fn, env: Env) -> None:
    _expect_best(fn, (100, 210), TINY["pinpoints"], "a wide image")
    _expect_best(fn, (300, 120), TINY["pinpoints"], "a tall image")
    _expect_best(fn, (672, 1000), REAL["pinpoints"], "a photo, the real pinpoints")


def check_least_padding(fn, env: Env) -> None:
    _expect_best(fn, (40, 40), TINY["pinpoints"], "a small square image (every canvas keeps all its pixels)")
    _expect_best(fn, (30, 50), TINY["pinpoints"], "a small wide image")
    _expect_best(fn, (200, 100), REAL["pinpoints"], "a small tall image, the real pinpoints")
    _expect_best(fn, (40, 40), TINY["pinpoints"][::-1], "a small square image, the largest pinpoint listed first")


def check_random_best(fn, env: Env) -> None:
    for size in _sizes(env, 30):
        _expect_best(fn, size, TINY["pinpoints"], "a random size")
    for size in _sizes(env, 30, largest=1400):
        _expect_best(fn, size, REAL["pinpoints"], "a random photo size, the real pinpoints")


BEST_CHECKS = [
    Check("exact_fit", 1, "an image that fits a pinpoint exactly gets that pinpoint",
          "for each [h, w]: scale = min(w / width, h / height); kept = min(int(width * scale) * int(height * scale), "
          "width * height)", check_exact_fit),
    Check("most_pixels", 2, "the canvas that keeps the most of the picture's pixels",
          "keep the pinpoint with the largest kept pixel count (the picture downscaled to fit, never upscaled past "
          "its own pixels)", check_most_pixels),
    Check("least_padding", 1, "on a tie, the canvas with the least padding",
          "wasted = h * w - kept; on equal kept pixels, take the smaller wasted", check_least_padding),
    Check("random", 2, "equals LLaVA-NeXT's choice on 60 new random sizes",
          "compare with '>' for kept pixels and '<' for waste (the first pinpoint wins a full tie)",
          check_random_best, visible=False),
]


# ----------------------------------------------------------------------------- the token count

def _processor_count(processor, image_hw) -> int:
    from PIL import Image

    from ..tasks import image_token_count

    h, w = image_hw
    return image_token_count(processor, Image.new("RGB", (int(w), int(h)), (128, 128, 128)))


def _formula_count(processor, image_hw, numbers: dict) -> int:
    """The processor's own formula with another checkpoint's numbers (tile, patch, pinpoints)."""
    p = copy.copy(processor)
    p.image_processor = copy.copy(processor.image_processor)
    p.image_processor.image_grid_pinpoints = [list(x) for x in numbers["pinpoints"]]
    p.patch_size = numbers["patch"]
    n = p._get_number_of_features(int(image_hw[0]), int(image_hw[1]), numbers["tile"], numbers["tile"])
    return n - 1 if p.vision_feature_select_strategy == "default" else n


def _count(fn, image_hw, numbers: dict) -> int:
    got = fn(tuple(image_hw), [list(p) for p in numbers["pinpoints"]], numbers["tile"], numbers["patch"])
    if isinstance(got, bool) or not isinstance(got, int):
        raise CheckFailed(f"image_tokens returned {got!r}; return the number of tokens, an int")
    return got


def _expect_tokens(fn, env: Env, sizes, what: str) -> None:
    _, processor = env.model("llava-next")
    for size in sizes:
        got, want = _count(fn, size, TINY), _processor_count(processor, size)
        if got != want:
            raise CheckFailed(f"{what}: image_tokens({tuple(size)}, tiles of {TINY['tile']}, patches of "
                              f"{TINY['patch']}) gave {got}, the LLaVA-NeXT processor puts {want}")


def check_square(fn, env: Env) -> None:
    _expect_tokens(fn, env, [(64, 64), (128, 128)], "a square image, no padding")


def check_wide_and_tall(fn, env: Env) -> None:
    _expect_tokens(fn, env, [(64, 128), (128, 64)], "a 1:2 image on a 1:2 canvas")


def check_unpadded(fn, env: Env) -> None:
    _expect_tokens(fn, env, [(100, 210), (300, 120), (90, 100)], "padding rows or columns removed")


def check_random_tokens(fn, env: Env) -> None:
    _expect_tokens(fn, env, _sizes(env, 12), "a random size")


def check_real_next(fn, env: Env) -> None:
    _, processor = env.model("llava-next")
    for size in [(672, 1000), (480, 640), *_sizes(env, 6, largest=1400)]:
        got, want = _count(fn, size, REAL), _formula_count(processor, size, REAL)
        if got != want:
            raise CheckFailed(f"the real LLaVA-NeXT (336-pixel tiles, 14-pixel patches), an image of {size}: "
                              f"{got} tokens, its processor counts {want}")


TOKENS_CHECKS = [
    Check("square", 2, "a square image: the base tile's patches + the tiles' patches + one newline per row",
          "base = (tile // patch) ** 2; the canvas has (h // tile) x (w // tile) tiles, each (tile // patch) ** 2 "
          "patches; add one newline token per row of patches", check_square),
    Check("wide_and_tall", 1, "a 1:2 image: rows and columns of tiles the right way round",
          "the grid is (canvas height // tile) rows by (canvas width // tile) columns", check_wide_and_tall),
    Check("unpadded", 2, "the padding's rows (or columns) of patches are left out",
          "compare the image's aspect ratio with the grid's: remove 2 * ((rows - round(height * cols / width)) "
          "// 2) rows of patches (or columns, the other way)", check_unpadded),
    Check("random", 2, "equals the processor's count on 12 new random image sizes",
          "best_resolution first, then the patch grid, the unpadding and the newlines", check_random_tokens,
          visible=False),
    Check("real_next", 1, "with the real checkpoint's numbers (336-pixel tiles, 14-pixel patches)",
          "nothing is specific to the tiny model: use tile, patch and pinpoints from the arguments",
          check_real_next, visible=False),
]
