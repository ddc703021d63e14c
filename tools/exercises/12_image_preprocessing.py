# %% [markdown]
# # Exercise 12 · What the processor does to an image, by hand
#
# **Objective.** Every model of the course comes with a *processor* (notebook 00): the same in
# `tiny` and in `hub` mode, and the reason a stand-in can replace a real checkpoint. Its image
# half turns any photo into the exact tensor the model was trained on. Reproduce it for CLIP's
# processor (LLaVA-1.5 uses the same) to the last digit:
#
# 1. `resize_and_crop(image, shortest_edge, crop_size) -> PIL.Image`: resize, keeping the aspect
#    ratio, so that the shorter side is `shortest_edge`; then cut out the centre square;
# 2. `pixel_values(image, config) -> torch.Tensor`: the whole pipeline, `(3, crop_size, crop_size)`
#    float32, what `processor(images=image)["pixel_values"][0]` holds.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The checks compare with transformers'
# `CLIPImageProcessor` itself, on noise images (where a wrong filter or a pixel of offset
# changes everything); the grade also runs new sizes and settings, the course's CLIP processor
# and the real CLIP's. Use PIL, numpy and torch; calling a processor is not the exercise.

# %%
import numpy as np
import torch
from PIL import Image

from vlmstudy.grading import check_pixel_values, check_resize_and_crop, load_quietly

# %% [markdown]
# ## Part 1: resize, then crop the centre
#
# * **resize**: the shorter side becomes `shortest_edge`, the longer one
#   `int(shortest_edge * long / short)` (rounded down); when width <= height the width is the
#   shorter side. Bicubic: `image.resize((new_width, new_height), resample=Image.BICUBIC)`
#   (PIL takes (width, height));
# * **crop**: `left = (new_width - crop_size) // 2`, `top = (new_height - crop_size) // 2`, then
#   `image.crop((left, top, left + crop_size, top + crop_size))`.

# %%
def resize_and_crop(image, shortest_edge, crop_size):
    ### BEGIN SOLUTION
    width, height = image.size
    if width <= height:
        size = (shortest_edge, int(shortest_edge * height / width))
    else:
        size = (int(shortest_edge * width / height), shortest_edge)
    image = image.convert("RGB").resize(size, resample=Image.BICUBIC)
    left, top = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
    return image.crop((left, top, left + crop_size, top + crop_size))
    ### END SOLUTION

# %%
report = check_resize_and_crop(resize_and_crop)
report

# %% [markdown]
# ## Part 2: rescale and normalise
#
# `config` holds the processor's numbers: `shortest_edge`, `crop_size`, `rescale_factor`
# (1/255: bytes to [0, 1]), `image_mean` and `image_std` (three each, one per channel, the
# statistics of the model's training images). Then:
#
# 1. the crop as an array, `np.asarray(crop)`: `(H, W, 3)` bytes;
# 2. `x = pixels * rescale_factor` (in float; bytes would overflow), then
#    `(x - mean[c]) / std[c]` for each channel `c`;
# 3. channels first, `(3, H, W)` (`.transpose(2, 0, 1)`), as a float32 tensor.

# %%
def pixel_values(image, config):
    ### BEGIN SOLUTION
    crop = resize_and_crop(image, config["shortest_edge"], config["crop_size"])
    x = np.asarray(crop).astype(np.float32) * config["rescale_factor"]
    x = (x - np.array(config["image_mean"], dtype=np.float32)) / np.array(config["image_std"], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    ### END SOLUTION

# %%
pixels_report = check_pixel_values(pixel_values)
pixels_report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(resize_and_crop, "12_image_preprocessing", "resize_and_crop"))
hidden_checks(pixel_values, "12_image_preprocessing", "pixel_values")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# A real photo through the course's CLIP processor and through yours, with the processor's
# own numbers: the largest difference, and what the normalisation did to each channel (about
# mean 0 and standard deviation 1 on the images CLIP was trained on).

# %%
if report.passed and pixels_report.passed:
    from vlmstudy import real_photo

    model, processor = load_quietly("clip")
    ip = processor.image_processor
    config = {"shortest_edge": ip.size["shortest_edge"], "crop_size": ip.crop_size["height"],
              "rescale_factor": ip.rescale_factor, "image_mean": list(ip.image_mean), "image_std": list(ip.image_std)}
    photo = real_photo("chelsea").image
    theirs = processor(images=photo, return_tensors="pt")["pixel_values"][0]
    yours = pixel_values(photo, config)
    print(f"{photo.width}x{photo.height} photo -> {tuple(yours.shape)}; largest difference "
          f"{(yours - theirs).abs().max().item():.2e}")
    for c, name in enumerate(("red", "green", "blue")):
        print(f"{name:>5}: mean {yours[c].mean().item():+.2f}, std {yours[c].std().item():.2f}")
else:
    print("Finish both parts first: the checks above say what is missing.")
