#!/usr/bin/env python
"""LLaVA-1.5-7B on one GPU: memory footprint and bs1 decoding speed at fp16, int8, NF4, NF4 + double quant.

No download: the real architecture (``vlmstudy.zoo.table.real_config("llava")``: CLIP ViT-L/14-336
vision tower, 2-layer projector, LLaMA-2-7B decoder, 7.06 B parameters) is built with **random
weights** directly on the GPU in fp16 (``LlavaForConditionalGeneration._from_config(config,
dtype=torch.float16)`` under ``torch.device("cuda")``). Memory and speed do not depend on what the
weights are; the generated text is meaningless.

Quantized models are made the way a learner makes them from a real checkpoint: the random fp16
model is written once to a temporary folder (``save_pretrained``: safetensors, ~14 GB, default
``$TMPDIR``; ``--tmpdir`` to choose) and re-loaded with ``from_pretrained(folder,
**vlmstudy.quantize.preset(precision, "cuda"))``, i.e. ``quantization_config=BitsAndBytesConfig(...)``,
the only quantization route transformers 5 supports. (Swapping layers in place with
``transformers.integrations.replace_with_bnb_linear`` would skip the disk, but then the weights have
to be re-quantized by hand: ``from_pretrained`` is the documented path and the one timed here.)

Per precision, in one run on the same prompt: ``get_memory_footprint()`` (what the course quotes;
parameters and buffers), :func:`vlmstudy.quantize.footprint` (plus bitsandbytes' block scales),
peak allocated CUDA memory, and ``generate`` at batch size 1: a 608-token prompt (BOS, the 576
image tokens of a 336x336 image, 31 text tokens; random ``pixel_values``), 64 new tokens (greedy,
``min_new_tokens`` so that it never stops early). Reported: tokens/s over the whole ``generate``
(prefill included, as the reference figures), the prefill time (``max_new_tokens=1``) and the
decode-only tokens/s; medians of ``--repeats`` runs after one warm-up.

Stretch (fp16 only): the same generation with a static KV cache,
``generate(..., cache_implementation="static")``; on CUDA transformers then compiles the decoding
step with ``torch.compile`` (mode ``reduce-overhead``: CUDA graphs) by itself. Reported: tokens/s,
the speed-up, the compile (first call) time, and whether the greedy tokens equal the default path's.
bitsandbytes models are not compiled (their quantizers are not marked compileable).

Writes ``benchmarks/results/llava_gpu.json`` (device name, versions). ``--small`` runs the same code
end to end on the CPU with a tiny LLaVA config (seconds; the test suite does this) and writes
``llava_gpu_small.json`` instead, so a CPU run never stands in for the GPU table; bitsandbytes then
runs on its CPU backend (or the row says why it was skipped).

  python benchmarks/bench_llava_gpu.py              # on a CUDA GPU: about 5-10 minutes, ~30 GB of disk
  python benchmarks/bench_llava_gpu.py --small      # CPU, tiny config
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
DEFAULT_OUT = RESULTS / "llava_gpu.json"
SMALL_OUT = RESULTS / "llava_gpu_small.json"
PRECISIONS = ("fp16", "int8", "nf4", "nf4-dq")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny LLaVA config on the CPU (for the tests)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=f"comma-separated subset of {','.join(PRECISIONS)}")
    p.add_argument("--new-tokens", type=int, default=None, help="new tokens per generate (default 64; --small 8)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, median (default 3; --small 1)")
    p.add_argument("--no-static", action="store_true", help="skip the static-cache / torch.compile stretch")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--tmpdir", default=None, help="where the fp16 weights are written for re-loading (needs ~14 GB)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; --small 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON output (default results/llava_gpu.json; "
                                                          "--small: results/llava_gpu_small.json)")
    args = p.parse_args(argv)
    args.precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    bad = [x for x in args.precisions if x not in PRECISIONS]
    if bad or "fp16" not in args.precisions:
        p.error(f"--precisions: choose from {', '.join(PRECISIONS)} (fp16 is the baseline and always runs)")
    args.new_tokens = args.new_tokens or (8 if args.small else 64)
    args.repeats = args.repeats or (1 if args.small else 3)
    args.out = args.out or (SMALL_OUT if args.small else DEFAULT_OUT)
    if args.small and args.threads is None:
        args.threads = 1
    return args


def make_inputs(config, prompt_tokens: int, device, dtype, seed: int) -> dict:
    """``input_ids`` = BOS, the image tokens, random text tokens up to ``prompt_tokens``; random pixels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_img = llava_image_tokens(config)
    n_text = prompt_tokens - 1 - n_img
    if n_text < 0:
        raise ValueError(f"prompt of {prompt_tokens} tokens cannot hold {n_img} image tokens")
    low, high = 3, min(config.text_config.vocab_size, config.image_token_id)
    text = torch.randint(low, high, (n_text,), generator=g)
    bos = config.text_config.bos_token_id if config.text_config.bos_token_id is not None else 1
    ids = torch.cat([torch.tensor([bos]), torch.full((n_img,), config.image_token_id), text]).unsqueeze(0)
    size = config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype)}


