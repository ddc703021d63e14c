"""Which model for which job: the stand-ins measured side by side, the real checkpoints estimated.

:func:`model_comparison` gives one row per zoo model: the stand-in's parameters, megabytes and
CPU latency per answer (measured now, on this machine) and its headline accuracy (from its model
card, measured on test scenes when it was trained), next to the real checkpoint's parameters and
its fp16 / int8 / 4-bit memory (computed from its architecture on the meta device, nothing
downloaded). :func:`vlmstudy.plotting.task_model_chart` draws the task -> model selection chart
from the same rows. Notebook 10 shows both.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence

from . import shapes

#: What one "answer" is when a stand-in's latency is measured: the job the course uses it for.
LATENCY_JOB = {
    "clip": "zero-shot over 48 labels", "siglip": "zero-shot over 48 labels",
    "blip-caption": "caption", "blip-vqa": "answer", "blip2": "answer", "instructblip": "answer",
    "llava": "answer", "llava-next": "answer",
}
#: Chat models added to the zoo later (SmolVLM, Qwen2-VL: notebook 14) answer a question too.
DEFAULT_JOB = "answer"
QUESTION = "how many shapes are there?"


def _one_answer(name: str, image, labels: Sequence[str]):
    """A zero-argument function that does one answer's work with the stand-in ``name``."""
    from . import contrastive, tasks

    if LATENCY_JOB.get(name, DEFAULT_JOB).startswith("zero-shot"):
        model, processor = tasks.get_model(name)
        return lambda: contrastive.zero_shot(model, processor, [image], labels)
    if LATENCY_JOB.get(name, DEFAULT_JOB) == "caption":
        return lambda: tasks.caption(image, model=name)
    return lambda: tasks.answer(image, QUESTION, model=name)


def answer_latency_ms(name: str, repeats: int = 5, seed: int = 0) -> float:
    """Median milliseconds for one answer (:data:`LATENCY_JOB`) by the stand-in ``name`` on the
    current device, after one warm-up call; each repeat uses a different test scene."""
    from .zoo.registry import get_card

    name = get_card(name).name
    scenes = shapes.make_scenes("test", repeats + 1, seed=seed)
    labels = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES]
    times = []
    for i, scene in enumerate(scenes):
        job = _one_answer(name, scene.render(), labels)
        start = time.perf_counter()
        job()
        if i:  # the first call pays for loading and warm-up
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def headline_metric(name: str) -> tuple[str | None, float | None, float | None]:
    """``(metric, stand-in value from its card or None, course target)``: the first target metric
    (``(None, None, None)`` for a model the course sets no target for)."""
    from .zoo.evaluate import TARGETS
    from .zoo.registry import get_card
    from .zoo.table import stand_in_metrics

    card = get_card(name)
    if not TARGETS.get(card.name):
        return None, None, None
    metric, target = next(iter(TARGETS[card.name].items()))
    return metric, stand_in_metrics(card).get(metric), target


def model_comparison(names: Iterable[str] | None = None, repeats: int = 5, measure_latency: bool = True,
                     precisions: Sequence[str] = ("fp16", "int8", "nf4")) -> list[dict]:
    """One dict per model (zoo order): ``name, hub_id, tasks, params, mb, latency_ms, job, metric,
    accuracy, target`` for the stand-in and ``real_params`` plus ``real_<precision>_gb`` for the
    real checkpoint. ``measure_latency=False`` skips the timing (``latency_ms`` is None)."""
    from .quantize import estimate
    from .zoo.registry import CARDS, get_card
    from .zoo.table import real_parameter_count, stand_in_stats

    cards = [get_card(n) for n in names] if names is not None else list(CARDS)
    rows = []
    for card in cards:
        params, mb = stand_in_stats(card)
        metric, value, target = headline_metric(card.name)
        row = {
            "name": card.name, "hub_id": card.hub_id, "tasks": card.tasks, "params": params, "mb": mb,
            "job": LATENCY_JOB.get(card.name, DEFAULT_JOB),
            "latency_ms": answer_latency_ms(card.name, repeats) if measure_latency and card.is_present() else None,
            "metric": metric, "accuracy": value, "target": target,
            "real_params": real_parameter_count(card.name),
        }
        for precision in precisions:
            row[f"real_{precision}_gb"] = estimate(card.name, precision) / 1e9
        rows.append(row)
    return rows


def format_comparison(rows: Sequence[dict]) -> str:
    """The comparison rows as a fixed-width text table (one line per model)."""
    gb_keys = [k for k in rows[0] if k.startswith("real_") and k.endswith("_gb")] if rows else []
    header = (f"{'model':13} {'params':>7} {'MB':>5} {'ms/answer':>9}  {'accuracy (metric)':33} "
              f"{'real params':>11} " + " ".join(f"{k[5:-3] + ' GB':>8}" for k in gb_keys))
    lines = [header, "-" * len(header)]
    for r in rows:
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f} ({r['metric']})"
        lines.append(f"{r['name']:13} {(r['params'] or 0) / 1e6:6.1f}M {r['mb'] or 0:5.1f} {latency:>9}  {acc:33} "
                     f"{r['real_params'] / 1e9:10.2f}B " + " ".join(f"{r[k]:8.2f}" for k in gb_keys))
    return "\n".join(lines)


def smallest_for_each_task(rows: Sequence[dict], precision: str = "nf4") -> dict[str, str]:
    """task -> the model with the smallest real checkpoint at ``precision`` that does it (the
    first one to try when memory is tight; ties: the first in zoo order)."""
    best: dict[str, str] = {}
    gb = {r["name"]: r[f"real_{precision}_gb"] for r in rows}
    for r in rows:
        for task in r["tasks"]:
            if task not in best or gb[r["name"]] < gb[best[task]]:
                best[task] = r["name"]
    return best
