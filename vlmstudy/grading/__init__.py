"""Graded exercises: the checks a learner runs in the notebook, and the hidden ones the grader runs.

Each exercise notebook (``exercises/NN_name.ipynb``, built with its instructor solution
``solutions/NN_name.ipynb`` from one master ``tools/exercises/NN_name.py`` by
``vlmstudy exercises build``) ends its tasks with a visible check::

    from vlmstudy.grading import check_search
    check_search(CLIPImageSearch)        # a table: points, and a hint for every check that fails

A check tests what the code *does* (rankings against brute force, the prompt the model reads,
values and gradients against a reference ...), never how it is written. An unfinished stub
(``raise NotImplementedError``) reports "not done yet", never a traceback.

The instructor grades a submission with ``vlmstudy exercises grade SUBMISSION.ipynb`` (several,
``--csv`` for a class): the notebook runs in a fresh, confined process (:mod:`.sandbox`,
:mod:`.worker`) on a copy of the package without these checks and without the references the
exercise asks for; every check, hidden ones included, runs in the grader's own process on new
random data, calling the learner's code across a data-only channel (:mod:`.remote`,
:mod:`.grader`). A crash, a dead process or a timeout scores 0 for that part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Check, CheckFailed, Report, run_checks
    from .registry import EXERCISES, Exercise, Part, get_exercise, get_part

# the checks bring torch: loaded on first use, so ``vlmstudy exercises --help`` stays light
_LAZY = {**dict.fromkeys(("Check", "CheckFailed", "Report", "run_checks"), "core"),
         **dict.fromkeys(("EXERCISES", "Exercise", "Part", "get_exercise", "get_part"), "registry")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "check", "hidden_checks", "load_quietly", "check_search", "check_chatbot", "check_class_embeddings", "check_zero_shot_probs",
    "check_clip_loss", "check_rollout", "check_normalize_answer", "check_answer_matches", "check_footprint", "check_prompt",
    "check_best_resolution", "check_image_tokens", "check_qformer_shapes", "check_lora_params",
    "check_lora_for_budget", "check_resize_and_crop", "check_pixel_values", "check_vit_params", "check_siglip_loss",
    "check_siglip_loss_chunked", "check_wilson_interval", "check_accuracy_table",
    "EXERCISES", "Exercise", "Part", "Check", "CheckFailed", "Report",
    "get_exercise", "get_part", "run_checks",
]

#: The seed of the visible checks: the same data on every run, so a notebook's output is stable.
VISIBLE_SEED = 0
#: The seed :func:`hidden_checks` uses when none is given (the grader draws a new one per grade).
HIDDEN_SEED = 1


def check(exercise: str, part: str, target: Any) -> Report:
    """Run the visible checks of one part of an exercise on ``target`` (the learner's class or
    function) and return the report (it shows as a table in a notebook)."""
    from .core import run_checks
    from .registry import get_part

    p = get_part(exercise, part)
    return run_checks(target, p.checks, seed=VISIBLE_SEED, title=p.title, scope="visible")


def hidden_checks(target: Any, exercise: str, part: str, seed: int = HIDDEN_SEED) -> Report:
    """Every check of one part, hidden ones included, on data drawn from ``seed``: what the grade
    runs (the instructor's solution notebooks show it)."""
    from .core import run_checks
    from .registry import get_part

    p = get_part(exercise, part)
    return run_checks(target, p.checks, seed=seed, title=p.title, scope="hidden")


def check_search(cls) -> Report:
    """Exercise 01: check a ``CLIPImageSearch`` class (``index_images``, ``search``)."""
    return check("01_clip_search", "search", cls)


def check_chatbot(cls) -> Report:
    """Exercise 02: check a ``MultimodalChatbot`` class (``set_image``, ``chat``, ``clear_history``)."""
    return check("02_chatbot", "chatbot", cls)


def check_class_embeddings(fn) -> Report:
    """Exercise 03, part 1: check ``class_embeddings(labels, templates, embed_texts)``."""
    return check("03_zero_shot_ensemble", "class_embeddings", fn)


def check_zero_shot_probs(fn) -> Report:
    """Exercise 03, part 2: check ``zero_shot_probs(image_embeds, class_embeds, scale)``."""
    return check("03_zero_shot_ensemble", "zero_shot_probs", fn)


def check_clip_loss(fn) -> Report:
    """Exercise 04: check ``clip_loss(image_embeds, text_embeds, logit_scale)``."""
    return check("04_contrastive_loss", "clip_loss", fn)


def check_rollout(fn) -> Report:
    """Exercise 05: check ``attention_rollout(attentions, residual=0.5)``."""
    return check("05_attention_rollout", "rollout", fn)


def check_normalize_answer(fn) -> Report:
    """Exercise 06, part 1: check ``normalize_answer(text)``."""
    return check("06_vqa_normalisation", "normalize_answer", fn)


def check_answer_matches(fn) -> Report:
    """Exercise 06, part 2: check ``answer_matches(answer, truth)``."""
    return check("06_vqa_normalisation", "answer_matches", fn)


def check_footprint(fn) -> Report:
    """Exercise 07: check ``footprint_bytes(tensors, precision, dtype="fp16")``."""
    return check("07_memory_footprint", "footprint", fn)


def check_prompt(fn) -> Report:
    """Exercise 08: check ``build_prompt(messages, add_generation_prompt=True)``."""
    return check("08_chat_prompt", "prompt", fn)


def check_best_resolution(fn) -> Report:
    """Exercise 09, part 1: check ``best_resolution(image_hw, pinpoints)``."""
    return check("09_anyres_tokens", "best_resolution", fn)


def check_image_tokens(fn) -> Report:
    """Exercise 09, part 2: check ``image_tokens(image_hw, pinpoints, tile, patch)``."""
    return check("09_anyres_tokens", "image_tokens", fn)


def check_qformer_shapes(fn) -> Report:
    """Exercise 10: check ``qformer_shapes(config, batch)``."""
    return check("10_qformer_shapes", "shapes", fn)


def check_lora_params(fn) -> Report:
    """Exercise 11, part 1: check ``lora_params(layers, r, targets)``."""
    return check("11_lora_budget", "lora_params", fn)


def check_lora_for_budget(fn) -> Report:
    """Exercise 11, part 2: check ``lora_for_budget(layers, targets, budget)``."""
    return check("11_lora_budget", "lora_for_budget", fn)


def check_resize_and_crop(fn) -> Report:
    """Exercise 12, part 1: check ``resize_and_crop(image, shortest_edge, crop_size)``."""
    return check("12_image_preprocessing", "resize_and_crop", fn)


def check_pixel_values(fn) -> Report:
    """Exercise 12, part 2: check ``pixel_values(image, config)``."""
    return check("12_image_preprocessing", "pixel_values", fn)


def check_vit_params(fn) -> Report:
    """Exercise 13: check ``vit_params(config)``."""
    return check("13_vit_parameters", "vit", fn)


def check_siglip_loss(fn) -> Report:
    """Exercise 14, part 1: check ``siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias)``."""
    return check("14_siglip_loss", "siglip_loss", fn)


def check_siglip_loss_chunked(fn) -> Report:
    """Exercise 14, part 2: check ``siglip_loss_chunked(image_embeds, text_embeds, logit_scale, logit_bias, chunk_size)``."""
    return check("14_siglip_loss", "siglip_loss_chunked", fn)


def check_wilson_interval(fn) -> Report:
    """Exercise 15, part 1: check ``wilson_interval(correct, n, z=1.96)``."""
    return check("15_accuracy_intervals", "wilson_interval", fn)


def check_accuracy_table(fn) -> Report:
    """Exercise 15, part 2: check ``accuracy_table(kinds, correct)``."""
    return check("15_accuracy_intervals", "accuracy_table", fn)


def load_quietly(name: str):
    """``(model, processor)`` as :func:`vlmstudy.load` gives them, without the progress bars (a
    stored notebook output must not change from run to run); loaded once, shared with the checks."""
    from .core import Env

    return Env(VISIBLE_SEED).model(name)
