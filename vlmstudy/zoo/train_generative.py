"""Train the generative stand-ins (BLIP, BLIP-2, InstructBLIP, LLaVA-1.5, LLaVA-NeXT) on ShapesWorld.

Built the way the real ones are: the LLaVA models put a projector and a small decoder on the
trained tiny CLIP vision tower (frozen); BLIP-2 / InstructBLIP put a Q-Former between a frozen
ViT and a small decoder. That ViT is distilled from tiny CLIP's tower first (same architecture,
but BLIP's attention fuses q, k, v and has no pre-LayerNorm), which is also what makes CPU
training take minutes instead of hours. Every loss is the model's own ``forward(labels=...)``;
labels are -100 on prompt, image and padding tokens, so only answers are learned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BlipVisionModel, CLIPModel

from .. import phrasings, shapes
from ..prompting import BLIP2_VQA_PROMPT, IGNORE, ids, sample_prompt
from ..settings import seed_everything
from .build_generative import BOS_ID, EOS_ID, IMAGE_TOKEN_ID, NUM_QUERY_TOKENS
from .common import is_varied, scene_pool, to_pixels, training_device
from .train_loop import freeze, pad_batch, train_loop, trainable_params


@dataclass
class GenerativeConfig:
    """Training budget of one generative stand-in."""

    steps: int = 1500
    batch: int = 48
    lr: float = 1e-3
    warmup: int = 100
    pool: int = 8000
    varied_share: float = 0.6  # pictures drawn with training variety (shapes.render_varied)
    paraphrase_share: float = 0.6  # questions said with a training paraphrase (vlmstudy.phrasings)
    lm_steps: int = 0  # LLaVA stage 0: pre-train the language model on image-free text first
    align_steps: int = 0  # LLaVA stage 1: train only the projector on captions, language model frozen
    seed: int = 0


# ----------------------------------------------------------------------------- data

# ----------------------------------------------------------------------------- vision towers

def clip_tower_to_blip(clip: CLIPModel, blip_vision: BlipVisionModel) -> None:
    """Copy tiny CLIP's ViT weights into a BLIP-style ViT: q, k, v fused into ``qkv``."""
    src = clip.vision_model
    with torch.no_grad():
        blip_vision.embeddings.class_embedding.copy_(src.embeddings.class_embedding.view_as(blip_vision.embeddings.class_embedding))
        blip_vision.embeddings.patch_embedding.weight.copy_(src.embeddings.patch_embedding.weight)
        blip_vision.embeddings.patch_embedding.bias.zero_()
        blip_vision.embeddings.position_embedding.copy_(src.embeddings.position_embedding.weight.unsqueeze(0))
        for mine, theirs in zip(blip_vision.encoder.layers, src.encoder.layers):
            a = theirs.self_attn
            mine.self_attn.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            mine.self_attn.qkv.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            mine.self_attn.projection.load_state_dict(a.out_proj.state_dict())
            mine.layer_norm1.load_state_dict(theirs.layer_norm1.state_dict())
            mine.layer_norm2.load_state_dict(theirs.layer_norm2.state_dict())
            mine.mlp.load_state_dict(theirs.mlp.state_dict())
        blip_vision.post_layernorm.load_state_dict(src.post_layernorm.state_dict())


def distill_blip_tower(clip: CLIPModel, blip_vision: BlipVisionModel, pixels_u8: np.ndarray, steps: int = 300,
                       batch: int = 96, seed: int = 0, progress: bool = True) -> dict:
    """Make a BLIP-style ViT reproduce tiny CLIP's tower: copy the weights, then regress every
    token's final (post-LayerNorm) state on CLIP's with MSE. Returns the final cosine agreement."""
    clip_tower_to_blip(clip, blip_vision)
    teacher = clip.vision_model.eval()
    rng = np.random.default_rng(seed)

    def targets(px):
        with torch.no_grad():
            return teacher.post_layernorm(teacher(pixel_values=px).last_hidden_state)

    def batch_fn(step):
        return {"pixel_values": to_pixels(pixels_u8[rng.choice(len(pixels_u8), batch, replace=False)])}

    def loss_fn(model, b):
        return F.mse_loss(model(**b).last_hidden_state, targets(b["pixel_values"]))

    cfg = GenerativeConfig(steps=steps, batch=batch, lr=5e-4, warmup=20, seed=seed)
    teacher.to(training_device())  # the student goes there inside train_loop
    history = train_loop(blip_vision, trainable_params(blip_vision), batch_fn, cfg, "distilling BLIP ViT",
                         progress, loss_fn)
    teacher.to("cpu")
    with torch.no_grad():
        px = to_pixels(pixels_u8[:256])
        cos = F.cosine_similarity(blip_vision(pixel_values=px).last_hidden_state, targets(px), dim=-1).mean()
    return {"distill_cosine": round(float(cos), 4), "history": history}


