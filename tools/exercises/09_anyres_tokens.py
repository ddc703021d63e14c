# %% [markdown]
# # Exercise 09 · Any-resolution tiles and image tokens (LLaVA-NeXT)
#
# **Objective.** Predict, without running the processor, how many tokens an image costs
# LLaVA-NeXT (notebook 08). LLaVA-1.5 squeezes every image into one 336 x 336 square (576
# tokens); LLaVA-NeXT picks a larger canvas from a short list (`image_grid_pinpoints`), cuts it
# into tiles, encodes every tile **and** a downscaled copy of the whole image, removes the
# patches that only cover padding and adds one "newline" token per row. A photo costs four to
# five times as many tokens (the last cell counts one): the count decides how many images fit a
# context.
#
# Sizes are `(height, width)` and pinpoints `[height, width]`, as transformers writes them.
#
# 1. `best_resolution(image_hw, pinpoints) -> (height, width)`: the canvas LLaVA-NeXT picks;
# 2. `image_tokens(image_hw, pinpoints, tile, patch) -> int`: the number of `<image>` tokens the
#    processor puts in the prompt.
#
# Write your code where a cell says `raise NotImplementedError()` (without transformers'
# `select_best_resolution` or the processor), run it, then run its check cell: points, and a hint
# for every check that fails. The grade also runs hidden checks on new image sizes, counted by
# the LLaVA-NeXT processor, and with the real checkpoint's numbers.

# %%
from vlmstudy.grading import check_best_resolution, check_image_tokens, load_quietly

# %% [markdown]
# ## Part 1: the canvas
#
# For every pinpoint `[h, w]`: the picture, scaled to fit inside it without changing its aspect
# ratio (`scale = min(w / width, h / height)`), keeps
# `kept = min(int(width * scale) * int(height * scale), width * height)` of its pixels (never
# more than it has: upscaling adds none) and leaves `wasted = h * w - kept` pixels of padding.
# Pick the pinpoint with the most `kept`; on a tie, the least `wasted`; on a full tie, the first.
# Return it as a `(height, width)` tuple.

# %%
def best_resolution(image_hw, pinpoints):
    ### BEGIN SOLUTION
    height, width = image_hw
    best, best_kept, best_waste = None, -1, None
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = h * w - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (h, w), kept, waste
    return best
    ### END SOLUTION

# %%
check_best_resolution(best_resolution)

# %% [markdown]
# ## Part 2: the tokens
#
# With `side = tile // patch` patches along a tile's edge:
#
# * the downscaled whole image: `side * side` tokens (the CLS token is dropped);
# * the canvas (part 1) is `canvas_h // tile` by `canvas_w // tile` tiles, so
#   `rows = side * (canvas_h // tile)` by `cols = side * (canvas_w // tile)` patches;
# * the picture does not fill the canvas: if it is wider than the grid (`width / height > cols / rows`),
#   it fills `kept = int(round(height * cols / width, 7))` rows and `2 * ((rows - kept) // 2)` rows
#   of padding go; otherwise, the same for columns (`kept = int(round(width * rows / height, 7))`);
# * the remaining `rows * cols` patches, plus one newline token per remaining row.

# %%
def image_tokens(image_hw, pinpoints, tile, patch):
    ### BEGIN SOLUTION
    height, width = image_hw
    best_h, best_w = best_resolution(image_hw, pinpoints)
    side = tile // patch
    rows, cols = side * (best_h // tile), side * (best_w // tile)
    if width / height > cols / rows:
        kept = int(round(height * (cols / width), 7))
        rows -= 2 * ((rows - kept) // 2)
    else:
        kept = int(round(width * (rows / height), 7))
        cols -= 2 * ((cols - kept) // 2)
    return side * side + rows * cols + rows
    ### END SOLUTION

# %%
report = check_image_tokens(image_tokens)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(best_resolution, "09_anyres_tokens", "best_resolution"))
hidden_checks(image_tokens, "09_anyres_tokens", "image_tokens")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The course's LLaVA-NeXT (64-pixel tiles, 8-pixel patches) on images of three shapes: your count
# beside the processor's, then the real checkpoint's numbers (336-pixel tiles, 14-pixel patches)
# for a 480 x 640 photo, against LLaVA-1.5's fixed 576.

# %%
if report.passed:
    from PIL import Image

    model, processor = load_quietly("llava-next")
    pinpoints = processor.image_processor.image_grid_pinpoints
    for hw in [(64, 64), (100, 210), (300, 120)]:
        inputs = processor(images=Image.new("RGB", hw[::-1]), text=processor.image_token, return_tensors="pt")
        counted = int((inputs["input_ids"] == model.config.image_token_id).sum())
        print(f"{hw[0]:4} x {hw[1]:<4} canvas {best_resolution(hw, pinpoints)}  yours {image_tokens(hw, pinpoints, 64, 8):4}"
              f"  the processor {counted:4}")
    real = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    print(f"a 480 x 640 photo, the real LLaVA-NeXT: {image_tokens((480, 640), real, 336, 14)} tokens "
          f"(canvas {best_resolution((480, 640), real)}); LLaVA-1.5: 576")
else:
    print("Finish image_tokens first: the checks above say what is missing.")
