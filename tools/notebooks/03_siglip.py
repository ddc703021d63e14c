# %% [markdown]
# # 03 · SigLIP: the sigmoid loss, and CLIP vs SigLIP
#
# **Objective.** By the end of this notebook you can write SigLIP's sigmoid loss yourself and
# check it against the library's, compare SigLIP with CLIP on the same test set, explain why
# SigLIP's zero-shot probabilities need not sum to 1, and say what the batch size does to each
# loss.
#
# SigLIP ([Zhai et al., 2023](https://arxiv.org/abs/2303.15343)) keeps CLIP's plan, two
# encoders and a cosine similarity, and its central change is the loss: instead of asking "which
# of the $B$ texts in this batch belongs to this image?" (a softmax over the batch), it asks $B^2$
# separate yes/no questions, "do this image and this text match?" (one sigmoid per pair). It is
# not the *only* change. The loss comes with a learned **bias** added to every logit (below), and
# the released checkpoints differ in the towers too: the image tower pools its patches with an
# attention-pooling head (transformers' `SiglipMultiheadAttentionPoolingHead`, a learned query
# attending over all patches) where CLIP takes the CLS token, and the text tower reads its last
# token through a linear `head` where CLIP has separate projection layers.

# %%
import inspect

import torch

import vlmstudy
from vlmstudy import contrastive, evaluation, plotting, shapes
from vlmstudy.zoo.evaluate import ALL_CLASSES

vlmstudy.seed_everything(0)
clip, clip_processor = vlmstudy.load("openai/clip-vit-base-patch32")
siglip, siglip_processor = vlmstudy.load("google/siglip-base-patch16-224")
print(type(clip).__name__, "and", type(siglip).__name__, "in", vlmstudy.get_mode(), "mode")

# %% [markdown]
# ## The sigmoid loss, from scratch
#
# With unit vectors $x_i$ (images), $y_j$ (texts), a learned scale $s = e^t$ and a learned
# **bias** $b$, every pair gets a logit $z_{ij} = s\, x_i \cdot y_j + b$ and a label
# $\ell_{ij} = +1$ if $i = j$ (a match), $-1$ otherwise. The loss is a binary logistic loss on
# every pair, $-\log \sigma(\ell_{ij} z_{ij})$, summed over the images of each text and averaged
# over the texts. The bias matters: in a batch of $B$ there is one positive per row and $B - 1$
# negatives, so the model starts with a strongly negative bias ($-10$) to say "no" by default.

# %%
print(inspect.getsource(contrastive.siglip_loss))
print(f"this model: scale {siglip.logit_scale.exp().item():.2f}, bias {siglip.logit_bias.item():.2f}")

# %% [markdown]
# `SiglipModel` computes the same loss when asked with `return_loss=True`:

# %%
batch = shapes.make_scenes("test", 16, seed=1)
inputs = contrastive.pair_inputs(siglip, siglip_processor, [s.render() for s in batch], [s.caption for s in batch])
with torch.no_grad():
    out = siglip(**inputs, return_loss=True)
    ours = contrastive.siglip_loss(out.image_embeds, out.text_embeds, siglip.logit_scale, siglip.logit_bias)
print(f"SiglipModel loss: {float(out.loss):.6f}   ours: {float(ours):.6f}")

# %% [markdown]
# ## CLIP and SigLIP on the same test set
#
# Both stand-ins were trained on the same ShapesWorld data with the same budget; only the
# loss differs. Zero-shot accuracy over the 48 colour-shape classes, on 200 ordinary test images
# and on 200 images of colour-shape pairs that were **held out** of training (each colour and
# each shape was seen, never together):

# %%
splits = {split: contrastive.labelled_images(split, n=200, seed=0) for split in ("test", "heldout")}
models = {"CLIP": (clip, clip_processor), "SigLIP": (siglip, siglip_processor)}
results = {name: {split: contrastive.zero_shot_accuracy(*mp, images, truths, ALL_CLASSES)
                  for split, (images, truths) in splits.items()} for name, mp in models.items()}
print(f"{'':<8}{'test':>8}{'held-out':>10}")
for name, accs in results.items():
    print(f"{name:<8}{accs['test']:>8.3f}{accs['heldout']:>10.3f}")

