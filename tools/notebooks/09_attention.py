# %% [markdown]
# # 09 · Attention: where do vision-language models look?
#
# **Objective.** By the end of this notebook you can write multi-head cross-attention yourself
# and check it against a real model's layer, pull attention weights out of CLIP, BLIP and LLaVA,
# turn them into heatmaps over the image (raw attention, attention **rollout**, and
# gradient-weighted **relevancy**), and measure with the **pointing game** whether a map really
# points at the object a text names, and how much better than chance it does.
#
# The models are the tiny stand-ins (64 px images cut into an 8 x 8 grid of 8 px patches), so
# every map here is 8 x 8, upsampled onto the picture. With `VLMSTUDY_MODE=hub` the same code
# runs on the real checkpoints, and each map has its model's own grid (`attention.patch_grid`,
# read from the config; the checks below use it): CLIP ViT-B/32 at 224 px, 7 x 7; BLIP's
# ViT-B/16 at 384 px and LLaVA's ViT-L/14 at 336 px, 24 x 24.

# %%
import numpy as np
import torch

import vlmstudy
from vlmstudy import attention, evaluation, plotting, pointing, shapes
from vlmstudy.generation import to_model

vlmstudy.seed_everything(0)
torch.set_grad_enabled(False)   # only the relevancy maps need gradients; they switch them on themselves
clip = vlmstudy.load("clip")
blip = vlmstudy.load("blip-caption")
llava = vlmstudy.load("llava")

scene = pointing.pointing_scenes(40, seed=0, min_objects=3)[0]   # a test scene with three objects
image = scene.render()
print(scene.caption)
fig = vlmstudy.show_images([scene.render(256)], [scene.caption], scale=3)

# %% [markdown]
# ## 1. Cross-attention, from scratch
#
# In BLIP's text decoder every layer has a **cross-attention** block: each text token (a query)
# looks at the image encoder's 65 tokens (CLS + 64 patches) and takes a weighted average of them.
# With `H` heads of width `d`:
#
# $$q = x W_q,\quad k = c\,W_k,\quad v = c\,W_v,\qquad
#   A = \mathrm{softmax}\!\left(\frac{q k^\top}{\sqrt d}\right) \in \mathbb{R}^{H \times T \times N},\qquad
#   \mathrm{out} = \mathrm{LayerNorm}\big(x + W_o\,[A v]_{\text{heads concatenated}}\big)$$
#
# `x` (B, T, D) are the text tokens' hidden states, `c` (B, N, D_img) the image tokens. Row `t`
# of `A` is a probability distribution over the patches: *where token t looks*. The last step
# (output projection, residual, LayerNorm) is how BERT-style blocks (BLIP, the Q-Former) wrap
# attention.
#
# To check our version we need the layer's real inputs. A **forward hook** records what a module
# receives and returns while the model runs; here, while BLIP's decoder reads the caption:

# %%
model, processor = blip
block = model.text_decoder.bert.encoder.layer[0].crossattention   # a BlipTextAttention
seen = []
hook = block.register_forward_hook(lambda mod, args, kwargs, out: seen.append((args[0], kwargs, out)),
                                   with_kwargs=True)
pixels = to_model(model, processor(images=image, return_tensors="pt"))["pixel_values"]   # on the model's device
caption_ids = processor.tokenizer(scene.caption, add_special_tokens=False).input_ids
ids = torch.tensor([[model.config.text_config.bos_token_id] + caption_ids], device=pixels.device)
image_tokens = model.vision_model(pixel_values=pixels)[0]          # (1, 1 + patches, width): CLS + one per patch
model.text_decoder(input_ids=ids, encoder_hidden_states=image_tokens)
hook.remove()
x, kwargs, (library_out, library_weights) = seen[0]
c = kwargs["encoder_hidden_states"]
print("text tokens x:", tuple(x.shape), " image tokens c:", tuple(c.shape))

# %% [markdown]
# Now the formula, line by line, with the layer's own weights:

# %%
att, out_proj = block.self, block.output
heads = att.num_attention_heads
d = x.shape[-1] // heads

