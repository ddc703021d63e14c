#!/usr/bin/env python
"""The tiny stand-ins at every precision a CPU can run: footprint, latency, accuracy, side by side.

For each model (default: the tiny CLIP and the tiny LLaVA) and each precision in
``vlmstudy.quantize.CPU_PRECISIONS`` (fp32, bf16, bitsandbytes int8 / nf4 / nf4 + double quant,
PyTorch dynamic int8), in one process, one after the other, through
``vlmstudy.precision_benchmark.compare_precisions`` (the same function notebook 10 calls):

* **footprint**: ``vlmstudy.quantize.footprint`` right after loading (parameters + buffers +
  bitsandbytes' block scales; ``get_memory_footprint()`` is stored too);
* **latency**: median of ``--repeats`` timed runs, after a warm-up, of one fixed batch: image
  features of 32 images (CLIP), greedy answers to 8 questions (LLaVA);
* **accuracy**: zero-shot colour x shape accuracy on ``--n`` test scenes
  (``vlmstudy.zoo.evaluate.evaluate_contrastive``) for CLIP, first-turn exact-match answers on
  ``--n`` questions for LLaVA.

Ratios are against fp32 measured in the same run. Writes ``benchmarks/results/quantization_cpu.json``
(with versions, CPU model, thread count and load average before and after).

  python benchmarks/bench_quantization.py                   # n = 200 (CLIP), 100 (LLaVA)
  python benchmarks/bench_quantization.py --small           # n = 24, 1 repeat (the test suite runs this)
  python benchmarks/bench_quantization.py --models clip --precisions fp32,nf4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vlmstudy.benchmarking import busy_warning  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "quantization_cpu.json"


def parse_args(argv=None):
    from vlmstudy.quantize import CPU_PRECISIONS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="clip,llava", help="comma-separated zoo names (default clip,llava)")
    p.add_argument("--precisions", default=",".join(CPU_PRECISIONS), help="comma-separated (default: all a CPU runs)")
    p.add_argument("--n", type=int, default=None, help="evaluation size (default 200 for CLIP, 100 for LLaVA)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per latency, median (default 5; --small 1)")
    p.add_argument("--small", action="store_true", help="n = 24, 1 repeat, small batches: seconds (for the tests)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the target laptop)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    args.repeats = args.repeats or (1 if args.small else 5)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    import vlmstudy
    from vlmstudy.benchmarking import machine_info
    from vlmstudy.precision_benchmark import compare_precisions, format_rows
    from vlmstudy.quantize import check_precision

    precisions = [check_precision(p) for p in args.precisions]
    torch.set_num_threads(args.threads)
    load_before = busy_warning(args.threads, 'the latencies are not representative (sizes and accuracies are)')
    print(f"quantization benchmark (CPU): models {', '.join(args.models)}; precisions {', '.join(precisions)}; "
          f"{args.threads} threads; mode {vlmstudy.get_mode()}")
    results, settings = {}, {}
    start = time.perf_counter()
    for name in args.models:
        generative = name not in ("clip", "siglip")
        n = args.n or (24 if args.small else (100 if generative else 200))
        batch = (4 if args.small else 8) if generative else (8 if args.small else 32)
        settings[name] = {"n": n, "batch_size": batch}
        print(f"\n{name}: n = {n}, latency batch = {batch}")
        results[name] = compare_precisions(name, precisions, n=n, batch_size=batch, repeats=args.repeats,
                                           seed=args.seed, progress=True)
    elapsed = time.perf_counter() - start
    print("\nside by side (ratios vs fp32 in the same run):")
    print(format_rows([r for rows in results.values() for r in rows]))
    machine = machine_info()
    machine["load_average_before"] = load_before
    machine["load_average_after"] = list(os.getloadavg())
    data = {
        "benchmark": "quantization_cpu", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": {"models": args.models, "precisions": precisions, "repeats": args.repeats, "threads": args.threads,
                   "small": args.small, "seed": args.seed, "per_model": settings, "mode": vlmstudy.get_mode()},
        "machine": machine, "elapsed_s": elapsed, "results": results,
        "stand_ins": {name: _stand_in_note(name) for name in args.models},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


def _stand_in_note(name: str) -> dict:
    """Which stand-in was measured (its training record, when there is one)."""
    from vlmstudy.zoo.registry import get_card
    from vlmstudy.zoo.table import stand_in_metrics

    card = get_card(name)
    path = card.stand_in_dir / "model.safetensors"
    return {"dir": str(card.stand_in_dir.relative_to(REPO)) if card.stand_in_dir.is_relative_to(REPO) else str(card.stand_in_dir),
            "weights_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime)) if path.exists() else None,
            "recorded_metrics": stand_in_metrics(card)}


if __name__ == "__main__":
    sys.exit(main())
