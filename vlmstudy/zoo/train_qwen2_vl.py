"""Train the tiny Qwen2-VL stand-in on ShapesWorld, in the stages the real model was trained in.

Qwen2-VL was trained in three stages: the ViT first (LLM frozen), then everything, then
instruction tuning with the ViT frozen. The stand-in does the same, on parts the course already
trained (as tiny LLaVA-NeXT starts from tiny LLaVA):

0. **vision tower**: tiny CLIP's ViT weights are copied into Qwen2-VL's (same width, depth and
   patch size; q, k, v fused into ``qkv``; the 2D patch filter spread over the 2 time steps of the
   3D one), then distilled so that, with 2D rotary positions in place of CLIP's learned position
   table, every patch state matches tiny CLIP's (:func:`distill_tower`);
1. **merger alignment** (optional, ``align_steps``): the language model (tiny LLaVA's decoder,
   copied in: same width and depth) and the ViT frozen, the 2x2 patch merger (started as tiny
   LLaVA's projector averaged over each 2x2 block) learns "describe the image." -> caption;
2. **instruction tuning**: the ViT frozen, merger and language model learn single questions,
   dialogues and paraphrases in the real ChatML template.

Every loss of stages 1-2 is the model's own ``forward(labels=...)`` (M-RoPE position ids computed
by the model from ``mm_token_type_ids`` and ``image_grid_thw``, as in inference).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch
import torch.nn.functional as F

from .. import phrasings, shapes
from ..prompting import IGNORE, ids, sample_prompt
from ..settings import seed_everything
from .build_qwen2_vl import MERGE, PATCH, qwen2_vl_model, qwen2_vl_processor, qwen2_vl_vocab
from .common import scene_pool, to_pixels
from .train_generative import GenerativeConfig, training_question
from .train_loop import freeze, pad_batch, train_loop, trainable_params

IMAGE_SIZE = 64


# ----------------------------------------------------------------------------- pixels -> patches

def to_patches(pixels: torch.Tensor, patch: int = PATCH, merge: int = MERGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(N, 3, H, W)`` -> what ``Qwen2VLImageProcessor`` returns: ``pixel_values``
    ``(N * H/p * W/p, 3 * 2 * p * p)`` (each picture repeated over 2 time steps, patches in 2x2
    merge-block order) and ``image_grid_thw`` ``(N, 3)``. Tested against the processor in training."""
    n, c, h, w = pixels.shape
    gh, gw = h // patch, w // patch
    x = pixels.unsqueeze(1).repeat(1, 2, 1, 1, 1)  # (N, T=2, C, H, W)
    x = x.view(n, 1, 2, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # N, t, bh, bw, mh, mw, C, T, p, p
    return x.reshape(n * gh * gw, c * 2 * patch * patch), torch.tensor([[1, gh, gw]] * n)


def merge_order(grid: int, merge: int = MERGE) -> torch.Tensor:
    """Row-major patch index of each patch in Qwen2-VL's merge-block order (``grid`` x ``grid``)."""
    rows = torch.arange(grid * grid).view(grid // merge, merge, grid // merge, merge).permute(0, 2, 1, 3)
    return rows.reshape(-1)


# ----------------------------------------------------------------------------- copying trained parts

def copy_clip_tower(clip, visual) -> None:
    """tiny CLIP's ViT -> Qwen2-VL's vision blocks (``Qwen2VisionTransformerPretrainedModel``)."""
    src = clip.vision_model
    with torch.no_grad():
        w = src.embeddings.patch_embedding.weight  # (D, 3, p, p)
        visual.patch_embed.proj.weight.copy_(w.unsqueeze(2).repeat(1, 1, 2, 1, 1) / 2)  # 2 equal frames
        for mine, theirs in zip(visual.blocks, src.encoder.layers):
            a = theirs.self_attn
            mine.attn.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            mine.attn.qkv.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            mine.attn.proj.load_state_dict(a.out_proj.state_dict())
            mine.norm1.load_state_dict(theirs.layer_norm1.state_dict())
            mine.norm2.load_state_dict(theirs.layer_norm2.state_dict())
            mine.mlp.load_state_dict(theirs.mlp.state_dict())


#: New Qwen2 special tokens start from the embedding of the course token that plays their part.
_START_FROM = {"<|im_end|>": "</s>", "<|im_start|>": "<s>", "<|image_pad|>": "<image>", "<|endoftext|>": "<pad>"}


def copy_llava_decoder(llava, model) -> None:
    """tiny LLaVA's Llama decoder and head -> Qwen2-VL's Qwen2 decoder (q, k, v biases start at 0).
    The shared vocabulary's rows are copied; the new special tokens start from their counterparts'."""
    vocab = qwen2_vl_vocab()
    src_lm, dst_lm = llava.model.language_model, model.model.language_model
    state = {k: v for k, v in src_lm.state_dict().items() if not k.startswith("embed_tokens")}
    missing, unexpected = dst_lm.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("bias") or k.startswith("embed_tokens") for k in missing), missing
    with torch.no_grad():
        for name in [k for k in missing if k.endswith("bias")]:
            dst_lm.get_parameter(name).zero_()
        n = src_lm.embed_tokens.weight.shape[0]
        for dst, src in ((dst_lm.embed_tokens.weight, src_lm.embed_tokens.weight), (model.lm_head.weight,
                                                                                    llava.lm_head.weight)):
            dst[:n] = src
            for new, old in _START_FROM.items():
                dst[vocab[new]] = src[vocab[old]]


def merger_from_llava_projector(llava, merger) -> None:
    """Start the 2x2 merger as tiny LLaVA's projector applied to each of the 4 patches, averaged:
    ``linear_1`` four times on the block diagonal of the merger's first layer, ``linear_2 / 4``
    side by side in its second. The decoder then first sees tokens like the ones it was trained on."""
    proj = llava.model.multi_modal_projector
    d = proj.linear_1.in_features
    first, second = merger.mlp[0], merger.mlp[2]
    k = first.in_features // d
    assert first.in_features == k * d and second.out_features == proj.linear_2.out_features, "sizes differ"
    with torch.no_grad():
        first.weight.zero_()
        for i in range(k):
            first.weight[i * d:(i + 1) * d, i * d:(i + 1) * d] = proj.linear_1.weight
        first.bias.copy_(proj.linear_1.bias.repeat(k))
        second.weight.copy_(proj.linear_2.weight.repeat(1, k) / k)
        second.bias.copy_(proj.linear_2.bias)


# ----------------------------------------------------------------------------- stage 0: the tower

def distill_tower(clip, visual, pixels_u8: np.ndarray, steps: int, batch: int = 32, seed: int = 0,
                  progress: bool = True) -> tuple[list[dict], float]:
    """Regress every patch state of Qwen2-VL's ViT (before the merger) on tiny CLIP's last hidden
    states of the same patch (both layer-normalised, MSE). Returns ``(history, final cosine)``."""
    teacher = clip.vision_model.eval()
    grid = IMAGE_SIZE // PATCH
    order = merge_order(grid)
    rng = np.random.default_rng(seed)

    def targets(px):
        with torch.no_grad():
            out = teacher(pixel_values=px).last_hidden_state[:, 1:]  # (N, grid*grid, D), no class token
            return F.layer_norm(out[:, order.to(out.device)].flatten(0, 1), out.shape[-1:])

    def student(px):
        patches, thw = to_patches(px)
        out = visual(hidden_states=patches, grid_thw=thw.to(px.device)).last_hidden_state
        return F.layer_norm(out, out.shape[-1:])

    def batch_fn(step):
        return {"pixel_values": to_pixels(pixels_u8[rng.choice(len(pixels_u8), batch, replace=False)])}

    cfg = GenerativeConfig(steps=steps, batch=batch, lr=5e-4, warmup=max(1, min(20, steps // 5)), seed=seed)
    history = train_loop(visual, trainable_params(visual), batch_fn, cfg, "stage 0: distilling the ViT", progress,
                         lambda model, b: F.mse_loss(student(b["pixel_values"]), targets(b["pixel_values"])))
    with torch.no_grad():
        px = to_pixels(pixels_u8[:128])
        cos = float(F.cosine_similarity(student(px), targets(px), dim=-1).mean())
    return [dict(h, stage="vision tower distillation") for h in history], round(cos, 4)


# ----------------------------------------------------------------------------- stages 1-2: chat

def chat_example(processor, scene: shapes.Scene, rng: random.Random, n_image_tokens: int,
                 paraphrase_share: float) -> tuple[list[int], list[int]]:
    """One training sequence ``(input_ids, labels)`` in the real ChatML template: a single
    question or turn ``k`` of a dialogue; only the final answer and its ``<|im_end|>`` are learned."""
    from ..generation import chat_prompt

    tok = processor.tokenizer
    if rng.random() < 0.5:
        question, answer, _ = sample_prompt(scene, rng, paraphrase=training_question(rng, paraphrase_share))
        turns = [(question, None)]
    else:
        dialogue = [(phrasings.paraphrase_question(q, rng) if training_question(rng, paraphrase_share) else q, a)
                    for q, a in shapes.dialogue(scene, rng)]
        k = rng.randrange(len(dialogue))
        turns = dialogue[:k] + [(dialogue[k][0], None)]
        answer = dialogue[k][1]
    return _with_answer(tok, chat_prompt(processor, turns), answer, processor.image_token_id, n_image_tokens)


def _with_answer(tok, prompt: str, answer: str, image_id: int, n_image_tokens: int) -> tuple[list[int], list[int]]:
    expanded = [t for p in tok(prompt).input_ids for t in ([p] * n_image_tokens if p == image_id else [p])]
    answer_ids = ids(tok, answer) + [tok.eos_token_id]
    return expanded + answer_ids, [IGNORE] * len(expanded) + answer_ids


def _batch(rows, labels, pixels: torch.Tensor, image_id: int) -> dict:
    batch = pad_batch(rows, labels)
    batch["mm_token_type_ids"] = (batch["input_ids"] == image_id).long() * batch["attention_mask"]
    batch["pixel_values"], batch["image_grid_thw"] = to_patches(pixels)
    return batch


def train_qwen2_vl(clip, llava, cfg: GenerativeConfig, distill_steps: int = 15, progress: bool = True):
    """Tiny Qwen2-VL from tiny CLIP's tower and tiny LLaVA's decoder; stages 0-2 (module docstring).
    Returns ``(model, processor, history)``; ``history`` entries carry their ``"stage"``."""
    from ..generation import chat_prompt

    seed_everything(cfg.seed)
    model, processor = qwen2_vl_model(), qwen2_vl_processor()
    copy_clip_tower(clip, model.model.visual)
    copy_llava_decoder(llava, model)
    merger_from_llava_projector(llava, model.model.visual.merger)
    tok, image_id = processor.tokenizer, processor.image_token_id
    scenes, pixels_u8 = scene_pool("train", cfg.pool, cfg.seed, IMAGE_SIZE, progress=progress,
                                   varied_share=cfg.varied_share)
    # free test: the training shortcut feeds exactly what the processor would
    enc = processor(images=[pixels_u8[0]], text=["<|image_pad|>"], return_tensors="pt")
    fast, thw = to_patches(to_pixels(pixels_u8[:1]))
    assert torch.allclose(enc["pixel_values"], fast, atol=1e-5) and torch.equal(enc["image_grid_thw"], thw), \
        "patch shortcut != processor"
    n_tok = int((enc["input_ids"] == image_id).sum())
    history, info = [], {}
    if distill_steps:
        stage0, info["distill_cosine"] = distill_tower(clip, model.model.visual, pixels_u8, distill_steps,
                                                       seed=cfg.seed, progress=progress)
        history += stage0
    freeze(model.model.visual)
    for p in model.model.visual.merger.parameters():
        p.requires_grad_(True)
    rng = random.Random(cfg.seed)

    if cfg.align_steps:
        describe = chat_prompt(processor, [("describe the image.", None)])
        merger = list(model.model.visual.merger.parameters())
        lm = [p for p in model.model.language_model.parameters()] + list(model.lm_head.parameters())
        for p in lm:
            p.requires_grad_(False)

        def align_batch(step):
            idx = rng.sample(range(len(scenes)), cfg.batch)
            rows, labels = zip(*[_with_answer(tok, describe, shapes.caption(scenes[i]), image_id, n_tok) for i in idx])
            return _batch(rows, labels, to_pixels(pixels_u8[idx]), image_id)

        stage_cfg = dataclasses.replace(cfg, steps=cfg.align_steps, warmup=min(cfg.warmup, max(1, cfg.align_steps // 4)))
        stage1 = train_loop(model, merger, align_batch, stage_cfg, "stage 1: aligning the merger", progress)
        history += [dict(h, stage="merger alignment") for h in stage1]
        for p in lm:
            p.requires_grad_(True)
        freeze(model.model.visual)
        for p in merger:
            p.requires_grad_(True)

    def chat_batch(step):
        idx = rng.sample(range(len(scenes)), cfg.batch)
        rows, labels = zip(*[chat_example(processor, scenes[i], rng, n_tok, cfg.paraphrase_share) for i in idx])
        return _batch(rows, labels, to_pixels(pixels_u8[idx]), image_id)

    stage2 = train_loop(model, trainable_params(model), chat_batch, cfg, "stage 2: instruction tuning", progress)
    history += [dict(h, stage="instruction tuning") for h in stage2]
    model.vlmstudy_training_info = info
    return model, processor, history
