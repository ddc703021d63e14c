# %% [markdown]
# # 14 · What changed since LLaVA: image tokens, pixel shuffle, M-RoPE and today's small VLMs
#
# **Objective.** By the end of this notebook you can predict how many image tokens a picture
# costs in LLaVA-1.5, LLaVA-NeXT, SmolVLM and Qwen2-VL from their processor settings, explain
# the two tricks newer models use to spend tokens where they matter (image **splitting** with a
# **pixel-shuffle** connector, and **dynamic resolution** with **M-RoPE** positions), compare the
# course's stand-ins on the same questions, and choose a model for a task and a memory budget.
#
# LLaVA-1.5 ([notebook 07](07_llava.ipynb)) squashes every picture to one square; LLaVA-NeXT
# ([notebook 08](08_llava_next_multi_image.ipynb)) adds tiles. Since then two designs took over
# the small open models: **Idefics3 / SmolVLM** cut the picture into tiles too, but squeeze each
# tile's patches 16-fold before the language model sees them; **Qwen2-VL** resizes the picture
# to a multiple of its patch size and encodes it whole, at (nearly) its own resolution, and tells
# the language model where each image token sits with three position ids instead of one.

# %%
import time

import torch

import vlmstudy
from vlmstudy import compare, evaluation, image_tokens, mrope, plotting, quantize, shapes, tasks
from vlmstudy.assemble.projectors import pixel_shuffle  # notebook 13's projector, the same as Idefics3's
from vlmstudy.errors import ModelUnavailableError, UnknownModelError, VlmStudyError
from vlmstudy.zoo.loading import load_processor
from vlmstudy.zoo.registry import CARDS, get_card

vlmstudy.seed_everything(0)
mode = vlmstudy.get_mode()
print("mode:", mode, "| zoo:", ", ".join(c.name for c in CARDS))

# %% [markdown]
# ## 1. How many image tokens does one picture cost?
#
# The four processors, as arithmetic on the picture's height and width and the numbers in each
# real checkpoint's processor files (`image_tokens.REAL_SCHEMES`, with their sources):
#
# * **LLaVA-1.5** (`fixed`): resize to the encoder's square, one token per 14 px patch, whatever
#   the picture.
# * **LLaVA-NeXT** (`anyres`): pick a grid of 336 px tiles from a short list (`pinpoints`),
#   encode the tiles and an overview; the tiles' patch grid loses the rows or columns that only
#   hold padding ("unpadding") and each remaining row ends with a newline token.
# * **SmolVLM / Idefics3** (`split`): resize the longest edge to `longest_edge`, cut into
#   `tile` px squares plus one global image; each square costs `image_seq_len` tokens.
# * **Qwen2-VL** (`dynamic`): round each side to a multiple of 28 px (patch 14 x merge 2), scale
#   into `[min_pixels, max_pixels]`; (h / 14) x (w / 14) patches, merged 2 x 2 into one token.

# %%
for scheme in image_tokens.REAL_SCHEMES.values():
    print(f"{scheme.label:13} {scheme.kind:8} {scheme.settings}")
    print(f"{'':13} source: {scheme.hub_id} {scheme.source}")
sizes = [(64, 64), (336, 336), (480, 640), (672, 672), (1080, 1920), (2048, 2048)]
table = image_tokens.token_table(sizes)
tasks.Table(list(table[0]), [list(r.values()) for r in table])

# %% [markdown]
# Read the table column by column. LLaVA-1.5's count never moves: a phone photo and a thumbnail
# cost the same and the photo loses most of its pixels. LLaVA-NeXT grows with the grid it picks
# and stops at its largest pinpoint. SmolVLM's count depends on the picture's **shape**, not its
# size: every picture is resized until its longest edge is `longest_edge`, so even the 64 px
# ShapesWorld picture becomes a full grid of tiles. Qwen2-VL's count follows the pixel count
# itself, from a handful of tokens for a thumbnail to thousands for a large photo.
#
# The same as a plot, for square pictures and for pictures of one pixel budget but different
# shapes:

