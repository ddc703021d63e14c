"""``vlmstudy zoo train shapes-lm``: the tiny pre-trained language model, shipped on its own.

Stage 0 of the chat stand-ins (:mod:`vlmstudy.zoo.train_language`) pre-trains a Llama decoder on
image-free ShapesWorld chats inside tiny LLaVA. Here the same stage runs on a standalone
``LlamaForCausalLM`` that is saved as ``assets/models/tiny-shapes-lm`` with the course tokenizer,
so that notebook 13 can assemble a VLM from parts the way LLaVA-1.5 starts from Vicuna (and
nanoVLM from SmolLM2): a vision tower that already sees, a language model that already speaks.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path

import torch

from .. import settings, shapes
from ..settings import seed_everything
from .build_generative import LLAVA_CHAT_TEMPLATE, llava_processor, text_decoder_config
from .common import count_parameters, device_label, dir_size_mb, training_device
from .train_generative import GenerativeConfig

STAND_IN = "tiny-shapes-lm"
#: 2000 batches of 32 image-free chats: about 5 minutes on 2 CPU threads.
BUDGET = GenerativeConfig(steps=0, batch=32, lr=1e-3, lm_steps=2000, warmup=100, pool=8000, paraphrase_share=0.6)


def shapes_lm_model(width: int = 128, layers: int = 4):
    """A fresh ``LlamaForCausalLM`` of tiny LLaVA's decoder size (the course vocabulary, 114 ids)."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(text_decoder_config("llama", width, layers))


def shapes_lm_tokenizer():
    """The course tokenizer with ``<s>`` prepended, ``<image>`` as one token and LLaVA's chat template."""
    tok = llava_processor().tokenizer
    tok.chat_template = LLAVA_CHAT_TEMPLATE
    return tok


@torch.no_grad()
def held_out_loss(model, n: int = 200, seed: int = 7) -> float:
    """Mean next-token cross-entropy on ``n`` image-free chats about test scenes."""
    from .train_language import text_example
    from .train_loop import pad_batch

    processor = llava_processor()
    rng = random.Random(seed)
    scenes = shapes.make_scenes("test", n, seed=seed)
    rows = [text_example(processor, s, rng, 0.6) for s in scenes]
    batch = pad_batch(rows, rows)
    model.eval()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return float(out.loss)


def train_shapes_lm(models_dir: str | Path | None = None, steps: int | None = None, batch: int | None = None,
                    progress: bool = True, quick: bool = False) -> dict:
    """Pre-train the tiny language model and save it (fp16 safetensors, tokenizer, model card).

    quick: a few steps, to prove the code path; write it to a scratch ``models_dir``.
    Returns ``{"name", "seconds", "metrics", "failures", "history"}`` like ``train_model``.
    """
    from .train_language import pretrain_language_model

    cfg = dataclasses.replace(BUDGET, lm_steps=steps or BUDGET.lm_steps, batch=batch or BUDGET.batch)
    if quick:
        cfg = dataclasses.replace(cfg, lm_steps=4, batch=4, pool=32, warmup=2)
    seed_everything(cfg.seed)
    out = Path(models_dir or settings.MODELS_DIR) / STAND_IN
    model = shapes_lm_model()
    start = time.time()
    history = pretrain_language_model(model.model, model.lm_head, llava_processor(), cfg, progress)
    seconds = time.time() - start
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    shapes_lm_tokenizer().save_pretrained(out)
    model = model.float()
    loss = held_out_loss(model)
    metrics = {"held_out_loss": round(loss, 4), "held_out_perplexity": round(math.exp(loss), 3)}
    flags = (f" --steps {steps}" if steps else "") + (f" --batch {batch}" if batch else "")
    command = f"vlmstudy zoo train shapes-lm{flags}"
    _write_card(out, model, cfg, command, seconds, history, metrics)
    return {"name": "shapes-lm", "seconds": round(seconds, 1), "metrics": metrics, "failures": [],
            "history": history}


def _write_card(out: Path, model, cfg, command: str, seconds: float, history: list[dict], metrics: dict) -> None:
    import json

    record = {"model": STAND_IN, "command": command, "train_seconds": round(seconds, 1), "seed": cfg.seed,
              "device": device_label(training_device()), "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "parameters": count_parameters(model),
              "steps": cfg.lm_steps, "batch": cfg.batch, "lr": cfg.lr * 2, "paraphrase_share": cfg.paraphrase_share,
              "loss_first_last": [history[0]["loss"], history[-1]["loss"]], "metrics": metrics,
              "size_mb": round(dir_size_mb(out), 2), "torch": torch.__version__,
              "transformers": __import__("transformers").__version__}
    (out / "training.json").write_text(json.dumps(record, indent=2))
    lines = [
        "# tiny-shapes-lm: the course's tiny pre-trained language model", "",
        "A `LlamaForCausalLM` (4 layers, width 128, the course's 114-word vocabulary) pre-trained by",
        "vlmstudy's own code on image-free ShapesWorld text: captions, questions in many wordings with",
        "answers of the right kind, and multi-turn dialogues in LLaVA's chat format (stage 0 of the chat",
        "stand-ins, `vlmstudy.zoo.train_language`). It has never seen a picture: it knows that a colour",
        "follows \"what colour is ...\", not which one. Notebook 13 assembles a VLM from it and tiny CLIP's",
        "vision tower. Its real counterparts: Vicuna-7B in LLaVA-1.5, SmolLM2-135M in nanoVLM.", "",
        f"- trained with: `{command}` (seed {cfg.seed}, {seconds:.0f} s on {record['device']})",
        f"- steps: {cfg.lm_steps} batches of {cfg.batch} chats, AdamW lr {cfg.lr * 2:g}, warm-up + cosine",
        f"- parameters: {record['parameters']:,}; fp16 safetensors, {record['size_mb']} MB",
        f"- training loss (smoothed), first -> last: {history[0]['loss']} -> {history[-1]['loss']}",
        f"- held-out loss on 200 chats about test scenes: {metrics['held_out_loss']} "
        f"(perplexity {metrics['held_out_perplexity']})", "",
    ]
    (out / "README.md").write_text("\n".join(lines))
