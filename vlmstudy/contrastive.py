"""Dual encoders (CLIP, SigLIP): embeddings, zero-shot classification, prompt ensembles, losses.

Shapes: images -> ``(N, D)`` unit vectors, texts -> ``(M, D)`` unit vectors, similarities
``(N, M)``. Works the same for the tiny stand-ins and the real checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .images import load_image
from .torch_utils import model_device_dtype, move_batch


def is_siglip(model) -> bool:
    """SigLIP pads text to a fixed length and scores pairs with a sigmoid, CLIP with a softmax."""
    return "siglip" in type(model).__name__.lower()


def _features(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling; the projected embedding is pooler_output
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _batches(items: Sequence, batch_size: int, progress: bool, desc: str):
    starts = range(0, len(items), batch_size)
    if progress and len(starts) > 1:
        starts = tqdm(starts, desc=desc, leave=False)
    for start in starts:
        yield items[start:start + batch_size]


def text_inputs(processor, texts: Sequence[str], model) -> dict:
    """Tokenise ``texts`` the way the model was trained: SigLIP pads to ``max_length``."""
    padding = "max_length" if is_siglip(model) else True
    return processor(text=list(texts), padding=padding, truncation=True, return_tensors="pt")


@torch.no_grad()
def embed_images(model, processor, images: Sequence, batch_size: int = 64, normalize: bool = True,
                 progress: bool = True) -> torch.Tensor:
    """Image embeddings ``(N, D)``, computed in batches (one forward pass per batch, not per image)."""
    device, dtype = model_device_dtype(model)
    out = []
    for chunk in _batches(list(images), batch_size, progress, "embedding images"):
        pixels = processor(images=[load_image(im) for im in chunk], return_tensors="pt")["pixel_values"]
        out.append(_features(model.get_image_features(pixel_values=pixels.to(device, dtype))).float())
    emb = torch.cat(out).cpu()
    return F.normalize(emb, dim=-1) if normalize else emb


@torch.no_grad()
def embed_texts(model, processor, texts: Sequence[str], batch_size: int = 256, normalize: bool = True,
                progress: bool = True) -> torch.Tensor:
    """Text embeddings ``(M, D)``."""
    device, _ = model_device_dtype(model)
    out = []
    for chunk in _batches(list(texts), batch_size, progress, "embedding texts"):
        enc = move_batch(text_inputs(processor, chunk, model), device)
        out.append(_features(model.get_text_features(**enc)).float())
    emb = torch.cat(out).cpu()
    return F.normalize(emb, dim=-1) if normalize else emb


@torch.no_grad()
def class_embeddings(model, processor, labels: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",)) -> torch.Tensor:
    """One unit vector per label ``(C, D)``: the normalised mean over the prompt templates
    (a *prompt ensemble* when there is more than one template)."""
    prompts = [t.format(label) for label in labels for t in templates]
    emb = embed_texts(model, processor, prompts, progress=False).view(len(labels), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def logits(model, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Scaled similarities ``(N, M)`` as the model scores them (``logit_scale``, plus SigLIP's bias)."""
    scale = model.logit_scale.detach().float().exp().cpu()
    out = scale * image_embeds @ text_embeds.T
    if is_siglip(model):
        out = out + model.logit_bias.detach().float().cpu()
    return out


@torch.no_grad()
def zero_shot(model, processor, images: Sequence, labels: Sequence[str],
              templates: Sequence[str] = ("a photo of a {}.",), batch_size: int = 64,
              progress: bool = True) -> torch.Tensor:
    """Zero-shot classification: probabilities ``(N, C)`` of each label for each image.

    CLIP: a softmax over the labels (rows sum to 1). SigLIP: an independent sigmoid per label
    (rows need not sum to 1; each is "does this caption match?").
    """
    img = embed_images(model, processor, images, batch_size=batch_size, progress=progress)
    scores = logits(model, img, class_embeddings(model, processor, labels, templates))
    return torch.sigmoid(scores) if is_siglip(model) else scores.softmax(dim=-1)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss, written out.

    image_embeds, text_embeds: ``(B, D)`` unit vectors, pair ``i`` matches pair ``i``;
    logit_scale: the log temperature (a scalar). Each image must pick its text among the B texts
    (cross-entropy over a row) and each text its image (over a column); the loss is the mean.
    """
    logit_scale = logit_scale.to(text_embeds.device)  # a model's parameter may sit on the GPU
    logits_per_text = logit_scale.exp() * text_embeds @ image_embeds.T  # (B, B)
    target = torch.arange(len(text_embeds), device=text_embeds.device)
    return (F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.T, target)) / 2


def siglip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss, written out.

    Every (text, image) pair is its own binary question "do these match?": label +1 on the
    diagonal, -1 elsewhere. No softmax over the batch, so no all-to-all normalisation. Returns the
    summed negative log-likelihood per text, averaged over the batch (as ``SiglipModel`` does).
    """
    logit_scale, logit_bias = logit_scale.to(text_embeds.device), logit_bias.to(text_embeds.device)
    logits_per_text = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias  # (B, B)
    labels = 2 * torch.eye(len(text_embeds), device=text_embeds.device) - 1
    return -F.logsigmoid(labels * logits_per_text).sum(dim=-1).mean()


