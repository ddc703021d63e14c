"""The benchmark scripts run end to end at their --small sizes and write the JSON they promise.

Timings are not checked here (they depend on the machine and its load); the full-size runs are
``python benchmarks/bench_search.py`` and ``python benchmarks/bench_embedding.py`` (see
benchmarks/README.md). The scripts run in this process (imported from their files) to save the
few seconds a fresh interpreter spends importing torch; the thread settings they change are
restored afterwards.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)


def test_bench_search_small(tmp_path, restore_threads, load_script, capsys):
    out = tmp_path / "search.json"
    assert load_script("benchmarks/bench_search.py").main(["--small", "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "search" and "date" in data
    assert data["config"]["n"] == 20000 and data["config"]["q"] == 20 and data["config"]["dim"] == 512
    for key in ("cpu_count", "torch", "faiss", "numpy", "peak_rss_mb"):
        assert key in data["machine"]
    for key in ("naive_ms_per_query", "naive_argsort_ms_per_query", "torch_ms_per_query", "torch_speedup_vs_naive",
                "faiss_build_s", "faiss_ms_per_query", "faiss_recall_at_10", "torch_naive_agreement"):
        assert isinstance(data["results"][key], (int, float)), key
    assert set(data["targets"]) == {"exact_torch_speedup", "faiss_ms_per_query", "faiss_recall_at_10"}
    assert all(isinstance(c["pass"], bool) for c in data["targets"].values())
    assert data["results"]["torch_naive_agreement"] == 1.0  # both exact: same top-10
    text = capsys.readouterr().out
    assert "PASS" in text or "FAIL" in text


def test_bench_embedding_small(tmp_path, restore_threads, load_script, capsys):
    out = tmp_path / "embedding.json"
    assert load_script("benchmarks/bench_embedding.py").main(["--small", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "embedding" and data["config"]["n"] == 64
    for key in ("loop_images_per_s", "batched_images_per_s", "speedup", "max_abs_diff"):
        assert isinstance(data["results"][key], (int, float)), key
    assert set(data["targets"]) == {"batched_speedup", "embeddings_agree"}
    assert data["targets"]["embeddings_agree"]["pass"]  # same model, same images: same embeddings
    if data["config"]["random_model"]:
        assert "falling back" in capsys.readouterr().out or "random" in data["config"]["model"]
