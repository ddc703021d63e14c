"""Measure the stand-ins on test scenes they never saw; ``vlmstudy zoo evaluate`` calls this.

Every metric goes through the public path a learner uses (processor + model), not a training
shortcut. ``TARGETS`` are the course's promises; ``evaluate`` reports which are met.
"""

from __future__ import annotations

import torch

from .. import shapes
from ..contrastive import class_embeddings, embed_images, embed_texts
from .common import CONDITION_COLUMNS

#: metric -> minimum value, per model card.
TARGETS: dict[str, dict[str, float]] = {
    "clip": {"zero_shot_accuracy": 0.97, "zero_shot_heldout_accuracy": 0.80, "text_to_image_recall@1": 0.90,
             "second_zero_shot_accuracy": 0.85},
    "siglip": {"zero_shot_accuracy": 0.97, "zero_shot_heldout_accuracy": 0.80, "text_to_image_recall@1": 0.90,
               "second_zero_shot_accuracy": 0.85},
}

ALL_CLASSES = [f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES]

#: The conditions every generative metric is measured in, as metric-name prefixes:
#: ``""`` own renderer and trained wording; ``"paraphrased_"`` own renderer, held-out
#: paraphrases (:mod:`vlmstudy.phrasings`); ``"second_"`` the second renderer
#: (:mod:`vlmstudy.second_renderer`) with held-out paraphrases.
CONDITIONS: dict[str, tuple[str, str | None]] = {"": ("plain", None), "paraphrased_": ("plain", "heldout"),
                                                 "second_": ("second", "heldout")}


def draw_scenes(scenes, renderer: str = "plain", size: int = 64) -> list:
    """Pictures of ``scenes`` by ``renderer``: ``"plain"`` (:func:`vlmstudy.shapes.render`) or
    ``"second"`` (:func:`vlmstudy.second_renderer.render`, never used in training)."""
    if renderer == "plain":
        return [s.render(size) for s in scenes]
    if renderer == "second":
        from .. import second_renderer

        return [second_renderer.render(s, size) for s in scenes]
    raise ValueError(f"renderer must be 'plain' or 'second', not {renderer!r}")


