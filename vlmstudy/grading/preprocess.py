"""Checks for exercise 12: what an image processor does to an image, by hand (notebook 00).

* ``resize_and_crop(image, shortest_edge, crop_size) -> PIL.Image``: resize (bicubic) so that the
  shorter side is ``shortest_edge`` and the longer ``int(shortest_edge * long / short)``, then
  cut the centre ``crop_size x crop_size`` out (offsets rounded down);
* ``pixel_values(image, config) -> torch.Tensor``: the whole pipeline, ``(3, crop, crop)`` float32:
  the crop, rescaled (``* rescale_factor``) and normalised per channel (``(x - mean) / std``).
  ``config``: ``shortest_edge``, ``crop_size``, ``rescale_factor``, ``image_mean``, ``image_std``.

The reference is transformers itself: every check builds a ``CLIPImageProcessorPil`` with those
numbers and compares with what it returns (``do_rescale=False, do_normalize=False`` for the crop:
its bytes), on noise images (where bilinear and bicubic, or an offset of one pixel, differ
everywhere) of sizes chosen so that rounding the long side or the crop's offsets the other way
shows. The hidden run adds new sizes and settings, the course's CLIP processor and the real
CLIP's (224 px) on a ShapesWorld scene. The package's own version (:mod:`vlmstudy.pixels`) is
out of reach while graded; transformers' processor is not, as the notebook says.
"""

from __future__ import annotations

import numpy as np

from .core import Check, CheckFailed, Env

CROP_TARGET = "resize_and_crop"
PIXELS_TARGET = "pixel_values"


def processor(config: dict, normalize: bool = True):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": config["shortest_edge"]}, crop_size={"height": config["crop_size"], "width": config["crop_size"]},
        rescale_factor=config.get("rescale_factor", 1 / 255), image_mean=config.get("image_mean", [0.5] * 3),
        image_std=config.get("image_std", [0.5] * 3), do_rescale=normalize, do_normalize=normalize)


def noise(env: Env, height: int, width: int):
    from PIL import Image

    return Image.fromarray(env.rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def random_config(env: Env, short: int) -> dict:
    rng = env.rng
    edge = int(rng.integers(8, short + 20))
    return {"shortest_edge": edge, "crop_size": int(rng.integers(4, edge + 1)),
            "rescale_factor": float(rng.choice([1 / 255, 1 / 127.5, 0.01])),
            "image_mean": [float(x) for x in rng.uniform(0, 1, 3)], "image_std": [float(x) for x in rng.uniform(0.1, 1, 3)]}


# ----------------------------------------------------------------------------- resize and crop

def _crop(fn, image, edge: int, crop: int) -> np.ndarray:
    from PIL import Image

    got = fn(image.copy(), edge, crop)
    if not isinstance(got, Image.Image):
        raise CheckFailed(f"resize_and_crop returned {type(got).__name__}; return a PIL image (image.resize(...).crop(...))")
    if got.size != (crop, crop):
        raise CheckFailed(f"a {image.width}x{image.height} image, shortest_edge {edge}, crop_size {crop}: the result is "
                          f"{got.width}x{got.height}, expected {crop}x{crop}")
    return np.asarray(got.convert("RGB"))


def _expect_crop(fn, image, edge: int, crop: int, what: str) -> None:
    got = _crop(fn, image, edge, crop).astype(int)
    want = processor({"shortest_edge": edge, "crop_size": crop}, normalize=False)(
        images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0).astype(int)
    diff = np.abs(got - want)
    if diff.max() > 1:
        raise CheckFailed(f"{what}: a {image.width}x{image.height} image, shortest_edge {edge}, crop_size {crop}: "
                          f"{(diff > 1).mean():.0%} of the bytes differ from the processor's (by up to {diff.max()})")


def check_crop_size(fn, env: Env) -> None:
    _crop(fn, noise(env, 40, 60), 32, 24)
    _crop(fn, noise(env, 70, 30), 20, 20)


def check_landscape(fn, env: Env) -> None:
    _expect_crop(fn, noise(env, 40, 60), 32, 24, "landscape")
    _expect_crop(fn, noise(env, 50, 90), 64, 64, "landscape, upscaled")


def check_portrait(fn, env: Env) -> None:
    _expect_crop(fn, noise(env, 70, 30), 20, 20, "portrait")
    _expect_crop(fn, noise(env, 45, 45), 30, 17, "square")


def check_rounding(fn, env: Env) -> None:
    # 20 * 49 / 30 = 32.67: the long side is 32 (rounded down), and (32 - 15) / 2 = 8.5: the offset is 8
    _expect_crop(fn, noise(env, 30, 49), 20, 15, "rounding the long side and the offset down")
    _expect_crop(fn, noise(env, 61, 26), 13, 10, "rounding, portrait")


def check_random_crop(fn, env: Env) -> None:
    for _ in range(4):
        h, w = (int(x) for x in env.rng.integers(12, 120, 2))
        config = random_config(env, min(h, w))
        _expect_crop(fn, noise(env, h, w), config["shortest_edge"], config["crop_size"], "a random image")


CROP_CHECKS = [
    Check("size", 1, "a PIL image of crop_size x crop_size",
          "image.resize((width, height), resample=Image.BICUBIC), then image.crop((left, top, right, bottom))",
          check_crop_size),
    Check("landscape", 2, "a landscape image: the processor's bytes",
          "the shorter side (here the height) becomes shortest_edge, the width int(shortest_edge * width / height); "
          "bicubic", check_landscape),
    Check("portrait", 1, "a portrait and a square image",
          "when width <= height the width becomes shortest_edge", check_portrait),
    Check("rounding", 1, "the long side and the crop's offsets are rounded down",
          "int(shortest_edge * long / short); left = (width - crop_size) // 2, top = (height - crop_size) // 2",
          check_rounding),
    Check("random", 2, "the processor's bytes on new sizes",
          "the same steps for any size", check_random_crop, visible=False),
]


# ----------------------------------------------------------------------------- pixel values

def _pixels(fn, image, config: dict):
    import torch

    got = fn(image.copy(), dict(config))
    c = config["crop_size"]
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"pixel_values returned {type(got).__name__}; return a torch tensor (torch.from_numpy(...))")
    if tuple(got.shape) != (3, c, c):
        raise CheckFailed(f"pixel_values returned shape {tuple(got.shape)}, expected (3, {c}, {c}): channels first "
                          "(array.transpose(2, 0, 1))")
    if got.dtype != torch.float32:
        raise CheckFailed(f"pixel_values returned {got.dtype}; the model reads float32")
    return got


