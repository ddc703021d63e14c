# %% [markdown]
# # Exercise 14 · SigLIP's sigmoid loss, whole and in blocks
#
# **Objective.** Write the loss SigLIP is trained with (notebook 03) and see why it splits into
# blocks. CLIP's loss (exercise 04) asks every image to *pick* its text among the batch: a
# softmax over a row. SigLIP asks every (text, image) pair its own yes/no question, "do these
# two match?": a sigmoid per pair, label +1 for the `B` matching pairs and -1 for the `B² - B`
# others. With that many "no"s a learned **bias** (`logit_bias`, initialised at -10) beside the
# learned **temperature** (`logit_scale`, a logarithm, as in CLIP) keeps the loss balanced at
# the start of training.
#
# 1. `siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias)`: `(B, D)` unit vectors,
#    row `i` of one matching row `i` of the other; `logit_scale` and `logit_bias` 0-dim tensors.
#    Return one number (a 0-dim tensor) that can be backpropagated.
# 2. `siglip_loss_chunked(..., chunk_size)`: the same number, computed one block of `chunk_size`
#    images at a time.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The checks compare values **and
# gradients** with the formula `SiglipModel` uses; the grade also runs hidden checks on new data
# and the loss the course's SigLIP itself returns (`return_loss=True`).

# %%
import torch
import torch.nn.functional as F

from vlmstudy import contrastive, shapes
from vlmstudy.grading import check_siglip_loss, check_siglip_loss_chunked, load_quietly

# %% [markdown]
# ## Part 1: the loss
#
# 1. `logits = exp(logit_scale) * text_embeds @ image_embeds.T + logit_bias`, a `(B, B)` matrix:
#    row `i` scores text `i` against every image;
# 2. `labels = 2 * eye(B) - 1`: +1 on the diagonal, -1 elsewhere;
# 3. every pair costs `-log sigmoid(label * logit)`; sum the `B²` terms and divide by `B` (a
#    text's summed cost, averaged over the texts: what `SiglipModel` returns).
#
# `F.logsigmoid` is stable; `torch.log(torch.sigmoid(x))` takes the log of 0 at large logits.

# %%
def siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias):
    ### BEGIN SOLUTION
    logits = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias
    labels = 2 * torch.eye(len(text_embeds), device=text_embeds.device) - 1
    return -F.logsigmoid(labels * logits).sum() / len(text_embeds)
    ### END SOLUTION

# %%
report = check_siglip_loss(siglip_loss)
report

# %% [markdown]
# ## Part 2: in blocks
#
# No term needs another pair, so the loss is a plain sum over blocks of images, each block
# scored against every text (SigLIP's paper spreads a batch of 32k pairs over devices this way).
# In the block of images `start .. start + chunk_size`, text `start + j` matches the block's
# image `j`: its labels are +1 at `(start + j, j)`. The last block may be shorter. Add up the
# blocks' sums and divide by `B` once; raise `ValueError` when `chunk_size < 1`.

# %%
def siglip_loss_chunked(image_embeds, text_embeds, logit_scale, logit_bias, chunk_size):
    ### BEGIN SOLUTION
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    total = text_embeds.new_zeros(())
    for start in range(0, len(image_embeds), chunk_size):
        block = logit_scale.exp() * text_embeds @ image_embeds[start:start + chunk_size].T + logit_bias
        labels = -torch.ones_like(block)
        cols = torch.arange(block.shape[1], device=block.device)
        labels[start + cols, cols] = 1.0
        total = total - F.logsigmoid(labels * block).sum()
    return total / len(text_embeds)
    ### END SOLUTION

# %%
chunked_report = check_siglip_loss_chunked(siglip_loss_chunked)
chunked_report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(siglip_loss, "14_siglip_loss", "siglip_loss"))
hidden_checks(siglip_loss_chunked, "14_siglip_loss", "siglip_loss_chunked")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The course's SigLIP on 32 test scenes and their captions: your loss beside the one the model
# returns, in blocks of 5, and on shuffled pairs. Then the share of the loss that the `B² - B`
# non-matching pairs carry: a softmax would need them all at once, here each block adds its own.

# %%
if report.passed and chunked_report.passed:
    siglip, processor = load_quietly("siglip")
    scenes = shapes.make_scenes("test", 32, seed=1)
    inputs = contrastive.pair_inputs(siglip, processor, [s.render() for s in scenes], [s.caption for s in scenes])
    with torch.no_grad():
        out = siglip(**inputs, return_loss=True)
    images, texts = out.image_embeds, out.text_embeds
    scale, bias = siglip.logit_scale.detach().reshape(()), siglip.logit_bias.detach().reshape(())
    shuffled = texts[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    print(f"SigLIP's own loss   {out.loss.item():.3f}")
    print(f"yours               {siglip_loss(images, texts, scale, bias).item():.3f}")
    print(f"yours, blocks of 5  {siglip_loss_chunked(images, texts, scale, bias, 5).item():.3f}")
    print(f"shuffled pairs      {siglip_loss(images, shuffled, scale, bias).item():.3f}")
    logits = scale.exp() * texts @ images.T + bias
    off = -F.logsigmoid(-logits)[~torch.eye(32, dtype=torch.bool)].sum() / 32
    print(f"of which non-matching pairs: {off.item():.3f}  (learned scale {scale.exp().item():.1f}, bias {bias.item():.2f})")
else:
    print("Finish both parts first: the checks above say what is missing.")
