#!/usr/bin/env python
"""Data quality for instruction tuning: the same LoRA run on clean, 20 %-mislabelled and heavily
duplicated data, held-out accuracy side by side (notebook 12's "Data quality" section).

    flock /tmp/train.lock python benchmarks/bench_data_quality.py     # 3 fine-tunes of 80 steps x 16
    python benchmarks/bench_data_quality.py --small                    # 3 x 2 steps: seconds (mechanics)

The task is notebook 11's: teach the tiny LLaVA stand-in the colour "brown" (``concept``:
120 scenes with a brown object and 120 ordinary ones, 3 questions each: 720 records). Three data
files, made from the clean one by ``vlmstudy.finetune.data_quality`` with one seed:

* **clean**;
* **mislabelled**: 20 % of the answers replaced by a wrong answer of the same kind
  (``mislabel``: a wrong colour for a colour question, "no" for "yes" ...);
* **duplicated**: as many records, made of 10 % of them (72) repeated, half of the repeats
  near-duplicates with the question re-worded (``duplicate``).

Each is checked (``check_dataset``, against the scenes) and trained with the same config
(``concept_config``: r 8, alpha 16, brown's rows trainable, lr 3e-3, same seed, same steps), then
scored by exact match on held-out test scenes: questions whose answer is brown, and ordinary
questions, per question kind. The untrained stand-in is scored too ("before"). Writes
``benchmarks/results/data_quality.json`` (``--out``) with the numbers, the checker's counts, the
settings, the seconds and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

COMMAND = "flock /tmp/train.lock python benchmarks/bench_data_quality.py"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_data_quality.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=80, help="optimizer steps of every run (default 80)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-concept", type=int, default=120, help="training scenes with a brown object")
    p.add_argument("--n-ordinary", type=int, default=120, help="ordinary training scenes")
    p.add_argument("--share", type=float, default=0.2, help="share of answers mislabelled (default 0.2)")
    p.add_argument("--unique", type=float, default=0.1, help="share of records kept unique in the duplicated set")
    p.add_argument("--near", type=float, default=0.5, help="share of the repeats that are re-worded")
    p.add_argument("--n-test", type=int, default=100, help="held-out brown questions and ordinary questions, each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: runs repeat bit for bit)")
    p.add_argument("--small", action="store_true", help="2 steps on 20 + 20 scenes, 10 test questions: mechanics only")
    p.add_argument("--out", default=None, help="output JSON (default benchmarks/results/data_quality.json; "
                                               "--small: not written unless given)")
    args = p.parse_args(argv)
    if args.small:
        args.steps, args.n_concept, args.n_ordinary, args.n_test, args.batch_size = 2, 20, 20, 10, 4

    import torch

    from vlmstudy import benchmarking
    from vlmstudy.finetune import concept
    from vlmstudy.finetune import data_quality as dq
    from vlmstudy.settings import seed_everything

    torch.set_num_threads(args.threads)
    load = benchmarking.busy_warning(args.threads, "the seconds are not representative (accuracies are)")
    seed_everything(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-data-quality-") as tmp:
        work = Path(tmp)
        clean = concept.concept_dataset(work / "data", n_concept=args.n_concept, n_ordinary=args.n_ordinary,
                                        per_scene=3, seed=args.seed)
        variants = dq.write_variants(clean, args.share, args.unique, args.near, seed=args.seed)
        scenes = dq.concept_scenes_by_image(args.n_concept, args.n_ordinary, args.seed)
        checks = {}
        for name, path in variants.paths.items():
            report = dq.check_dataset(path, scenes=scenes)
            checks[name] = {"records": report.n_records, "unique": report.n_unique, "checked": report.n_checked,
                            **report.counts}
            print(f"{name:12} {report.summary().splitlines()[0]}; issues {report.counts}")
        new_test, old_test = concept.concept_test(n=args.n_test, seed=7, n_ordinary=args.n_test)
        config = dq.concept_config(clean, work / "runs" / "clean", steps=args.steps, batch_size=args.batch_size,
                                   seed=args.seed)
        results = dq.compare_variants(variants.paths, config, {"brown": new_test, "ordinary": old_test},
                                      work / "runs", baseline=True)
    seconds = time.perf_counter() - start
    print(f"\n{'':12} {'brown':>7} {'ordinary':>9} {'train loss':>11} {'train s':>8}")
    for name, row in results.items():
        loss = f"{row['train_loss']:.3f}" if row.get("train_loss") is not None else "-"
        print(f"{name:12} {row['accuracy']['brown']:7.3f} {row['accuracy']['ordinary']:9.3f} {loss:>11} "
              f"{row.get('train_seconds', 0):8.1f}")
    print(f"{seconds:.0f} s in all")
    config.pop("output_dir")
    config["data"].pop("path")
    out = {
        "benchmark": "data_quality", "command": COMMAND + (" --small" if args.small else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": round(seconds, 1),
        "settings": {k: getattr(args, k) for k in ("steps", "batch_size", "n_concept", "n_ordinary", "share",
                                                  "unique", "near", "n_test", "seed", "threads", "small")},
        "records": len(variants.mislabelled.records), "mislabelled_answers": len(variants.mislabelled.changed),
        "unique_in_duplicated": variants.duplicated.n_unique, "near_duplicates": len(variants.duplicated.near),
        "checker": checks, "finetune_config": {k: v for k, v in config.items() if k != "model"},
        "model": "tiny LLaVA stand-in (assets/models/tiny-llava)", "results": results,
        "standard_error_at_0.5": round((0.25 / args.n_test) ** 0.5, 3),
        "machine": {**benchmarking.machine_info(), "load_before": load},
    }
    path = Path(args.out) if args.out else (None if args.small else
                                            Path(__file__).resolve().parent / "results" / "data_quality.json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
