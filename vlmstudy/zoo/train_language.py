"""Stage 0 of the chat stand-ins: a tiny language model pre-trained on ShapesWorld text alone.

Real VLMs start from a language model that already knows its language (LLaVA-1.5 from Vicuna).
The tiny one learns ShapesWorld's: captions, questions in many wordings (:mod:`vlmstudy.phrasings`)
with answers of the right type, and multi-turn dialogues, all in the chat model's own prompt
format but with no image. Without pictures it cannot know *which* colour, only that a colour
comes next, which is what makes a paraphrased question land on the right kind of answer.
"""

from __future__ import annotations

import random

from .. import phrasings, shapes
from ..prompting import ids, sample_prompt
from ..settings import seed_everything
from .build_generative import EOS_ID
from .train_loop import pad_batch, train_loop


def text_example(processor, scene: shapes.Scene, rng: random.Random, paraphrase_share: float) -> list[int]:
    """Token ids of one image-free chat about ``scene`` (loss on every token)."""
    from ..generation import chat_prompt

    tok = processor.tokenizer
    if rng.random() < 0.5:
        phrasing = "train" if rng.random() < paraphrase_share else None
        question, answer, _ = sample_prompt(scene, rng, describe_share=0.2, paraphrase=phrasing)
        turns = [(question, answer)]
    else:
        turns = [(phrasings.paraphrase_question(q, rng) if rng.random() < paraphrase_share else q, a)
                 for q, a in shapes.dialogue(scene, rng)]
    prompt = chat_prompt(processor, turns[:-1] + [(turns[-1][0], None)], n_images=0)
    return tok(prompt).input_ids + ids(tok, turns[-1][1]) + [EOS_ID]


def pretrain_language_model(language_model, lm_head, processor, cfg, progress: bool = True) -> list[dict]:
    """Train ``language_model`` + ``lm_head`` (the decoder of a LLaVA stand-in, in place) for
    ``cfg.lm_steps`` batches of image-free ShapesWorld chats. Returns the loss history."""
    import torch
    import torch.nn.functional as F


    seed_everything(cfg.seed + 1)
    scenes = shapes.make_scenes("train", cfg.pool, seed=cfg.seed + 1)
    rng = random.Random(cfg.seed + 1)

    class TextLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.head = language_model, lm_head

        def forward(self, input_ids, attention_mask, labels):
            logits = self.head(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
            return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)

    def batch_fn(step):
        rows = [text_example(processor, scenes[rng.randrange(len(scenes))], rng, cfg.paraphrase_share)
                for _ in range(cfg.batch)]
        return pad_batch(rows, rows)

    lm = TextLM()
    steps_cfg = type(cfg)(**{**cfg.__dict__, "steps": cfg.lm_steps, "lr": cfg.lr * 2})
    history = train_loop(lm, [p for p in lm.parameters() if p.requires_grad], batch_fn, steps_cfg,
                         "pre-training the tiny language model", progress,
                         loss_fn=lambda model, b: model(**b))
    return [dict(h, stage="language model") for h in history]