# %% [markdown]
# Read the table with care. With 200 images a gap of a few points is noise. A larger gap is
# real for *these* stand-ins, but it comes from one training run each (same data, same batch
# size, 4000 steps each; their model cards in `assets/models/` record the runs): it says which
# tiny model learned more here, not which loss is better in general. The SigLIP paper compared
# the two losses over many batch sizes and found the sigmoid loss better at small batches, the
# two equal around 32 k pairs per batch. The held-out column is the harder test: a colour and a
# shape never seen together in training. A model that scores lower there has partly memorised
# colour-shape pairs instead of learning colour and shape separately.
#
# What differs *in kind* is what the probabilities mean.
#
# ## Probabilities: a softmax over labels, or a sigmoid per label
#
# CLIP's zero-shot probabilities come from a softmax over the candidate labels: they sum to 1
# and say "which of *these* labels fits best". SigLIP scores each label on its own with a
# sigmoid: "does this label fit, yes or no?", and the row need not sum to anything (if it
# comes out near 1, that is a coincidence of this image). The bars show the labels that score
# highest in either model, in the same order in both panels.

# %%
image, truth = splits["test"][0][0], splits["test"][1][0]
clip_probs = contrastive.zero_shot(clip, clip_processor, [image], ALL_CLASSES)[0]
siglip_probs = contrastive.zero_shot(siglip, siglip_processor, [image], ALL_CLASSES)[0]
fig = vlmstudy.show_images([image], [f"true: {truth}"], scale=1.6)
fig = plotting.probability_panels({"CLIP (softmax)": clip_probs, "SigLIP (sigmoid)": siglip_probs},
                                  ALL_CLASSES, top=8, title="zero-shot probabilities for one image")

# %% [markdown]
# The consequence: a SigLIP probability does not depend on which *other* labels you offer.
# Remove all candidates but three and SigLIP's score for the true label stays the same, while
# CLIP's grows, because the softmax shares the mass among fewer labels.

# %%
few = [truth] + [label for label in ALL_CLASSES if label != truth][:2]
clip_few = contrastive.zero_shot(clip, clip_processor, [image], few)[0]
siglip_few = contrastive.zero_shot(siglip, siglip_processor, [image], few)[0]
k = ALL_CLASSES.index(truth)
print(f"p({truth!r})   with 48 labels   with 3 labels")
print(f"CLIP        {clip_probs[k]:>14.4f}   {clip_few[0]:>13.4f}")
print(f"SigLIP      {siglip_probs[k]:>14.4f}   {siglip_few[0]:>13.4f}")

# %% [markdown]
# ## What the batch size does to the two losses
#
# Contrastive models are trained with huge batches (CLIP: 32 768 pairs), because every other
# pair in the batch is a free negative. We cannot train at several batch sizes on a laptop, but
# we can take one fixed set of 128 test pairs, embed it with each model, cut it into batches of
# size $B$ and look at the loss. Only $B$ changes.

# %%
pairs = list({s.caption: s for s in shapes.make_scenes("test", 160, seed=5)}.values())[:128]
pair_images, pair_texts = [s.render() for s in pairs], [s.caption for s in pairs]
clip_img = contrastive.embed_images(clip, clip_processor, pair_images)
clip_txt = contrastive.embed_texts(clip, clip_processor, pair_texts)
sig_img = contrastive.embed_images(siglip, siglip_processor, pair_images)
sig_txt = contrastive.embed_texts(siglip, siglip_processor, pair_texts)
sizes = [2, 4, 8, 16, 32, 64, 128]
with torch.no_grad():
    clip_curve = contrastive.loss_by_batch_size(
        clip_img, clip_txt, lambda i, t: contrastive.clip_loss(i, t, clip.logit_scale), sizes)
    sig_curve = contrastive.loss_by_batch_size(
        sig_img, sig_txt, lambda i, t: contrastive.siglip_loss(i, t, siglip.logit_scale, siglip.logit_bias), sizes)
fig = plotting.curves(sizes, {"CLIP loss (softmax)": clip_curve,
                              "log B: CLIP loss of a random guess": torch.tensor(sizes).float().log(),
                              "SigLIP loss (sigmoid, summed per text)": sig_curve,
                              "SigLIP loss / B (per pair)": [v / b for v, b in zip(sig_curve, sizes)]},
                      xlabel="batch size B", ylabel="loss", logx=True, title="same embeddings, different batch sizes",
                      styles={"log B: CLIP loss of a random guess": {"ls": "--", "color": "gray"}})

