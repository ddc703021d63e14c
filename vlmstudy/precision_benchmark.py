"""Measuring the course's models at each precision, and the stored measurements (notebook 10).

:func:`compare_precisions` loads a stand-in at every precision of :data:`vlmstudy.quantize.CPU_PRECISIONS`
and measures footprint, latency and accuracy side by side (``benchmarks/bench_quantization.py``
stores the run in ``benchmarks/results/quantization_cpu.json``: :func:`cpu_results`);
:func:`gpu_results` is the LLaVA-1.5-7B GPU table (``benchmarks/bench_llava_gpu.py``, else a
labelled reference). The presets, footprints and estimates themselves are :mod:`vlmstudy.quantize`.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import ConfigError
from .quantize import CPU_PRECISIONS, check_precision, footprint_breakdown
from .torch_utils import left_padding, to_model

__all__ = ["measure_precision", "compare_precisions", "format_rows", "PrecisionUnavailable", "LATENCY_NEW_TOKENS",
           "gpu_results", "cpu_results", "REFERENCE_LLAVA_GPU", "RESULTS_DIR", "GPU_RESULTS", "CPU_RESULTS"]


# ----------------------------------------------------------------------------- measuring the stand-ins at each precision

def _median_ms(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return statistics.median(runs), runs


def _contrastive_task(model, processor, n: int, batch_size: int, seed: int):
    from . import shapes
    from .zoo.evaluate import evaluate_contrastive

    images = [s.render() for s in shapes.make_scenes("test", batch_size, seed=seed + 100, n_objects=1)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def batch():
        model.get_image_features(pixel_values=pixels)

    def accuracy():
        metrics = evaluate_contrastive(model, processor, n=n, seed=seed, progress=False)
        return metrics["zero_shot_accuracy"], "zero_shot_accuracy", metrics

    return batch, accuracy, f"image features, batch of {batch_size}"


#: New tokens per question in the generative latency batch (forced, so every precision does the same work).
LATENCY_NEW_TOKENS = 8


def _generative_task(model, processor, n: int, batch_size: int, seed: int):
    import random

    from . import shapes
    from .generation import chat_prompt, generate_text
    from .prompting import sample_prompt

    rng = random.Random(seed)
    scenes = shapes.make_scenes("test", max(n, batch_size), seed=seed)
    images = [s.render() for s in scenes]
    qas = [sample_prompt(s, rng, describe_share=0.0) for s in scenes]
    prompts = [chat_prompt(processor, [(q, None)]) for q, _, _ in qas]

    def run(ix):
        return generate_text(model, processor, [images[i] for i in ix], [prompts[i] for i in ix])

    # the latency batch calls generate itself, to force a fixed amount of work: exactly
    # LATENCY_NEW_TOKENS new tokens per question (left-padded, as for any batched decoder-only model)
    tok = processor.tokenizer
    with left_padding(tok):
        enc = processor(images=images[:batch_size], text=prompts[:batch_size], padding=True, return_tensors="pt")
    enc = to_model(model, enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    @torch.no_grad()
    def batch():
        model.generate(**enc, max_new_tokens=LATENCY_NEW_TOKENS, min_new_tokens=LATENCY_NEW_TOKENS, do_sample=False,
                       num_beams=1, pad_token_id=pad)

    def accuracy():
        preds = []
        for start in range(0, n, 32):
            preds += run(list(range(start, min(n, start + 32))))
        acc = sum(shapes.normalize_text(p) == shapes.normalize_text(a) for p, (_, a, _) in zip(preds, qas)) / n
        return acc, "first_turn_accuracy", {"first_turn_accuracy": acc}

    return batch, accuracy, f"generate {LATENCY_NEW_TOKENS} tokens (greedy) for a batch of {batch_size} questions"


class PrecisionUnavailable(ConfigError):
    """This precision cannot be loaded here (no bitsandbytes and no fallback, no quantized engine)."""


def measure_precision(name: str, precision: str, n: int = 200, batch_size: int = 32, repeats: int = 3,
                      seed: int = 0, mode: str | None = None) -> dict:
    """Load ``name`` at ``precision`` on the CPU and measure footprint, latency and accuracy.

    Latency: median of ``repeats`` timed runs (after one warm-up) of one batch: image features of
    ``batch_size`` images for CLIP / SigLIP; for LLaVA-style models greedy ``generate`` of exactly
    :data:`LATENCY_NEW_TOKENS` new tokens for ``batch_size`` questions (forced, so that a model
    that stops early does not look fast). Accuracy: zero-shot accuracy (``evaluate_contrastive``, ``n`` test scenes),
    or first-turn exact-match answers on ``n`` questions for LLaVA-style models.
    """
    from .generation import FAMILIES
    from .settings import seed_everything
    from .zoo.loading import load_quantized

    precision = check_precision(precision)
    seed_everything(seed)
    start = time.perf_counter()
    try:
        model, processor = load_quantized(name, precision, mode=mode, device="cpu")
    except ConfigError as err:
        raise PrecisionUnavailable(str(err)) from None
    load_s = time.perf_counter() - start
    loaded = footprint_breakdown(model)  # before any forward pass: see the note on CPU repacking in footprint()
    family = FAMILIES.get(type(model).__name__, "")
    if family in ("clip", "siglip"):
        batch, accuracy, what = _contrastive_task(model, processor, n, batch_size, seed)
    elif family in ("llava", "llava-next"):
        batch, accuracy, what = _generative_task(model, processor, n, batch_size, seed)
    else:
        raise ConfigError(f"measure_precision knows CLIP/SigLIP and LLaVA-style models, not {type(model).__name__}")
    latency, runs = _median_ms(batch, repeats)
    acc, metric, metrics = accuracy()
    after = footprint_breakdown(model)
    row = {
        "model": name, "precision": precision, "label": getattr(model, "vlmstudy_precision", precision),
        "footprint_bytes": loaded["total"], "footprint_mb": loaded["total"] / 1e6,
        "quant_state_bytes": loaded["quant_state"], "footprint_after_run_bytes": after["total"],
        "memory_footprint_bytes": int(model.get_memory_footprint()) if hasattr(model, "get_memory_footprint") else None,
        "latency_ms": latency, "latency_runs_ms": runs, "latency_of": what,
        "metric": metric, "accuracy": acc, "metrics": metrics, "n": n, "load_s": load_s,
    }
    del model
    return row


def compare_precisions(name: str = "clip", precisions: Sequence[str] | None = None, n: int = 200,
                       batch_size: int = 32, repeats: int = 3, seed: int = 0, mode: str | None = None,
                       progress: bool = True, threads: int | None = None) -> list[dict]:
    """:func:`measure_precision` for each precision, side by side in one process, with ratios to the
    first row (fp32): ``size_ratio``, ``latency_ratio``, ``accuracy_delta`` (in points: 0.01 = 1 %).

    A precision that cannot run here (no bitsandbytes, no quantized engine) becomes a row with
    ``error`` set instead of stopping the comparison. threads: torch threads during the
    measurement (restored afterwards); one thread gives the steadiest comparison on a shared machine.
    """
    precisions = [check_precision(p) for p in (precisions or CPU_PRECISIONS)]
    rows = []
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for precision in precisions:
            try:
                row = measure_precision(name, precision, n=n, batch_size=batch_size, repeats=repeats, seed=seed,
                                        mode=mode)
            except PrecisionUnavailable as err:
                row = {"model": name, "precision": precision, "label": precision, "error": str(err)}
            row["threads"] = torch.get_num_threads()
            rows.append(row)
            if progress:
                print(format_rows([row], header=len(rows) == 1))
    finally:
        torch.set_num_threads(old_threads)
    base = next((r for r in rows if "error" not in r), None)
    for row in rows:
        if base is not None and "error" not in row:
            row["size_ratio"] = row["footprint_bytes"] / base["footprint_bytes"]
            row["latency_ratio"] = row["latency_ms"] / base["latency_ms"]
            row["accuracy_delta"] = row["accuracy"] - base["accuracy"]
            row["baseline"] = base["precision"]
    return rows


def format_rows(rows: Sequence[dict], header: bool = True) -> str:
    """A fixed-width text table of :func:`compare_precisions` rows."""
    lines = []
    if header:
        lines.append(f"{'model':<7} {'precision':<13} {'MB':>7} {'x size':>7} {'ms/batch':>9} {'x time':>7} "
                     f"{'accuracy':>8} {'delta':>7}  label")
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<7} {r['precision']:<13} unavailable: {r['error']}")
            continue
        ratio = lambda k, f, r=r: f"{r[k]:{f}}" if k in r else "-"  # noqa: E731
        lines.append(f"{r['model']:<7} {r['precision']:<13} {r['footprint_mb']:7.2f} {ratio('size_ratio', '7.2f'):>7} "
                     f"{r['latency_ms']:9.1f} {ratio('latency_ratio', '7.2f'):>7} {r['accuracy']:8.3f} "
                     f"{ratio('accuracy_delta', '+7.3f'):>7}  {r['label'][:60]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# GPU figures: measured by benchmarks/bench_llava_gpu.py, else the reference table

RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
GPU_RESULTS = RESULTS_DIR / "llava_gpu.json"

#: Reference figures for the LLaVA-1.5-7B architecture with random weights on one H100 (torch 2.11 +
#: CUDA 13, transformers 5.17, bitsandbytes 0.50.2), copied from the project's shared anchors.md.
#: They were NOT measured by this repository; ``benchmarks/bench_llava_gpu.py`` measures its own.
REFERENCE_LLAVA_GPU = {
    "source": "reference measurements (anchors.md, H100), not measured by this repo",
    "device": "NVIDIA H100 (reference)",
    "versions": {"torch": "2.11 + CUDA 13", "transformers": "5.17", "bitsandbytes": "0.50.2"},
    "config": {"model": "llava-hf/llava-1.5-7b-hf architecture, random weights", "parameters": 7.063e9,
               "vision_parameters": 303.5e6, "image_tokens": 576, "prompt_tokens": 608, "new_tokens": 64,
               "batch_size": 1},
    "rows": [
        {"precision": "fp16", "memory_footprint_gb": 14.13, "tokens_per_s": 9.4, "ratio_vs_fp16": 1.0},
        {"precision": "int8", "memory_footprint_gb": 7.33, "tokens_per_s": 7.3, "ratio_vs_fp16": 7.33 / 14.13},
        {"precision": "nf4-dq", "memory_footprint_gb": 3.93, "tokens_per_s": 17.0, "ratio_vs_fp16": 0.278},
    ],
    "notes": ["fp16 bs8: 74 tok/s", "physical limit bs1 decode: ~14 GB read per token at ~3 TB/s -> ~200 tok/s",
              "LoRA r16 all linear (42.3 M trainable), bs2 x 673 tokens, grad. checkpointing: fp16 base 0.67 s/step "
              "peak 15.8 GB; NF4 base 0.56 s/step peak 20.2 GB"],
}


def gpu_results(path: str | os.PathLike | None = None) -> dict:
    """The LLaVA-1.5-7B GPU table: ``benchmarks/results/llava_gpu.json`` when a full GPU run of
    ``benchmarks/bench_llava_gpu.py`` wrote it, else :data:`REFERENCE_LLAVA_GPU`. Either way the dict
    has ``source`` (say it next to the numbers), ``device``, ``rows`` (``precision``,
    ``memory_footprint_gb``, ``tokens_per_s``, ``ratio_vs_fp16``)."""
    path = Path(path) if path is not None else GPU_RESULTS
    if path.exists():
        data = json.loads(path.read_text())
        if not data.get("config", {}).get("small") and data.get("device_type") == "cuda":
            data.setdefault("source", f"measured by benchmarks/bench_llava_gpu.py on {data.get('device')} "
                                      f"({data.get('date', '?')})")
            return data
    return json.loads(json.dumps(REFERENCE_LLAVA_GPU))


CPU_RESULTS = RESULTS_DIR / "quantization_cpu.json"


def cpu_results(path: str | os.PathLike | None = None) -> dict | None:
    """The stored run of ``benchmarks/bench_quantization.py`` (``results/quantization_cpu.json``), or
    ``None`` when it has not been run here. ``results`` maps each model to its
    :func:`compare_precisions` rows; ``date``, ``machine`` and ``config`` say where and how."""
    path = Path(path) if path is not None else CPU_RESULTS
    return json.loads(path.read_text()) if path.exists() else None
