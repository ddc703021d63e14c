"""Checks for exercise 03: zero-shot classification with a prompt ensemble.

Two parts, graded separately:

* ``class_embeddings(labels, templates, embed_texts) -> (C, D)``: fill every template with every
  label, embed the prompts with the given function, normalise each embedding, average over the
  templates, normalise again. The checks pass an ``embed_texts`` of their own (a known, random
  vector per text, of varied length), so the reference is exact and needs no model.
* ``zero_shot_probs(image_embeds, class_embeds, scale=100.0) -> (N, C)``: softmax over the labels
  of ``scale`` times the cosine similarity (image embeddings are not normalised yet).

The hidden run adds one check per part against :mod:`vlmstudy.contrastive` with the real CLIP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Check, CheckFailed, Env, derive_seed

CLASS_TARGET = "class_embeddings"
PROBS_TARGET = "zero_shot_probs"

LABELS = ["red circle", "blue square", "green triangle", "yellow star", "purple circle", "orange square",
          "pink triangle", "white star"]
TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "a {} on a plain background.", "a drawing of a {}.",
             "a small {}.", "there is a {} in the image."]


def _embedder(env: Env, dim: int = 12):
    """A stand-in for a text encoder: one fixed random vector per text (length 0.5 to 3.5), and
    the list of every text it was asked for."""
    table: dict[str, torch.Tensor] = {}
    asked: list[str] = []

    def embed_texts(texts):
        if isinstance(texts, str):
            raise CheckFailed("embed_texts takes a list of strings; it got one string")
        texts = list(texts)
        asked.extend(texts)
        out = []
        for text in texts:
            if text not in table:
                g = torch.Generator().manual_seed(derive_seed(env.seed, str(text)))
                v = torch.randn(dim, generator=g)
                table[text] = v / v.norm() * (0.5 + 3.0 * torch.rand(1, generator=g))
            out.append(table[text])
        return torch.stack(out)

    return embed_texts, table, asked


def _pick(env: Env, pool: list[str], n: int) -> list[str]:
    return [str(x) for x in env.rng.permutation(pool)[:n]]


def _reference(labels, templates, table) -> torch.Tensor:
    rows = [F.normalize(torch.stack([table[t.format(label)] for t in templates]), dim=1).mean(0) for label in labels]
    return F.normalize(torch.stack(rows), dim=1)


def _matrix(value, shape: tuple[int, int], what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} returned {type(value).__name__}, not a torch tensor")
    if tuple(value.shape) != shape:
        raise CheckFailed(f"{what} returned shape {tuple(value.shape)}, expected {shape}")
    value = value.detach().float()
    if not bool(torch.isfinite(value).all()):
        raise CheckFailed(f"{what} returned NaN or infinite values")
    return value


# ----------------------------------------------------------------------------- class_embeddings

def check_prompts(fn, env: Env) -> None:
    embed, _, asked = _embedder(env)
    labels, templates = _pick(env, LABELS, 3), _pick(env, TEMPLATES, 4)
    fn(labels, templates, embed)
    want = {t.format(label) for label in labels for t in templates}
    missing, extra = sorted(want - set(asked)), sorted(set(asked) - want)
    if missing:
        raise CheckFailed(f"{len(missing)} of the {len(want)} prompts were never embedded, e.g. {missing[0]!r}")
    if extra:
        raise CheckFailed(f"embedded texts that are not template.format(label), e.g. {extra[0]!r}")


def check_unit_rows(fn, env: Env) -> None:
    embed, _, _ = _embedder(env)
    labels, templates = _pick(env, LABELS, 5), _pick(env, TEMPLATES, 3)
    out = _matrix(fn(labels, templates, embed), (5, 12), "class_embeddings")
    norms = out.norm(dim=1)
    if not torch.allclose(norms, torch.ones(5), atol=1e-4):
        raise CheckFailed(f"row lengths are {[round(float(n), 3) for n in norms]}, not 1")


def check_single_template(fn, env: Env) -> None:
    embed, table, _ = _embedder(env)
    labels, templates = _pick(env, LABELS, 4), _pick(env, TEMPLATES, 1)
    out = _matrix(fn(labels, templates, embed), (4, 12), "class_embeddings")
    want = _reference(labels, templates, table)
    for i, label in enumerate(labels):
        if not torch.allclose(out[i], want[i], atol=1e-5):
            match = [j for j in range(len(labels)) if torch.allclose(out[i], want[j], atol=1e-5)]
            where = f" (it is label {match[0]}'s)" if match else ""
            raise CheckFailed(f"with one template, row {i} is not the normalised embedding of {templates[0].format(label)!r}"
                              f"{where}")


def check_ensemble(fn, env: Env) -> None:
    embed, table, _ = _embedder(env)
    labels, templates = _pick(env, LABELS, 4), _pick(env, TEMPLATES, 3)
    out = _matrix(fn(labels, templates, embed), (4, 12), "class_embeddings")
    want = _reference(labels, templates, table)
    if torch.allclose(out, want, atol=1e-5):
        return
    raw = F.normalize(torch.stack([torch.stack([table[t.format(lb)] for t in templates]).mean(0) for lb in labels]), dim=1)
    if torch.allclose(out, raw, atol=1e-5):
        raise CheckFailed("the rows are the average of the raw prompt embeddings: a long embedding outvotes the others")
    raise CheckFailed(f"rows differ from normalise(mean over templates of normalise(embedding)) by up to "
                      f"{float((out - want).abs().max()):.3f}")


def check_class_real_clip(fn, env: Env) -> None:
    from .. import contrastive

    model, processor = env.model("clip")
    labels, templates = _pick(env, LABELS, 5), _pick(env, TEMPLATES, 3)

    def embed(texts):
        return contrastive.embed_texts(model, processor, list(texts), normalize=False, progress=False)

    out = _matrix(fn(labels, templates, embed), (5, model.config.projection_dim), "class_embeddings")
    want = contrastive.class_embeddings(model, processor, labels, templates)
    if not torch.allclose(out, want, atol=1e-4):
        raise CheckFailed("with the real CLIP, the class embeddings differ from vlmstudy.contrastive.class_embeddings")


# ----------------------------------------------------------------------------- zero_shot_probs

def _probs_reference(image_embeds, class_embeds, scale):
    return (scale * F.normalize(image_embeds, dim=1) @ class_embeds.T).softmax(dim=1)


def _inputs(env: Env, n: int, c: int, dim: int = 10):
    images = env.randn(n, dim) * (0.3 + 3 * torch.rand(n, 1, generator=env.gen))
    classes = F.normalize(env.randn(c, dim), dim=1)
    return images, classes


def check_probs_shape(fn, env: Env) -> None:
    images, classes = _inputs(env, 5, 3)
    out = _matrix(fn(images.clone(), classes.clone(), 10.0), (5, 3), "zero_shot_probs")
    if bool((out < 0).any()) or not torch.allclose(out.sum(dim=1), torch.ones(5), atol=1e-4):
        raise CheckFailed(f"each row (one image) should be probabilities over the 3 labels summing to 1; row sums: "
                          f"{[round(float(s), 3) for s in out.sum(dim=1)]}")


def check_probs_cosine(fn, env: Env) -> None:
    images, classes = _inputs(env, 6, 4)
    out = _matrix(fn(images.clone(), classes.clone(), 10.0), (6, 4), "zero_shot_probs")
    want = _probs_reference(images, classes, 10.0)
    if torch.allclose(out, want, atol=1e-5):
        return
    if torch.allclose(out, (10.0 * images @ classes.T).softmax(dim=1), atol=1e-5):
        raise CheckFailed("the image embeddings were not normalised: their length changed the probabilities")
    raise CheckFailed(f"probabilities differ from softmax(scale * cosine) by up to {float((out - want).abs().max()):.3f}")


def check_probs_scale(fn, env: Env) -> None:
    images, classes = _inputs(env, 4, 3)
    for scale in (1.0, 50.0):
        out = _matrix(fn(images.clone(), classes.clone(), scale), (4, 3), "zero_shot_probs")
        if not torch.allclose(out, _probs_reference(images, classes, scale), atol=1e-5):
            raise CheckFailed(f"with scale={scale} the probabilities are not softmax(scale * cosine)")


def check_probs_real_clip(fn, env: Env) -> None:
    from .. import contrastive

    model, processor = env.model("clip")
    images, _ = contrastive.labelled_images("test", 16, seed=int(env.rng.integers(1 << 30)))
    labels, templates = _pick(env, LABELS, 6), _pick(env, TEMPLATES, 2)
    image_embeds = contrastive.embed_images(model, processor, images, normalize=False, progress=False)
    class_embeds = contrastive.class_embeddings(model, processor, labels, templates)
    scale = float(model.logit_scale.detach().float().exp())
    out = _matrix(fn(image_embeds, class_embeds, scale), (16, 6), "zero_shot_probs")
    want = contrastive.zero_shot(model, processor, images, labels, templates, progress=False)
    if not torch.allclose(out, want, atol=1e-4):
        raise CheckFailed("with the real CLIP, the probabilities differ from vlmstudy.contrastive.zero_shot")


CLASS_CHECKS = [
    Check("prompts", 1, "every template is filled with every label and embedded",
          "embed [template.format(label) for each label, for each template] with embed_texts", check_prompts),
    Check("unit_rows", 1, "one unit-length row per label, shape (labels, dim)",
          "normalise the averaged vector of each label (F.normalize(..., dim=-1))", check_unit_rows),
    Check("single_template", 1, "with one template, row i is label i's normalised prompt embedding",
          "keep the labels in order; reshape the embeddings to (labels, templates, dim) in the order you built the prompts",
          check_single_template),
    Check("ensemble", 2, "several templates: normalise each, average, normalise again",
          "normalise every prompt embedding before averaging over the templates, then normalise the mean",
          check_ensemble),
    Check("real_clip", 1, "with the real CLIP, equal to vlmstudy.contrastive.class_embeddings",
          "use the embed_texts you are given, on all the prompts", check_class_real_clip, visible=False),
]

PROBS_CHECKS = [
    Check("shape_sum", 1, "one row of probabilities per image, summing to 1 over the labels",
          "softmax over the labels: .softmax(dim=1) on an (images, labels) matrix", check_probs_shape),
    Check("cosine", 2, "probabilities come from cosine similarities",
          "normalise the image embeddings (the class embeddings are unit vectors already)", check_probs_cosine),
    Check("scale", 1, "the scale argument multiplies the similarities",
          "multiply the cosine similarities by scale before the softmax", check_probs_scale),
    Check("real_clip", 1, "with the real CLIP, equal to vlmstudy.contrastive.zero_shot",
          "scale * cosine similarity, softmax over the labels", check_probs_real_clip, visible=False),
]