def evaluate_contrastive(model, processor, n: int = 500, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Zero-shot colour x shape accuracy (single-object test scenes, all 48 classes as candidates),
    the same on held-out colour-shape pairs, and text -> image recall@1 over ``n`` test scenes.

    Retrieval counts a hit when the top image's own caption equals the query (two scenes with
    the same caption are indistinguishable by text, so either is right).
    """
    classes = class_embeddings(model, processor, ALL_CLASSES)
    result = {}
    for key, split, count, draw in (("zero_shot_accuracy", "test", n, "plain"),
                                    ("zero_shot_heldout_accuracy", "heldout", max(100, n // 2), "plain"),
                                    ("second_zero_shot_accuracy", "test", n, "second")):
        scenes = shapes.make_scenes(split, count, seed=seed, n_objects=1)
        img = embed_images(model, processor, draw_scenes(scenes, draw), progress=progress)
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
    "blip-caption": {"caption_names_all_objects": 0.95, "second_caption_names_all_objects": 0.85},
    "blip-vqa": {"vqa_accuracy": 0.90, "second_vqa_accuracy": 0.80},
    "blip2": {"vqa_accuracy": 0.90, "second_vqa_accuracy": 0.80},
    "instructblip": {"vqa_accuracy": 0.90, "second_vqa_accuracy": 0.80},
    "llava": {"first_turn_accuracy": 0.92, "follow_up_accuracy": 0.90, "second_first_turn_accuracy": 0.80,
              "second_follow_up_accuracy": 0.80},
    "llava-next": {"single_image_accuracy": 0.92, "two_image_accuracy": 0.85, "second_single_image_accuracy": 0.80,
                   "second_two_image_accuracy": 0.80},
    "qwen2-vl": {"first_turn_accuracy": 0.92, "follow_up_accuracy": 0.90, "second_first_turn_accuracy": 0.80,
                 "second_follow_up_accuracy": 0.80},  # LLaVA's chat targets (issue 24)
    "smolvlm": {"first_turn_accuracy": 0.92, "follow_up_accuracy": 0.90, "second_first_turn_accuracy": 0.80,
                "second_follow_up_accuracy": 0.80},  # LLaVA's chat targets (issue 24)
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


def evaluate_generative(name: str, model, processor, n: int = 300, seed: int = 0, progress: bool = True,
                        conditions: dict[str, tuple[str, str | None]] | None = None) -> dict[str, float]:
    """Every metric of a generative stand-in in every condition of :data:`CONDITIONS` (metric
    names get the condition's prefix: ``vqa_accuracy``, ``paraphrased_vqa_accuracy``,
    ``second_vqa_accuracy``), with per-kind accuracies (``vqa_accuracy_colour`` ...)."""
    result = {}
    for prefix, (renderer, phrasing) in (CONDITIONS if conditions is None else conditions).items():
        if name == "blip-caption" and phrasing is not None and renderer == "plain":
            continue  # a captioner gets no questions: the paraphrase condition is the plain one
        measured = evaluate_generative_once(name, model, processor, n, seed, progress, renderer, phrasing)
        result.update({prefix + k: v for k, v in measured.items()})
    return result


def _by_kind(result: dict, key: str, preds, truths, kinds) -> None:
    """``result[key]`` = overall accuracy, ``result[f"{key}_{kind}"]`` = each kind's
    (:func:`vlmstudy.evaluation.accuracy_by_kind`)."""
    from ..evaluation import accuracy_by_kind

    result[key] = _accuracy(preds, truths)
    result.update({f"{key}_{kind}": v for kind, v in accuracy_by_kind(preds, truths, kinds).items()})


def evaluate_generative_once(name: str, model, processor, n: int = 300, seed: int = 0, progress: bool = True,
                             renderer: str = "plain", phrasing: str | None = None) -> dict[str, float]:
    """Answer accuracy (VQA-normalised, :func:`vlmstudy.evaluation.answer_matches`; captions:
    exact match after :func:`vlmstudy.shapes.normalize_text`) on ``n`` test scenes drawn by
    ``renderer``, questions in their canonical wording (``phrasing=None``) or a paraphrase set
    (:mod:`vlmstudy.phrasings`), through ``generate`` with greedy decoding, as a learner would
    call it."""
    import random

    from .. import phrasings
    from ..generation import chat_prompt, generate_text
    from ..prompting import BLIP2_VQA_PROMPT, sample_prompt

    rng = random.Random(seed)
    say = (lambda q: phrasings.paraphrase_question(q, rng, phrasing)) if phrasing else (lambda q: q)
    scenes = shapes.make_scenes("test", n, seed=seed)
    images = draw_scenes(scenes, renderer)
    if name == "blip-caption":
        plain = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], [None] * len(ix)),
                         list(range(n)), progress=progress)
        prompted = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], ["a picture of"] * len(ix)),
                            list(range(n)), progress=progress)
        truth = [shapes.caption(s) for s in scenes]
        # partial credit: how many objects' "colour shape" phrases the captions name
        named = [[f"{o.color} {o.shape}" in shapes.normalize_text(c) for o in s.objects] for c, s in zip(plain, scenes)]
        return {"caption_exact_match": _exact(plain, truth), "prompted_caption_exact_match": _exact(prompted, truth),
                "caption_object_recall": sum(map(sum, named)) / sum(len(s.objects) for s in scenes),
                "caption_names_all_objects": sum(all(row) for row in named) / n}
    qas = [sample_prompt(s, rng, describe_share=0.0, paraphrase=phrasing) for s in scenes]
    kinds = [k for _, _, k in qas]
    if name in ("blip-vqa", "blip2", "instructblip"):
        fmt = BLIP2_VQA_PROMPT.format if name == "blip2" else (lambda q: q)
        preds = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix], [fmt(qas[i][0]) for i in ix]),
                         list(range(n)), progress=progress)
        result: dict[str, float] = {}
        _by_kind(result, "vqa_accuracy", preds, [a for _, a, _ in qas], kinds)
        return result
    if name in ("llava", "llava-next", "qwen2-vl", "smolvlm"):  # qwen2-vl, smolvlm: scored as LLaVA is (issue 24)
        first = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix],
                                                  [chat_prompt(processor, [(qas[i][0], None)]) for i in ix]),
                         list(range(n)), progress=progress)
        key = "single_image_accuracy" if name == "llava-next" else "first_turn_accuracy"
        result = {}
        _by_kind(result, key, first, [a for _, a, _ in qas], kinds)
        if name != "llava-next":
            dialogues = [[(say(q), a) for q, a in shapes.dialogue(s, rng)] for s in scenes]
            own = _batched(lambda ix: generate_text(model, processor, [images[i] for i in ix],
                                                    [chat_prompt(processor, [(dialogues[i][0][0], None)]) for i in ix]),
                           list(range(n)), progress=progress)
            follow = _batched(lambda ix: generate_text(
                model, processor, [images[i] for i in ix],
                [chat_prompt(processor, [(dialogues[i][0][0], own[i]), (dialogues[i][1][0], None)]) for i in ix]),
                list(range(n)), progress=progress)
            result["follow_up_accuracy"] = _accuracy(follow, [d[1][1] for d in dialogues])
            right = [i for i, (o, d) in enumerate(zip(own, dialogues)) if shapes.normalize_text(o) == d[0][1]]
            result["follow_up_given_first_correct"] = _accuracy(
                [follow[i] for i in right], [dialogues[i][1][1] for i in right]) if right else 0.0
        else:
            others = shapes.make_scenes("test", n, seed=seed + 7)
            other_images = draw_scenes(others, renderer)
            pairs = [rng.choice(shapes.two_image_questions(a, b)) for a, b in zip(scenes, others)]
            preds = _batched(lambda ix: generate_text(
                model, processor, [im for i in ix for im in (images[i], other_images[i])],
                [chat_prompt(processor, [(pairs[i].question, None)], n_images=2) for i in ix], images_per_prompt=2),
                list(range(n)), progress=progress)
            result["two_image_accuracy"] = _accuracy(preds, [p.answer for p in pairs])
        return result
    raise ValueError(f"no generative evaluation for {name!r}")


#: The metric each generative stand-in is judged by first (its per-kind accuracies share the name).
HEADLINE = {"blip-caption": "caption_names_all_objects", "blip-vqa": "vqa_accuracy", "blip2": "vqa_accuracy",
            "instructblip": "vqa_accuracy", "llava": "first_turn_accuracy", "llava-next": "single_image_accuracy",
            "qwen2-vl": "first_turn_accuracy", "smolvlm": "first_turn_accuracy"}
#: The conditions' names, as the model cards' table columns write them.
CONDITION_LABELS = CONDITION_COLUMNS


def accuracy_by_condition(metrics: dict[str, float], key: str) -> dict[str, dict[str, float]]:
    """``{condition label: {"all": ..., kind: ...}}`` for ``key`` from :func:`evaluate_generative`'s
    flat metrics (conditions the metrics lack are left out)."""
    table = {}
    for prefix, label in CONDITION_LABELS.items():
        if prefix + key not in metrics:
            continue
        kinds = {k[len(prefix + key) + 1:]: v for k, v in metrics.items() if k.startswith(f"{prefix}{key}_")}
        table[label] = {"all": metrics[prefix + key], **kinds}
    return table


def generalisation_check(name: str, model, processor=None, n: int = 40, seed: int = 0, plot: bool = True):
    """What notebooks 05-08 and 12 show: the stand-in's headline accuracy per question kind on its
    own pictures, with held-out wordings, and on the second renderer's pictures.

    Measures :func:`evaluate_generative` on ``n`` test scenes, plots the per-kind bars (``plot``),
    and holds each condition's headline metric to the floor its model card sets
    (:func:`vlmstudy.evaluation.check_quality`: asserted for a shipped stand-in, printed for a real
    checkpoint). ``model`` may be a ``(model, processor)`` pair. Returns ``(metrics, figure or None)``.
    """
    from .. import evaluation

    if processor is None:
        model, processor = model

    metrics = evaluate_generative(name, model, processor, n=n, seed=seed, progress=False)
    key = HEADLINE[name]
    table = accuracy_by_condition(metrics, key)
    fig = None
    if plot:
        from ..plotting import accuracy_bars

        fig = accuracy_bars(table, title=f"{name}: {key} per question kind ({n} test scenes)")
    for prefix in CONDITION_LABELS:
        if prefix + key in metrics:
            evaluation.check_quality(model, prefix + key, metrics[prefix + key], n=n)
    return metrics, fig