# ----------------------------------------------------------------------------- model inputs


def pair_inputs(model, processor, images: Sequence, texts: Sequence[str]) -> dict:
    """Inputs for ``model(**inputs)`` on matching (image, text) pairs, on the model's device:
    ``pixel_values`` plus the text tokenised as the model was trained (see :func:`text_inputs`).
    With ``return_loss=True`` the model then computes its own contrastive loss over the batch."""
    pixels = processor(images=[load_image(im) for im in images], return_tensors="pt")["pixel_values"]
    return move_batch({**text_inputs(processor, texts, model), "pixel_values": pixels}, *model_device_dtype(model))


# ----------------------------------------------------------------------------- zero-shot accuracy


def labelled_images(split: str = "test", n: int = 200, seed: int = 0) -> tuple[list, list[str]]:
    """``n`` single-object ShapesWorld images of ``split`` and their true class (``"red circle"``),
    one of :data:`vlmstudy.zoo.evaluate.ALL_CLASSES`. ``split="heldout"`` gives colour-shape
    pairs that the stand-ins never saw in training."""
    from . import shapes

    scenes = shapes.make_scenes(split, n, seed=seed, n_objects=1)
    return [s.render() for s in scenes], [s.objects[0].name for s in scenes]


def zero_shot_accuracy(model, processor, images, truths: Sequence[str], labels: Sequence[str],
                       templates: Sequence[str] = ("a photo of a {}.",), batch_size: int = 64) -> float:
    """Fraction of ``images`` whose best label (argmax over ``labels``) is ``truths[i]``.

    images: images, or their embeddings from :func:`embed_images` (a tensor ``(N, D)``), to reuse
    them across several calls. templates: one prompt, or several (a prompt ensemble).
    """
    labels = list(labels)
    truth = _truth_indices(truths, labels, len(images))
    img = images if isinstance(images, torch.Tensor) else embed_images(model, processor, images,
                                                                      batch_size=batch_size, progress=False)
    pred = (img @ class_embeddings(model, processor, labels, templates).T).argmax(dim=1)
    return float((pred == truth).float().mean())


def _truth_indices(truths: Sequence[str], labels: list[str], n_images: int) -> torch.Tensor:
    unknown = sorted(set(truths) - set(labels))
    if unknown:
        raise ValueError(f"truths contain labels that are not candidates: {unknown[:5]}; add them to labels.")
    if len(truths) != n_images:
        raise ValueError(f"got {n_images} images but {len(truths)} truths; pass one true label per image.")
    return torch.tensor([labels.index(t) for t in truths])


def template_accuracies(model, processor, images, truths: Sequence[str], labels: Sequence[str],
                        templates: Sequence[str]) -> dict[str, float]:
    """Zero-shot accuracy of each template alone, then of all of them as one prompt ensemble
    (key ``"ensemble"``, the same as ``zero_shot_accuracy(..., templates=templates)``).
    The images and every (label, template) prompt are embedded once."""
    labels, templates = list(labels), list(templates)
    img = images if isinstance(images, torch.Tensor) else embed_images(model, processor, images, progress=False)
    prompts = [t.format(label) for label in labels for t in templates]
    truth = _truth_indices(truths, labels, len(img))
    per = embed_texts(model, processor, prompts, progress=False).view(len(labels), len(templates), -1)

    def accuracy(classes: torch.Tensor) -> float:
        return float(((img @ classes.T).argmax(dim=1) == truth).float().mean())

    out = {t: accuracy(per[:, k]) for k, t in enumerate(templates)}
    out["ensemble"] = accuracy(F.normalize(per.mean(dim=1), dim=-1))
    return out


# ----------------------------------------------------------------------------- hard negatives


