"""Measure the stand-ins on test scenes they never saw; ``vlmstudy zoo evaluate`` calls this.

Every metric goes through the public path a learner uses (processor + model), not a training
shortcut. ``TARGETS`` are the course's promises; ``evaluate`` reports which are met.
"""

from __future__ import annotations

import torch

from .. import shapes
from ..contrastive import class_embeddings, embed_images, embed_texts

#: metric -> minimum value, per model card.
TARGETS: dict[str, dict[str, float]] = {
    "clip": {"zero_shot_accuracy": 0.95, "zero_shot_heldout_accuracy": 0.80, "text_to_image_recall@1": 0.90},
    "siglip": {"zero_shot_accuracy": 0.95, "zero_shot_heldout_accuracy": 0.80, "text_to_image_recall@1": 0.90},
}

ALL_CLASSES = [f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES]


def evaluate_contrastive(model, processor, n: int = 500, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Zero-shot colour x shape accuracy (single-object test scenes, all 48 classes as candidates),
    the same on held-out colour-shape pairs, and text -> image recall@1 over ``n`` test scenes.

    Retrieval counts a hit when the top image's own caption equals the query (two scenes with
    the same caption are indistinguishable by text, so either is right).
    """
    classes = class_embeddings(model, processor, ALL_CLASSES)
    result = {}
    for key, split, count in (("zero_shot_accuracy", "test", n), ("zero_shot_heldout_accuracy", "heldout", max(100, n // 2))):
        scenes = shapes.make_scenes(split, count, seed=seed, n_objects=1)
        img = embed_images(model, processor, [s.render() for s in scenes], progress=progress)
        pred = (img @ classes.T).argmax(dim=1)
        truth = torch.tensor([ALL_CLASSES.index(s.objects[0].name) for s in scenes])
        result[key] = float((pred == truth).float().mean())
    scenes = shapes.make_scenes("test", n, seed=seed + 1)
    captions = [shapes.caption(s) for s in scenes]
    img = embed_images(model, processor, [s.render() for s in scenes], progress=progress)
    txt = embed_texts(model, processor, captions, progress=progress)
    top = (txt @ img.T).argmax(dim=1)
    result["text_to_image_recall@1"] = sum(captions[j] == c for c, j in zip(captions, top.tolist())) / len(captions)
    return result


def check_targets(name: str, metrics: dict[str, float]) -> list[str]:
    """Human-readable failures (empty when every target is met)."""
    return [f"{name}: {k} = {metrics.get(k, float('nan')):.3f} < {v}" for k, v in TARGETS.get(name, {}).items()
            if not metrics.get(k, -1) >= v]


TARGETS.update({
    "blip-caption": {"caption_exact_match": 0.90},
    "blip-vqa": {"vqa_accuracy": 0.90},
    "blip2": {"vqa_accuracy": 0.85},
    "instructblip": {"vqa_accuracy": 0.85},
    "llava": {"first_turn_accuracy": 0.90, "follow_up_accuracy": 0.85},
    "llava-next": {"single_image_accuracy": 0.90, "two_image_accuracy": 0.80},
})


def _accuracy(predictions, truths) -> float:
    """VQA-normalised answer accuracy (:func:`vlmstudy.evaluation.answer_matches`: "2" answers
    "two", a sentence holding the answer counts), so that a real chat model is scored by the
    same rule as a stand-in."""
    from ..evaluation import answer_accuracy

    return answer_accuracy(predictions, truths)


def _exact(predictions, truths) -> float:
    return sum(shapes.normalize_text(p) == shapes.normalize_text(t) for p, t in zip(predictions, truths)) / len(truths)


def _batched(fn, items, batch_size=32, progress=True, desc="generating"):
    from tqdm.auto import tqdm

    out = []
    for start in tqdm(range(0, len(items), batch_size), desc=desc, leave=False, disable=not progress):
        out.extend(fn(items[start:start + batch_size]))
    return out


def evaluate_generative(name: str, model, processor, n: int = 300, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Answer accuracy (VQA-normalised, :func:`vlmstudy.evaluation.answer_matches`; captions:
    exact match after :func:`vlmstudy.shapes.normalize_text`) on ``n`` test scenes, through
    ``generate`` with greedy decoding, as a learner would call it."""
    import random

    from ..generation import chat_prompt, generate_text
    from ..prompting import BLIP2_VQA_PROMPT, sample_prompt

    rng = random.Random(seed)
    scenes = shapes.make_scenes("test", n, seed=seed)
    images = [s.render() for s in scenes]
    if name == "blip-caption":
        plain = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], [None] * len(ix)),
                         list(range(n)), progress=progress)
        prompted = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], ["a picture of"] * len(ix)),
                            list(range(n)), progress=progress)
        truth = [shapes.caption(s) for s in scenes]
        # partial credit: how many objects' "colour shape" phrases the captions name
        named = sum(f"{o.color} {o.shape}" in shapes.normalize_text(c) for c, s in zip(plain, scenes) for o in s.objects)
        return {"caption_exact_match": _exact(plain, truth), "prompted_caption_exact_match": _exact(prompted, truth),
                "caption_object_recall": named / sum(len(s.objects) for s in scenes)}
    qas = [sample_prompt(s, rng, describe_share=0.0) for s in scenes]
    if name in ("blip-vqa", "blip2", "instructblip"):
        fmt = BLIP2_VQA_PROMPT.format if name == "blip2" else (lambda q: q)
        preds = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], [fmt(qas[i][0]) for i in ix]),
                         list(range(n)), progress=progress)
        result = {"vqa_accuracy": _accuracy(preds, [a for _, a, _ in qas])}
        for kind in sorted({k for _, _, k in qas}):
            sel = [i for i, (_, _, k) in enumerate(qas) if k == kind]
            result[f"vqa_accuracy_{kind}"] = _accuracy([preds[i] for i in sel], [qas[i][1] for i in sel])
        return result
    if name in ("llava", "llava-next"):
        first = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix],
                                                  [chat_prompt(processor, [(qas[i][0], None)]) for i in ix]),
                         list(range(n)), progress=progress)
        key = "first_turn_accuracy" if name == "llava" else "single_image_accuracy"
        result = {key: _accuracy(first, [a for _, a, _ in qas])}
        if name == "llava":
            dialogues = [shapes.dialogue(s, rng) for s in scenes]
            own = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix],
                                                    [chat_prompt(processor, [(dialogues[i][0][0], None)]) for i in ix]),
                           list(range(n)), progress=progress)
            follow = _batched(lambda ix: generate_text(
                model, processor, [images[i] for i in ix],
                [chat_prompt(processor, [(dialogues[i][0][0], own[i]), (dialogues[i][1][0], None)]) for i in ix]),
                list(range(n)), progress=progress)
            result["follow_up_accuracy"] = _accuracy(follow, [d[1][1] for d in dialogues])
            result["follow_up_given_first_correct"] = _accuracy(
                [f for f, o, d in zip(follow, own, dialogues) if shapes.normalize_text(o) == d[0][1]],
                [d[1][1] for o, d in zip(own, dialogues) if shapes.normalize_text(o) == d[0][1]]) if any(
                shapes.normalize_text(o) == d[0][1] for o, d in zip(own, dialogues)) else 0.0
        else:
            others = shapes.make_scenes("test", n, seed=seed + 7)
            pairs = [rng.choice(shapes.two_image_questions(a, b)) for a, b in zip(scenes, others)]
            preds = _batched(lambda ix: generate_text(
                model, processor, [im for i in ix for im in (images[i], others[i].render())],
                [chat_prompt(processor, [(pairs[i].question, None)], n_images=2) for i in ix], images_per_prompt=2),
                list(range(n)), progress=progress)
            result["two_image_accuracy"] = _accuracy(preds, [p.answer for p in pairs])
        return result
    raise ValueError(f"no generative evaluation for {name!r}")