def _expect_pixels(fn, image, config: dict, what: str, want=None) -> None:
    got = _pixels(fn, image, config)
    if want is None:
        want = processor(config)(images=image, return_tensors="pt")["pixel_values"][0]
    diff = (got - want).abs()
    if not bool(diff.max() <= 1e-4):
        per_channel = ", ".join(f"{float(g):.3f}/{float(w):.3f}" for g, w in zip(got.mean((1, 2)), want.mean((1, 2))))
        raise CheckFailed(f"{what}: up to {float(diff.max()):.3g} from the processor's pixel_values (channel means, "
                          f"yours/processor's: {per_channel})")


EXAMPLE = {"shortest_edge": 32, "crop_size": 28, "rescale_factor": 1 / 255,
           "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


def check_shape(fn, env: Env) -> None:
    _pixels(fn, noise(env, 40, 50), EXAMPLE)


def check_matches(fn, env: Env) -> None:
    _expect_pixels(fn, noise(env, 40, 50), EXAMPLE, "CLIP's mean and std")
    _expect_pixels(fn, noise(env, 64, 33), {**EXAMPLE, "shortest_edge": 24, "crop_size": 24}, "a portrait image")


def check_per_channel(fn, env: Env) -> None:
    from PIL import Image

    image = Image.new("RGB", (30, 30), (10, 128, 250))
    config = {"shortest_edge": 16, "crop_size": 16, "rescale_factor": 1 / 255, "image_mean": [0.1, 0.5, 0.9],
              "image_std": [0.2, 0.3, 0.4]}
    got = _pixels(fn, image, config)
    want = [(v / 255 - m) / s for v, m, s in zip((10, 128, 250), config["image_mean"], config["image_std"])]
    shown = ", ".join(f"{float(x):.3f}" for x in got.mean((1, 2)))
    if not np.allclose(got.mean((1, 2)).numpy(), want, atol=1e-4) or float(got.std((1, 2)).max()) > 0.05:
        raise CheckFailed(f"one colour (10, 128, 250), mean {config['image_mean']}, std {config['image_std']}: channels "
                          f"{shown}, expected {', '.join(f'{x:.3f}' for x in want)}: (x * rescale_factor - mean[c]) / std[c]")


def check_rescale(fn, env: Env) -> None:
    _expect_pixels(fn, noise(env, 36, 36), {**EXAMPLE, "rescale_factor": 1 / 127.5, "image_mean": [1.0] * 3,
                                            "image_std": [1.0] * 3}, "rescale_factor 1/127.5 (bytes to [0, 2])")


def check_random_pixels(fn, env: Env) -> None:
    for _ in range(3):
        h, w = (int(x) for x in env.rng.integers(12, 100, 2))
        _expect_pixels(fn, noise(env, h, w), random_config(env, min(h, w)), "a random image and settings")


def check_course_processors(fn, env: Env) -> None:
    from transformers import CLIPImageProcessorPil

    from .. import pixels, shapes

    scene = shapes.make_scenes("test", 1, seed=int(env.rng.integers(1 << 30)))[0]
    image = scene.render(96).resize((96, 77))
    for what, ip in (("the course's CLIP processor", env.model("clip")[1].image_processor),
                     ("the real CLIP's processor (224 px)", CLIPImageProcessorPil())):
        _expect_pixels(fn, image, pixels.processor_settings(ip), what,
                       want=ip(images=image, return_tensors="pt")["pixel_values"][0])


PIXELS_CHECKS = [
    Check("shape", 1, "a (3, crop_size, crop_size) float32 tensor",
          "np.asarray(the crop) is (H, W, 3) bytes: convert to float, then .transpose(2, 0, 1) to channels first",
          check_shape),
    Check("matches", 3, "equals the processor's pixel_values",
          "resize_and_crop, then (pixels * rescale_factor - mean) / std per channel", check_matches),
    Check("per_channel", 1, "each channel its own mean and std",
          "mean and std are per channel: broadcast them over (H, W, 3) before the transpose, or over (3, 1, 1) after",
          check_per_channel),
    Check("rescale", 1, "uses rescale_factor (not a fixed 1/255)",
          "multiply by config['rescale_factor']", check_rescale),
    Check("random", 2, "equals the processor on new images and settings",
          "the same steps for any settings", check_random_pixels, visible=False),
    Check("course", 1, "the course's CLIP processor and the real CLIP's",
          "the same steps with their settings", check_course_processors, visible=False),
]
