# %% [markdown]
# # 02 · CLIP: embeddings, zero-shot classification and the contrastive loss
#
# **Objective.** By the end of this notebook you can turn images and texts into CLIP embeddings,
# classify an image into classes the model was never trained on as classes ("zero-shot"), build
# a prompt ensemble and measure whether it helps, write CLIP's contrastive loss yourself and
# check it against the library's, and say what the temperature does.
#
# CLIP ([Radford et al., 2021](https://arxiv.org/abs/2103.00020)) is a *dual encoder*: an image
# encoder and a text encoder, trained together so that an image and its caption land close
# together in one shared space, and unrelated pairs far apart.

# %%
import inspect

import torch

import vlmstudy
from vlmstudy import contrastive, evaluation, plotting, shapes
from vlmstudy.zoo.evaluate import ALL_CLASSES

vlmstudy.seed_everything(0)
clip, processor = vlmstudy.load("openai/clip-vit-base-patch32")
print(type(clip).__name__, "in", vlmstudy.get_mode(), "mode")

# %% [markdown]
# ## Embeddings
#
# The processor turns images into normalised pixel tensors and texts into token ids;
# `contrastive.pair_inputs` calls it and moves the tensors to the model's device. The two
# encoders each end in a *projection* to the shared space: `get_image_features` and
# `get_text_features` (in transformers 5 they return an output object; the projected embedding
# is its `pooler_output`). Whatever the caption's length, each comes out as one vector, and
# image and text vectors have the same length.

# %%
scenes = shapes.make_scenes("test", 5, seed=0)
images = [s.render() for s in scenes]
captions = [s.caption for s in scenes]
inputs = contrastive.pair_inputs(clip, processor, images, captions)
print("pixel_values:", tuple(inputs["pixel_values"].shape), "  input_ids:", tuple(inputs["input_ids"].shape))

with torch.no_grad():
    image_features = clip.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    text_features = clip.get_text_features(input_ids=inputs["input_ids"],
                                           attention_mask=inputs["attention_mask"]).pooler_output
print("image embeddings:", tuple(image_features.shape), "  text embeddings:", tuple(text_features.shape))

# %% [markdown]
# CLIP compares *directions*, not lengths: embeddings are normalised to unit length and scored
# with the cosine similarity. `contrastive.embed_images` / `embed_texts` do the batching and the
# normalisation for you.

# %%
image_emb = contrastive.embed_images(clip, processor, images)
text_emb = contrastive.embed_texts(clip, processor, captions)
print("norms:", image_emb.norm(dim=-1))
similarity = image_emb @ text_emb.T   # cosine similarities, images x captions
fig = vlmstudy.show_scenes(scenes, cols=5)

# %% [markdown]
# Caption *i* is the caption of image *i* (the titles above), so each image should match its
# own caption best: a bright diagonal. The red frame marks the best caption of each row. Off
# the diagonal, captions that share objects with the image score higher than captions that
# share nothing.

# %%
fig = plotting.similarity_heatmap(similarity, [f"image {i}" for i in range(len(images))],
                                  [f"caption {i}" for i in range(len(captions))],
                                  title="cosine similarity: images x captions")

# %% [markdown]
# ## Inside the image encoder: ViT or ResNet
#
# CLIP's paper trained two kinds of image encoder. A **Vision Transformer (ViT)** cuts the image
# into square patches, projects each patch to a vector (one strided convolution does it), puts a
# learned **CLS** vector in front, adds a learned **position embedding** per slot (otherwise the
# transformer would see a bag of patches), and runs transformer layers; the image's vector is
# the CLS token at the end, layer-normed and projected. A **ResNet** is a stack of convolutions
# that halves the resolution stage by stage while adding channels, and ends with a *pooling*
# of the last feature map into one vector. Our stand-in is a ViT (as `openai/clip-vit-base-patch32`
# is): follow one image through it, and check the hand-built token sequence against the model's.

