# %% [markdown]
# # Exercise 03 · Zero-shot classification with a prompt ensemble
#
# **Objective.** Write zero-shot classification with CLIP from its two halves (notebook 02):
#
# 1. `class_embeddings(labels, templates, embed_texts)`: one vector per label from a **prompt
#    ensemble**: every template filled with the label (`"a photo of a {}."`,
#    `"a drawing of a {}."`, ...), each prompt embedded and normalised, averaged over the
#    templates, normalised again;
# 2. `zero_shot_probs(image_embeds, class_embeds, scale=100.0)`: for every image, probabilities
#    over the labels, a softmax of `scale` times the cosine similarities.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The two parts are graded separately;
# the grade also runs hidden checks on new data, and with the real (tiny) CLIP.

# %%
import torch
import torch.nn.functional as F

from vlmstudy import contrastive
from vlmstudy.grading import check_class_embeddings, check_zero_shot_probs, load_quietly

# %% [markdown]
# ## Part 1: the prompt ensemble
#
# `embed_texts(list_of_strings)` returns raw text embeddings, `(len(list), D)`, of varied
# lengths. Normalise each prompt's embedding **before** averaging, or a long embedding
# outvotes the others. Return a `(len(labels), D)` tensor of unit rows, in the order of
# `labels`.

# %%
def class_embeddings(labels, templates, embed_texts):
    ### BEGIN SOLUTION
    prompts = [template.format(label) for label in labels for template in templates]
    embeddings = F.normalize(embed_texts(prompts), dim=-1).reshape(len(labels), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=-1)
    ### END SOLUTION

# %%
check_class_embeddings(class_embeddings)

# %% [markdown]
# ## Part 2: probabilities
#
# `image_embeds` `(N, D)` are raw image features (not normalised); `class_embeds` `(C, D)`
# are unit vectors (from part 1). Return `(N, C)` probabilities: each row sums to 1.

# %%
def zero_shot_probs(image_embeds, class_embeds, scale=100.0):
    ### BEGIN SOLUTION
    cosine = F.normalize(image_embeds, dim=-1) @ class_embeds.T
    return (scale * cosine).softmax(dim=-1)
    ### END SOLUTION

# %%
report = check_zero_shot_probs(zero_shot_probs)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(class_embeddings, "03_zero_shot_ensemble", "class_embeddings"))
print(hidden_checks(zero_shot_probs, "03_zero_shot_ensemble", "zero_shot_probs"))
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# Classify 200 ShapesWorld test images by shape with the tiny CLIP: one template against an
# ensemble of four.

# %%
if report.passed and check_class_embeddings(class_embeddings).passed:
    clip, processor = load_quietly("clip")
    images, truths = contrastive.labelled_images("test", 200, seed=0)
    labels = sorted(set(truths))

    def embed_texts(texts):
        return contrastive.embed_texts(clip, processor, texts, normalize=False, progress=False)

    image_embeds = contrastive.embed_images(clip, processor, images, normalize=False, progress=False)
    scale = clip.logit_scale.exp().item()
    truth = torch.tensor([labels.index(t) for t in truths])
    ensembles = {"one template": ["a photo of a {}."],
                 "four templates": ["a photo of a {}.", "a picture of a {}.", "a drawing of a {}.",
                                    "a {} on a plain background."]}
    for name, templates in ensembles.items():
        probs = zero_shot_probs(image_embeds, class_embeddings(labels, templates, embed_texts), scale)
        accuracy = (probs.argmax(dim=1) == truth).float().mean().item()
        print(f"{name:15s} accuracy {accuracy:.2f}")
else:
    print("Finish both parts first: the checks above say what is missing.")
