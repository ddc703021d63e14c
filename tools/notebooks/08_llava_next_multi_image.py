# %% [markdown]
# # 08 · LLaVA-NeXT: any-resolution tiling and several images in one prompt
#
# **Objective.** By the end of this notebook you can say how LLaVA-NeXT cuts a picture into
# tiles ("any resolution"), predict how many image tokens a picture costs and why it is more
# than LLaVA-1.5's, ask questions about two images at once with `ChatSession.add_image`, and
# compare LLaVA-NeXT with LLaVA-1.5 on the same questions.
#
# LLaVA-1.5 ([notebook 07](07_llava.ipynb)) squeezes every picture into the vision encoder's
# one input size (336 x 336): a wide or detailed picture loses most of its pixels.
# LLaVA-NeXT (LLaVA-1.6, [Liu et al., 2024](https://llava-vl.github.io/blog/2024-01-30-llava-next/))
# keeps more of them: it picks a **grid resolution** that fits the picture's shape from a short
# list (`image_grid_pinpoints`), resizes the picture into it, cuts it into **tiles** of the
# encoder's size and encodes every tile, plus a downscaled **overview** of the whole picture.
# All those patch vectors become image tokens. Same projector-and-LLM design, more tokens.

# %%
import time

from PIL import Image
from transformers import LlavaNextProcessor

import vlmstudy
from vlmstudy import evaluation, plotting, shapes, tasks
from vlmstudy.generation import chat_prompt, generate_text
from vlmstudy.zoo.loading import load_processor
from vlmstudy.zoo.table import real_config

vlmstudy.seed_everything(0)
nxt = tasks.get_model("llava-next")
llava_processor = load_processor("llava")   # LLaVA-1.5's processor only: counting its tokens needs no weights
model, processor = nxt
print(type(model).__name__, "+", type(processor).__name__, "in", vlmstudy.get_mode(), "mode")
print("grid resolutions (height, width):", model.config.image_grid_pinpoints)

# %% [markdown]
# ## One small picture: 136 image tokens instead of 64
#
# The stand-in's encoder takes 64 x 64 pictures; its grid resolutions are 64 x 64, 64 x 128,
# 128 x 64 and 128 x 128. For a 64-pixel picture the best grid is a single tile, so the model
# sees the tile *and* the overview (`pixel_values` has a crops axis), and the processor needs
# the original size (`image_sizes`) to undo the padding later:

# %%
scene = shapes.make_scenes("test", 1, seed=3)[0]
prompt = tasks.format_question("how many shapes are there?", nxt)
inputs = processor(images=scene.render(), text=prompt, return_tensors="pt")
print(repr(prompt))
print({k: tuple(v.shape) for k, v in inputs.items()}, "image_sizes:", inputs["image_sizes"].tolist())
n_next = tasks.image_token_count(processor, scene.render())
n_15 = tasks.image_token_count(llava_processor, scene.render())
print(f"image tokens for the same picture: LLaVA-NeXT {n_next}, LLaVA-1.5 {n_15}")

# %% [markdown]
# Where 136 comes from: the overview gives 8 x 8 = 64 patch tokens (as in LLaVA-1.5); the
# tile gives another 8 x 8 = 64, laid out as rows, each row closed by a learned **newline**
# token (`image_newline`) so that the LLM knows where a row of the picture ends: 64 + 64 + 8.
#
# ## A larger picture: the tile grid
#
# `tasks.anyres_layout` works out what the processor will do: the grid resolution it picks
# (the one that keeps the most of the picture's pixels with the least waste), the tiles and
# the token count. The same scene rendered at 200 pixels, and a wide picture made of two scenes
# side by side:

# %%
big = scene.render(200)
layout = tasks.anyres_layout(processor, big)
print({k: v for k, v in layout.items() if k != "grid_pinpoints"})
fig = plotting.anyres_tiles(big, layout)

# %%
a, b = shapes.make_scenes("test", 2, seed=9)
wide = Image.new("RGB", (192, 96))
wide.paste(a.render(96), (0, 0))
wide.paste(b.render(96), (96, 0))
wide_layout = tasks.anyres_layout(processor, wide)
fig = plotting.anyres_tiles(wide, wide_layout)

