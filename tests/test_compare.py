"""vlmstudy.compare: the model-comparison table and the task -> model selection chart (notebook 10)."""

import pytest

from vlmstudy import compare, plotting
from vlmstudy.errors import UnknownModelError


def _row(name, tasks, nf4, fp16):
    return {"name": name, "tasks": tasks, "real_nf4_gb": nf4, "real_fp16_gb": fp16}


def test_comparison_measures_stand_ins_and_estimates_real_checkpoints():
    rows = compare.model_comparison(["clip", "llava"], repeats=1)
    assert [r["name"] for r in rows] == ["clip", "llava"]
    for r in rows:
        assert r["latency_ms"] > 0 and 0 < r["mb"] < 10 and r["params"] < 5e6
        assert 0 <= r["accuracy"] <= 1 and r["metric"] and r["target"] > 0.5
        assert r["real_nf4_gb"] < r["real_int8_gb"] < r["real_fp16_gb"]
    # LLaVA-1.5-7B: 7.06 B parameters, 14.13 GB at fp16 (what get_memory_footprint reports on a GPU)
    assert abs(rows[1]["real_params"] / 7.06e9 - 1) < 0.01 and abs(rows[1]["real_fp16_gb"] / 14.13 - 1) < 0.01
    text = compare.format_comparison(rows)
    assert len(text.splitlines()) == 4 and "first_turn_accuracy" in text


def test_comparison_without_timing_and_unknown_names():
    rows = compare.model_comparison(["siglip"], measure_latency=False, precisions=("fp16", "nf4"))
    assert rows[0]["latency_ms"] is None and "real_int8_gb" not in rows[0]
    assert "-" in compare.format_comparison(rows).splitlines()[2]
    with pytest.raises(UnknownModelError):
        compare.model_comparison(["gpt-5-vision"], measure_latency=False)


def test_smallest_for_each_task_picks_the_least_memory():
    rows = [_row("big", ("chat", "captioning"), 4.0, 14.0), _row("small", ("captioning",), 0.2, 0.5),
            _row("mid", ("chat",), 2.0, 7.0)]
    assert compare.smallest_for_each_task(rows) == {"chat": "mid", "captioning": "small"}


def test_task_model_chart_draws_every_task_and_model():
    rows = [_row("big", ("chat", "captioning"), 4.0, 14.0), _row("small", ("captioning",), 0.2, 0.5)]
    fig = plotting.task_model_chart(rows)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["captioning", "chat"]
    assert ax.get_xticklabels()[0].get_text().startswith("small")
    with pytest.raises(ValueError, match="real_fp16_gb"):
        plotting.task_model_chart([{"name": "x", "tasks": ("chat",)}])
