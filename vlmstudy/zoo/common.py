"""Pieces shared by the stand-ins' training code: image pools, schedules, model cards on disk."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import shapes

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_pixels(batch_uint8: np.ndarray | torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> normalised ``(N, 3, H, W)`` float, exactly what the image
    processor produces for images already at the model's size (tested against it)."""
    x = torch.as_tensor(batch_uint8).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def training_device() -> torch.device:
    """Where the stand-ins train: :func:`vlmstudy.settings.get_device` (a GPU when there is one;
    ``vlmstudy zoo train --device cpu`` or ``VLMSTUDY_DEVICE`` to choose). Batches are built on the
    CPU and moved; the trained model comes back to the CPU before it is saved."""
    from .. import settings

    return torch.device(settings.get_device())


def to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of a batch dict moved to ``device`` (other values as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def device_label(device: torch.device | str) -> str:
    """``"4 CPU threads"`` or the GPU's name, for model cards."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} CPU threads"


def _render_chunk(args) -> np.ndarray:
    scenes, size, varied = args
    return np.stack([np.asarray(s.render(size, varied=v)) for s, v in zip(scenes, varied)])


def is_varied(scene: shapes.Scene, share: float) -> bool:
    """Whether a training pool draws ``scene`` with :func:`vlmstudy.shapes.render_varied`: a fixed
    ``share`` of scenes, chosen by their texture seed (so a scene and its hard-negative variant,
    which share the seed, are drawn the same way)."""
    return share > 0 and (scene.texture_seed % 1000) < share * 1000


def render_many(scenes: Sequence[shapes.Scene], size: int, progress: bool = True, desc: str = "rendering",
                varied_share: float = 0.0) -> np.ndarray:
    """Render scenes to ``(n, size, size, 3)`` uint8, on every core (rendering is pure Python).

    varied_share: the share of scenes drawn with training variety (:func:`is_varied`)."""
    import multiprocessing as mp
    import os

    from tqdm.auto import tqdm

    varied = [is_varied(s, varied_share) for s in scenes]
    chunks = [(list(scenes[i:i + 500]), size, varied[i:i + 500]) for i in range(0, len(scenes), 500)]
    workers = min(len(chunks), os.cpu_count() or 1)
    if workers <= 1:
        parts = [_render_chunk(c) for c in tqdm(chunks, desc=desc, leave=False, disable=not progress)]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = list(tqdm(pool.imap(_render_chunk, chunks), total=len(chunks), desc=desc, leave=False,
                              disable=not progress))
    return np.concatenate(parts)


def scene_pool(split: str, n: int, seed: int, size: int, n_objects: int | None = None,
               progress: bool = True, varied_share: float = 0.0) -> tuple[list[shapes.Scene], np.ndarray]:
    """``n`` scenes and their pictures ``(n, size, size, 3)`` uint8, rendered once for training
    (``varied_share`` of them with training variety)."""
    scenes = shapes.make_scenes(split, n, seed=seed, n_objects=n_objects)
    return scenes, render_many(scenes, size, progress, f"rendering {split} scenes", varied_share)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 5 %."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def config_summary(cfg, model) -> dict:
    """A dataclass config as a dict, plus the parameter count of the model it built."""
    from dataclasses import asdict

    return dict(asdict(cfg), parameters=count_parameters(model))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def _device_text(record: dict) -> str:
    return record.get("device", f"{record.get('threads', '?')} CPU threads")


def write_model_card(out_dir: Path, card_name: str, title: str, config: dict, command: str,
                     seconds: float, seed: int, metrics: dict, notes: Sequence[str] = (),
                     record: dict | None = None) -> None:
    """README.md (human) + training.json (machine) next to the weights."""
    out_dir = Path(out_dir)
    record = record or {
        "model": card_name, "command": command, "train_seconds": round(seconds, 1), "seed": seed,
        "config": config, "metrics": metrics, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "machine": platform.machine(),
        "threads": torch.get_num_threads(), "device": device_label(training_device()), "date": time.strftime("%Y-%m-%d"),
        # other work on the machine slows training: the 1-minute load average when it ended
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
        "title": title, "notes": list(notes),
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# {title}", "",
        "A tiny stand-in trained by vlmstudy's own code on ShapesWorld scenes; it loads with the same",
        "classes and processor as the real checkpoint, only small. Not a real model of natural images.", "",
        f"- replaces: `{card_name}`",
        f"- trained with: `{command}` (seed {seed}, {seconds:.0f} s on {_device_text(record)})",
        f"- parameters: {config.get('parameters', '?'):,}" if isinstance(config.get("parameters"), int) else "",
        "", "## Metrics (held-out test scenes)", "",
    ]
    lines += metrics_table(metrics)
    if record.get("metrics_command"):
        lines += ["", f"Metrics measured by `{record['metrics_command']}`."]
    if config.get("stages"):
        lines += ["", "## Training stages", "", "| stage | steps | seconds | loss first -> last |", "|---|---|---|---|"]
        lines += [f"| {st['stage']} | {st['steps']} | {st['seconds']} | {st['loss_first_last'][0]} -> "
                  f"{st['loss_first_last'][1]} |" for st in config["stages"]]
    curve = config.get("curve_zero_shot_val")
    if curve:
        lines += ["", "## Training curve (zero-shot accuracy on 200 val scenes)", "", "| step | seconds | accuracy |",
                  "|---|---|---|"] + [f"| {s} | {t} | {a} |" for s, t, a in curve]
    shown = {k: v for k, v in config.items() if k not in ("curve_zero_shot_val", "stages")}
    lines += ["", "## Config", "", "```json", json.dumps(shown,
                                                      indent=2), "```", *notes, ""]
    (out_dir / "README.md").write_text("\n".join(line for line in lines if line is not None))


#: Metric-name prefix -> column of the model card's table (see ``evaluate.CONDITIONS``).
CONDITION_COLUMNS = {"": "own renderer, trained wording", "paraphrased_": "own renderer, held-out wording",
                     "second_": "second renderer, held-out wording"}


def metrics_table(metrics: dict) -> list[str]:
    """Markdown table lines: one row per metric, one column per condition (prefix) it was measured in."""
    def split(key: str) -> tuple[str, str]:
        for prefix in ("paraphrased_", "second_"):
            if key.startswith(prefix):
                return prefix, key[len(prefix):]
        return "", key

    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, base = split(key)
        rows.setdefault(base, {})[prefix] = value
    used = [p for p in CONDITION_COLUMNS if any(p in r for r in rows.values())]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| metric | " + " | ".join(CONDITION_COLUMNS[p] for p in used) + " |", "|---|" + "---|" * len(used)]
    lines += [f"| {base} | " + " | ".join(fmt(r.get(p)) for p in used) + " |" for base, r in rows.items()]
    return lines


def rewrite_card_metrics(out_dir: Path, metrics: dict, failures: Sequence[str], command: str) -> None:
    """Replace a model card's metrics with a new measurement (``vlmstudy zoo evaluate --write-card``)."""
    out_dir = Path(out_dir)
    record = json.loads((out_dir / "training.json").read_text())
    record["metrics"] = {k: round(v, 4) for k, v in metrics.items()}
    record["metrics_command"] = command
    record["config"]["size_mb"] = round(dir_size_mb(out_dir), 2)
    notes = ["", "## Targets", ""] + ([f"- NOT MET: {f}" for f in failures] or ["- all met"])
    record["notes"] = notes
    write_model_card(out_dir, record["model"], record.get("title", f"tiny stand-in for {record['model']}"),
                     record["config"], record["command"], record["train_seconds"], record["seed"], record["metrics"],
                     notes, record=record)