# %% [markdown]
# The wide picture gets a 1 x 2 grid (no vertical squashing) and fewer tokens than a square
# 2 x 2 one: after encoding, the rows of padding are removed again ("unpadding"), so tokens are
# spent on picture, not on black bars. Tokens for a few sizes:

# %%
rows = []
for size in [(64, 64), (128, 64), (64, 128), (128, 128), (200, 100), (256, 256)]:
    lay = tasks.anyres_layout(processor, scene.render().resize(size))
    rows.append([f"{size[0]} x {size[1]}", f"{lay['grid'][0]} x {lay['grid'][1]}", lay["crops"],
                 lay["image_tokens"], tasks.image_token_count(llava_processor, scene.render().resize(size))])
tasks.Table(["picture (w x h)", "tile grid", "crops", "LLaVA-NeXT tokens", "LLaVA-1.5 tokens"], rows)

# %% [markdown]
# The real checkpoint (`llava-hf/llava-v1.6-mistral-7b-hf`) tiles at 336 pixels with 14-pixel
# patches. A processor with its settings (built here from the numbers in its config, no
# download) shows what a photo costs:

# %%
real = real_config("llava-next")
real_image_processor = type(processor.image_processor)(
    image_grid_pinpoints=real.image_grid_pinpoints, size={"shortest_edge": real.vision_config.image_size},
    crop_size={"height": real.vision_config.image_size, "width": real.vision_config.image_size})
real_processor = LlavaNextProcessor(image_processor=real_image_processor, tokenizer=processor.tokenizer,
                                    patch_size=real.vision_config.patch_size, num_additional_image_tokens=1,
                                    vision_feature_select_strategy="default", chat_template=processor.chat_template)