# %%
device, dtype = next(clip.parameters()).device, next(clip.parameters()).dtype
pixels = processor(images=images[:1], return_tensors="pt")["pixel_values"].to(device, dtype)
vit = clip.vision_model.embeddings
with torch.no_grad():
    grid = vit.patch_embedding(pixels)                              # (1, width, rows, cols)
    patch_tokens = grid.flatten(2).transpose(1, 2)                  # (1, rows*cols, width)
    cls = vit.class_embedding.expand(1, 1, -1)
    by_hand = torch.cat([cls, patch_tokens], dim=1) + vit.position_embedding.weight
    sequence = vit(pixels)
    vision_out = clip.vision_model(pixel_values=pixels)
print(f"image {tuple(pixels.shape)} -> patches of {clip.config.vision_config.patch_size} px -> grid {tuple(grid.shape)}")
print(f"{patch_tokens.shape[1]} patch tokens + 1 CLS = {sequence.shape[1]} tokens; position embeddings "
      f"{tuple(vit.position_embedding.weight.shape)}; sequence {tuple(sequence.shape)}")
print(f"after the transformer {tuple(vision_out.last_hidden_state.shape)}; CLS, layer-normed: "
      f"{tuple(vision_out.pooler_output.shape)}; projected: {tuple(clip.visual_projection(vision_out.pooler_output).shape)}")
assert torch.allclose(by_hand, sequence, atol=1e-5), "CLS + patch tokens + position embeddings = the model's input sequence"

# %% [markdown]
# A ResNet for comparison. transformers has a plain ResNet (`ResNetModel`); the one below is tiny
# and **randomly initialised** (untrained: its numbers mean nothing, only its shapes matter). Each
# stage's feature map is printed: the grid shrinks and the channels grow, and the last map is
# average-pooled to one vector. No token sequence, no CLS, no position embeddings: the
# convolutions' locality carries where things are.

# %%
from transformers import ResNetConfig, ResNetModel

torch.manual_seed(0)
resnet = ResNetModel(ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                                  layer_type="basic")).eval()   # random weights, for the shapes only
with torch.no_grad():
    res_out = resnet(pixels.float().cpu(), output_hidden_states=True)
for stage, fmap in enumerate(res_out.hidden_states):
    print(f"{'stem' if stage == 0 else f'stage {stage}':8} feature map {tuple(fmap.shape)}")
print(f"average-pooled: {tuple(res_out.pooler_output.shape)} -> one {res_out.pooler_output.shape[1]}-d vector per image")

# %% [markdown]
# CLIP's paper ([Radford et al., 2021](https://arxiv.org/abs/2103.00020), section 2.4) trained
# five ResNets, **RN50, RN101, RN50x4, RN50x16 and RN50x64** (the last three scale ResNet-50's
# width, depth and resolution together, EfficientNet-style, to about 4, 16 and 64 times its
# compute), and three ViTs, **ViT-B/32, ViT-B/16 and ViT-L/14** (the number is the patch size;
# ViT-L/14@336px, ViT-L/14 trained one more epoch at 336 px, is the paper's best). Its ResNets are modified:
# ResNet-D tweaks, anti-aliased blur pooling, and the final global average pooling replaced by
# an *attention pooling*, one multi-head attention layer whose query is the average-pooled
# feature. The ResNet CLIPs live in OpenAI's `clip` package and in OpenCLIP, not in transformers;
# the ViTs became the default.

# %% [markdown]
# ## Zero-shot classification
#
# There is no classifier head. To classify, write each class as a sentence ("a photo of a red
# circle."), embed the sentences, and pick the one closest to the image. The scores are the
# cosine similarities times the learned `logit_scale`, turned into probabilities by a softmax
# over the classes. Here the classes are all 48 colour-shape pairs of ShapesWorld.