# %%
sides = [32, 64, 128, 224, 336, 448, 672, 896, 1344, 2048]
fig = plotting.curves(sides, {s.label: [s.tokens(n, n) for n in sides] for s in image_tokens.REAL_SCHEMES.values()},
                      xlabel="square picture side (px)", ylabel="image tokens", logx=True, logy=True,
                      title="image tokens for one square picture (real processor settings)")
ratios = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]        # width / height at about 0.45 megapixels
shaped = [(round((450_000 / r) ** 0.5), round((450_000 * r) ** 0.5)) for r in ratios]
fig = plotting.curves(ratios, {s.label: [s.tokens(h, w) for h, w in shaped] for s in image_tokens.REAL_SCHEMES.values()},
                      xlabel="width / height (same pixel count)", ylabel="image tokens", logx=True,
                      title="image tokens vs the picture's shape")

# %% [markdown]
# **Checked, not trusted.** The formulas are checked in `tests/test_image_tokens.py` against the
# installed transformers processors built with the real numbers (the `<image>` tokens in
# `processor(...).input_ids`, dozens of sizes). Here the same check runs on the processors this
# notebook can load: the stand-ins' in tiny mode (their own small settings), the real
# checkpoints' configuration in hub mode.

# %%
picture = shapes.make_scenes("test", 1, seed=3)[0].render()
checked = []
for card in CARDS:
    try:
        processor = load_processor(card.name)
        scheme = image_tokens.scheme_from_processor(processor, label=card.name, hub_id=card.hub_id)
    except (VlmStudyError, OSError):   # not a LLaVA / NeXT / Idefics3 / Qwen2-VL processor, or not here
        continue
    h, w = picture.size[1], picture.size[0]
    by_formula, by_processor = scheme.tokens(h, w), image_tokens.processor_count(processor, h, w)
    assert by_formula == by_processor, f"{card.name}: formula {by_formula} != processor {by_processor}"
    if mode == "hub" and card.hub_id in image_tokens.REAL_SCHEMES:
        assert scheme.settings == image_tokens.REAL_SCHEMES[card.hub_id].settings, f"{card.name}: other numbers"
    checked.append(card.name)
    print(f"{card.name:12} {scheme.kind:8} {by_processor:5d} image tokens for the {w} x {h} picture  {scheme.settings}")
print("formula == processor for:", ", ".join(checked))

# %% [markdown]
# ## 2. Pixel shuffle: fewer, wider tokens
#
# SmolVLM's encoder turns a 512 px tile into a 32 x 32 grid of patch vectors. Instead of
# sending all of them to the language model, its connector does **space-to-depth**: every
# `r x r` block of neighbouring patches is laid side by side into *one* vector `r**2` times
# as wide. Tokens drop by `r**2`, channels grow by `r**2`, and no number is lost. On a tiny
# tensor, a 4 x 4 grid of 3-number patches with `r = 2` (the package function of
# notebook 13, the same as transformers' `Idefics3Connector.pixel_shuffle`):

# %%
grid = torch.arange(16 * 3, dtype=torch.float32).reshape(1, 16, 3)   # (batch, 4 x 4 patches, 3 channels)
shuffled = pixel_shuffle(grid, 2)
print("before:", tuple(grid.shape), "-> after:", tuple(shuffled.shape))
print("patch (row 0, col 0), (0, 1), (1, 0), (1, 1):", grid[0, [0, 1, 4, 5]].tolist())
print("token 0 after the shuffle:               ", shuffled[0, 0].tolist())
assert torch.equal(shuffled[0, 0], grid[0, [0, 1, 4, 5]].reshape(-1)), "token 0 holds the top-left 2 x 2 block"