# ----------------------------------------------------------------------------- LLaVA-1.5 and NeXT

def image_token_count(processor, image) -> int:
    """How many ``<image>`` tokens the processor expands one image into."""
    enc = processor(images=[image], text="<image>", return_tensors="pt")
    return int((enc["input_ids"] == IMAGE_TOKEN_ID).sum())


def training_question(rng: random.Random, share: float) -> str | None:
    """The phrasing set a training question is drawn from: ``"train"`` paraphrases with
    probability ``share``, else ``None`` (the canonical wording)."""
    return "train" if rng.random() < share else None


def chat_example(processor, scenes: list[shapes.Scene], rng: random.Random, n_image_tokens: int,
                 paraphrase_share: float = 0.0) -> tuple[list[int], list[int]]:
    """One training sequence for a chat model: ``(input_ids, labels)``.

    Single-turn questions, or turn ``k`` of a dialogue with the earlier turns as history; for two
    scenes, a question about the pair. Only the final answer (and ``</s>``) is supervised,
    because at inference the history holds answers without ``</s>``, exactly as here.
    """
    from ..generation import chat_prompt

    tok = processor.tokenizer
    if len(scenes) == 2:
        qa = rng.choice(shapes.two_image_questions(*scenes))
        turns, answer = [(qa.question, None)], qa.answer
    elif rng.random() < 0.5:
        question, answer, _ = sample_prompt(scenes[0], rng, paraphrase=training_question(rng, paraphrase_share))
        turns = [(question, None)]
    else:
        dialogue = [(phrasings.paraphrase_question(q, rng) if training_question(rng, paraphrase_share) else q, a)
                    for q, a in shapes.dialogue(scenes[0], rng)]
        k = rng.randrange(len(dialogue))
        turns = [(q, a) for q, a in dialogue[:k]] + [(dialogue[k][0], None)]
        answer = dialogue[k][1]
    prompt_ids = tok(chat_prompt(processor, turns, n_images=len(scenes))).input_ids
    expanded = []
    for t in prompt_ids:
        expanded.extend([t] * n_image_tokens if t == IMAGE_TOKEN_ID else [t])
    answer_ids = ids(tok, answer) + [EOS_ID]
    return expanded + answer_ids, [IGNORE] * len(expanded) + answer_ids