# %%
test_images, test_truths = contrastive.labelled_images("test", n=200, seed=0)
probs = contrastive.zero_shot(clip, processor, test_images[:1], ALL_CLASSES)
print("probabilities:", tuple(probs.shape), " row sum:", float(probs.sum()))
print("true class:", test_truths[0], "  predicted:", ALL_CLASSES[int(probs.argmax())])
fig = vlmstudy.show_images(test_images[:1], [test_truths[0]], scale=1.6)

# %%
fig = plotting.probability_bars(probs[0], ALL_CLASSES, top=8, title="CLIP zero-shot, 48 classes")

# %% [markdown]
# ### The same with transformers' `pipeline`
#
# Above we took the *AutoModel route*: load the model and processor, embed, scale, softmax.
# transformers packs those steps into a pipeline; on the Hub you would write
# `pipeline("zero-shot-image-classification", model="openai/clip-vit-base-patch32")`. Here we
# hand it the model and processor already loaded, so both routes use the same weights. It takes
# an image (a PIL image, a path or a URL), `candidate_labels` and a `hypothesis_template`, and
# returns a list of `{"score": ..., "label": ...}` dictionaries sorted by score, best first.

# %%
from transformers import pipeline

classifier = pipeline("zero-shot-image-classification", model=clip, tokenizer=processor.tokenizer,
                      image_processor=processor.image_processor)
pipeline_out = classifier(test_images[0], candidate_labels=ALL_CLASSES, hypothesis_template="a photo of a {}.")
for row in pipeline_out[:3]:
    print(row)
pipeline_probs = torch.tensor([{r["label"]: r["score"] for r in pipeline_out}[label] for label in ALL_CLASSES])
gap = float((pipeline_probs - probs[0]).abs().max())
print(f"{len(pipeline_out)} labels; largest gap to contrastive.zero_shot's probabilities: {gap:.1e}")
assert [r["label"] for r in pipeline_out][0] == ALL_CLASSES[int(probs.argmax())], "both routes pick the same class"
assert gap < 1e-4, "the pipeline computes the same softmax over the same prompts"

# %% [markdown]
# ## Prompt ensembles
#
# The sentence around the class name matters: "a photo of a {}." and "a drawing of a {}." give
# slightly different text vectors. A **prompt ensemble** embeds each class with several
# templates and averages the (normalised) vectors; the CLIP paper gained a few points of
# ImageNet accuracy this way. `class_embeddings` does it when given several templates. We
# measure each template alone and the ensemble, on 200 test images (embedded once).

# %%
test_emb = contrastive.embed_images(clip, processor, test_images)
accuracy = contrastive.template_accuracies(clip, processor, test_emb, test_truths, ALL_CLASSES,
                                           shapes.PROMPT_TEMPLATES)
for template, acc in accuracy.items():
    print(f"{template:<22} {acc:.3f}")
single, ensemble = accuracy[shapes.PROMPT_TEMPLATES[0]], accuracy["ensemble"]
print(f"\nsingle prompt {single:.3f} -> ensemble of {len(shapes.PROMPT_TEMPLATES)}: {ensemble:.3f} "
      f"(gain {100 * (ensemble - single):+.1f} points)")

# %% [markdown]
# Read the gain honestly. On real photos an ensemble helps because real captions are varied
# and each template is noisy in its own way, so averaging cancels some of the noise. In
# ShapesWorld the stand-in was trained on exactly these templates, so each one alone already
# works about as well as any other, and the gain may be tiny, zero, or even negative on 200
# images (one image is half a point). A difference of a point or two here is within noise:
# try another `seed` of `labelled_images` and watch it move.

# %% [markdown]
# ## The contrastive loss, from scratch
#
# A batch holds $B$ matching pairs. With unit vectors $x_i$ (images) and $y_j$ (texts) and the
# scale $s = e^t$ (where $t$ is the model's `logit_scale`), the logits are
# $L_{ij} = s\, x_i \cdot y_j$. Each image must pick its own text among the $B$ texts (a
# cross-entropy over row $i$ with target $i$), and each text its own image (over column $j$);
# the loss is the mean of the two. Every other
# pair in the batch serves as a negative: no labels are needed beyond "these two go together".