def _sync(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_generate(model, inputs, new_tokens: int, device, **extra):
    """``(seconds, generated ids)`` of one greedy generate of exactly ``new_tokens`` tokens."""
    import torch

    pad = model.config.text_config.pad_token_id
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                  pad_token_id=0 if pad is None else pad, **extra)
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs)
    _sync(device)
    return time.perf_counter() - start, out[0, inputs["input_ids"].shape[1]:].tolist()


def measure_speed(model, inputs, new_tokens: int, repeats: int, device, warmup: bool = True, **extra) -> dict:
    if warmup:  # kernels, cuBLAS handles, allocator caches
        timed_generate(model, inputs, min(4, new_tokens), device, **extra)
    runs, ids = [], None
    for _ in range(repeats):
        seconds, ids = timed_generate(model, inputs, new_tokens, device, **extra)
        runs.append(seconds)
    prefill = statistics.median(timed_generate(model, inputs, 1, device, **extra)[0] for _ in range(repeats))
    total = statistics.median(runs)
    decode = total - prefill
    return {"generate_s": total, "generate_runs_s": runs, "tokens_per_s": new_tokens / total, "prefill_s": prefill,
            "decode_tokens_per_s": (new_tokens - 1) / decode if decode > 0 else None, "ids": ids}


def memory_row(model, device) -> dict:
    import torch

    from vlmstudy.quantize import footprint_breakdown

    fb = footprint_breakdown(model)
    row = {"memory_footprint_gb": model.get_memory_footprint() / 1e9, "footprint_gb": fb["total"] / 1e9,
           "quant_state_gb": fb["quant_state"] / 1e9}
    if torch.device(device).type == "cuda":
        row["allocated_gb"] = torch.cuda.memory_allocated() / 1e9
    return row


def _free(device):
    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device):
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.device(device).type == "cuda" else None


def static_cache_run(model, inputs, args, device, baseline: dict) -> dict:
    """Default dynamic cache vs ``cache_implementation="static"`` (auto-compiled on CUDA)."""
    result = {"precision": "fp16", "cache_implementation": "static"}
    try:
        start = time.perf_counter()
        timed_generate(model, inputs, args.new_tokens, device, cache_implementation="static")  # compiles on CUDA
        result["first_call_s"] = time.perf_counter() - start
        # no short warm-up here: another length means another static cache shape, i.e. a recompilation
        speed = measure_speed(model, inputs, args.new_tokens, args.repeats, device, warmup=False,
                              cache_implementation="static")
    except Exception as err:  # report, do not lose the other measurements
        result["skipped"] = f"{type(err).__name__}: {str(err).strip()[:300]}"
        return result
    ids = speed.pop("ids")
    same = ids == baseline["ids"]
    first_diff = None if same else next((i for i, (a, b) in enumerate(zip(ids, baseline["ids"])) if a != b),
                                        min(len(ids), len(baseline["ids"])))
    # generate() stores the torch.compile'd forward on the model when it decides to compile
    compiled = getattr(model, "_compiled_call", None) is not None
    result.update(speed, compiled=compiled, identical_greedy=same, first_difference=first_diff,
                  speedup_vs_default=speed["tokens_per_s"] / baseline["tokens_per_s"])
    return result