real_15 = real_config("llava")
n_15_real = (real_15.vision_config.image_size // real_15.vision_config.patch_size) ** 2
real_tokens = []
for size in [(336, 336), (672, 672), (1008, 336), (800, 600)]:
    lay = tasks.anyres_layout(real_processor, Image.new("RGB", size, "white"))
    real_tokens.append(lay["image_tokens"])
    print(f"{size[0]:>4} x {size[1]:<4} -> grid {lay['grid']}, {lay['crops']} crops, {lay['image_tokens']} image tokens "
          f"(LLaVA-1.5: {n_15_real})")
most = max(real_tokens)
print(f"\nat most {most} image tokens per photo, {most / n_15_real:.1f} x LLaVA-1.5's {n_15_real}; two such photos: "
      f"{2 * most} tokens")
print(f"context: LLaVA-NeXT ({real.text_config.model_type}) {real.text_config.max_position_embeddings} tokens, "
      f"LLaVA-1.5 ({real_15.text_config.model_type}) {real_15.text_config.max_position_embeddings}")

# %% [markdown]
# Up to the 2,928 tokens printed above per photo instead of 576: better detail (text in images,
# small objects), at about five times the prompt length, so more memory and slower answers. Two
# such photos (5,856 image tokens) would not even fit in LLaVA-1.5's 4,096-token context; the
# Mistral-based LLaVA-NeXT has a 32,768-token one, so a few photos fit, but each one still
# costs time and memory (attention and the KV cache grow with every token).
#
# ## Two images in one prompt
#
# The chat template puts one `<image>` per image in the user turn; the processor expands each
# into its own tokens, in order. `ChatSession.add_image` adds an image to the conversation:

# %%
first, second = shapes.make_scenes("test", 2, seed=30)
fig = vlmstudy.show_images([first.render(), second.render()], ["first: " + first.caption, "second: " + second.caption],
                           cols=2, scale=2.8, wrap=34)
chat = tasks.ChatSession(nxt).set_image(first.render()).add_image(second.render())
for question in ["which image has more shapes?", "what is in the second image?"]:
    print(f"{question:34} -> {chat.ask(question)}")
last_prompt, last_tokens, chat_turns = chat.last_prompt, chat.count_tokens(chat.last_prompt), len(chat.history)
print("\nprompt of the last turn:", repr(last_prompt))
print(f"tokens the model read: {last_tokens} (2 x {n_next} image tokens + text)")

# %% [markdown]
# How well does the stand-in do on pairs it never saw? `shapes.two_image_questions` gives
# questions with known answers (which has more shapes, are the counts equal, what is in the
# first / second picture):

# %%
pair_scenes = list(zip(shapes.make_scenes("test", 10, seed=31), shapes.make_scenes("test", 10, seed=32)))
pair_qas = [(a_scene, b_scene, qa) for a_scene, b_scene in pair_scenes
            for qa in shapes.two_image_questions(a_scene, b_scene)]
# the batched form of what ChatSession does for one question: chat template with two <image>s
replies = generate_text(model, processor, [im for a_scene, b_scene, _ in pair_qas
                                           for im in (a_scene.render(), b_scene.render())],
                        [chat_prompt(processor, [(qa.question, None)], n_images=2) for _, _, qa in pair_qas],
                        images_per_prompt=2)
two_image_right = sum(evaluation.answer_matches(r, qa.answer) for r, (_, _, qa) in zip(replies, pair_qas))
two_image_total = len(pair_qas)
for (_, _, qa), r in list(zip(pair_qas, replies))[:4]:
    print(f"{qa.question:48} -> {r!r:50} truth: {qa.answer!r}")
two_image_accuracy = two_image_right / two_image_total
print(f"two-image questions: {two_image_right}/{two_image_total} right ({two_image_accuracy:.0%})")

# %% [markdown]
# (Each question is asked on its own, with both images, as the model was trained. LLaVA-1.5's
# stand-in was trained on single pictures only.)
#
# ## LLaVA-NeXT vs LLaVA-1.5 on the same single-image questions
#
# Same questions, same 64-pixel pictures. On ShapesWorld the extra tile adds no detail (the
# picture is already at the encoder's size), so expect similar accuracy and a longer prompt.
# The real models have 7 billion parameters each: one at a time. LLaVA-NeXT answers first, then
# leaves memory (every variable that holds it is dropped) for LLaVA-1.5, then comes back.

# %%
test = shapes.make_scenes("test", 16, seed=33)
qas = [(s, qa) for s in test for qa in shapes.questions(s)[:3]]
images = [s.render() for s, _ in qas]
questions, truths, kinds = [qa.question for _, qa in qas], [qa.answer for _, qa in qas], [qa.kind for _, qa in qas]


def single_image_scores(pair):
    """Accuracy per question kind and overall, and seconds per answer (batched)."""
    start = time.perf_counter()
    replies = tasks.answer_batch(images, questions, model=pair, batch_size=48, progress=False)
    per_answer = (time.perf_counter() - start) / len(qas)
    return {**evaluation.accuracy_by_kind(replies, truths, kinds), "all": evaluation.answer_accuracy(replies, truths)}, per_answer


results, seconds = {}, {}
results["LLaVA-NeXT"], seconds["LLaVA-NeXT"] = single_image_scores(nxt)
del model, nxt, chat
tasks.clear_cache()
results["LLaVA-1.5"], seconds["LLaVA-1.5"] = single_image_scores(tasks.get_model("llava"))
tasks.clear_cache()
nxt = tasks.get_model("llava-next")
model, processor = nxt
for name in results:
    print(f"{name:10} accuracy {results[name]['all']:.1%}, {seconds[name] * 1000:.0f} ms per answer (batched, CPU)")
fig = plotting.accuracy_bars(results, title=f"{len(qas)} single-image questions, per kind")

# %% [markdown]
# On real photos the comparison goes the other way for fine detail (reading text, counting
# small things), which is what the tiles are for; the cost, a prompt two to five times
# longer, is the same.

# %% [markdown]
# ## Outside the toy world: another renderer, other wordings
#
# A stand-in can be perfect on the pictures and the one wording it was trained on and still fail
# a learner who draws a shape a little differently or types "What color is ...". So every metric
# is measured three ways: on the training renderer's pictures with the trained wording; with
# **held-out wordings** no training ever used (`vlmstudy.phrasings`); and on pictures from a
# **second renderer** (`vlmstudy.second_renderer`: other drawing code, shades, proportions and
# backgrounds), also with held-out wordings. The same test scenes are drawn by both:

# %%
import random

from vlmstudy import phrasings, second_renderer
from vlmstudy.zoo.evaluate import generalisation_check

fig = second_renderer.show_renderers(shapes.make_scenes("test", 4, seed=5))
example = shapes.questions(shapes.make_scenes("test", 1, seed=5)[0])[1]
print(f"trained wording: {example.question!r}; a held-out one: "
      f"{phrasings.paraphrase(example, random.Random(0), 'heldout')!r}")

# %% [markdown]
# LLaVA-NeXT on single images, and on pairs of images drawn by the same renderer.
# `generalisation_check` measures 40 test scenes in each condition and plots the accuracy per
# question kind; for a shipped stand-in it also holds each condition to the floor its model card
# sets (the card's figure minus two standard errors), and for a real checkpoint it only prints.

# %%
generalisation, fig = generalisation_check("llava-next", nxt, n=40)

# %% [markdown]
# ## On a real photo
#
# A real photograph is neither 64 pixels nor square. `tasks.anyres_layout` shows how the
# processor cuts one (`vlmstudy.real_photo("coffee")`, 384 x 256 pixels): the grid resolution
# it picks, the tiles and the image tokens, beside LLaVA-1.5's fixed count for the same photo,
# and what the real checkpoint's processor (`real_processor` above) would make of it. This part
# is mechanics and holds in every mode; in `tiny` mode `processor` has the stand-in's small grid
# resolutions, in hub mode the real ones, and then the two layouts are the same.
#
# Then one question about the photo. In `tiny` mode the stand-in knows only ShapesWorld (its
# vocabulary too: "cup" and "coffee" are unknown tokens), so its answer is not about the photo:
# what a model says outside its training world. With `VLMSTUDY_MODE=hub` the real LLaVA-NeXT
# answers, reading the tiles.

# %%
photo = vlmstudy.real_photo("coffee")
photo_layout = tasks.anyres_layout(processor, photo.image)
real_photo_layout = tasks.anyres_layout(real_processor, photo.image)
for name, lay in (("this processor", photo_layout), ("the real checkpoint's", real_photo_layout)):
    print(f"{name:22} {lay['image_size']} -> grid {lay['grid']} of {lay['tile_size']} tiles at "
          f"{lay['best_resolution']}, {lay['crops']} crops, {lay['image_tokens']} image tokens")
print("LLaVA-1.5, the same photo:", tasks.image_token_count(llava_processor, photo.image), "image tokens")
fig = plotting.anyres_tiles(photo.image, photo_layout)
assert photo_layout["crops"] == photo_layout["grid"][0] * photo_layout["grid"][1] + 1

# %%
photo_question, written = photo.questions[0]
reply = tasks.answer(photo.image, photo_question, model=nxt)
print(f"Q: {photo_question}\n   LLaVA-NeXT: {reply!r}   (a person: {written!r})")
assert isinstance(reply, str)

# %% [markdown]
# ## Checks
#
# The first block checks the mechanics: they hold for any weights, in every mode (the numbers
# come from each processor's own settings). The second checks what the models can do: a
# stand-in must reach the floor its model card sets (it fails on untrained placeholder weights;
# `vlmstudy zoo train llava llava-next` builds them), a real checkpoint is printed.

# %%
vc = model.config.vision_config
side = (vc.image_size // vc.patch_size)
small_layout = tasks.anyres_layout(processor, scene.render())
rows, cols = small_layout["grid"]
assert n_15 == side * side, "LLaVA-1.5: one token per patch"
assert side * side < n_next - side * side <= rows * side * (cols * side + 1), \
    "overview + the tiles (their padding removed) + a newline per tile row"
if small_layout["grid"] == (1, 1):  # one tile of the picture's own shape: nothing to unpad
    assert n_next == 2 * side * side + side, "overview + one tile + a newline per tile row"
assert inputs["pixel_values"].shape[1] == small_layout["crops"] == rows * cols + 1, "the tiles + the overview"
assert layout["crops"] == layout["grid"][0] * layout["grid"][1] + 1 and layout["image_tokens"] >= n_next
assert wide_layout["grid"] == (1, 2), "a picture twice as wide as high: one row of two tiles"
# The two <image> placeholders expand, in order, into each picture's own tokens: 2 x n_next here
two = processor(images=[first.render(), second.render()], text=last_prompt, return_tensors="pt")
assert int((two["input_ids"] == model.config.image_token_index).sum()) == 2 * n_next, "each <image> -> its picture's tokens"
assert last_tokens == two["input_ids"].shape[1], "count_tokens = what the processor gives the model"
assert chat_turns == 2 and last_prompt.index("which image has more shapes?") < last_prompt.index("what is in the second")
assert tasks.anyres_layout(real_processor, Image.new("RGB", (672, 672)))["image_tokens"] == 2928
print("mechanics: all checks passed")

# %% [markdown]
# The course's targets are 0.90 single-image and 0.80 two-image on all test scenes. The
# stand-ins' model cards store what they reached (printed first, a stored result with the
# command that measured it; at the time of writing below both targets). Each floor is the card's
# value minus two standard errors of this notebook's sample.

# %%
for model_ in (nxt, "llava"):   # stored results: each card's metrics (not run here)
    _, name, card = evaluation.model_origin(model_)
    if card is not None:
        print(f"{name} card ({card['command']}):", card["metrics"])
evaluation.check_quality(nxt, "two_image_accuracy", two_image_accuracy, n=two_image_total)
evaluation.check_quality(nxt, "single_image_accuracy", results["LLaVA-NeXT"]["all"], n=len(qas))
evaluation.check_quality("llava", "first_turn_accuracy", results["LLaVA-1.5"]["all"], n=len(qas))
print("On to 09, attention.")

# %% [markdown]
# ## Summary
#
# * LLaVA-NeXT picks a grid resolution that fits the picture's shape from `image_grid_pinpoints`, cuts the resized picture into tiles of the encoder's size, and encodes every tile plus a downscaled overview; all those patch vectors become image tokens.
# * A learned newline token closes every row of tile patches, and the padding added to fit the grid is removed again after encoding ("unpadding", which is why the processor passes `image_sizes`).
# * `tasks.anyres_layout` predicts the grid, the tiles and the token count for any picture, with the stand-in's processor or the real checkpoint's settings: more detail costs a much longer prompt.
# * Several images go into one prompt with one `<image>` each, expanded in order; `ChatSession.add_image` adds them to a conversation.
# * On 64-pixel ShapesWorld pictures the tile adds no detail, so the comparison with LLaVA-1.5 shows mainly the longer prompt; the tiles pay off on large pictures with fine detail.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Where do the 136 image tokens of a 64-pixel picture come from?**
#
# <details><summary>Answer</summary>
#
# 8 x 8 = 64 patch tokens from the overview, 64 more from the single tile, and one newline token after each of the tile's 8 rows: 64 + 64 + 8.
#
# </details>
#
# **2. Why does the processor return `image_sizes` with the pixel values?**
#
# <details><summary>Answer</summary>
#
# The picture was resized and padded to fit its grid resolution; with the original size the model can remove the padding's rows and columns after encoding, so no tokens are spent on padding.
#
# </details>
#
# **3. Why does a picture twice as wide as it is high get a 1 x 2 grid, and fewer tokens than a square picture of the same width?**
#
# <details><summary>Answer</summary>
#
# The grid is chosen to keep the most of the picture's pixels with the least waste: 1 x 2 fits a 2:1 picture without squashing it. It has two tiles instead of four, so fewer patches, and after unpadding no tokens go to empty bars.
#
# </details>
#
# **4. In a prompt with two images, how does the model know which image tokens belong to which picture?**
#
# <details><summary>Answer</summary>
#
# The chat template writes one `<image>` per image in the user turn, in order, and the processor expands each into that image's own tokens at its place; the text says "first" and "second" in the same order.
#
# </details>
#
# **5. When is LLaVA-NeXT worth its longer prompt, and when not?**
#
# <details><summary>Answer</summary>
#
# When the picture is larger than the encoder's input and the question needs its detail (text in the image, small objects). On a picture already at the encoder's size, like ShapesWorld's, the tile adds no detail and only costs prompt length, memory and time.
#
# </details>

# %% [markdown]
# ## References
#
# * Liu et al., *LLaVA-NeXT: Improved reasoning, OCR, and world knowledge* (blog, 2024): [llava-vl.github.io](https://llava-vl.github.io/blog/2024-01-30-llava-next/); LLaVA-1.5 and its high-resolution grid variant: [arXiv:2310.03744](https://arxiv.org/abs/2310.03744).
# * Jiang et al., *Mistral 7B* (2023), the language model of the checkpoint: [arXiv:2310.06825](https://arxiv.org/abs/2310.06825).
# * Model cards: [llava-hf/llava-v1.6-mistral-7b-hf](https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf), [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf).
# * transformers docs: [LLaVA-NeXT](https://huggingface.co/docs/transformers/model_doc/llava_next), [chat templates](https://huggingface.co/docs/transformers/chat_templating).