# %%
print(inspect.getsource(contrastive.clip_loss))

# %% [markdown]
# The library computes the same thing when asked with `return_loss=True`. We feed both the
# same batch of 16 test pairs, once as they belong together and once with every caption moved to
# the next image (all 16 pairs wrong): a trained model's loss is near 0 on the first and large on
# the second, and the two implementations must agree on both.

# %%
batch = shapes.make_scenes("test", 16, seed=1)
batch_images, batch_captions = [s.render() for s in batch], [s.caption for s in batch]
losses = {}
for name, texts in (("matching pairs", batch_captions), ("captions moved by one", batch_captions[1:] + batch_captions[:1])):
    inputs = contrastive.pair_inputs(clip, processor, batch_images, texts)
    with torch.no_grad():
        out = clip(**inputs, return_loss=True)
        losses[name] = (out.loss, contrastive.clip_loss(out.image_embeds, out.text_embeds, clip.logit_scale))
    print(f"{name:22} CLIPModel loss: {float(losses[name][0]):9.6f}   ours: {float(losses[name][1]):9.6f}")
print(f"chance level (uniform over the batch): log(16) = {torch.log(torch.tensor(16.0)):.3f}")

# %% [markdown]
# ## What the temperature does
#
# The cosine similarities lie in [-1, 1]: too close together for a softmax to make confident
# probabilities. CLIP multiplies them by a *learned* scale (the inverse of a temperature),
# stored as its logarithm `logit_scale` so that it stays positive; the real CLIP learned 100,
# the cap its training allowed. Same similarities, three scales:

# %%
print(f"this model's learned scale: {clip.logit_scale.exp().item():.1f}")
cosines = test_emb[0] @ contrastive.class_embeddings(clip, processor, ALL_CLASSES).T
fig = plotting.temperature_bars(cosines, ALL_CLASSES, scales=(1, 10, 100), top=6,
                                title=f"softmax(scale x cosine) for one image (true: {test_truths[0]})")

# %% [markdown]
# At scale 1 the probabilities are almost uniform even though the ranking is the same; at 100
# nearly all the mass goes to the best class. The ranking, and so the accuracy, never changes
# with the scale: only the confidence does. During training the temperature sets how hard
# the loss pushes on the negatives that are already far away.

# %% [markdown]
# ## Does CLIP bind colours to shapes?
#
# A caption is more than a bag of words: "a red circle and a blue square" and "a blue circle
# and a red square" use the same words. Contrastive models are known to be weak at this
# *binding*: on benchmarks built from such minimal changes (Winoground, ARO) the real CLIP is
# not much better than chance. Here we make hard negatives with `shapes.variant`: the same
# scene with one object's colour or shape changed, or two objects swapped, and ask whether
# the image's own caption scores higher than the changed one (chance: 50 %).

# %%
two_object = shapes.make_scenes("test", 100, seed=2, n_objects=2)
binding = contrastive.hard_negative_test(clip, processor, two_object, kinds=("color", "shape", "swap"))
for kind, acc in binding.accuracy().items():
    print(f"{kind:>6}: prefers the right caption {acc:.1%} of the time")

# %%
picks = [binding.kinds.index(kind) for kind in ("color", "shape", "swap")]
fig = vlmstudy.show_images([binding.images[i] for i in picks],
                           [f"{binding.kinds[i]}: true '{binding.true_captions[i]}' "
                            f"{binding.true_scores[i]:.3f} vs changed '{binding.false_captions[i]}' "
                            f"{binding.false_scores[i]:.3f}" for i in picks], cols=3, scale=3.0, wrap=36)