def train_llava(clip: CLIPModel, cfg: GenerativeConfig, next_from=None, progress: bool = True, two_image_share: float = 0.0):
    """Tiny LLaVA-1.5 (``next_from=None``) or LLaVA-NeXT (initialised from a trained tiny LLaVA's
    projector and decoder). The CLIP vision tower is copied in and frozen."""
    from .build_generative import llava_model, llava_next_model, llava_next_processor, llava_processor

    seed_everything(cfg.seed)
    is_next = next_from is not None
    vision_config = clip.config.vision_config
    model = (llava_next_model if is_next else llava_model)(vision_config)
    processor = (llava_next_processor if is_next else llava_processor)()
    model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
    if is_next:
        model.model.multi_modal_projector.load_state_dict(next_from.model.multi_modal_projector.state_dict())
        model.model.language_model.load_state_dict(next_from.model.language_model.state_dict())
        model.lm_head.load_state_dict(next_from.lm_head.state_dict())
    freeze(model.model.vision_tower)
    scenes, pixels_u8 = scene_pool("train", cfg.pool, cfg.seed, vision_config.image_size, progress=progress,
                                   varied_share=cfg.varied_share)
    n_tok = image_token_count(processor, scenes[0].render())
    # free test: the training shortcut must feed exactly what the processor would
    check = processor(images=[scenes[0].render(varied=is_varied(scenes[0], cfg.varied_share))],
                      return_tensors="pt")["pixel_values"]
    fast = to_pixels(pixels_u8[:1])
    assert torch.allclose(check.reshape(-1, *fast.shape[1:])[-1:], fast, atol=1e-5), "pixel shortcut != processor"
    rng = random.Random(cfg.seed)

    def batch_fn(step):
        rows, labels, pix = [], [], []
        for _ in range(cfg.batch):
            n = 2 if rng.random() < two_image_share else 1
            idx = rng.sample(range(len(scenes)), n)
            row, lab = chat_example(processor, [scenes[i] for i in idx], rng, n_tok, cfg.paraphrase_share)
            rows.append(row)
            labels.append(lab)
            pix.extend(idx)
        batch = pad_batch(rows, labels)
        px = to_pixels(pixels_u8[pix])
        if is_next:  # base image + one 64 px tile (identical for a 64 px picture)
            batch["pixel_values"] = torch.stack([px, px], dim=1)
            batch["image_sizes"] = torch.tensor([[vision_config.image_size] * 2] * len(pix))
        else:
            batch["pixel_values"] = px
        return batch

    history = []
    if not is_next and cfg.lm_steps:
        from .train_language import pretrain_language_model

        history += pretrain_language_model(model.model.language_model, model.lm_head, processor, cfg, progress)
    if not is_next and cfg.align_steps:
        history += _align_projector(model, processor, scenes, pixels_u8, n_tok, cfg, progress)
    stage2 = train_loop(model, trainable_params(model), batch_fn, cfg,
                        "training tiny LLaVA-NeXT" if is_next else "training tiny LLaVA", progress)
    history += [dict(h, stage="instruction tuning") for h in stage2]
    return model, processor, history


