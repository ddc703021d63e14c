"""``zoo_table()``: the printable model zoo, with the real checkpoints' sizes computed, not typed.

A real checkpoint's parameter count comes from building its architecture from the numbers in
its card on PyTorch's ``meta`` device: every tensor has a shape but no memory, so a 7 B model
"instantiates" in a second with nothing downloaded.
"""

from __future__ import annotations

import functools
import json

import torch
import transformers

from .registry import CARDS, ModelCard, get_card, real_config


def build_on_meta(name: str) -> torch.nn.Module:
    """The real architecture with shapes only (``meta`` tensors): no memory, no download."""
    card = get_card(name)
    with torch.device("meta"):
        return getattr(transformers, card.model_class)(real_config(name))


@functools.cache
def real_parameter_count(name: str) -> int:
    """Parameters of the real checkpoint's architecture (counted on the meta device)."""
    return sum(p.numel() for p in build_on_meta(name).parameters())


def stand_in_stats(card: ModelCard) -> tuple[int | None, float | None]:
    """``(parameters, megabytes on disk)`` of the shipped stand-in, or ``(None, None)`` if absent."""
    if not card.is_present():
        return None, None
    from safetensors import safe_open

    path = card.stand_in_dir / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        params = sum(fh.get_slice(k).get_shape().numel() if hasattr(fh.get_slice(k).get_shape(), "numel")
                     else _numel(fh.get_slice(k).get_shape()) for k in fh.keys())
    size = sum(f.stat().st_size for f in card.stand_in_dir.iterdir() if f.is_file()) / 1e6
    return params, size


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def stand_in_metrics(card: ModelCard) -> dict:
    """Metrics recorded in the stand-in's ``training.json`` (measured when it was trained)."""
    path = card.stand_in_dir / "training.json"
    return json.loads(path.read_text()).get("metrics", {}) if path.exists() else {}


def zoo_rows(with_real: bool = True) -> list[dict]:
    """One dict per model: name, hub_id, family, tasks, class, stand-in params / MB, real params."""
    rows = []
    for card in CARDS:
        params, size = stand_in_stats(card)
        rows.append({
            "name": card.name, "hub_id": card.hub_id, "family": card.family, "tasks": ", ".join(card.tasks),
            "class": card.model_class, "notebook": card.notebook,
            "stand_in_params": params, "stand_in_mb": None if size is None else round(size, 2),
            "real_params": real_parameter_count(card.name) if with_real else None,
        })
    return rows


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}" if unit == "B" else f"{n / div:.1f} {unit}"
    return str(n)


def _metrics_text(card: ModelCard) -> str:
    from .evaluate import TARGETS

    metrics = stand_in_metrics(card)
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in TARGETS.get(card.name, {}) if k in metrics) or "-"


def zoo_table(with_real: bool = True, markdown: bool = False, metrics: bool = False) -> str:
    """The model zoo as a text table (or markdown); printed in notebook 01 and by
    ``vlmstudy zoo table``. Real parameter counts are computed on the meta device; ``metrics``
    adds each stand-in's measured metrics from its model card."""
    rows = zoo_rows(with_real)
    header = ["name", "hub id", "family", "class", "stand-in params", "stand-in MB", "real params"]
    body = [[r["name"], r["hub_id"], r["family"], r["class"], _human(r["stand_in_params"]),
             "-" if r["stand_in_mb"] is None else f"{r['stand_in_mb']:.2f}", _human(r["real_params"])] for r in rows]
    if metrics:
        header.append("stand-in metrics (test scenes)")
        for row, card in zip(body, CARDS):
            row.append(_metrics_text(card))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths])] + [fmt.format(*row) for row in body])
