"""What a CLIP-style image processor does to an image, written out step by step.

``processor(images=image)["pixel_values"]`` of CLIP (and of LLaVA-1.5, whose processor is CLIP's)
is four steps: resize so that the *shorter* side is ``shortest_edge`` (bicubic, the longer side
``int(shortest_edge * long / short)``), crop the centre ``crop_size x crop_size`` (offsets
rounded down), rescale the bytes to ``[0, 1]`` (``x * rescale_factor``, 1/255) and normalise each
channel with the training set's mean and standard deviation. :func:`pixel_values` reproduces
the processor's numbers (``tests/test_pixels.py`` compares them); exercise 12 asks the learner
to write the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["resize_and_crop", "normalize_pixels", "pixel_values", "processor_settings"]


def resize_and_crop(image: Image.Image, shortest_edge: int, crop_size: int) -> Image.Image:
    """``image`` resized (bicubic) so that its shorter side is ``shortest_edge``, then its centre
    ``crop_size x crop_size`` cut out (``crop_size <= shortest_edge``). Returns an RGB image."""
    if not 1 <= crop_size <= shortest_edge:
        raise ValueError(f"crop_size must be between 1 and shortest_edge ({shortest_edge}), not {crop_size}.")
    image = image.convert("RGB")
    width, height = image.size
    if width <= height:
        size = (shortest_edge, int(shortest_edge * height / width))
    else:
        size = (int(shortest_edge * width / height), shortest_edge)
    image = image.resize(size, resample=Image.Resampling.BICUBIC)
    left, top = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
    return image.crop((left, top, left + crop_size, top + crop_size))


def normalize_pixels(pixels: np.ndarray, rescale_factor: float, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` bytes -> a ``(3, H, W)`` float32 tensor: ``(pixels * rescale_factor - mean) / std``
    per channel."""
    x = np.asarray(pixels).astype(np.float64) * rescale_factor
    x = (x.astype(np.float32) - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def processor_settings(image_processor) -> dict:
    """The five numbers of a CLIP-style image processor (``processor.image_processor``):
    ``shortest_edge``, ``crop_size``, ``rescale_factor``, ``image_mean``, ``image_std``."""
    size, crop = dict(image_processor.size or {}), dict(getattr(image_processor, "crop_size", None) or {})
    if not size.get("shortest_edge") or not crop.get("height") or crop.get("height") != crop.get("width"):
        raise ValueError(f"{type(image_processor).__name__} does not resize the shortest edge and crop a square "
                         f"(size {size}, crop_size {crop or None}): not a CLIP-style processor.")
    return {"shortest_edge": int(size["shortest_edge"]), "crop_size": int(crop["height"]),
            "rescale_factor": float(image_processor.rescale_factor),
            "image_mean": [float(m) for m in image_processor.image_mean],
            "image_std": [float(s) for s in image_processor.image_std]}


def pixel_values(image: Image.Image, settings: dict) -> torch.Tensor:
    """``(3, crop_size, crop_size)``: what the processor gives for one image, from
    :func:`processor_settings`."""
    cropped = resize_and_crop(image, settings["shortest_edge"], settings["crop_size"])
    return normalize_pixels(np.asarray(cropped), settings["rescale_factor"], settings["image_mean"],
                            settings["image_std"])