def _align_projector(model, processor, scenes, pixels_u8, n_tok: int, cfg: GenerativeConfig, progress: bool) -> list[dict]:
    """LLaVA's stage 1: only the projector learns, on "describe the image." -> caption, so that
    the frozen language model can read the projected image tokens."""
    import dataclasses

    from ..generation import chat_prompt

    tok = processor.tokenizer
    rng = random.Random(cfg.seed + 2)
    prompt = tok(chat_prompt(processor, [("describe the image.", None)])).input_ids
    expanded = [t for p in prompt for t in ([p] * n_tok if p == IMAGE_TOKEN_ID else [p])]
    projector = list(model.model.multi_modal_projector.parameters())
    frozen = [p for p in model.parameters() if p.requires_grad and not any(p is q for q in projector)]
    for p in frozen:
        p.requires_grad_(False)

    def batch_fn(step):
        idx = rng.sample(range(len(scenes)), cfg.batch)
        rows, labels = [], []
        for i in idx:
            answer = ids(tok, shapes.caption(scenes[i])) + [EOS_ID]
            rows.append(expanded + answer)
            labels.append([IGNORE] * len(expanded) + answer)
        batch = pad_batch(rows, labels)
        batch["pixel_values"] = to_pixels(pixels_u8[idx])
        return batch

    stage_cfg = dataclasses.replace(cfg, steps=cfg.align_steps, warmup=min(cfg.warmup, max(1, cfg.align_steps // 4)))
    history = train_loop(model, projector, batch_fn, stage_cfg, "stage 1: aligning the projector", progress)
    for p in frozen:
        p.requires_grad_(True)
    model.train()
    return [dict(h, stage="projector alignment") for h in history]


# ----------------------------------------------------------------------------- BLIP

def train_blip(clip: CLIPModel, kind: str, cfg: GenerativeConfig, vision_init: BlipVisionModel, progress: bool = True):
    """Tiny BLIP captioner (``kind="caption"``) or VQA model (``kind="vqa"``); its ViT starts from
    the tower distilled from tiny CLIP and is fine-tuned with the rest, as BLIP does."""
    from .build_generative import blip_caption_model, blip_processor, blip_vqa_model

    seed_everything(cfg.seed)
    model = (blip_caption_model if kind == "caption" else blip_vqa_model)(clip.config.vision_config)
    processor = blip_processor()
    model.vision_model.load_state_dict(vision_init.state_dict())
    tok = processor.tokenizer
    scenes, pixels_u8 = scene_pool("train", cfg.pool, cfg.seed, clip.config.vision_config.image_size, progress=progress,
                                   varied_share=cfg.varied_share)
    rng = random.Random(cfg.seed)

    def caption_batch(step):
        idx = rng.sample(range(len(scenes)), cfg.batch)
        rows, labels = [], []
        for i in idx:
            prompt = "a picture of " if rng.random() < 0.5 else ""
            p_ids, c_ids = ids(tok, prompt), ids(tok, shapes.caption(scenes[i]))
            rows.append([BOS_ID] + p_ids + c_ids + [EOS_ID])
            labels.append([IGNORE] * (1 + len(p_ids)) + c_ids + [EOS_ID])
        batch = pad_batch(rows, labels)
        batch["pixel_values"] = to_pixels(pixels_u8[idx])
        return batch

    def vqa_batch(step):
        idx = rng.sample(range(len(scenes)), cfg.batch)
        questions, answers = [], []
        for i in idx:
            q, a, _ = sample_prompt(scenes[i], rng, describe_share=0.0,
                                    paraphrase=training_question(rng, cfg.paraphrase_share))
            questions.append([BOS_ID] + ids(tok, q) + [EOS_ID])
            answers.append([BOS_ID] + ids(tok, a) + [EOS_ID])
        batch = pad_batch(questions)
        dec = pad_batch(answers, answers)
        batch.update(decoder_input_ids=dec["input_ids"], decoder_attention_mask=dec["attention_mask"],
                     labels=dec["labels"], pixel_values=to_pixels(pixels_u8[idx]))
        return batch

    history = train_loop(model, trainable_params(model), caption_batch if kind == "caption" else vqa_batch, cfg,
                         f"training tiny BLIP {kind}", progress)
    return model, processor, history


# ----------------------------------------------------------------------------- BLIP-2 and InstructBLIP

def train_qformer_model(clip: CLIPModel, kind: str, cfg: GenerativeConfig, vision_init: BlipVisionModel,
                        progress: bool = True):
    """Tiny BLIP-2 (``kind="blip2"``: OPT decoder, "Question: ... Answer:" prompts and plain
    captioning) or InstructBLIP (``kind="instructblip"``: Llama decoder; the Q-Former also reads
    the instruction). The ViT is frozen; Q-Former, projection and decoder are trained."""
    from .build_generative import blip2_model, blip2_processor, instructblip_model, instructblip_processor

    seed_everything(cfg.seed)
    vc = clip.config.vision_config
    model = blip2_model(vc) if kind == "blip2" else instructblip_model(vc)
    processor = blip2_processor() if kind == "blip2" else instructblip_processor()
    model.vision_model.load_state_dict(vision_init.state_dict())
    freeze(model.vision_model)
    tok = processor.tokenizer
    scenes, pixels_u8 = scene_pool("train", cfg.pool, cfg.seed, vc.image_size, progress=progress,
                                   varied_share=cfg.varied_share)
    rng = random.Random(cfg.seed)

    def batch_fn(step):
        idx = rng.sample(range(len(scenes)), cfg.batch)
        rows, labels, instructions = [], [], []
        for i in idx:
            question, answer, kind_ = sample_prompt(scenes[i], rng, describe_share=0.2,
                                                    paraphrase=training_question(rng, cfg.paraphrase_share))
            if kind == "blip2":
                prompt = "" if kind_ == "describe" else BLIP2_VQA_PROMPT.format(question)
            else:
                prompt = question
            p_ids = [IMAGE_TOKEN_ID] * NUM_QUERY_TOKENS + [BOS_ID] + ids(tok, prompt)
            a_ids = ids(tok, answer) + [EOS_ID]
            rows.append(p_ids + a_ids)
            labels.append([IGNORE] * len(p_ids) + a_ids)
            instructions.append([BOS_ID] + ids(processor.qformer_tokenizer, prompt) + [EOS_ID]
                                if kind == "instructblip" else None)
        batch = pad_batch(rows, labels)
        batch["pixel_values"] = to_pixels(pixels_u8[idx])
        if kind == "instructblip":
            q = pad_batch(instructions)
            batch.update(qformer_input_ids=q["input_ids"], qformer_attention_mask=q["attention_mask"])
        return batch

    history = train_loop(model, trainable_params(model), batch_fn, cfg, f"training tiny {kind}", progress)
    return model, processor, history