# %% [markdown]
# The stand-in had an advantage the real CLIP did not: its training batches contained exactly
# such pairs (a scene and its variant, see `vlmstudy.zoo.train_contrastive`), so the loss
# forced it to notice single attributes. Hard negatives in the batch are the known remedy for
# weak binding ([Yuksekgonul et al., 2023](https://arxiv.org/abs/2210.01936)). The `swap` row
# tests something subtler: where each object is.

# %% [markdown]
# ## On a real photo
#
# Everything above was ShapesWorld. `vlmstudy.real_photos()` returns five real photographs
# (public domain or CC0: `assets/images/photos/LICENSES.md` says whose, and under which
# licence), each with a caption a person wrote, five candidate labels (one of them right) and a
# few questions with short answers. `photos.zero_shot` classifies each photo among its own five
# labels with the code above (`contrastive.zero_shot` and "a photo of a {}.").
#
# What to expect depends on the mode; the code stays the same. In `tiny` mode the stand-in has
# only ever seen coloured shapes on a plain background, and its tokenizer knows only
# ShapesWorld's words: the first line below shows how it reads "a photo of a cat.". Every word
# it has never seen becomes the same unknown token, so "cat" and "dog" turn into the very same
# sentence, and the model cannot prefer one of them: their probabilities come out equal. That
# is what a model does outside the world it was trained on: it still answers, with a
# probability, and the number means nothing. With `VLMSTUDY_MODE=hub` the real CLIP, trained on
# hundreds of millions of image-text pairs from the web, reads every word and classifies the
# same photos.

# %%
real_photos = vlmstudy.real_photos()
print("the tokenizer reads 'a photo of a cat.' as", processor.tokenizer.tokenize("a photo of a cat."), "\n")
predictions = vlmstudy.photos.zero_shot(clip, processor, real_photos)
for p in predictions:
    print(f"{p.photo.name:10} best: {p.predicted!r:26} {p.confidence:.2f}   the right one, {p.photo.label!r}: "
          f"{p.truth_probability:.2f}")
assert all(torch.allclose(p.probs.sum(), torch.tensor(1.0), atol=1e-5) for p in predictions), "a softmax per photo"
fig = vlmstudy.photos.show_predictions(predictions)

# %% [markdown]
# ## Checks

# %%
assert all(torch.allclose(ours, theirs, atol=1e-5) for theirs, ours in losses.values()), "clip_loss must equal CLIPModel's own loss"
# Each helper against the library's own forward pass, so a wrong scale, a missing normalisation
# or a softmax over the wrong axis fails here.
with torch.no_grad():
    library = clip(**contrastive.pair_inputs(clip, processor, test_images[:1],
                                             [f"a photo of a {c}." for c in ALL_CLASSES]))
    pair_logits = clip(**contrastive.pair_inputs(clip, processor, images, captions)).logits_per_image
assert torch.allclose(probs, library.logits_per_image.float().softmax(dim=-1).cpu(), atol=1e-4), \
    "zero_shot must give CLIPModel's softmax over the 48 class prompts"
assert torch.allclose(image_emb, torch.nn.functional.normalize(image_features.float(), dim=-1).cpu(), atol=1e-4), \
    "embed_images = get_image_features, normalised to unit length"
assert torch.allclose(similarity, (pair_logits.float() / clip.logit_scale.exp().float()).cpu(), atol=1e-4), \
    "the cosine matrix is CLIPModel's logits_per_image divided by its scale"
ensemble_vectors = contrastive.class_embeddings(clip, processor, ALL_CLASSES, shapes.PROMPT_TEMPLATES)
one_by_one = torch.stack([contrastive.class_embeddings(clip, processor, ALL_CLASSES, (t,)) for t in shapes.PROMPT_TEMPLATES])
assert torch.allclose(ensemble_vectors, torch.nn.functional.normalize(one_by_one.mean(dim=0), dim=-1), atol=1e-5), \
    "the ensemble is the normalised mean of the per-template unit vectors"
print("mechanics: all checks passed")

