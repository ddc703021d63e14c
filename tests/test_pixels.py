"""vlmstudy.pixels: a CLIP-style image processor's steps, written out, give the processor's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessorPil

from vlmstudy import pixels


def _noise(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("hw, edge, crop", [((50, 80), 32, 30), ((91, 37), 40, 33), ((64, 64), 64, 64),
                                            ((30, 49), 20, 15)])
def test_pixel_values_equal_the_processor(hw, edge, crop):
    ip = CLIPImageProcessorPil(size={"shortest_edge": edge}, crop_size={"height": crop, "width": crop},
                               image_mean=[0.1, 0.5, 0.7], image_std=[0.2, 0.3, 0.4])
    image = _noise(*hw)
    want = ip(images=image, return_tensors="pt")["pixel_values"][0]
    got = pixels.pixel_values(image, pixels.processor_settings(ip))
    assert got.shape == want.shape == (3, crop, crop) and float((got - want).abs().max()) < 1e-6
    # a bilinear resize or a crop one pixel off would not pass: the steps matter
    shifted = pixels.normalize_pixels(np.roll(np.asarray(pixels.resize_and_crop(image, edge, crop)), 1, axis=1),
                                      1 / 255, [0.1, 0.5, 0.7], [0.2, 0.3, 0.4])
    assert float((shifted - want).abs().max()) > 0.1


def test_the_course_clip_processor_and_bad_input():
    ip = CLIPImageProcessorPil()  # the real CLIP's: 224 px, OpenAI's mean and std
    assert pixels.processor_settings(ip)["crop_size"] == 224
    with pytest.raises(ValueError, match="crop_size"):
        pixels.resize_and_crop(_noise(20, 20), 10, 11)
    from transformers import SiglipImageProcessorPil

    with pytest.raises(ValueError, match="not a CLIP-style processor"):
        pixels.processor_settings(SiglipImageProcessorPil())
