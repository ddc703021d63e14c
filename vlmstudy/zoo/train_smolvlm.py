"""Train the tiny SmolVLM stand-in (``Idefics3ForConditionalGeneration``) on ShapesWorld.

Built from the course's parts, the way SmolVLM is built from SigLIP and SmolLM2: the vision
tower starts from tiny CLIP's (:func:`~vlmstudy.zoo.build_smolvlm.copy_clip_tower`), the
decoder from tiny LLaVA's pre-trained language model (its word ids are the course vocabulary's
first ids; SmolVLM's special tokens get new rows). Three stages:

0. tower distillation: the SigLIP-style tower (no class token, no pre-LayerNorm, 32 px tiles)
   learns to give each tile the patch states tiny CLIP gives that quarter of the 64 px picture,
   and the global image CLIP's states pooled 2 x 2 (MSE, as ``distill_blip_tower``); then it is
   frozen (real SmolVLM trains its encoder too; frozen, its states are computed once per
   picture, which is what keeps CPU training to minutes);
1. connector alignment: only the pixel-shuffle connector learns, on "describe the image." ->
   caption, so the decoder can read the projected tiles;
2. instruction tuning: connector and decoder learn, on single questions and dialogues, in
   trained paraphrases part of the time.

Every loss of stages 1-2 is the model's own ``forward(labels=...)`` (the frozen tower's states
enter through its ``mm_encoder_outputs`` argument after the model's own connector); labels are
-100 on the prompt and image tokens. Pictures go through the real processor once.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch
import torch.nn.functional as F

from .. import shapes
from ..prompting import IGNORE, ids
from ..settings import seed_everything
from .build_generative import EOS_ID, IMAGE_TOKEN_ID
from .build_smolvlm import END_OF_UTTERANCE, smolvlm_model, smolvlm_processor, token_ids
from .common import scene_pool, to_pixels
from .train_generative import GenerativeConfig, chat_example
from .train_loop import freeze, pad_batch, train_loop


def processed_pixels(processor, pixels_u8: np.ndarray, chunk: int = 256, progress: bool = True) -> torch.Tensor:
    """Every picture through the processor's image side: ``(N, tiles + 1, 3, T, T)`` fp16
    (2 x 2 tiles + the global image for a 64 px picture)."""
    from PIL import Image
    from tqdm.auto import tqdm

    parts = []
    for start in tqdm(range(0, len(pixels_u8), chunk), desc="tiling pictures", leave=False, disable=not progress):
        images = [[Image.fromarray(a)] for a in pixels_u8[start:start + chunk]]
        parts.append(processor.image_processor(images, return_tensors="pt")["pixel_values"].half())
    return torch.cat(parts)


def image_block(processor, image) -> list[int]:
    """The token ids one picture becomes in the prompt (fake / row-col / global tokens and
    ``image_seq_len`` ``<image>`` tokens per tile), as the processor expands one ``<image>``."""
    return processor(images=[image], text=["<image>"])["input_ids"][0]


def smolvlm_example(processor, scene, rng, block: list[int], paraphrase_share: float) -> tuple[list[int], list[int]]:
    """One training sequence ``(input_ids, labels)``: :func:`train_generative.chat_example` in
    SmolVLM's chat template, its ``<image>`` expanded to ``block`` and the answer ended by
    ``<end_of_utterance>`` (SmolVLM's end of turn) instead of ``</s>``."""
    row, labels = chat_example(processor, [scene], rng, 1, paraphrase_share)
    assert row[-1] == EOS_ID and labels[-1] == EOS_ID
    eou = token_ids()[END_OF_UTTERANCE]
    row, labels = row[:-1] + [eou], labels[:-1] + [eou]
    at = row.index(IMAGE_TOKEN_ID)
    return row[:at] + block + row[at + 1:], labels[:at] + [IGNORE] * len(block) + labels[at + 1:]


def init_from_parts(model, clip=None, llava=None) -> None:
    """Copy tiny CLIP's tower (where shapes match) and tiny LLaVA's decoder into ``model``."""
    from .build_smolvlm import copy_clip_tower

    if clip is not None:
        copy_clip_tower(clip.vision_model, model.model.vision_model)
    if llava is not None:
        lm, src = model.model.text_model, llava.model.language_model
        with torch.no_grad():
            for name, p in src.state_dict().items():
                mine = lm.state_dict()[name]
                if name == "embed_tokens.weight":
                    mine[: p.shape[0]].copy_(p)
                else:
                    mine.copy_(p)
            head = llava.lm_head.weight
            model.lm_head.weight[: head.shape[0]].copy_(head)


def clip_targets(clip_vision, pixels_u8: np.ndarray) -> torch.Tensor:
    """What the tower should give each tile: tiny CLIP's final patch states of the 64 px picture
    ``(B, 8, 8, D)`` cut into the 2 x 2 quarters the processor's tiles are, then the whole grid
    pooled 2 x 2 for the global image: ``(B, 5, 16, D)``, in the processor's tile order."""
    with torch.no_grad():
        h = clip_vision(pixel_values=to_pixels(pixels_u8)).last_hidden_state
        h = clip_vision.post_layernorm(h)[:, 1:]
        b, n, d = h.shape
        side = int(n ** 0.5)
        grid = h.reshape(b, side, side, d)
        half = side // 2
        tiles = [grid[:, r * half:(r + 1) * half, c * half:(c + 1) * half].reshape(b, -1, d)
                 for r in range(2) for c in range(2)]
        pooled = F.avg_pool2d(grid.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
        return torch.stack(tiles + [pooled], dim=1)


def tower_states(tower, pixels: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The frozen tower's final states of every tile: ``(N, tiles, 16, D)`` fp16."""
    out = []
    with torch.no_grad():
        for start in range(0, len(pixels), batch // pixels.shape[1]):
            px = pixels[start:start + batch // pixels.shape[1]].float()
            h = tower(pixel_values=px.flatten(0, 1)).last_hidden_state
            out.append(h.reshape(*px.shape[:2], *h.shape[1:]).half())
    return torch.cat(out)


class _Distill(torch.nn.Module):
    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, pixel_values, targets):
        h = self.tower(pixel_values=pixel_values.flatten(0, 1)).last_hidden_state
        return F.mse_loss(h, targets.flatten(0, 1))


def distill_tower(model, clip, pixels: torch.Tensor, pixels_u8: np.ndarray, cfg: GenerativeConfig,
                  steps: int, progress: bool = True) -> list[dict]:
    """Stage 0 (see module docstring): returns the loss history, with the final cosine agreement
    between tower and CLIP states on 256 held-back pool pictures in its last entry."""
    tower = model.model.vision_model
    rng = np.random.default_rng(cfg.seed + 3)
    check = np.arange(min(256, len(pixels) // 4))
    pool = np.arange(len(check), len(pixels))

    def batch_fn(step):
        idx = rng.choice(pool, size=min(cfg.batch, len(pool)), replace=False)
        return {"pixel_values": pixels[idx].float(), "targets": clip_targets(clip.vision_model, pixels_u8[idx])}

    stage = dataclasses.replace(cfg, steps=steps, lr=1e-3, warmup=max(1, min(cfg.warmup, steps // 5)))
    wrapper = _Distill(tower)
    history = train_loop(wrapper, list(tower.parameters()), batch_fn, stage, "stage 0: distilling the tower",
                         progress, loss_fn=lambda m, b: m(**b))
    with torch.no_grad():
        got = tower(pixel_values=pixels[check].float().flatten(0, 1)).last_hidden_state
        want = clip_targets(clip.vision_model, pixels_u8[check]).flatten(0, 1)
        history[-1]["distill_cosine"] = round(float(F.cosine_similarity(got, want, dim=-1).mean()), 4)
    return [dict(h, stage="tower distillation") for h in history]


class _FromStates(torch.nn.Module):
    """The model fed its frozen tower's cached states: the model's own connector applied to them,
    passed as ``mm_encoder_outputs`` (what ``get_image_features`` would return; transformers v5's
    name for the old ``image_hidden_states``), then the model's own ``forward(labels=...)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, states, **batch):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        hidden = self.model.model.connector(states.float().flatten(0, 1))
        encoded = {"image": BaseModelOutputWithPooling(pooler_output=hidden.flatten(0, 1))}
        return self.model(mm_encoder_outputs=encoded, **batch).loss


def train_smolvlm(cfg: GenerativeConfig, clip=None, llava=None, progress: bool = True, distill_steps: int = 200):
    """Tiny SmolVLM: ``(model, processor, history)``; ``distill_steps`` of stage 0 (when ``clip``
    is given), ``cfg.align_steps`` connector-only steps, then ``cfg.steps`` of instruction tuning."""
    seed_everything(cfg.seed)
    processor = smolvlm_processor()
    model = smolvlm_model(clip.config.vision_config if clip is not None else None)
    init_from_parts(model, clip, llava)
    scenes, pixels_u8 = scene_pool("train", cfg.pool, cfg.seed, 64, progress=progress, varied_share=cfg.varied_share)
    pixels = processed_pixels(processor, pixels_u8, progress=progress)
    block = image_block(processor, scenes[0].render())
    history = []
    if clip is not None and distill_steps:
        history += distill_tower(model, clip, pixels, pixels_u8, cfg, distill_steps, progress)
    freeze(model.model.vision_model)
    states = tower_states(model.model.vision_model, pixels)
    del pixels
    rng = random.Random(cfg.seed)
    tok = processor.tokenizer
    eou = token_ids()[END_OF_UTTERANCE]

    def chat_batch(step):
        idx = [rng.randrange(len(scenes)) for _ in range(cfg.batch)]
        rows, labels = zip(*(smolvlm_example(processor, scenes[i], rng, block, cfg.paraphrase_share) for i in idx))
        return dict(pad_batch(list(rows), list(labels)), states=states[idx])

    from ..generation import chat_prompt

    prompt = tok(chat_prompt(processor, [("describe the image.", None)])).input_ids
    at = prompt.index(IMAGE_TOKEN_ID)
    prompt = prompt[:at] + block + prompt[at + 1:]

    def caption_batch(step):
        idx = [rng.randrange(len(scenes)) for _ in range(cfg.batch)]
        rows, labels = [], []
        for i in idx:
            answer = ids(tok, shapes.caption(scenes[i])) + [eou]
            rows.append(prompt + answer)
            labels.append([IGNORE] * len(prompt) + answer)
        return dict(pad_batch(rows, labels), states=states[idx])

    wrapper = _FromStates(model)
    loss = lambda m, b: m(**b)  # noqa: E731
    if cfg.align_steps:
        connector = list(model.model.connector.parameters())
        others = [p for p in model.parameters() if p.requires_grad and not any(p is q for q in connector)]
        for p in others:
            p.requires_grad_(False)
        stage = dataclasses.replace(cfg, steps=cfg.align_steps, warmup=min(cfg.warmup, max(1, cfg.align_steps // 4)))
        history += [dict(h, stage="connector alignment")
                    for h in train_loop(wrapper, connector, caption_batch, stage, "stage 1: aligning the connector",
                                        progress, loss_fn=loss)]
        for p in others:
            p.requires_grad_(True)
    stage2 = train_loop(wrapper, [p for p in model.parameters() if p.requires_grad], chat_batch, cfg,
                        "stage 2: instruction tuning tiny SmolVLM", progress, loss_fn=loss)
    history += [dict(h, stage="instruction tuning") for h in stage2]
    model.eval()
    return model, processor, history


__all__ = ["distill_tower", "image_block", "init_from_parts", "processed_pixels", "smolvlm_example", "train_smolvlm"]
