#!/usr/bin/env python
"""QLoRA on the LLaVA-1.5-7B architecture, one GPU: peak memory and seconds per training step.

No download: the real architecture (``vlmstudy.zoo.table.real_config("llava")``: CLIP ViT-L/14-336
vision tower, 2-layer projector, LLaMA-2-7B decoder, 7.06 B parameters) is built with **random
weights** in fp16 on the GPU, written once to a temporary folder (``save_pretrained``, ~14 GB,
``--tmpdir`` to choose) and re-loaded in 4 bits with ``from_pretrained(folder,
quantization_config=BitsAndBytesConfig(...))``, the way a learner loads the real checkpoint. Memory
and speed do not depend on what the weights are.

The training step is the course's own code path (``vlmstudy.finetune.model``): ``bnb_config`` ->
``prepare_model_for_kbit_training`` -> ``apply_lora(target_modules="all-linear")``, then
``model(**batch).loss.backward()`` and an optimizer step, on a batch of 2 sequences of 673 tokens
(BOS, the 576 image tokens of a 336x336 image, 96 text tokens of which the last 32 are the
supervised answer; the rest is masked with -100 as in the real collator).

The choices, and why (target: peak <= 8 GB, so that LLaVA-7B fine-tunes on a 12-16 GB card):

* **NF4 + double quantization** (``bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True``):
  the frozen 7 B weights shrink from 14.1 GB (fp16) to ~3.9 GB; double quantization stores the
  block scales in 8 bits too (4.127 instead of 4.5 bits per weight, ~0.3 GB less).
* **bf16 compute** (``bnb_4bit_compute_dtype``; fp16 on GPUs without bf16): bitsandbytes' default
  compute dtype is fp32, which doubles every activation and slows every matmul.
* **Gradient checkpointing** (non-reentrant): keeps only each decoder layer's input and recomputes
  the rest during the backward pass: activation memory grows with 1 layer instead of 32, for
  about one extra forward pass of time.
* **LoRA r=16, alpha=32 on every linear layer of the language model** (q, k, v, o, gate, up, down:
  ~40 M trainable parameters, 0.6 %): the QLoRA paper found adapters on all linear layers necessary
  to match full fine-tuning; the vision tower stays frozen (LLaVA's recipe).
* **Paged 8-bit AdamW** (``bitsandbytes.optim.PagedAdamW8bit``): Adam's two moments in 8 bits
  (~80 MB instead of 320 MB for 40 M parameters), in paged memory that can spill to CPU RAM
  instead of failing on a memory spike.
* ``prepare_model_for_kbit_training`` freezes the base, casts the non-quantized weights (norms,
  embeddings, lm_head) to fp32 for stable training, and turns gradient checkpointing on.

Writes ``benchmarks/results/qlora_gpu.json``: peak allocated / reserved memory during training,
the model's footprint after loading, median seconds per step over ``--steps`` timed steps (after
``--warmup``), trainable / total parameters, losses, device and versions. ``--small`` runs the same
code end to end on the CPU with a small LLaVA config in fp32, without the bitsandbytes CUDA parts
(no 4-bit weights, torch AdamW instead of the paged 8-bit one), for the test suite, and writes
``qlora_gpu_small.json`` so a CPU run never stands in for the GPU figure.

  python benchmarks/bench_qlora_gpu.py            # CUDA GPU, ~16 GB free, ~30 GB disk: a few minutes
  python benchmarks/bench_qlora_gpu.py --small    # CPU, seconds
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from vlmstudy.benchmarking import llava_image_tokens, small_llava_config  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "qlora_gpu.json"
SMALL_OUT = RESULTS / "qlora_gpu_small.json"
TARGET_PEAK_GB = 8.0

CHOICES = {
    "quantization": "NF4 + double quantization, bf16 compute (fp16 without bf16): the frozen base in ~3.9 GB",
    "gradient_checkpointing": "non-reentrant, every decoder layer: activations of one layer at a time",
    "lora": "r=16, alpha=32, dropout=0.05 on every linear layer of the language model (~40 M parameters)",
    "optimizer": "bitsandbytes PagedAdamW8bit: 8-bit moments in paged memory",
    "prepare_model_for_kbit_training": "frozen base, non-quantized weights in fp32, gradient checkpointing on",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="small LLaVA config on the CPU, no bitsandbytes (tests)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 10; --small 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --small 1)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--text-tokens", type=int, default=None,
                   help="text tokens after BOS and the image tokens (default 96 -> 673 in all; --small 47)")
    p.add_argument("--answer-tokens", type=int, default=32, help="supervised tokens at the end of each sequence")
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--no-gradient-checkpointing", action="store_true", help="ablation: keep every activation")
    p.add_argument("--optimizer", choices=("paged_adamw_8bit", "adamw"), default=None,
                   help="default paged_adamw_8bit on CUDA, adamw with --small")
    p.add_argument("--quantization", choices=("nf4", "int8", "none"), default=None,
                   help="default nf4 on CUDA, none with --small")
    p.add_argument("--tmpdir", default=None, help="where the random fp16 weights are written (~14 GB)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default --small: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.steps = args.steps or (3 if args.small else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.small else 2)
    args.text_tokens = args.text_tokens or (47 if args.small else 96)
    args.optimizer = args.optimizer or ("adamw" if args.small else "paged_adamw_8bit")
    args.quantization = args.quantization or ("none" if args.small else "nf4")
    args.out = args.out or (SMALL_OUT if args.small else DEFAULT_OUT)
    if args.small and args.threads is None:
        args.threads = 1
    if args.answer_tokens >= args.text_tokens:
        p.error("--answer-tokens must be smaller than --text-tokens")
    return args


def make_batch(config, batch_size: int, text_tokens: int, answer_tokens: int, device, dtype, seed: int) -> dict:
    """BOS + image tokens + random text; labels only on the last ``answer_tokens`` (the collator's masking)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_img = llava_image_tokens(config)
    bos = config.text_config.bos_token_id if config.text_config.bos_token_id is not None else 1
    high = min(config.text_config.vocab_size, config.image_token_id)
    rows = []
    for _ in range(batch_size):
        text = torch.randint(3, high, (text_tokens,), generator=g)
        rows.append(torch.cat([torch.tensor([bos]), torch.full((n_img,), config.image_token_id), text]))
    ids = torch.stack(rows)
    labels = torch.full_like(ids, -100)
    labels[:, -answer_tokens:] = ids[:, -answer_tokens:]
    size = config.vision_config.image_size
    pixels = torch.randn(batch_size, 3, size, size, generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device),
            "pixel_values": pixels.to(device, dtype)}


