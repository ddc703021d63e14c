"""Train the tiny CLIP and SigLIP stand-ins on ShapesWorld.

Same classes as the real checkpoints (``CLIPModel`` / ``SiglipModel`` with their processors),
small configs: 64 px images, 8 px patches, width 128. Images are rendered once into a pool;
each step draws a batch and one of several phrasings per scene (full caption with positions,
or a prompt template around the object list). Pairs whose texts are identical are all treated
as positives, so duplicates in a batch are not pushed apart.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipProcessor,
)

from .. import shapes
from ..settings import seed_everything
from .common import render_many, to_device, to_pixels, training_device, warmup_cosine
from .tokenizer import build_tokenizer

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass
class ContrastiveConfig:
    """Hyper-parameters of a tiny dual encoder (``vision_*`` / ``text_*`` / ``train_*`` prefixes)."""

    family: str = "clip"  # clip | siglip
    image_size: int = 64
    vision_patch: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 3
    heads: int = 4
    projection_dim: int = 128
    text_max_length: int = 32
    train_steps: int = 1200
    train_batch: int = 128
    train_lr: float = 1e-3
    train_warmup: int = 150
    train_weight_decay: float = 0.05
    train_pool: int = 20000
    train_varied_share: float = 0.6  # pictures drawn with training variety (shapes.render_varied)
    seed: int = 0


def build_model(cfg: ContrastiveConfig, vocab_size: int):
    """A randomly initialised ``CLIPModel`` or ``SiglipModel`` of the given size."""
    vision = dict(image_size=cfg.image_size, patch_size=cfg.vision_patch, hidden_size=cfg.vision_width,
                  intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  num_attention_heads=cfg.heads)
    text = dict(vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads,
                max_position_embeddings=cfg.text_max_length, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    if cfg.family == "clip":
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)
        return CLIPModel(config)
    config = SiglipConfig(text_config=dict(text, projection_size=cfg.projection_dim), vision_config=vision)
    model = SiglipModel(config)
    with torch.no_grad():  # the paper's initialisation; HF's zeros do not train (anchors.md)
        model.logit_scale.fill_(np.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def build_processor(cfg: ContrastiveConfig):
    if cfg.family == "clip":
        tok = build_tokenizer(add_eos=True, model_max_length=cfg.text_max_length)
        image = CLIPImageProcessorPil(size={"shortest_edge": cfg.image_size},
                                   crop_size={"height": cfg.image_size, "width": cfg.image_size})
        return CLIPProcessor(image_processor=image, tokenizer=tok)
    # SigLIP pools the last position, so text is padded to a fixed length (as the real one does)
    tok = build_tokenizer(add_eos=True, model_max_length=cfg.text_max_length)
    image = SiglipImageProcessorPil(size={"height": cfg.image_size, "width": cfg.image_size})
    return SiglipProcessor(image_processor=image, tokenizer=tok)


def training_text(scene: shapes.Scene, template: str | None, part: str = "both") -> str:
    """The phrasing a scene is paired with: its full caption (``template=None``) or a prompt
    template around its object list ("a photo of a red circle and a blue square."). For
    single-object scenes ``part`` may name only the ``shape`` ("a photo of a triangle.") or the
    ``color`` ("a photo of a red shape."): texts about one attribute push the image embedding
    to keep colour and shape apart, which is what unseen colour-shape pairs need."""
    if template is None:
        return shapes.caption(scene)
    if len(scene.objects) == 1 and part != "both":
        obj = scene.objects[0]
        return template.format(obj.shape if part == "shape" else f"{obj.color} shape")
    return template.format(shapes.short_description(scene).removeprefix("a ").removeprefix("an "))


@torch.no_grad()
def quick_zero_shot(model, tok, padding, mean, std, n: int = 200) -> float:
    """Zero-shot colour x shape accuracy on ``n`` single-object val scenes (for the training curve)."""
    model.eval()
    device = next(model.parameters()).device
    scenes = shapes.make_scenes("val", n, seed=0, n_objects=1)
    classes = [f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES]
    from .common import render_many as _render

    pixels = to_pixels(_render(scenes, 64, False), mean, std).to(device)
    img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    enc = to_device(tok([f"a photo of a {c}." for c in classes], padding=padding, return_tensors="pt"), device)
    txt = F.normalize(model.get_text_features(**enc).pooler_output, dim=-1)
    pred = (img @ txt.T).argmax(dim=1)
    return round(sum(classes[k] == s.objects[0].name for k, s in zip(pred.tolist(), scenes)) / n, 3)


def _multi_positive_targets(texts: list[str]) -> torch.Tensor:
    ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    idx = torch.tensor([ids[t] for t in texts])
    same = (idx[:, None] == idx[None, :]).float()
    return same


def train_contrastive(cfg: ContrastiveConfig, out_dir: str | Path | None = None, progress: bool = True,
                      eval_every: int = 0):
    """Train from scratch; save to ``out_dir`` (safetensors + processor) if given.

    Trains on :func:`training_device`; the model comes back on the CPU.
    Returns ``(model, processor, history)`` where history is a list of ``{"step", "loss", "seconds"}``.
    """
    seed_everything(cfg.seed)
    processor = build_processor(cfg)
    tok = processor.tokenizer
    device = training_device()
    model = build_model(cfg, len(tok)).to(device)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    # pool of (scene, hard negative) pairs: the second differs in one shape, colour or position
    rng = random.Random(cfg.seed)
    base = shapes.make_scenes("train", cfg.train_pool // 2, seed=cfg.seed)
    scenes = [s for b in base for s in (b, shapes.variant(b, rng))]
    pixels_u8 = render_many(scenes, cfg.image_size, progress, "rendering training scenes", cfg.train_varied_share)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train_lr, weight_decay=cfg.train_weight_decay,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.train_steps, cfg.train_warmup))
    history, start = [], time.time()
    model.train()
    bar = tqdm(range(cfg.train_steps), desc=f"training tiny {cfg.family}", disable=not progress)
    padding = "max_length" if cfg.family == "siglip" else True
    for step in bar:
        pairs = rng.sample(range(len(scenes) // 2), cfg.train_batch // 2)
        idx = [2 * p + k for p in pairs for k in (0, 1)]
        # both scenes of a pair get the same phrasing, so their texts differ only where they do
        styles = [None if rng.random() < 0.5 else rng.choice(shapes.PROMPT_TEMPLATES) for _ in pairs]
        parts = [rng.choices(("both", "shape", "color"), weights=(0.7, 0.2, 0.1))[0] for _ in pairs]
        texts = [training_text(scenes[i], styles[j // 2], parts[j // 2]) for j, i in enumerate(idx)]
        enc = to_device(tok(texts, padding=padding, truncation=True, return_tensors="pt"), device)
        pixels = to_pixels(pixels_u8[idx], mean, std).to(device)
        img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        txt = F.normalize(model.get_text_features(**enc).pooler_output, dim=-1)
        same = _multi_positive_targets(texts).to(device)
        logits = model.logit_scale.exp() * txt @ img.T
        if cfg.family == "clip":
            target = same / same.sum(dim=1, keepdim=True)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T)) / 2
        else:
            labels = 2 * same - 1
            loss = -F.logsigmoid(labels * (logits + model.logit_bias)).sum(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        if step % 25 == 0 or step == cfg.train_steps - 1:
            history.append({"step": step, "loss": loss.item(), "seconds": round(time.time() - start, 1)})
        if eval_every and (step + 1) % eval_every == 0:
            history[-1]["zero_shot_val"] = quick_zero_shot(model, tok, padding, mean, std)
            model.train()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.to("cpu").eval()
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        processor.save_pretrained(out_dir)
    return model, processor, history
