"""The graded exercises: which parts each has, which learner object each part checks, and its
checks (with their points). The grader scores from this table, never from numbers a notebook
reports, so a submission cannot award itself points it has no check for."""

from __future__ import annotations

from dataclasses import dataclass

from . import (
    anyres,
    chat,
    intervals,
    lora,
    loss,
    memory,
    preprocess,
    prompt,
    qformer,
    rollout,
    search,
    siglip,
    vit,
    vqa,
    zero_shot,
)
from .core import Check

__all__ = ["Part", "Exercise", "EXERCISES", "get_exercise", "get_part"]


@dataclass(frozen=True)
class Part:
    """One graded part: ``target`` is the name the learner defines (a class or a function);
    ``references``: the package's own versions of it, which the submission's process gets as
    functions that raise (``vlmstudy.tasks.ChatSession.ask``: a method), so that a submission
    cannot hand them in as its work."""

    name: str
    title: str
    target: str
    checks: tuple[Check, ...]
    references: tuple[str, ...] = ()

    @property
    def max_points(self) -> int:
        return sum(c.points for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


@dataclass(frozen=True)
class Exercise:
    """One exercise notebook: ``name`` is its file stem (``01_clip_search``)."""

    name: str
    title: str
    parts: tuple[Part, ...]

    @property
    def max_points(self) -> int:
        return sum(p.max_points for p in self.parts)

    @property
    def references(self) -> tuple[str, ...]:
        """Every part's references: out of reach for the whole run of the submission."""
        return tuple(r for p in self.parts for r in p.references)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"exercise {self.name} has no part {name!r}; parts: {', '.join(p.name for p in self.parts)}")


EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in [
    Exercise("01_clip_search", "Image search with CLIP", (
        Part("search", "CLIPImageSearch: index_images and search", search.TARGET, tuple(search.CHECKS),
             ("vlmstudy.retrieval.ImageIndex.search", "vlmstudy.retrieval.exact_topk", "vlmstudy.retrieval._sorted_topk")),)),
    Exercise("02_chatbot", "A multimodal chatbot with memory", (
        Part("chatbot", "MultimodalChatbot: set_image, chat, clear_history", chat.TARGET, tuple(chat.CHECKS),
             ("vlmstudy.tasks.ChatSession.ask", "vlmstudy.tasks.ChatSession.render")),)),
    Exercise("03_zero_shot_ensemble", "Zero-shot classification with a prompt ensemble", (
        Part("class_embeddings", "class_embeddings: the prompt ensemble", zero_shot.CLASS_TARGET,
             tuple(zero_shot.CLASS_CHECKS), ("vlmstudy.contrastive.class_embeddings",)),
        Part("zero_shot_probs", "zero_shot_probs: probabilities over the labels", zero_shot.PROBS_TARGET,
             tuple(zero_shot.PROBS_CHECKS), ("vlmstudy.contrastive.zero_shot", "vlmstudy.contrastive.logits")))),
    Exercise("04_contrastive_loss", "CLIP's contrastive loss", (
        Part("clip_loss", "clip_loss: symmetric InfoNCE", loss.TARGET, tuple(loss.CHECKS),
             ("vlmstudy.contrastive.clip_loss",)),)),
    Exercise("05_attention_rollout", "Attention rollout", (
        Part("rollout", "attention_rollout: through all layers", rollout.TARGET, tuple(rollout.CHECKS),
             ("vlmstudy.attention.attention_rollout",)),)),
    Exercise("06_vqa_normalisation", "Scoring VQA answers: normalisation and matching", (
        Part("normalize_answer", "normalize_answer: the VQA canonical form", vqa.NORMALIZE_TARGET,
             tuple(vqa.NORMALIZE_CHECKS), ("vlmstudy.evaluation.normalize_answer",)),
        Part("answer_matches", "answer_matches: does the answer say the truth?", vqa.MATCH_TARGET,
             tuple(vqa.MATCH_CHECKS), ("vlmstudy.evaluation.answer_matches", "vlmstudy.evaluation.answer_accuracy")))),
    Exercise("07_memory_footprint", "A memory footprint calculator", (
        Part("footprint", "footprint_bytes: bytes per precision, scales included", memory.TARGET, tuple(memory.CHECKS),
             ("vlmstudy.quantize.estimate_breakdown", "vlmstudy.quantize.estimate",
              "vlmstudy.quantize._quantized_weight_bytes")),)),
    Exercise("08_chat_prompt", "A chat prompt, built by hand", (
        Part("prompt", "build_prompt: LLaVA-1.5's chat template as Python", prompt.TARGET, tuple(prompt.CHECKS),
             ("vlmstudy.generation.chat_prompt", "vlmstudy.tasks.ChatSession.render")),)),
    Exercise("09_anyres_tokens", "Any-resolution tiles and image tokens (LLaVA-NeXT)", (
        Part("best_resolution", "best_resolution: the canvas LLaVA-NeXT picks", anyres.BEST_TARGET,
             tuple(anyres.BEST_CHECKS), ("vlmstudy.tasks.anyres_layout",)),
        Part("image_tokens", "image_tokens: the <image> tokens of one image", anyres.TOKENS_TARGET,
             tuple(anyres.TOKENS_CHECKS), ("vlmstudy.tasks.image_token_count",)))),
    Exercise("10_qformer_shapes", "The Q-Former's queries and shapes (BLIP-2)", (
        Part("shapes", "qformer_shapes: from the config to every shape", qformer.TARGET, tuple(qformer.CHECKS),
             ("vlmstudy.zoo.table.build_on_meta",)),)),
    Exercise("11_lora_budget", "A LoRA configuration for a target budget", (
        Part("lora_params", "lora_params: what peft trains", lora.PARAMS_TARGET, tuple(lora.PARAMS_CHECKS),
             ("vlmstudy.finetune.memory.lora_parameters",)),
        Part("lora_for_budget", "lora_for_budget: the largest rank that fits", lora.BUDGET_TARGET,
             tuple(lora.BUDGET_CHECKS), ()))),
    Exercise("12_image_preprocessing", "What the processor does to an image, by hand", (
        Part("resize_and_crop", "resize_and_crop: the shorter side, then the centre", preprocess.CROP_TARGET,
             tuple(preprocess.CROP_CHECKS), ("vlmstudy.pixels.resize_and_crop",)),
        Part("pixel_values", "pixel_values: rescaled and normalised, as the processor gives them", preprocess.PIXELS_TARGET,
             tuple(preprocess.PIXELS_CHECKS), ("vlmstudy.pixels.pixel_values", "vlmstudy.pixels.normalize_pixels")))),
    Exercise("13_vit_parameters", "Where a ViT's parameters are", (
        Part("vit", "vit_params: the image encoder's parameters, per component", vit.TARGET, tuple(vit.CHECKS),
             ("vlmstudy.zoo.table.build_on_meta", "vlmstudy.zoo.table.real_parameter_count")),)),
    Exercise("14_siglip_loss", "SigLIP's sigmoid loss, whole and in blocks", (
        Part("siglip_loss", "siglip_loss: a sigmoid per pair", siglip.LOSS_TARGET, tuple(siglip.LOSS_CHECKS),
             ("vlmstudy.contrastive.siglip_loss",)),
        Part("siglip_loss_chunked", "siglip_loss_chunked: the same loss, a block of images at a time",
             siglip.CHUNKED_TARGET, tuple(siglip.CHUNKED_CHECKS), ("vlmstudy.contrastive.siglip_loss_chunked",)))),
    Exercise("15_accuracy_intervals", "A per-kind accuracy table with confidence intervals", (
        Part("wilson_interval", "wilson_interval: a 95 % interval for an accuracy", intervals.INTERVAL_TARGET,
             tuple(intervals.INTERVAL_CHECKS), ("vlmstudy.pointing._wilson",)),
        Part("accuracy_table", "accuracy_table: one row per question kind", intervals.TABLE_TARGET,
             tuple(intervals.TABLE_CHECKS), ("vlmstudy.evaluation.accuracy_by_kind",)))),
]}


def get_exercise(name: str) -> Exercise:
    """The exercise called ``name`` (its file stem, e.g. ``01_clip_search``); a ``KeyError``
    names the known ones."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(f"unknown exercise {name!r}; known: {', '.join(EXERCISES)}") from None


def get_part(exercise: str, part: str) -> Part:
    return get_exercise(exercise).part(part)
