#!/usr/bin/env python
"""Image search at scale: naive numpy argsort vs exact torch top-k vs approximate faiss, one run.

Database: N x 512 unit float32 vectors (default N = 1,000,000), Q queries (default 100), seeded.
The data are *clustered* (``vlmstudy.retrieval.clustered_vectors``: N/500 Gaussian clusters in
families, each with its own spread), because real image embeddings are, and on structureless
uniform random vectors approximate search is both harder and meaningless (every vector is about
equally far away). ``--data uniform`` runs that case for comparison.

Measured side by side, on the same vectors and queries, with 2 threads (the course's target
laptop) unless ``--threads`` says otherwise:

  (a) naive:  for each query, ``scores = vectors @ q`` (numpy) then ``np.argsort(-scores)[:k]``
  (b) exact:  ``ImageIndex.search(queries, exact=True)``: one chunked matmul + ``torch.topk`` for
              all Q queries (also reported: one query at a time, and the ranking step alone)
  (c) faiss:  ``ImageIndex(backend="faiss")`` (IVF-Flat, inner product): build time, ms/query one
              query at a time (the target) and batched, recall@10 against (b)

Targets: (b) >= 10x faster than (a) per query; (c) <= 20 ms/query with recall@10 >= 0.95.
Writes ``benchmarks/results/search.json`` (or ``--out``).

  python benchmarks/bench_search.py              # the full run: N=1M, Q=100 (~4-5 GB RAM, minutes)
  python benchmarks/bench_search.py --n 100000   # smaller
  python benchmarks/bench_search.py --small      # N=20000, Q=20: seconds (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from vlmstudy.benchmarking import busy_warning

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "search.json"
TARGET_SPEEDUP = 10.0
TARGET_FAISS_MS = 20.0
TARGET_RECALL = 0.95


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="database size (default 1,000,000)")
    p.add_argument("--q", type=int, default=100, help="number of queries (default 100)")
    p.add_argument("--dim", type=int, default=512, help="vector length (default 512, CLIP ViT-B/32)")
    p.add_argument("--k", type=int, default=10, help="hits per query (default 10; recall is recall@k)")
    p.add_argument("--small", action="store_true", help="N=20000, Q=20: a few seconds (for the tests)")
    p.add_argument("--data", choices=("clustered", "uniform"), default="clustered",
                   help="clustered (default, like real embeddings) or uniform random vectors")
    p.add_argument("--threads", type=int, default=2, help="torch / faiss / BLAS threads (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the batched searches (best kept)")
    p.add_argument("--nlist", type=int, default=None, help="faiss cells (default ~sqrt(N))")
    p.add_argument("--nprobe", type=int, default=None, help="faiss cells scanned per query (default max(8, nlist/16))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO)})")
    args = p.parse_args(argv)
    if args.small:
        args.n, args.q = 20_000, 20
    if args.n < args.k or args.q < 1 or args.k < 1:
        p.error("need --n >= --k >= 1 and --q >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # BLAS reads these at import: set them before numpy / torch load
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO))
    import faiss
    import numpy as np
    import torch

    from vlmstudy.retrieval import ImageIndex, clustered_vectors

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    n, q_count, k, dim = args.n, args.q, args.k, args.dim
    load_before = busy_warning(args.threads)
    print(f"search benchmark: N={n:,} x {dim}, Q={q_count}, k={k}, {args.data} data, {args.threads} threads")

    t0 = time.perf_counter()
    if args.data == "clustered":
        db, queries = clustered_vectors(n, dim, n_queries=q_count, seed=args.seed)
    else:
        rng = np.random.default_rng(args.seed)
        db = rng.standard_normal((n, dim), dtype=np.float32)
        queries = rng.standard_normal((q_count, dim), dtype=np.float32)
        db /= np.linalg.norm(db, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = ImageIndex(dim=dim, backend="faiss", nlist=args.nlist, nprobe=args.nprobe).add(db)
    del db  # the index holds its own (normalised) copy; use that from here on
    vectors = index.vectors
    vectors_np = vectors.numpy()
    add_s = time.perf_counter() - t0
    print(f"  data generated in {gen_s:.1f} s, added to the index in {add_s:.1f} s")

    # (a) naive: score everything with numpy, argsort everything, per query
    score_s = sort_s = 0.0
    naive_top = []
    for q in queries:
        t0 = time.perf_counter()
        scores = vectors_np @ q
        t1 = time.perf_counter()
        order = np.argsort(-scores)[:k]
        t2 = time.perf_counter()
        score_s += t1 - t0
        sort_s += t2 - t1
        naive_top.append(order)
    naive_ms = 1000 * (score_s + sort_s) / q_count
    print(f"  (a) naive numpy argsort: {naive_ms:.2f} ms/query")

    # (b) exact torch: all queries at once, chunked matmul + topk
    qt = torch.from_numpy(queries)
    index.search(qt[: min(4, q_count)], k, exact=True)  # warm-up
    exact_times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        exact = index.search(qt, k, exact=True)
        exact_times.append(time.perf_counter() - t0)
    torch_ms = 1000 * min(exact_times) / q_count
    single_n = min(q_count, 20)
    t0 = time.perf_counter()
    for i in range(single_n):
        index.search(qt[i], k, exact=True)
    torch_single_ms = 1000 * (time.perf_counter() - t0) / single_n
    agree = float(np.mean([set(a.tolist()) == set(b) for a, b in zip(naive_top, exact.positions.tolist())]))
    print(f"  (b) exact torch top-k:   {torch_ms:.2f} ms/query batched, {torch_single_ms:.2f} ms/query one at a time")

    # the ranking step alone, on one precomputed score vector
    rank_n = min(q_count, 10)
    score_rows = [vectors_np @ q for q in queries[:rank_n]]
    t0 = time.perf_counter()
    for s in score_rows:
        np.argsort(-s)[:k]
    argsort_only_ms = 1000 * (time.perf_counter() - t0) / rank_n
    score_rows_t = [torch.from_numpy(s) for s in score_rows]
    t0 = time.perf_counter()
    for s in score_rows_t:
        torch.topk(s, k)
    topk_only_ms = 1000 * (time.perf_counter() - t0) / rank_n
    del score_rows, score_rows_t

    # (c) faiss IVF-Flat
    t0 = time.perf_counter()
    index.build()
    build_s = time.perf_counter() - t0
    index.search(qt[: min(4, q_count)], k)  # warm-up
    faiss_times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        approx = index.search(qt, k)
        faiss_times.append(time.perf_counter() - t0)
    faiss_batched_ms = 1000 * min(faiss_times) / q_count
    t0 = time.perf_counter()
    for i in range(q_count):
        index.search(qt[i], k)
    faiss_ms = 1000 * (time.perf_counter() - t0) / q_count
    recall = float(np.mean([len(set(a) & set(e)) / k
                            for a, e in zip(approx.positions.tolist(), exact.positions.tolist())]))
    print(f"  (c) faiss IVF-Flat:      {faiss_ms:.2f} ms/query one at a time, {faiss_batched_ms:.2f} batched, "
          f"recall@{k} {recall:.4f}, build {build_s:.1f} s")

    speedup = naive_ms / torch_ms
    checks = {
        "exact_torch_speedup": {"value": round(speedup, 2), "target": f">= {TARGET_SPEEDUP:g}x",
                                "pass": speedup >= TARGET_SPEEDUP},
        "faiss_ms_per_query": {"value": round(faiss_ms, 3), "target": f"<= {TARGET_FAISS_MS:g} ms",
                               "pass": faiss_ms <= TARGET_FAISS_MS},
        f"faiss_recall_at_{k}": {"value": round(recall, 4), "target": f">= {TARGET_RECALL}",
                                 "pass": recall >= TARGET_RECALL},
    }
    rows = [
        ("(a) naive: numpy matvec + argsort, per query", f"{naive_ms:9.2f}", "1.0x", "exact"),
        ("    of which scoring (vectors @ q)", f"{1000 * score_s / q_count:9.2f}", "", ""),
        ("    of which np.argsort", f"{1000 * sort_s / q_count:9.2f}", "", ""),
        (f"(b) exact torch: matmul + topk, {q_count} queries batched", f"{torch_ms:9.2f}",
         f"{speedup:.1f}x", "exact"),
        ("    one query at a time", f"{torch_single_ms:9.2f}", f"{naive_ms / torch_single_ms:.1f}x", "exact"),
        (f"(c) faiss IVF-Flat (nlist={index._faiss.nlist}, nprobe={index.nprobe}), one at a time",
         f"{faiss_ms:9.2f}", f"{naive_ms / faiss_ms:.1f}x", f"recall@{k} {recall:.3f}"),
        (f"    {q_count} queries batched", f"{faiss_batched_ms:9.2f}", f"{naive_ms / faiss_batched_ms:.1f}x", ""),
    ]
    print()
    print(f"{'method':62} {'ms/query':>9}  {'speed-up':>8}  result")
    for name, ms, ratio, res in rows:
        print(f"{name:62} {ms}  {ratio:>8}  {res}")
    print(f"\nranking step alone on one score vector of {n:,}: np.argsort {argsort_only_ms:.2f} ms, "
          f"torch.topk {topk_only_ms:.2f} ms ({argsort_only_ms / topk_only_ms:.1f}x)")
    print(f"faiss build (k-means training + adding {n:,} vectors): {build_s:.1f} s")
    print(f"exact torch and naive top-{k} sets agree on {agree:.0%} of queries")
    print()
    for name, c in checks.items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name} = {c['value']} (target {c['target']})")

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "search",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"n": n, "q": q_count, "dim": dim, "k": k, "data": args.data, "seed": args.seed,
                   "threads": args.threads, "repeats": args.repeats, "small": args.small},
        "machine": {
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "faiss": faiss.__version__, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": round(peak_mb),
        },
        "results": {
            "data_gen_s": round(gen_s, 3), "index_add_s": round(add_s, 3),
            "naive_ms_per_query": round(naive_ms, 3),
            "naive_score_ms_per_query": round(1000 * score_s / q_count, 3),
            "naive_argsort_ms_per_query": round(1000 * sort_s / q_count, 3),
            "torch_ms_per_query": round(torch_ms, 3),
            "torch_single_query_ms": round(torch_single_ms, 3),
            "torch_speedup_vs_naive": round(speedup, 3),
            "ranking_only_argsort_ms": round(argsort_only_ms, 3),
            "ranking_only_topk_ms": round(topk_only_ms, 3),
            "torch_naive_agreement": agree,
            "faiss_build_s": round(build_s, 3),
            "faiss_ms_per_query": round(faiss_ms, 3),
            "faiss_batched_ms_per_query": round(faiss_batched_ms, 3),
            f"faiss_recall_at_{k}": round(recall, 4),
            "faiss_nlist": int(index._faiss.nlist), "faiss_nprobe": int(index.nprobe),
        },
        "targets": checks,
        "all_pass": all(c["pass"] for c in checks.values()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"\nwrote {out} (peak memory {peak_mb:,.0f} MB)")
    return 1 if args.strict and not result["all_pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
