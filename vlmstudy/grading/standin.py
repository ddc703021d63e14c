"""``vlmstudy.grading`` as a submission sees it while ``vlmstudy exercises grade`` runs it.

This file becomes ``vlmstudy/grading/__init__.py`` in the copy of the package the submission's
process gets (:func:`vlmstudy.grading.sandbox.shadow_package`); next to it are only the channel
(``remote.py``), the worker and ``core.py``, never the checks. The notebook's own cells still run:
``check_*()`` answers with an empty report (the checks run in the grader, on new data),
``load_quietly`` loads the course models as in the course. A reference the exercise asks the
learner to write is replaced, in that copy, by a function that raises :class:`ReferenceOutOfReach`.
"""

from __future__ import annotations

from .core import Env, Report

VISIBLE_SEED = 0
TITLE = "checks run by the grader, outside this notebook, while it is graded"


class ReferenceOutOfReach(Exception):
    """Raised by the package's own version of what the exercise asks the learner to write."""


def _graded_elsewhere(*args, **kwargs) -> Report:
    return Report(title=TITLE, scope="visible")


check = hidden_checks = _graded_elsewhere
check_search = check_chatbot = check_class_embeddings = check_zero_shot_probs = _graded_elsewhere
check_clip_loss = check_rollout = _graded_elsewhere
check_normalize_answer = check_answer_matches = _graded_elsewhere
check_footprint = check_prompt = _graded_elsewhere
check_best_resolution = check_image_tokens = _graded_elsewhere
check_qformer_shapes = _graded_elsewhere
check_lora_params = check_lora_for_budget = _graded_elsewhere
check_resize_and_crop = check_pixel_values = check_vit_params = _graded_elsewhere
check_siglip_loss = check_siglip_loss_chunked = check_wilson_interval = check_accuracy_table = _graded_elsewhere


def load_quietly(name: str):
    """``(model, processor)`` for a course model, as in the course."""
    return Env(VISIBLE_SEED).model(name)