# %% [markdown]
# How to read it:
#
# * **CLIP**: each image must find its text among $B$ candidates, so a bigger batch is a harder
#   test and the loss grows with $B$, while a model that guesses scores $\log B$. A CLIP loss is
#   only comparable to another at the same batch size.
# * **SigLIP**: the loss adds one term per pair, so summed per text it grows with $B$ too, but
#   every term is a separate yes/no question. Per pair, the value settles as $B$ grows: it is an
#   average over pairs, and the batch only decides which pairs are in it.
#
# That independence is what makes the sigmoid loss cheap at scale: it can be computed one
# block of images at a time, each block (on its own device, say) needing only its own images,
# and the blocks simply add up. The softmax loss can be chunked too, with more bookkeeping: a
# running log-sum-exp over the blocks of a row gives its denominator exactly, block by block.
# What the softmax really costs across devices is the gathering: every device needs every
# other device's embeddings (an all-gather of all $B$ embeddings) to form its rows, and the
# full row must be seen before one term of the loss is known. The sigmoid loss needs no
# normaliser, so the SigLIP paper passes the text blocks around the devices one at a time and
# never holds the whole $B \times B$ matrix. Below, the blocks of the sigmoid loss add up to the
# full loss, while the CLIP loss of four separate batches of 32 is *not* the loss of 128 pairs:
# each batch only saw 31 negatives per row.

# %%
with torch.no_grad():
    full = contrastive.siglip_loss(sig_img, sig_txt, siglip.logit_scale, siglip.logit_bias)
    blocked = contrastive.siglip_loss_chunked(sig_img, sig_txt, siglip.logit_scale, siglip.logit_bias, chunk_size=32)
    clip_full = contrastive.clip_loss(clip_img, clip_txt, clip.logit_scale)
    clip_blocks = contrastive.loss_by_batch_size(clip_img, clip_txt,
                                                 lambda i, t: contrastive.clip_loss(i, t, clip.logit_scale), [32])[0]
print(f"SigLIP, 128 pairs at once: {float(full):.5f}   in 4 blocks of 32 images: {float(blocked):.5f}")
print(f"CLIP,   128 pairs at once: {float(clip_full):.5f}   mean of 4 batches of 32: {clip_blocks:.5f}")

# %% [markdown]
# ## On a real photo
#
# The five real photographs of notebook 02's last section (`vlmstudy.real_photos()`), each
# scored against its own five labels by both models. Read the two kinds of numbers for what they
# mean: CLIP's five share 1 among the labels; SigLIP's are five separate yes/no answers, so it can
# say "no" to every label of a photo, or "yes" to two, without one taking anything from another.
# A SigLIP pair counts as a match when scale x cosine + bias is above 0; the scale and the bias
# the model learned are printed first.
#
# In `tiny` mode both stand-ins know only ShapesWorld (their tokenizers turn "cat" or "rocket"
# into one unknown token, and their encoders have only seen shapes), so expect CLIP rows close
# to uniform and SigLIP scores that say nothing about the photo: models outside their training
# world. With `VLMSTUDY_MODE=hub` the real CLIP and SigLIP answer, with the same code.

# %%
real_photos = vlmstudy.real_photos()
clip_rows = vlmstudy.photos.zero_shot(clip, clip_processor, real_photos)
siglip_rows = vlmstudy.photos.zero_shot(siglip, siglip_processor, real_photos)
print(f"SigLIP's learned scale {siglip.logit_scale.detach().exp().item():.1f} and bias {siglip.logit_bias.detach().item():.1f}\n")
print(f"{'photo':10} {'the right label':18} {'CLIP best (softmax)':28} {'SigLIP best (sigmoid)':28} SigLIP row sum")
for c, s in zip(clip_rows, siglip_rows):
    print(f"{c.photo.name:10} {c.photo.label:18} {f'{c.predicted} {c.confidence:.2f}':28} "
          f"{f'{s.predicted} {s.confidence:.2f}':28} {float(s.probs.sum()):.2f}")
assert all(torch.allclose(c.probs.sum(), torch.tensor(1.0), atol=1e-5) for c in clip_rows), "a softmax per photo"
assert all(bool(((s.probs >= 0) & (s.probs <= 1)).all()) for s in siglip_rows), "one sigmoid per label"

# %%
photo = real_photos[0]
fig = vlmstudy.show_images([photo.image], [photo.caption], scale=2.6)
fig = plotting.probability_panels({"CLIP (softmax)": clip_rows[0].probs, "SigLIP (sigmoid)": siglip_rows[0].probs},
                                  list(photo.labels), top=None, title=f"{photo.name}: its five labels")

# %% [markdown]
# ## Checks

# %%
assert torch.allclose(ours, out.loss, atol=1e-5), "siglip_loss must equal SiglipModel's own loss"
few_index = [ALL_CLASSES.index(label) for label in few]
assert torch.allclose(clip_few, clip_probs[few_index] / clip_probs[few_index].sum(), atol=1e-5), \
    "CLIP: the 3-label probabilities are the 48-label ones renormalised over those 3 (one softmax over labels)"