@dataclass
class HardNegativeResult:
    """Image-text matching against minimally different captions (see :func:`hard_negative_test`).

    One row per trial: ``kinds[i]`` (what was changed), the scene's image, its ``true_captions[i]``
    and the caption of the changed scene ``false_captions[i]``, with the model's cosine
    similarities ``true_scores`` / ``false_scores`` (tensors ``(N,)``).
    """

    kinds: list[str]
    images: list
    true_captions: list[str]
    false_captions: list[str]
    true_scores: torch.Tensor
    false_scores: torch.Tensor

    @property
    def correct(self) -> torch.Tensor:
        """Boolean ``(N,)``: the true caption scored higher than the hard negative."""
        return self.true_scores > self.false_scores

    def accuracy(self) -> dict[str, float]:
        """Fraction correct per kind of change, and over all (``"all"``); chance is 0.5."""
        out = {}
        for kind in dict.fromkeys(self.kinds):
            sel = torch.tensor([k == kind for k in self.kinds])
            out[kind] = float(self.correct[sel].float().mean())
        out["all"] = float(self.correct.float().mean())
        return out

    def __len__(self) -> int:
        return len(self.kinds)


def hard_negative_test(model, processor, scenes: Sequence, kinds: Sequence[str] = ("color", "shape", "swap"),
                       seed: int = 0) -> HardNegativeResult:
    """For each scene and each kind of change, make a minimally different scene with
    :func:`vlmstudy.shapes.variant` (one object's ``color`` or ``shape`` changed, or two objects
    ``swap``-ped) and ask: does the image match its own caption better than the changed one?

    Trials where the change is impossible (a swap needs two objects) or leaves the caption the
    same are skipped. Returns a :class:`HardNegativeResult`.
    """
    import random

    from . import shapes

    rng = random.Random(seed)
    scenes = list(scenes)
    rows = []  # (scene index, kind, true caption, false caption)
    for i, scene in enumerate(scenes):
        for kind in kinds:
            if kind == "swap" and len(scene.objects) < 2:
                continue
            true, false = shapes.caption(scene), shapes.caption(shapes.variant(scene, rng, kind))
            if true != false:
                rows.append((i, kind, true, false))
    if not rows:
        raise ValueError("no hard negatives could be made from these scenes; pass more (or multi-object) scenes.")
    images = [scene.render() for scene in scenes]
    img = embed_images(model, processor, images, progress=False)[[r[0] for r in rows]]
    true = embed_texts(model, processor, [r[2] for r in rows], progress=False)
    false = embed_texts(model, processor, [r[3] for r in rows], progress=False)
    return HardNegativeResult(
        kinds=[r[1] for r in rows], images=[images[r[0]] for r in rows],
        true_captions=[r[2] for r in rows], false_captions=[r[3] for r in rows],
        true_scores=(img * true).sum(-1), false_scores=(img * false).sum(-1),
    )


# ----------------------------------------------------------------------------- losses and batch size


def siglip_loss_chunked(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                        logit_bias: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """:func:`siglip_loss` computed one block of ``chunk_size`` images at a time.

    Every (text, image) pair is its own binary term, so the loss is a plain sum over blocks: no
    block needs the others (the SigLIP paper's trick for huge batches spread over many devices,
    each holding its own images). The softmax of :func:`clip_loss` cannot be split this way: its
    denominator needs every negative of a row at once.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}.")
    logit_scale, logit_bias = logit_scale.to(text_embeds.device), logit_bias.to(text_embeds.device)
    total = text_embeds.new_zeros(())
    n = len(text_embeds)
    for start in range(0, len(image_embeds), chunk_size):
        img = image_embeds[start:start + chunk_size]
        block = logit_scale.exp() * text_embeds @ img.T + logit_bias  # (B, chunk)
        labels = -torch.ones_like(block)
        rows = torch.arange(start, start + len(img), device=block.device)
        labels[rows, torch.arange(len(img), device=block.device)] = 1.0
        total = total - F.logsigmoid(labels * block).sum()
    return total / n


def loss_by_batch_size(image_embeds: torch.Tensor, text_embeds: torch.Tensor, loss_fn,
                       batch_sizes: Sequence[int]) -> list[float]:
    """The mean of ``loss_fn(images, texts)`` over consecutive batches of each size in
    ``batch_sizes``, all cut from the same ``(N, D)`` pairs (a tail shorter than the batch size
    is dropped), so only the batch size changes between the numbers."""
    out = []
    for b in batch_sizes:
        if not 1 <= b <= len(image_embeds):
            raise ValueError(f"batch size {b} must be between 1 and the number of pairs ({len(image_embeds)}).")
        losses = [float(loss_fn(image_embeds[s:s + b], text_embeds[s:s + b]))
                  for s in range(0, len(image_embeds) - b + 1, b)]
        out.append(sum(losses) / len(losses))
    return out