def _sync(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _gb(n: float) -> float:
    return round(n / 1e9, 3)


def build_model(args, config, device):
    """``(model, info)``: the base model as ``vlmstudy.finetune.model.load_base`` prepares it."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from vlmstudy.finetune.model import bnb_config, compute_dtype, enable_checkpointing, prepare_kbit

    info = {}
    start = time.perf_counter()
    if args.quantization == "none":
        dtype = compute_dtype(device)
        with torch.device(device):
            model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
        model = prepare_kbit(model, gradient_checkpointing=False)   # freezes and casts; checkpointing below
        if not args.no_gradient_checkpointing:
            enable_checkpointing(model)
        info["load_s"] = round(time.perf_counter() - start, 1)
        return model, info
    with torch.device(device):
        fp16 = LlavaForConditionalGeneration._from_config(config, dtype=torch.float16)
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="llava-random-") as folder:
        fp16.save_pretrained(folder)
        info["save_fp16_s"] = round(time.perf_counter() - start, 1)
        del fp16
        gc.collect()
        torch.cuda.empty_cache()
        start = time.perf_counter()
        dtype = compute_dtype(device)
        model = LlavaForConditionalGeneration.from_pretrained(
            folder, quantization_config=bnb_config(args.quantization, dtype), dtype=dtype, device_map=device)
    info["load_quantized_s"] = round(time.perf_counter() - start, 1)
    info["compute_dtype"] = str(dtype).removeprefix("torch.")
    info["footprint_after_load_gb"] = _gb(model.get_memory_footprint())
    model = prepare_kbit(model, gradient_checkpointing=not args.no_gradient_checkpointing)
    return model, info


def make_optimizer(name: str, params, lr: float = 2e-4):
    import torch

    if name == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def run(args) -> dict:
    import torch
    import transformers

    from vlmstudy.finetune.model import apply_lora, parameter_counts
    from vlmstudy.zoo.table import real_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.small
    device = "cuda" if cuda else "cpu"
    notes = []
    if not args.small and not cuda:
        raise SystemExit("no CUDA GPU here: QLoRA needs one. Run with --small for the CPU check of the code path.")
    if args.small and (args.quantization != "none" or args.optimizer != "adamw"):
        notes.append("--small keeps its CPU settings: quantization none, optimizer adamw")
        args.quantization, args.optimizer = "none", "adamw"
    torch.manual_seed(args.seed)
    config = small_llava_config() if args.small else real_config("llava")
    config.text_config.use_cache = False
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model, info = build_model(args, config, device)
    model = apply_lora(model, None, r=args.r, alpha=args.alpha, dropout=0.05, target_modules="all-linear")
    counts = parameter_counts(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(args.optimizer, trainable)
    # pixels in fp32: the vision tower casts them to its patch embedding's dtype itself
    batch = make_batch(config, args.batch_size, args.text_tokens, args.answer_tokens, device, torch.float32, args.seed)
    seq = batch["input_ids"].shape[1]
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before_gb = _gb(torch.cuda.memory_allocated())
    model.train()
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        _sync(device)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(round(float(loss.detach()), 4))
    results = {
        "seconds_per_step": round(statistics.median(times), 4), "seconds_per_step_all": [round(t, 4) for t in times],
        "steps_timed": len(times), "warmup_steps": args.warmup, "batch_size": args.batch_size,
        "tokens_per_sequence": seq, "tokens_per_second": round(args.batch_size * seq / statistics.median(times), 1),
        "trainable_parameters": counts["trainable"], "total_parameters": counts["total"],
        "trainable_percent": counts["percent"], "losses": losses, **info,
    }
    if cuda:
        results.update(peak_allocated_gb=_gb(torch.cuda.max_memory_allocated()),
                       peak_reserved_gb=_gb(torch.cuda.max_memory_reserved()), allocated_before_training_gb=before_gb)
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                "peft": __import__("peft").__version__}
    try:
        import bitsandbytes

        versions["bitsandbytes"] = bitsandbytes.__version__
    except Exception as err:  # noqa: BLE001
        versions["bitsandbytes"] = f"unavailable ({type(err).__name__})"
    targets = {}
    if cuda:
        targets["peak_allocated_gb"] = {"target": f"<= {TARGET_PEAK_GB}", "value": results["peak_allocated_gb"],
                                        "pass": results["peak_allocated_gb"] <= TARGET_PEAK_GB}
    else:
        notes.append("CPU run of the code path only: no memory or GPU timing figures")
    return {
        "benchmark": "qlora_gpu", "small": args.small, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": _device_name(device), "versions": versions,
        "config": {"model": "small LLaVA config" if args.small else
                   "llava-hf/llava-1.5-7b-hf architecture (real_config('llava')), random weights",
                   "image_tokens": llava_image_tokens(config), "sequence_length": seq, "batch_size": args.batch_size,
                   "answer_tokens": args.answer_tokens, "quantization": args.quantization, "optimizer": args.optimizer,
                   "gradient_checkpointing": not args.no_gradient_checkpointing, "lora_r": args.r,
                   "lora_alpha": args.alpha, "target_modules": "all-linear (language model)"},
        "choices": CHOICES, "results": results, "targets": targets, "notes": notes,
    }


def _device_name(device) -> str:
    import platform

    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    r = result["results"]
    print(f"{result['device']}: {result['config']['model']}")
    print(f"  {r['trainable_parameters']:,} trainable of {r['total_parameters']:,} parameters "
          f"({r['trainable_percent']:.3f} %); batch {r['batch_size']} x {r['tokens_per_sequence']} tokens")
    print(f"  {r['seconds_per_step']:.3f} s/step (median of {r['steps_timed']}), losses {r['losses']}")
    if "peak_allocated_gb" in r:
        t = result["targets"]["peak_allocated_gb"]
        print(f"  peak allocated {r['peak_allocated_gb']:.2f} GB (reserved {r['peak_reserved_gb']:.2f} GB; "
              f"{r['allocated_before_training_gb']:.2f} GB before the first step) -> "
              f"{'PASS' if t['pass'] else 'FAIL'} (target {t['target']} GB)")
    for note in result["notes"]:
        print("NOTE:", note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