assert torch.allclose(siglip_few, siglip_probs[few_index], atol=1e-5), "a SigLIP probability ignores the other labels"
with torch.no_grad():
    siglip_library = siglip(**contrastive.pair_inputs(siglip, siglip_processor, [image],
                                                      [f"a photo of a {c}." for c in ALL_CLASSES]))
assert torch.allclose(siglip_probs, torch.sigmoid(siglip_library.logits_per_image[0].float()).cpu(), atol=1e-4), \
    "zero_shot for SigLIP = the sigmoid of SiglipModel's logits (scale and bias included)"
assert torch.allclose(blocked, full, atol=1e-4), "the sigmoid loss adds up over blocks"
assert clip_curve[-1] > clip_curve[0], "the CLIP loss grows with the batch size"
print("mechanics: all checks passed")

# Quality: each stand-in must reach the floor its model card sets; real checkpoints are printed.
for name, (model_, _) in models.items():
    evaluation.check_quality(model_, "zero_shot_accuracy", results[name]["test"], n=len(splits["test"][1]))
    evaluation.check_quality(model_, "zero_shot_heldout_accuracy", results[name]["heldout"], n=len(splits["heldout"][1]))
print("On to 04, image search.")

# %% [markdown]
# ## Summary
#
# * SigLIP's loss is one binary logistic term per image-text pair, $-\log \sigma(\ell_{ij}(s\,x_i \cdot y_j + b))$, with a learned scale and a learned bias; ours equals `SiglipModel`'s.
# * The two stand-ins were compared on the same test and held-out sets; one training run each says which tiny model learned more here, not which loss is better in general.
# * CLIP's zero-shot probabilities are a softmax over the offered labels and depend on which labels you offer; SigLIP's are one sigmoid per label, need not sum to 1, and stay the same when other labels are removed.
# * CLIP's loss grows with the batch size (a random guess scores $\log B$), so it is only comparable at one batch size; SigLIP's per-pair loss settles as $B$ grows.
# * The sigmoid loss adds up over blocks of pairs, which is what lets it be computed one block, or one device, at a time.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why does SigLIP not need the whole batch for its loss?**
#
# <details><summary>Answer</summary>
#
# Every pair's term depends only on that image, that text, the scale and the bias; the loss is their sum. Blocks of pairs can be computed separately (on different devices) and added, and the blocked loss above equals the full one. CLIP's softmax normalises each row over every text of the batch, so in distributed training every device needs every embedding, gathered from all the others.
#
# </details>
#
# **2. Why does SigLIP learn a bias, and why does it start strongly negative?**
#
# <details><summary>Answer</summary>
#
# A batch of $B$ has one matching pair per row and $B - 1$ non-matching ones. Starting with a large negative bias ($-10$) makes "no match" the default answer, so the first steps are not spent pushing down the many negatives.
#
# </details>
#
# **3. You remove all but three of the 48 labels. Whose probability for the true label changes, and why?**
#
# <details><summary>Answer</summary>
#
# CLIP's grows, because its softmax now shares the mass among three labels instead of 48. SigLIP's stays the same: each label is scored by its own sigmoid, whatever the other labels are.
#
# </details>
#
# **4. Why can you not compare a CLIP loss computed with batches of 8 with one computed with batches of 128?**
#
# <details><summary>Answer</summary>
#
# A bigger batch is a harder test (one right text among more candidates): even a random guess scores $\log B$, which is larger for 128 than for 8. A CLIP loss is comparable only at the same batch size.
#
# </details>
#
# **5. SigLIP gives two labels of one photo a score above 0.5. Is that a contradiction?**
#
# <details><summary>Answer</summary>
#
# No. Each score answers its own yes/no question ("does this label fit?"), so two labels can both fit, or none. Only a softmax, like CLIP's, forces the labels to share one unit of probability.
#
# </details>

# %% [markdown]
# ## References
#
# * Zhai et al., *Sigmoid Loss for Language Image Pre-Training* (SigLIP, 2023): [arXiv:2303.15343](https://arxiv.org/abs/2303.15343).
# * Radford et al., CLIP (2021): [arXiv:2103.00020](https://arxiv.org/abs/2103.00020).
# * Model cards: [google/siglip-base-patch16-224](https://huggingface.co/google/siglip-base-patch16-224), [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32).
# * transformers docs: [SigLIP](https://huggingface.co/docs/transformers/model_doc/siglip), [CLIP](https://huggingface.co/docs/transformers/model_doc/clip).