def split_heads(t):                                  # (B, L, H*d) -> (B, H, L, d)
    return t.view(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

q, k, v = split_heads(att.query(x)), split_heads(att.key(c)), split_heads(att.value(c))
weights = (q @ k.transpose(-1, -2) / d ** 0.5).softmax(dim=-1)            # (B, H, T, N)
context = (weights @ v).transpose(1, 2).reshape(x.shape)                  # heads concatenated
ours = out_proj.LayerNorm(x + out_proj.dense(context))                    # projection, residual, LayerNorm

print("weights:", tuple(weights.shape), " output:", tuple(ours.shape))
print("max |ours - library| output: ", (ours - library_out).abs().max().item())
print("max |ours - library| weights:", (weights - library_weights).abs().max().item())
assert torch.allclose(ours, library_out, atol=1e-5) and torch.allclose(weights, library_weights, atol=1e-5)

# %% [markdown]
# The same as a reusable module: `attention.CrossAttention(dim_q, dim_kv, heads)` returns the
# output and the weights `(B, heads, T, N)`; `CrossAttention.from_hf(layer)` copies a real layer.
# Every layer of BLIP's decoder has one such block, each with its own weights: the last one
# reads the text tokens after all the layers below it. The BLIP-2 **Q-Former** (notebook 06)
# uses the same block with learned query tokens in the text's place; there the image tokens are
# wider than the queries (1408 vs 768 in the real BLIP-2), which is why `dim_kv` is separate.
# Not in every layer, though: in the real Q-Former the queries cross-attend to the image every
# other block (`Blip2QFormerConfig.cross_attention_frequency`, 2 by default: transformers gives
# layer `i` a cross-attention block when `i % 2 == 0`) and only self-attend in between. The
# stand-in's is printed below.

# %%
from transformers import AutoConfig, Blip2QFormerConfig

blip2_qformer = AutoConfig.from_pretrained(vlmstudy.zoo.resolve_source("blip2")[0]).qformer_config
print(f"Q-Former: cross-attention every {Blip2QFormerConfig().cross_attention_frequency} layers by default; "
      f"this mode's blip2: every {blip2_qformer.cross_attention_frequency} of its {blip2_qformer.num_hidden_layers} layers")
mine = attention.CrossAttention.from_hf(block)
out, w = mine(x, c)
print("BLIP decoder layer 0:", (out - library_out).abs().max().item())

layers = model.text_decoder.bert.encoder.layer
last_block = layers[-1].crossattention
seen_last = []
hook = last_block.register_forward_hook(lambda mod, args, kwargs, out: seen_last.append((args[0], out[0])),
                                        with_kwargs=True)
model.text_decoder(input_ids=ids, encoder_hidden_states=image_tokens)
hook.remove()
x_last, last_library = seen_last[0]
last_ours, last_weights = attention.CrossAttention.from_hf(last_block)(x_last, c)
print(f"BLIP decoder layer {len(layers) - 1}:", (last_ours - last_library).abs().max().item(),
      " weights", tuple(last_weights.shape))
assert (out - library_out).abs().max() < 1e-5 and (last_ours - last_library).abs().max() < 1e-5

# %% [markdown]
# ## 2. CLIP: what does the CLS token look at?
#
# CLIP's image embedding is read from the **CLS** token after the last layer. Each layer's
# self-attention `(heads, 65, 65)` says how much every token draws on every other; the CLS row,
# averaged over heads, is a first heatmap. `attention.vision_attentions` returns all layers
# (transformers returns attention weights only from its "eager" attention code; the helpers
# switch the model to it, which changes no number).
#
# One layer's attention ignores what happened before it. **Attention rollout**
# ([Abnar & Zuidema, 2020](https://arxiv.org/abs/2005.00928)) follows the information through
# all layers: add the residual connection (`0.5 A + 0.5 I`, rows renormalised) and multiply the
# layers' matrices.

# %%
clip_model, clip_processor = clip
att = attention.vision_attentions(clip_model, clip_processor, [image])     # (layers, B, heads, 65, 65)
print("attention of every layer:", tuple(att.shape))
per_layer = np.concatenate([attention.cls_attention_map(att, layer=i) for i in range(att.shape[0])])
rollout = attention.rollout_map(att)
fig = plotting.heatmap_grid(image, np.concatenate([per_layer, rollout]),
                            [f"CLS attention, layer {i}" for i in range(att.shape[0])] + ["rollout"],
                            show_image=True)

# %% [markdown]
# Neither map knows which object you are asking about: they are the same whatever the text.
# To ask "where is *the red circle*?" we need the text in the loop.
#
# ## 3. Relevancy: a map for each text
#
# [Chefer, Gur & Wolf (2021)](https://arxiv.org/abs/2103.15679) weight attention by its
# gradient. Take the image-text similarity `s`; in every layer keep the parts of the attention
# that *raise* `s`, averaged over heads, `Ā = mean_h((∂s/∂A ⊙ A)⁺)`, and accumulate them from the
# identity: `R ← R + Ā R`. The CLS row of `R` is the map. Different texts give different maps:

# %%
texts = [shapes.object_phrase(o) for o in scene.objects] + [scene.objects[0].color, scene.objects[-1].shape]
relevancy, sims = attention.clip_relevancy(clip_model, clip_processor, [image] * len(texts), texts,
                                           return_scores=True)
fig = plotting.heatmap_grid(image, relevancy, [f"'{t}'  (cos {s:.2f})" for t, s in zip(texts, sims)])

# %% [markdown]
# The white `+` marks each map's peak. A simpler gradient method, **Grad-CAM** on the tokens
# entering CLIP's last layer, is `attention.clip_gradcam`; the pointing game below compares it.
#
# ## 4. BLIP: which patches does each word read?
#
# The captioner's cross-attention (section 1) gives, for every word, a distribution over the
# patches. `attention.blip_word_attention` averages it over heads and layers. By default it
# shows the step that **writes** each word (its query is the previous token); `step="read"`
# shows the attention of the word's own position.

# %%
words = attention.blip_word_attention(*blip, image)                 # caption generated by the model
print("caption:", words.text)
fig = plotting.heatmap_grid(image, words.maps, words.tokens, cols=7)

# %% [markdown]
# ## 5. LLaVA: where does each generated token look?
#
# LLaVA puts 64 image tokens (one per patch) into the language model's prompt, where the
# `<image>` placeholder was. Its ordinary causal self-attention then lets every later token look
# at them. `attention.llava_token_attention` answers greedily and, for every generated token,
# takes the attention from the step that produced it to those 64 positions (found by
# `config.image_token_id`), averaged over heads and layers.

# %%
description = attention.llava_token_attention(*llava, image, "describe the image.", max_new_tokens=16)
print("LLaVA:", description.text)
fig = plotting.heatmap_grid(image, description.maps, [f"'{t}'" for t in description.tokens], cols=8)

# %% [markdown]
# Attention says where information *can* flow from, not what the answer depends on. A
# gradient asks the second question: `attention.llava_answer_relevancy` takes the
# log-probability of an answer word and multiplies each image token's features by their gradient
# (**input x gradient**), for the true colour and for the model's own answer:

# %%
target = scene.objects[0]
question = f"what colour is the shape {shapes.POSITION_PHRASES[target.position]}?"
answer = attention.llava_token_attention(*llava, image, question, max_new_tokens=2)
grad_maps = np.concatenate([
    attention.llava_answer_relevancy(*llava, [image], [question], [target.color]),
    attention.llava_answer_relevancy(*llava, [image], [question]),           # None: the model's own answer
])
print(f"{question} -> {answer.text!r} (truth: {target.color})")
fig = plotting.heatmap_grid(image, np.concatenate([answer.maps[:1], grad_maps]),
                            [f"attention writing '{answer.tokens[0]}'", f"input x grad of '{target.color}'",
                             f"input x grad of '{answer.tokens[0]}'"], show_image=True)

# %% [markdown]
# ## 6. The pointing game: does the map point at the right object?
#
# A heatmap can look convincing and still be wrong. The **pointing game**
# ([Zhang et al., 2016](https://arxiv.org/abs/1608.00507)) makes it a number: for every object of
# every scene, make the map for that object (its phrase, its words, or a question about it),
# upsample it to 64 px and take its maximum; a **hit** is a maximum inside the object's mask,
# dilated by 2 px (`pointing.DEFAULT_TOLERANCE`: anti-aliased edges and an 8 x 8 map's coarse
# peak make exact-edge hits a lottery). **Chance** is what a random point scores: the mean share
# of the image the (dilated) target covers.
#
# First, the scoring itself: the target's own mask must score 100 %, a map peaked on another
# object 0 %.

# %%
game_scenes = pointing.pointing_scenes(40, seed=0)                  # 2-3 objects each
oracle = pointing.pointing_game(pointing.oracle_method, game_scenes, name="oracle")


def wrong_object(scenes, targets):             # a map peaked on the centre of another object
    maps = np.zeros((len(scenes), 64, 64))
    for m, s, t in zip(maps, scenes, targets):
        other = s.objects[(t + 1) % len(s.objects)]
        m[int(other.y * 64), int(other.x * 64)] = 1.0
    return maps


wrong = pointing.pointing_game(wrong_object, game_scenes, name="wrong object")
print(f"{oracle.trials} trials: oracle {oracle.accuracy:.0%}, wrong object {wrong.accuracy:.0%}, "
      f"chance {oracle.chance:.1%}")

# %% [markdown]
# Now every method on the same scenes. The text-blind ones (CLIP's CLS attention and rollout,
# and a fixed map peaked at the image centre, which needs no model at all) draw one map per scene,
# so they can hit at most one of its 2-3 objects. The LLaVA rows ask
# "what colour is the shape on the left?" (the target's position) and explain the colour word;
# `answer_accuracy` in the rows says how often the model's answer was right.

# %%
models = {"clip": clip, "blip-caption": blip, "llava": llava}
rows = pointing.pointing_game_table(n=len(game_scenes), seed=0, models=models)
print(pointing.format_table(rows))
fig = plotting.pointing_bars(rows, title=f"pointing game, {rows[0]['trials']} objects in {len(game_scenes)} scenes")

# %% [markdown]
# These are a few dozen scenes, so the intervals are wide. The course's reference run uses 200
# test scenes (`python benchmarks/bench_pointing_game.py --n 200`, stored in
# `benchmarks/results/pointing_game.json` with the models' training status):

# %%
stored = pointing.stored_results()
if stored is None:
    print("no stored run yet: python benchmarks/bench_pointing_game.py --n 200")
else:
    print(stored["command"], "|", stored["date"], "| the tiny stand-ins\n")
    print(pointing.format_table(stored["rows"]))

# %% [markdown]
# One row scores *below* chance: CLIP Grad-CAM (0.006 in the stored run, chance 0.073). Below
# chance is not noise: a random point would hit about 7 % of the time, so a map that hits less
# is pointing away from the object systematically. Where does its maximum land? On this
# notebook's trials:

# %%
from collections import Counter

trial_scenes, trial_targets = pointing.pointing_trials(game_scenes)
gradcam_maps = pointing.clip_gradcam_method(clip_model, clip_processor)(trial_scenes, trial_targets)
landing, peak_patches = Counter(), Counter()
for scene_, t, m in zip(trial_scenes, trial_targets, gradcam_maps):
    up = plotting.upsample_heatmap(np.asarray(m, dtype=np.float64), (64, 64))
    r, c = np.unravel_index(int(up.argmax()), up.shape)
    masks = [pointing.dilate(mask) for mask in shapes.masks(scene_, 64)]
    landing["the named object" if masks[t][r, c] else "another object"
            if any(mk[r, c] for i, mk in enumerate(masks) if i != t) else "the background"] += 1
    peak_patches[tuple(int(i) for i in np.unravel_index(int(np.argmax(m)), m.shape))] += 1
(patch, times), = peak_patches.most_common(1)
print(f"Grad-CAM's maximum over {len(trial_targets)} trials:", dict(landing))
print(f"the same patch {patch} (row, column) is the peak in {times} of {len(trial_targets)} trials, whatever the text")

# %% [markdown]
# The Grad-CAM map is the token activations weighted by the mean gradient, `ReLU(sum_c w_c h_c)`:
# one patch whose activations are large in the directions the gradient weights wins it almost
# whatever the text says, and that patch lies on the empty background. ViTs are known to keep
# such high-norm background tokens as a scratch space for global information
# ([Darcet et al., 2023](https://arxiv.org/abs/2309.16588)); whether that is the mechanism in this
# stand-in is a hypothesis the cell does not prove. Either way Grad-CAM, designed for CNN feature
# maps, reads the wrong thing here, and the pointing game exposes it where the picture alone might
# not.

# %% [markdown]
# What to take away:
#
# * **A map must depend on the text to point at a named object.** Rollout and CLS attention
#   draw one map per picture: at best they find *an* object in every scene (one hit per scene),
#   never the one you named. The fixed centre map shows what not looking at all scores.
# * **How good a map is depends on the model, not only on the method.** CLIP relevancy (gradients
#   through CLIP's attention) points at the named object, while CLIP's own attention cannot (it
#   never sees the text). In the generative stand-ins, raw attention points well too: the
#   cross-attention of BLIP's caption words and the attention of the colour word LLaVA writes land
#   on the object they describe (the stored reference run above has the figures), with input x
#   gradient close behind. Earlier, shorter-trained versions of the same stand-ins showed the
#   opposite: their attention landed on the same object whatever was asked, while input x gradient
#   still pointed (a stored result of that time, not reproduced here:
#   `git show 350e670:benchmarks/results/pointing_game.json`, BLIP cross-attention 0.38, LLaVA
#   attention 0.40, LLaVA input x gradient 0.87). A model that has learned the task routes
#   information from the right place; one that has not can still be explained by gradients.
# * **Attention is not explanation.** Residual streams carry information around every attention
#   map, so check a map with a number like this one before trusting a picture.

# %% [markdown]
# ## On a real photo
#
# The same relevancy maps (section 3, `attention.clip_relevancy`) on a real photograph,
# `vlmstudy.real_photo("astronaut")` (public domain, NASA), one map per text naming a part of
# it: the face, the helmet, the flag, the model of the space shuttle. The grid of patches is
# the model's own (`attention.patch_grid`): 8 x 8 for the stand-in, 7 x 7 for the real
# ViT-B/32.
#
# In `tiny` mode the stand-in CLIP has only seen shapes, and every one of these words is an
# unknown token to its tokenizer, so the four texts are close to the same sentence and the maps
# cannot follow them: whatever they highlight is not the part named. A map always comes out, and
# always looks like it points somewhere; that is why section 6 scores maps before trusting them.
# With `VLMSTUDY_MODE=hub` the real CLIP draws the maps.

# %%
photo = vlmstudy.real_photo("astronaut")
photo_texts = list(photo.things)
photo_maps, photo_sims = attention.clip_relevancy(clip_model, clip_processor, [photo.image] * len(photo_texts),
                                                  photo_texts, return_scores=True)
grid = attention.patch_grid(clip_model)
print(f"{len(photo_texts)} maps of {grid} x {grid} patches; the texts, tokenized:",
      [clip_processor.tokenizer.tokenize(t) for t in photo_texts[:2]])
fig = plotting.heatmap_grid(photo.image, photo_maps, [f"'{t}'  (cos {s:.2f})" for t, s in zip(photo_texts, photo_sims)],
                            show_image=True, scale=2.4)
assert photo_maps.shape == (len(photo_texts), grid, grid)
assert np.allclose(photo_maps.reshape(len(photo_texts), -1).max(-1), 1.0), "maps are scaled to [0, 1]"

# %% [markdown]
# ## Checks
#
# These pass when everything above worked. If one fails, its message says what went wrong.

# %%
scored = [r for r in rows if r["hits"] is not None]
best = max(scored, key=lambda r: r["accuracy"])
best_blind = max((r for r in scored if not r["text_conditioned"]), key=lambda r: r["accuracy"])
chance = rows[-1]["accuracy"]
assert (ours - library_out).abs().max() < 1e-5, "the from-scratch cross-attention should match BLIP's layer"
assert (last_ours - last_library).abs().max() < 1e-5, "the from-scratch cross-attention should match every BLIP layer"
clip_grid, blip_grid = attention.patch_grid(clip_model), attention.patch_grid(blip[0])   # from each model's config
assert relevancy.shape == (len(texts), clip_grid, clip_grid) and words.maps.shape == (len(words.tokens), blip_grid, blip_grid)
assert np.allclose(relevancy.reshape(len(texts), -1).max(-1), 1.0), "maps are scaled to [0, 1]"
assert oracle.accuracy == 1.0 and wrong.accuracy == 0.0, "the pointing game's scoring is off"
print("mechanics: all checks passed")
# Quality: the stand-ins' best method must beat chance clearly (twice the chance level) and the
# best method that never reads the text by at least one hit. Their model cards do not measure the
# pointing game, so the floor is stated here; with real checkpoints it is printed, not asserted.
evaluation.check_quality(best["model"], f"pointing game ({best['method']})", best["accuracy"],
                         floor=max(2 * chance, best_blind["accuracy"] + 1 / best["trials"]))
print(f"best method {best['method']!r} points right {best['accuracy']:.0%} of the time "
      f"(chance {chance:.0%}, best text-blind method {best_blind['accuracy']:.0%}). On to 10.")

# %% [markdown]
# ## Summary
#
# * Cross-attention, written from its formula with a real layer's weights (inputs recorded by a forward hook), equals BLIP's layer: each row of the attention matrix is a probability distribution over the image tokens, where one text token looks.
# * CLIP's CLS attention and attention rollout (attention with the residual added, multiplied over the layers) are the same whatever the text: they cannot point at a named object.
# * Gradient-weighted relevancy gives a map per text; BLIP's word attention and LLaVA's token attention, and input x gradient, show where generated words look or what the answer depends on.
# * The pointing game turns a map into a number (a hit is the map's maximum inside the dilated object mask) to compare with chance, the share of the image the target covers.
# * How well a map points depends on the model as well as the method, and attention is not an explanation: check a map with a number before trusting the picture.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. What does one row of a cross-attention matrix say, and why does it sum to 1?**
#
# <details><summary>Answer</summary>
#
# Row $t$ says how much text token $t$ draws on each image token: where it looks. It is a softmax over the $N$ image tokens of the scaled scores $q k^\top / \sqrt d$, so it is a probability distribution.
#
# </details>
#
# **2. Why is a forward hook useful for checking the from-scratch layer?**
#
# <details><summary>Answer</summary>
#
# It records the exact inputs and output of the real layer while the model runs, so our formula can be fed the same text states and image tokens and its output compared with the layer's.
#
# </details>
#
# **3. What does attention rollout add to multiplying the layers' attention matrices, and why?**
#
# <details><summary>Answer</summary>
#
# The residual connection: each layer's matrix becomes $0.5\,A + 0.5\,I$ with its rows renormalised, because information also passes around the attention through the residual stream.
#
# </details>
#
# **4. Why can CLS attention or rollout never point at the object a text names?**
#
# <details><summary>Answer</summary>
#
# They never see the text: one map per picture, the same whatever you ask, so in a scene with two or three objects they can hit at most one of them, by luck of which one the map peaks on.
#
# </details>
#
# **5. What is chance in the pointing game, and why must every method be compared with it?**
#
# <details><summary>Answer</summary>
#
# The share of the image the dilated target covers, averaged over the targets: what a point picked at random would score. Large objects are hit often by accident, so a hit rate means something only above chance.
#
# </details>

# %% [markdown]
# ## References
#
# * Vaswani et al., *Attention Is All You Need* (2017): [arXiv:1706.03762](https://arxiv.org/abs/1706.03762).
# * Abnar and Zuidema, *Quantifying Attention Flow in Transformers* (rollout, 2020): [arXiv:2005.00928](https://arxiv.org/abs/2005.00928).
# * Chefer, Gur and Wolf, *Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers* (2021): [arXiv:2103.15679](https://arxiv.org/abs/2103.15679).
# * Selvaraju et al., *Grad-CAM* (2017): [arXiv:1610.02391](https://arxiv.org/abs/1610.02391); Zhang et al., *Top-down Neural Attention by Excitation Backprop* (the pointing game, 2016): [arXiv:1608.00507](https://arxiv.org/abs/1608.00507); Jain and Wallace, *Attention is not Explanation* (2019): [arXiv:1902.10186](https://arxiv.org/abs/1902.10186).
# * Model cards: [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32), [Salesforce/blip-image-captioning-base](https://huggingface.co/Salesforce/blip-image-captioning-base), [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf).
# * Docs: [transformers attention interface](https://huggingface.co/docs/transformers/attention_interface), [PyTorch forward hooks](https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.register_forward_hook).
