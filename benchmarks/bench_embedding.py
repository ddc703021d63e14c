#!/usr/bin/env python
"""Embedding images: batched (``vlmstudy.contrastive.embed_images``) vs one image at a time.

The tutorials' first version embeds an image like this, in a Python loop::

    pixels = processor(images=img, return_tensors="pt")["pixel_values"]
    emb = model.get_image_features(pixel_values=pixels)

``embed_images`` instead preprocesses and runs the model on batches (default 64 images per
forward pass). Both run here on the same images, the same model, in the same process: 2,000
ShapesWorld test scenes (``shapes.make_scenes("test", 2000)``, rendered once beforehand and not
timed), the course's tiny CLIP (``vlmstudy.load("clip")``). When that stand-in is not on disk yet
the script says so and uses a randomly initialised model of the same architecture and size
(``zoo.train_contrastive.build_model(ContrastiveConfig())``): the cost per image is the same,
only the embeddings mean nothing. Both paths run under ``torch.no_grad()``.

Reports images/s for both, the speed-up (target >= 5x), how much of each path is the image
processor, and the largest difference between the two sets of unit embeddings (they must agree).
Writes ``benchmarks/results/embedding.json`` (or ``--out``).

  python benchmarks/bench_embedding.py            # the full run: 2,000 images
  python benchmarks/bench_embedding.py --small    # 64 images (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from vlmstudy.benchmarking import busy_warning

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "embedding.json"
TARGET_SPEEDUP = 5.0
MAX_ABS_DIFF = 1e-4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--small", action="store_true", help="64 images: seconds (for the tests)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass in the batched path")
    p.add_argument("--model", default="clip", help="model to load (default: clip, the tiny stand-in in tiny mode)")
    p.add_argument("--random-model", action="store_true",
                   help="use a randomly initialised tiny CLIP even when the trained one is present")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the target laptop)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO)})")
    args = p.parse_args(argv)
    if args.small:
        args.n = 64
    if args.n < 1 or args.batch_size < 1:
        p.error("--n and --batch-size must be positive")
    return args


def load_model(args):
    """``(model, processor, description)``: the stand-in, or the random fallback."""
    from vlmstudy.errors import ModelUnavailableError

    if not args.random_model:
        import vlmstudy

        try:
            model, processor = vlmstudy.load(args.model, device="cpu", dtype="float32")
            return model, processor, f"{args.model!r} via vlmstudy.load (mode {vlmstudy.get_mode()})"
        except ModelUnavailableError as err:
            print(f"NOTE: {err}\nNOTE: falling back to a randomly initialised tiny CLIP of the same size; "
                  f"timings are comparable, embeddings are meaningless.")
    from vlmstudy.zoo.train_contrastive import ContrastiveConfig, build_model, build_processor

    cfg = ContrastiveConfig()
    processor = build_processor(cfg)
    import torch

    torch.manual_seed(0)
    model = build_model(cfg, len(processor.tokenizer)).eval()
    return model, processor, "random tiny CLIP (ContrastiveConfig defaults; trained stand-in absent or --random-model)"


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers

    from vlmstudy import shapes
    from vlmstudy.contrastive import _features, embed_images

    torch.set_num_threads(args.threads)
    model, processor, source = load_model(args)
    params = sum(p.numel() for p in model.parameters())
    print(f"embedding benchmark: {args.n} ShapesWorld images, model: {source} ({params / 1e6:.2f}M parameters), "
          f"{args.threads} threads, batch size {args.batch_size}")

    load_before = busy_warning(args.threads)
    t0 = time.perf_counter()
    images = [s.render() for s in shapes.make_scenes("test", args.n)]
    render_s = time.perf_counter() - t0
    print(f"  rendered {len(images)} images of {images[0].size[0]} x {images[0].size[1]} px in {render_s:.1f} s (not timed)")

    # warm-up both paths (first calls allocate, pick kernels)
    embed_images(model, processor, images[:8], batch_size=args.batch_size, progress=False)
    with torch.no_grad():
        model.get_image_features(pixel_values=processor(images=images[0], return_tensors="pt")["pixel_values"])

    # the per-image loop, as the tutorials first write it
    loop_pre_s = 0.0
    loop = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for img in images:
            t1 = time.perf_counter()
            pixels = processor(images=img, return_tensors="pt")["pixel_values"]
            loop_pre_s += time.perf_counter() - t1
            loop.append(_features(model.get_image_features(pixel_values=pixels)))
    loop_s = time.perf_counter() - t0
    loop_emb = F.normalize(torch.cat(loop).float(), dim=-1)

    # batched
    t0 = time.perf_counter()
    batched_emb = embed_images(model, processor, images, batch_size=args.batch_size, progress=False)
    batched_s = time.perf_counter() - t0
    # its preprocessing share, measured separately
    t0 = time.perf_counter()
    for start in range(0, len(images), args.batch_size):
        processor(images=images[start:start + args.batch_size], return_tensors="pt")
    batched_pre_s = time.perf_counter() - t0

    diff = float((loop_emb - batched_emb).abs().max())
    cos_min = float((loop_emb * batched_emb).sum(-1).min())
    loop_ips, batched_ips = args.n / loop_s, args.n / batched_s
    speedup = batched_ips / loop_ips
    checks = {
        "batched_speedup": {"value": round(speedup, 2), "target": f">= {TARGET_SPEEDUP:g}x",
                            "pass": speedup >= TARGET_SPEEDUP},
        "embeddings_agree": {"value": diff, "target": f"max abs diff <= {MAX_ABS_DIFF:g}", "pass": diff <= MAX_ABS_DIFF},
    }
    print()
    print(f"{'path':44} {'images/s':>9} {'ms/image':>9} {'of which processor':>19}")
    print(f"{'per-image loop (processor + forward each)':44} {loop_ips:9.1f} {1000 / loop_ips:9.2f} "
          f"{100 * loop_pre_s / loop_s:18.0f}%")
    print(f"{f'batched embed_images (batch {args.batch_size})':44} {batched_ips:9.1f} {1000 / batched_ips:9.2f} "
          f"{100 * min(1.0, batched_pre_s / batched_s):18.0f}%")
    print(f"\nspeed-up batched / loop: {speedup:.1f}x")
    print(f"embeddings: max abs difference {diff:.2e}, lowest cosine between the two {cos_min:.6f}")
    print()
    for name, c in checks.items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name} = {c['value']:.3g} (target {c['target']})")

    result = {
        "benchmark": "embedding",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"n": args.n, "batch_size": args.batch_size, "threads": args.threads, "small": args.small,
                   "image_size": list(images[0].size), "model": source, "model_parameters": params,
                   "random_model": source.startswith("random")},
        "machine": {
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
        },
        "results": {
            "loop_images_per_s": round(loop_ips, 2), "batched_images_per_s": round(batched_ips, 2),
            "speedup": round(speedup, 3), "loop_s": round(loop_s, 3), "batched_s": round(batched_s, 3),
            "loop_processor_s": round(loop_pre_s, 3), "batched_processor_s": round(batched_pre_s, 3),
            "max_abs_diff": diff, "min_cosine": cos_min, "render_s": round(render_s, 3),
        },
        "targets": checks,
        "all_pass": all(c["pass"] for c in checks.values()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