smol = image_tokens.real_scheme("SmolVLM-256M").settings
tile_patches = torch.zeros(1, (smol["tile"] // 16) ** 2, 8)   # one 512 px tile, patch 16 (config.json), 8 channels here
squeezed = pixel_shuffle(tile_patches, 4)                      # SmolVLM's scale_factor
print(f"SmolVLM tile: {tile_patches.shape[1]} patches -> {squeezed.shape[1]} tokens, "
      f"channels x{squeezed.shape[2] // tile_patches.shape[2]}")
assert squeezed.shape[1] == smol["image_seq_len"], "the processor's image_seq_len is the shuffled token count"

# %% [markdown]
# The linear layer after the shuffle maps each wide vector to the language model's width, so the
# projector, not the language model, pays for the extra channels. The price: neighbouring
# patches share one position in the language model; the tiles (and the global image) give the
# detail back.
#
# ## 3. M-RoPE: three position ids per token
#
# A LLaVA-style model numbers its prompt 0, 1, 2 ...: an image's tokens are one long run, row
# after row, as if the picture were a sentence. Qwen2-VL gives every token a (temporal, height,
# width) triple. Text tokens get the same number three times (ordinary positions); image tokens
# keep one temporal id and get their own row and column; the text after the picture continues
# after the largest id so far. The ids below come from the installed model's `get_rope_index`
# (a tiny Qwen2-VL config on the meta device), for a picture Qwen2-VL's resize turns into a
# small grid:

# %%
qwen = image_tokens.real_scheme("Qwen2-VL-2B").settings
h28, w28 = image_tokens.dynamic_resize(84, 140, **qwen)           # a tiny 84 x 140 picture
merged = (h28 // (qwen["patch_size"] * qwen["merge_size"]), w28 // (qwen["patch_size"] * qwen["merge_size"]))
rope = mrope.positions(grid=merged, text_before=5, text_after=4)
print(f"picture 84 x 140 -> resized {h28} x {w28} -> {merged[0]} x {merged[1]} image tokens; grid_thw {rope['grid_thw']}")
print(mrope.table(rope))
ids = rope["ids"]
fig = plotting.curves(list(range(ids.shape[1])), {"temporal": ids[0].tolist(), "height": ids[1].tolist(),
                                                   "width": ids[2].tolist(), "LLaVA (one id)": rope["sequential"].tolist()},
                      xlabel="token index in the prompt (I = image token in the table)", ylabel="position id",
                      title="Qwen2-VL's M-RoPE ids vs LLaVA's sequential ids")
print(f"last position id: M-RoPE {int(ids.max())}, sequential {int(rope['sequential'][-1])}")

# %% [markdown]
# Two consequences. Neighbours in the picture are neighbours in position (the height row steps
# once per image row, the width row once per column), so the rotary attention sees the 2-D
# layout. And a large picture uses up far fewer positions than tokens (the last ids above), so
# long contexts with many images stay inside the positions the model was trained on. In the
# real model the rotary channels are split between the three rows (`mrope_section`).
#
# ## 4. The stand-ins side by side
#
# Every chat model of the zoo that loads here answers the same questions about the same
# ShapesWorld pictures. The answers are the models' own (greedy decoding); a tick marks an answer
# that says the truth (`evaluation.answer_matches`). In tiny mode these are the course's trained
# stand-ins; in hub mode the simulated Hub's random weights (mechanics only: the answers are noise).

# %%
scenes = shapes.make_scenes("test", 3, seed=14)
qas = [(s, qa) for s in scenes for qa in shapes.questions(s)[:2]]
images, questions, truths = [s.render() for s, _ in qas], [qa.question for _, qa in qas], [qa.answer for _, qa in qas]
answers, skipped = {}, {}
for card in CARDS:
    if "chat" not in card.tasks:
        continue
    try:
        start = time.perf_counter()
        answers[card.name] = tasks.answer_batch(images, questions, model=card.name, progress=False, max_new_tokens=12)
        print(f"{card.name:12} {(time.perf_counter() - start) / len(qas) * 1000:6.0f} ms per answer")
    except (ModelUnavailableError, UnknownModelError, VlmStudyError) as err:
        skipped[card.name] = str(err).splitlines()[0]
    tasks.clear_cache()   # one model in memory at a time
for name, why in skipped.items():
    print(f"skipped {name}: {why}")
rows = [[str(i // 2), q, t] + [("✓ " if evaluation.answer_matches(answers[m][i], t) else "✗ ") + answers[m][i]
                               for m in answers] for i, (q, t) in enumerate(zip(questions, truths))]
rows.append(["", "right", ""] + [f"{sum(evaluation.answer_matches(a, t) for a, t in zip(answers[m], truths))}/{len(truths)}"
                                 for m in answers])
tasks.Table(["picture", "question", "truth"] + list(answers), rows)

# %%
shapes.show_scenes(scenes);

# %% [markdown]
# A handful of questions says little about accuracy (the model cards hold the measured numbers, on
# hundreds of test scenes and on a second renderer); they show that the same question goes
# through four different image pipelines and prompt formats and still comes back as an answer.
#
# ## 5. Which model for which task: the selection chart, extended
#
# Notebook 10's chart, built by the same function from the zoo's cards: each real checkpoint's
# memory at 4 bits is computed on the meta device from its architecture (nothing downloaded),
# tasks down, models across, a ring on the smallest model that does each task. The cards added
# for this notebook (when they are in the zoo) join it with no other change.

# %%
comparison = compare.model_comparison(measure_latency=False)
print(compare.format_comparison(comparison))
fig = plotting.task_model_chart(comparison)
for task, name in compare.smallest_for_each_task(comparison).items():
    print(f"{task:26} -> {name}")

# %% [markdown]
# ## 6. SmolVLM-256M: a real VLM for a laptop CPU
#
# The other real *chat* checkpoints in the table above need several gigabytes even at 4 bits:
# a GPU, or a lot of memory and patience. SmolVLM-256M is a chat VLM small enough for a laptop
# CPU at full precision. Its size, from its registry card's architecture on the meta device,
# next to the smallest other chat checkpoint:

# %%
try:
    smol_card = get_card("HuggingFaceTB/SmolVLM-256M-Instruct")
except UnknownModelError as err:
    smol_card = None
    print("SmolVLM is not in this zoo yet:", str(err).splitlines()[0][:100])
if smol_card is not None:
    from vlmstudy.zoo.table import real_parameter_count

    params = real_parameter_count(smol_card.name)
    sizes_gb = {p: quantize.estimate(smol_card.name, p) / 1e9 for p in ("fp32", "fp16", "nf4")}
    print(f"{smol_card.hub_id}: {params / 1e6:.0f} M parameters; " +
          ", ".join(f"{p} {gb:.2f} GB" for p, gb in sizes_gb.items()))
    others = [r for r in comparison if r["name"] != smol_card.name and "chat" in r["tasks"]]
    nearest = min(others, key=lambda r: r["real_fp16_gb"])
    print(f"smallest other chat checkpoint: {nearest['name']} ({nearest['hub_id']}), "
          f"{nearest['real_fp16_gb']:.2f} GB at fp16, {nearest['real_nf4_gb']:.2f} GB at nf4")
    if mode == "hub":   # the simulated Hub's copy: real configs and processor, random weights (mechanics only)
        try:
            start = time.perf_counter()
            reply = tasks.answer(picture, "how many shapes are there?", model=smol_card.name, max_new_tokens=8)
            print(f"hub mode answer in {time.perf_counter() - start:.1f} s on {vlmstudy.get_device()}: {reply!r}")
        except VlmStudyError as err:   # not in this Hub cache (offline) or too large for this machine
            print(f"{smol_card.name} did not load here: {str(err).splitlines()[0]}")
        tasks.clear_cache()
    else:
        print("run this notebook with VLMSTUDY_MODE=hub to load the real checkpoint (downloaded once; it is stored "
              "in 16 bits, so about the fp16 size above on disk)")

# %% [markdown]
# On a real laptop, `VLMSTUDY_MODE=hub` loads the real SmolVLM-256M-Instruct (the first run
# downloads it) and `vlmstudy ask picture.png "what is in this picture?" --model` with its zoo
# name answers on the CPU. Remember its token bill from section 1: every picture costs the full
# tile grid plus the global image, so a prompt with a picture is long even for a tiny model;
# `do_image_splitting=False` on its processor trades detail for a short prompt.

# %% [markdown]
# ## Summary
#
# * Image tokens are arithmetic on the picture's size and the processor's numbers: LLaVA-1.5 pays one fixed price; LLaVA-NeXT pays per tile of its chosen grid (plus newlines, minus padding); SmolVLM pays per 512 px tile after resizing every picture to a fixed longest edge, so its bill follows the shape; Qwen2-VL pays per 28 px square of the picture itself, within a pixel budget.
# * Pixel shuffle (space-to-depth) turns each `r x r` block of patches into one token `r**2` times as wide: SmolVLM keeps its tiles but sends 16 times fewer tokens per tile.
# * M-RoPE gives each token (temporal, height, width) position ids: text as usual, image tokens by their row and column, so the language model sees the picture's layout and uses fewer positions than tokens.
# * The same package calls (`tasks.answer_batch`, `compare.model_comparison`, `plotting.task_model_chart`) run every zoo model, old and new, on the same questions and in the same selection chart.

# %% [markdown]
# ## Check yourself
#
# **1. Why does LLaVA-1.5 spend as many tokens on a 64 px thumbnail as on a phone photo, and what does the photo lose?**
#
# <details><summary>Answer</summary>
#
# Its processor resizes and crops every picture to the encoder's one square input and makes one token per patch of that square, so the count is fixed. A large photo is shrunk to that square: fine detail (small text, small objects) and the parts outside the centre crop are lost.
#
# </details>
#
# **2. SmolVLM's tokens for a 64 px picture and for a 2048 px picture of the same shape are equal. Why?**
#
# <details><summary>Answer</summary>
#
# With `do_resize` on, its processor first resizes every picture so that the longest edge is `longest_edge` (2048 px for SmolVLM-256M), up or down. The tile grid, and so the token count, then depends only on the aspect ratio.
#
# </details>
#
# **3. What does pixel shuffle with `r = 4` do to a tile's 1024 patch vectors of width C, and why is no information lost?**
#
# <details><summary>Answer</summary>
#
# It regroups them into 64 tokens of width 16 C: each token is the 4 x 4 block of neighbouring patches laid side by side. It only moves numbers from the sequence axis to the channel axis, so the block can be unshuffled exactly; the projector that follows decides what to keep.
#
# </details>
#
# **4. In Qwen2-VL, which position ids does the first text token after an image get, and why not simply "previous + number of image tokens"?**
#
# <details><summary>Answer</summary>
#
# All three ids are one more than the largest id used so far, which for an image is its start plus the larger of its row and column counts. The image's tokens share a temporal id and spread over rows and columns, so it uses far fewer positions than tokens; counting every token would waste positions and break the 2-D layout's link to the text's 1-D numbering.
#
# </details>
#
# **5. You have a laptop CPU with 8 GB of memory and want to ask questions about photos. Which real model of this notebook do you start with, and what do you watch?**
#
# <details><summary>Answer</summary>
#
# SmolVLM-256M: the selection chart and section 6 show it is by far the smallest real chat checkpoint, well under the other chat models' sizes even at full precision. Watch the prompt length: every photo costs its full tile grid plus the global image, so turn off image splitting (or lower `longest_edge`) when speed matters more than detail.
#
# </details>

# %% [markdown]
# ## References
#
# * Liu et al., *LLaVA-NeXT: Improved reasoning, OCR, and world knowledge* (blog, 2024): [llava-vl.github.io](https://llava-vl.github.io/blog/2024-01-30-llava-next/); LLaVA-1.5: [arXiv:2310.03744](https://arxiv.org/abs/2310.03744).
# * Laurençon et al., *Building and better understanding vision-language models: insights and future directions* (Idefics3, 2024): [arXiv:2408.12637](https://arxiv.org/abs/2408.12637).
# * Marafioti et al., *SmolVLM: Redefining small and efficient multimodal models* (2025): [arXiv:2504.05299](https://arxiv.org/abs/2504.05299); model card [HuggingFaceTB/SmolVLM-256M-Instruct](https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct).
# * Wang et al., *Qwen2-VL: Enhancing Vision-Language Model's Perception of the World at Any Resolution* (2024): [arXiv:2409.12191](https://arxiv.org/abs/2409.12191); model card [Qwen/Qwen2-VL-2B-Instruct](https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct).
# * transformers docs: [Idefics3](https://huggingface.co/docs/transformers/model_doc/idefics3), [Qwen2-VL](https://huggingface.co/docs/transformers/model_doc/qwen2_vl).
