"""Dual encoders (CLIP, SigLIP): embeddings, zero-shot classification, prompt ensembles, losses.

Shapes: images -> ``(N, D)`` unit vectors, texts -> ``(M, D)`` unit vectors, similarities
``(N, M)``. Works the same for the tiny stand-ins and the real checkpoints.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .images import load_image


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
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
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
    device = next(model.parameters()).device
    out = []
    for chunk in _batches(list(texts), batch_size, progress, "embedding texts"):
        enc = {k: v.to(device) for k, v in text_inputs(processor, chunk, model).items()}
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
    logits_per_text = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias  # (B, B)
    labels = 2 * torch.eye(len(text_embeds), device=text_embeds.device) - 1
    return -F.logsigmoid(labels * logits_per_text).sum(dim=-1).mean()