# Quality belongs to the model: the stand-in must reach the floor its model card sets (or, for what
# the card does not measure, the floor stated here); a real checkpoint is printed, not asserted.
evaluation.check_quality(clip, "zero_shot_accuracy", single, n=len(test_truths))
evaluation.check_quality(clip, "zero_shot_accuracy", ensemble, n=len(test_truths))
evaluation.check_quality(clip, "loss on moved captions minus loss on matching pairs",
                         float(losses["captions moved by one"][0] - losses["matching pairs"][0]), floor=1.0)
evaluation.check_quality(clip, "hard-negative binding accuracy", binding.accuracy()["all"], floor=0.5)
print("On to 03, SigLIP.")

# %% [markdown]
# ## Summary
#
# * CLIP's two encoders each end in a projection into one shared space; the embeddings are normalised to unit length and compared by cosine similarity, so a matching image and caption give the bright diagonal of the heatmap.
# * Zero-shot classification needs no classifier head: each class is written as a sentence, embedded, and the image picks the closest one; the learned `logit_scale` times the cosines goes through a softmax over the classes.
# * A prompt ensemble averages the normalised class vectors of several templates; whether it helps must be measured, and on this stand-in, trained on exactly these templates, the gain is within noise.
# * The contrastive loss is a cross-entropy over the $B \times B$ logits in both directions, every other pair of the batch serving as a negative; ours equals `CLIPModel`'s.
# * The temperature changes how confident the probabilities are, never the ranking; hard negatives (one attribute changed, two objects swapped) measure whether a model binds colours to shapes.
# * Outside its training world a model still returns probabilities that mean nothing: the stand-in reads every unknown word as the same token.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why does zero-shot classification need no classifier head?**
#
# <details><summary>Answer</summary>
#
# The classes are written as sentences ("a photo of a red circle.") and embedded by the text encoder; the image is assigned to the sentence whose embedding is closest. Any set of classes you can write down works, without training.
#
# </details>
#
# **2. If the learned scale were ten times larger, what would happen to the zero-shot accuracy and to the probabilities?**
#
# <details><summary>Answer</summary>
#
# The accuracy would not change: multiplying all cosines by the same positive number keeps their ranking. The probabilities would be sharper, with more of the mass on the best class (the temperature figure shows scales 1, 10 and 100).
#
# </details>
#
# **3. Where do the negatives of CLIP's contrastive loss come from?**
#
# <details><summary>Answer</summary>
#
# From the batch itself: for image $i$ the other $B - 1$ captions are the negatives (and the other images for caption $i$). No labels are needed beyond "these two go together".
#
# </details>
#
# **4. What loss would a model that cannot tell the pairs apart score on a batch of 16, and why?**
#
# <details><summary>Answer</summary>
#
# $\log 16$, printed above as the chance level: a uniform distribution over the 16 candidates gives the right one probability $1/16$, and the cross-entropy is $-\log(1/16)$.
#
# </details>
#
# **5. Why does the stand-in give "cat" and "dog" the very same probability on a real photo?**
#
# <details><summary>Answer</summary>
#
# Its tokenizer knows only ShapesWorld's words, so both become the same unknown token: "a photo of a cat." and "a photo of a dog." are the same input, with the same embedding and the same score.
#
# </details>

# %% [markdown]
# ## References
#
# * Radford et al., *Learning Transferable Visual Models From Natural Language Supervision* (CLIP, 2021): [arXiv:2103.00020](https://arxiv.org/abs/2103.00020).
# * Binding and hard negatives: Yuksekgonul et al., *When and why vision-language models behave like bags-of-words* (ARO, 2023): [arXiv:2210.01936](https://arxiv.org/abs/2210.01936); Thrush et al., *Winoground* (2022): [arXiv:2204.03162](https://arxiv.org/abs/2204.03162).
# * Model card: [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32).
# * transformers docs: [CLIP](https://huggingface.co/docs/transformers/model_doc/clip), [zero-shot image classification](https://huggingface.co/docs/transformers/tasks/zero_shot_image_classification).
