# %% [markdown]
# # Exercise 04 · CLIP's contrastive loss
#
# **Objective.** Write the loss CLIP is trained with (notebook 02), the symmetric InfoNCE:
# in a batch of `B` matching (image, text) pairs, every image must pick its own text among the
# `B` texts, and every text its own image.
#
# `clip_loss(image_embeds, text_embeds, logit_scale)`: `(B, D)` unit vectors where row `i` of
# one matches row `i` of the other; `logit_scale` is the **log** of the temperature scale, a
# 0-dim tensor, as `CLIPModel.logit_scale`. Return one number (a 0-dim tensor) that can be
# backpropagated.
#
# Write your code where the cell says `raise NotImplementedError()`, run it, then run the check
# cell: points, and a hint for every check that fails. The checks compare values **and
# gradients** with a reference, at ordinary and at very large scales; the grade also runs
# hidden checks on new data and with the real (tiny) CLIP.

# %%
import math

import torch
import torch.nn.functional as F

from vlmstudy import contrastive, shapes
from vlmstudy.grading import check_clip_loss, load_quietly

# %% [markdown]
# ## The task
#
# 1. `logits = exp(logit_scale) * image_embeds @ text_embeds.T`, a `(B, B)` matrix: row `i`
#    scores image `i` against every text;
# 2. the right answer of row `i` (and of column `i`) is `i`;
# 3. the loss is the mean of the cross-entropy over the rows (image -> text) and over the
#    columns (text -> image).
#
# `F.cross_entropy` computes a numerically stable softmax for you; a hand-written
# `exp(...) / exp(...).sum()` overflows at large scales.

# %%
def clip_loss(image_embeds, text_embeds, logit_scale):
    ### BEGIN SOLUTION
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    target = torch.arange(len(image_embeds), device=image_embeds.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    ### END SOLUTION

# %%
report = check_clip_loss(clip_loss)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(clip_loss, "04_contrastive_loss", "clip_loss")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The tiny CLIP on 16 test scenes and their captions, matched and shuffled: the loss is low
# only when the pairs really match.

# %%
if report.passed:
    clip, processor = load_quietly("clip")
    scenes = shapes.make_scenes("test", 16, seed=1)
    images = contrastive.embed_images(clip, processor, [s.render() for s in scenes], progress=False)
    texts = contrastive.embed_texts(clip, processor, [s.caption for s in scenes], progress=False)
    scale = clip.logit_scale.detach()
    shuffled = texts[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    print(f"matched pairs  {clip_loss(images, texts, scale).item():.2f}")
    print(f"shuffled pairs {clip_loss(images, shuffled, scale).item():.2f}")
    print(f"chance level   {math.log(16):.2f}  (log B: the loss of a model that cannot tell)")
else:
    print("Finish clip_loss first: the checks above say what is missing.")