def run(args) -> dict:
    import torch
    import transformers
    from transformers import LlavaForConditionalGeneration

    import vlmstudy
    from vlmstudy.benchmarking import machine_info
    from vlmstudy.quantize import preset
    from vlmstudy.zoo.table import real_config

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    dev_type = torch.device(device).type
    notes = []
    if dev_type != "cuda":
        notes.append("no CUDA device: ran on the CPU; timings and memory are not GPU figures. bitsandbytes ran on its "
                      "CPU backend where it could (rows say 'skipped' where it could not).")
    config = small_llava_config() if args.small else real_config("llava")
    n_img = llava_image_tokens(config)
    prompt_tokens = n_img + 32  # 576 + 32 = 608 for the real model
    vlmstudy.seed_everything(args.seed)
    dtype = torch.float16
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    inputs = make_inputs(config, prompt_tokens, device, dtype, args.seed)
    print(f"device: {device} ({_device_name(device)}); LLaVA {'small config' if args.small else '1.5-7B architecture'}, "
          f"{params / 1e9:.3f} B parameters ({params / 1e6:.2f} M; vision {vision / 1e6:.2f} M), random weights built "
          f"in {build_s:.1f} s")
    print(f"prompt: {prompt_tokens} tokens ({n_img} image tokens), {args.new_tokens} new tokens, bs 1, "
          f"median of {args.repeats}")

    rows, static = [], None
    row = {"precision": "fp16", "load_s": build_s, **memory_row(model, device)}
    speed = measure_speed(model, inputs, args.new_tokens, args.repeats, device)
    row.update({k: v for k, v in speed.items() if k != "ids"}, peak_allocated_gb=_peak(device))
    rows.append(row)
    _print_row(row)
    baseline = dict(speed)
    if not args.no_static:
        static = static_cache_run(model, inputs, args, device, baseline)
        _print_static(static)
    quantized = [p for p in args.precisions if p != "fp16"]
    if quantized:
        with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="llava-random-") as folder:
            start = time.perf_counter()
            model.save_pretrained(folder)
            save_s = time.perf_counter() - start
            notes.append(f"quantized models: random fp16 weights saved with save_pretrained ({save_s:.0f} s) and "
                         f"re-loaded with from_pretrained(..., **vlmstudy.quantize.preset(precision, {dev_type!r}))")
            del model
            _free(device)
            for precision in quantized:
                rows.append(_quantized_row(LlavaForConditionalGeneration, folder, precision, preset, inputs, args, device))
                _print_row(rows[-1])
                _free(device)
    else:
        del model
    base = rows[0]
    for r in rows:
        if "skipped" not in r:
            r["ratio_vs_fp16"] = r["memory_footprint_gb"] / base["memory_footprint_gb"]
            r["speed_vs_fp16"] = r["tokens_per_s"] / base["tokens_per_s"]
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__}
    try:
        import bitsandbytes

        versions["bitsandbytes"] = bitsandbytes.__version__
    except Exception as err:  # noqa: BLE001
        versions["bitsandbytes"] = f"unavailable ({type(err).__name__})"
    return {
        "benchmark": "llava_gpu", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": _device_name(device), "device_type": dev_type, "versions": versions,
        "config": {"small": args.small,
                   "model": ("small LLaVA config (vlmstudy.benchmarking.small_llava_config)" if args.small else
                             "llava-hf/llava-1.5-7b-hf architecture (real_config('llava')), random weights"),
                   "parameters": params, "vision_parameters": vision, "image_tokens": n_img,
                   "prompt_tokens": prompt_tokens, "new_tokens": args.new_tokens, "batch_size": 1,
                   "repeats": args.repeats, "seed": args.seed, "dtype": "float16"},
        "machine": machine_info(), "rows": rows, "static_cache": static, "notes": notes,
    }


def _quantized_row(cls, folder, precision, preset, inputs, args, device) -> dict:
    import torch

    from vlmstudy.quantize import _quiet_transformers, _silence_int8_cast_note, bitsandbytes_status

    ok, message = bitsandbytes_status()
    if not ok:
        return {"precision": precision, "skipped": message}
    kwargs = preset(precision, device)
    try:
        _silence_int8_cast_note()
        start = time.perf_counter()
        with _quiet_transformers():
            model = cls.from_pretrained(folder, **kwargs)
        model.eval()
        row = {"precision": precision, "load_s": time.perf_counter() - start, **memory_row(model, device)}
        q_inputs = dict(inputs, pixel_values=inputs["pixel_values"].to(kwargs["dtype"]))
        speed = measure_speed(model, q_inputs, args.new_tokens, args.repeats, device)
        row.update({k: v for k, v in speed.items() if k != "ids"}, peak_allocated_gb=_peak(device),
                   compute_dtype=str(kwargs["dtype"]).removeprefix("torch."))
        del model
        return row
    except (RuntimeError, NotImplementedError, ValueError, ImportError, torch.OutOfMemoryError) as err:
        return {"precision": precision, "skipped": f"{type(err).__name__}: {str(err).strip()[:300]}"}


def _device_name(device) -> str:
    import platform

    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device).index or 0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _print_row(r):
    if "skipped" in r:
        print(f"  {r['precision']:<7} skipped: {r['skipped']}")
        return
    peak = f", peak {r['peak_allocated_gb']:.2f} GB" if r.get("peak_allocated_gb") else ""
    decode = f"{r['decode_tokens_per_s']:.1f}" if r.get("decode_tokens_per_s") else "-"
    print(f"  {r['precision']:<7} get_memory_footprint {r['memory_footprint_gb']:8.4f} GB (with scales "
          f"{r['footprint_gb']:.4f}){peak}; generate {r['tokens_per_s']:7.1f} tok/s, prefill {r['prefill_s'] * 1e3:.0f} ms, "
          f"decode {decode} tok/s")


def _print_static(s):
    if "skipped" in s:
        print(f"  static cache: skipped ({s['skipped']})")
        return
    print(f"  fp16 + static cache{' + torch.compile' if s['compiled'] else ' (not compiled)'}: {s['tokens_per_s']:.1f} tok/s "
          f"({s['speedup_vs_default']:.2f}x the default path; first call {s['first_call_s']:.1f} s); greedy tokens "
          f"{'identical' if s['identical_greedy'] else 'differ from position ' + str(s['first_difference'])}")


def print_table(result: dict) -> None:
    rows = [r for r in result["rows"] if "skipped" not in r]
    print(f"\n{'precision':<9} {'footprint GB':>12} {'x fp16':>7} {'tok/s':>7} {'x fp16':>7}")
    for r in rows:
        print(f"{r['precision']:<9} {r['memory_footprint_gb']:12.4f} {r['ratio_vs_fp16']:7.3f} {r['tokens_per_s']:7.1f} "
              f"{r['speed_vs_fp16']:7.2f}")
    for note in result["notes"]:
        print("NOTE:", note)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
