"""Prompt conventions shared by training, fine-tuning, evaluation and inference.

Learner-facing code (fine-tuning collators, tasks, quantization checks) and the stand-ins'
training code both need these; keeping them here means neither imports the other.
"""

from __future__ import annotations

import random

from . import phrasings, shapes

#: Label value the loss ignores (prompt, image and padding positions).
IGNORE = -100

#: How BLIP-2 (OPT) is asked a question, as in the BLIP-2 paper's VQA prompt.
BLIP2_VQA_PROMPT = "Question: {} Answer:"


def ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without any special tokens around it."""
    return tokenizer(text, add_special_tokens=False).input_ids


def sample_prompt(scene: shapes.Scene, rng: random.Random, describe_share: float = 0.15,
                  paraphrase: str | None = None) -> tuple[str, str, str]:
    """A single-turn ``(question, answer, kind)`` about ``scene``; "describe" asks for the caption.

    paraphrase: ``None`` keeps the canonical wording; ``"train"`` or ``"heldout"`` rewrites the
    question with a template from that set (:func:`vlmstudy.phrasings.paraphrase`).
    """
    if rng.random() < describe_share:
        return "describe the image.", shapes.caption(scene), "describe"
    qa = rng.choice(shapes.questions(scene, rng))
    question = phrasings.paraphrase(qa, rng, paraphrase) if paraphrase else qa.question
    return question, qa.answer, qa.kind
