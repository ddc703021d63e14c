"""The loop every generative stand-in trains with, and its batch padding.

Its own module so that each training stage (language model, projector alignment, instruction
tuning, the BLIP family) imports it without importing the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..prompting import IGNORE
from .build_generative import PAD_ID
from .common import to_device, training_device, warmup_cosine


def pad_batch(rows: list[list[int]], labels: list[list[int]] | None = None, pad_left: bool = False):
    """Pad token-id lists into ``input_ids``, ``attention_mask`` (and ``labels``) tensors ``(B, T)``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if pad_left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
        if labels is not None:
            lab[i, sl] = torch.tensor(labels[i])
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = lab
    return out


def train_loop(model, trainable: list[torch.nn.Parameter], make_batch: Callable[[int], dict], cfg,
               desc: str, progress: bool = True, loss_fn: Callable | None = None) -> list[dict]:
    """AdamW + warm-up/cosine over ``cfg.steps`` batches from ``make_batch(step)``.

    ``cfg``: a ``GenerativeConfig`` (``steps``, ``lr``, ``warmup``). Runs on
    :func:`training_device` and leaves the model on the CPU. Returns the history
    ``[{"step", "loss", "seconds"}]``. Frozen parameters stay untouched.
    """
    device = training_device()
    model.to(device)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup))
    history, start, smooth = [], time.time(), None
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress)
    for step in bar:
        batch = to_device(make_batch(step), device)
        loss = loss_fn(model, batch) if loss_fn else model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        value = loss.item()
        smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
        if step % 25 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": round(smooth, 4), "seconds": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{smooth:.3f}")
    model.to("cpu").eval()
    return history


def freeze(module: torch.nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


def trainable_params(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
