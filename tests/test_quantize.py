"""vlmstudy.quantize: presets, footprints, estimates against real instantiations, CPU quantized loads,
the GPU-table fallback, and --small runs of both quantization benchmarks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import vlmstudy
from vlmstudy import precision_benchmark, quantize
from vlmstudy.errors import ConfigError
from vlmstudy.zoo import loading

BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not BNB or not quantize.bitsandbytes_status()[0], reason="bitsandbytes not usable here")


# ------------------------------------------------------------------------------------------ presets


def test_float_presets():
    assert quantize.preset("fp32", "cpu") == {"dtype": torch.float32, "device_map": "cpu"}
    assert quantize.preset("fp16", "cuda") == {"dtype": torch.float16, "device_map": "cuda"}
    assert quantize.preset("bf16", "cpu")["dtype"] is torch.bfloat16
    assert "quantization_config" not in quantize.preset("fp16", "cuda")


def test_int8_preset():
    kwargs = quantize.preset("int8", "cuda")
    config = kwargs["quantization_config"]
    assert config.load_in_8bit and not config.load_in_4bit
    assert kwargs["dtype"] is torch.float16 and kwargs["device_map"] == "cuda"
    assert quantize.preset("int8", "cpu")["dtype"] is torch.float32  # unquantized layers in fp32 on a CPU


@pytest.mark.parametrize("precision, double", [("nf4", False), ("nf4-dq", True)])
@pytest.mark.parametrize("device, compute", [("cuda", torch.float16), ("cpu", torch.float32)])
def test_nf4_presets(precision, double, device, compute):
    kwargs = quantize.preset(precision, device)
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is double
    assert config.bnb_4bit_compute_dtype is compute and kwargs["dtype"] is compute
    assert kwargs["device_map"] == device
    assert "BitsAndBytesConfig(load_in_4bit=True" in quantize.preset_summary(precision, device)


def test_preset_default_device_follows_settings():
    vlmstudy.set_device("cpu")
    assert quantize.preset("nf4")["device_map"] == "cpu"


@pytest.mark.parametrize("alias, name", [("NF4", "nf4"), ("nf4_dq", "nf4-dq"), ("float16", "fp16"), ("bfloat16", "bf16"),
                                         ("8bit", "int8")])
def test_precision_aliases(alias, name):
    assert quantize.check_precision(alias) == name


@pytest.mark.parametrize("bad", ["int3", "fp8", "", "nf5"])
def test_unknown_precision_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="not known; use one of fp32, fp16, bf16, int8, nf4, nf4-dq"):
        quantize.preset(bad, "cpu")
    with pytest.raises(ConfigError):
        quantize.estimate("clip", bad)


def test_load_refuses_an_unknown_quantization():
    with pytest.raises(ConfigError, match="int3"):
        vlmstudy.load("clip", quantization="int3", device="cpu")


# ------------------------------------------------------------------------ estimates vs real models


def _small_llava():
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        text_config=dict(model_type="llama", hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=200, max_position_embeddings=128),
        image_token_id=199, image_seq_length=16, vision_feature_layer=-2, vision_feature_select_strategy="default")
    return LlavaForConditionalGeneration, config


def _small_clip():
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32)
    return CLIPModel, config


@pytest.fixture(scope="module", params=["llava", "clip"])
def saved_small(request, tmp_path_factory):
    cls, config = {"llava": _small_llava, "clip": _small_clip}[request.param]()
    folder = tmp_path_factory.mktemp(f"small-{request.param}")
    torch.manual_seed(0)
    cls(config).save_pretrained(folder)
    return cls, config, folder


@pytest.mark.parametrize("precision", ["fp32", "bf16", pytest.param("int8", marks=needs_bnb),
                                       pytest.param("nf4", marks=needs_bnb), pytest.param("nf4-dq", marks=needs_bnb)])
def test_estimate_matches_a_real_instantiation(saved_small, precision):
    """Build a small config for real, quantize it on the CPU with bitsandbytes, compare with the meta estimate."""
    cls, config, folder = saved_small
    kwargs = quantize.preset(precision, "cpu")
    with quantize._quiet_transformers():
        model = cls.from_pretrained(folder, **kwargs)
    real = quantize.footprint(model)
    estimate = quantize.estimate(config, precision, dtype=kwargs["dtype"])
    assert abs(estimate / real - 1) < 0.01, (precision, estimate, real)
    # and in get_memory_footprint()'s convention (no block scales)
    hf = quantize.estimate(config, precision, dtype=kwargs["dtype"], quant_state=False)
    assert abs(hf / model.get_memory_footprint() - 1) < 0.01
    if precision in quantize.BNB_PRECISIONS:
        assert quantize.footprint_breakdown(model)["quant_state"] > 0
        assert real > model.get_memory_footprint()
    else:
        assert real == model.get_memory_footprint()


def test_estimate_of_llava_7b_matches_the_reference_figures():
    fp16 = quantize.estimate("llava", "fp16")
    assert abs(fp16 / 14.13e9 - 1) < 0.01  # anchors: 14.13 GB get_memory_footprint() at fp16
    assert quantize.estimate_breakdown("llava", "fp16")["params"] == 7_063_427_072
    int8_hf = quantize.estimate("llava", "int8", quant_state=False)
    nf4dq_hf = quantize.estimate("llava", "nf4-dq", quant_state=False)
    assert abs(int8_hf / 7.33e9 - 1) < 0.01 and abs(nf4dq_hf / 3.93e9 - 1) < 0.01
    assert nf4dq_hf / fp16 <= 0.28
    # with the block scales counted: more, and double quant saves ~0.37 bits per quantized weight
    nf4, nf4dq = quantize.estimate("llava", "nf4"), quantize.estimate("llava", "nf4-dq")
    assert nf4dq_hf < nf4dq < nf4 < 0.31 * fp16
    q = quantize.estimate_breakdown("llava", "nf4")["quantized_params"]
    assert abs((nf4 - nf4dq) * 8 / q - (32 / 64 - 8 / 64 - 32 / (64 * 256))) < 0.01


def test_estimate_quantizes_what_transformers_quantizes():
    from vlmstudy.zoo.table import build_on_meta

    model = build_on_meta("llava")
    names = set(quantize.quantized_linears(model))
    assert "lm_head" not in names  # the output embedding stays in 16 bits
    assert "model.language_model.layers.0.self_attn.q_proj" in names
    assert "model.multi_modal_projector.linear_1" in names
    assert any(n.startswith("model.vision_tower.") for n in names)
    assert not any("embed" in n for n in names)
    assert "lm_head" in quantize.skipped_modules(model)


def test_blip2_keeps_its_qformer_in_fp32_at_fp16():
    b = quantize.estimate_breakdown("blip2", "fp16")
    assert b["total"] > 2 * b["params"]  # the Q-Former stays fp32 (_keep_in_fp32_modules)
    assert quantize.estimate_breakdown("blip2", "bf16")["total"] < b["total"]


def test_estimate_table_covers_the_zoo():
    rows = quantize.estimate_table(precisions=("fp16", "nf4"))
    assert [r["model"] for r in rows] == vlmstudy.model_names()
    for r in rows:
        assert r["nf4"] < 0.45 * r["fp16"] and 0.5 < r["quantized_share"] < 1  # CLIP: 0.42 (big embeddings)


# ------------------------------------------------------------------------ CPU loads of the stand-in


@needs_bnb
@pytest.mark.parametrize("precision, layer", [("int8", "Linear8bitLt"), ("nf4", "Linear4bit"), ("nf4-dq", "Linear4bit")])
def test_cpu_quantized_load_of_the_tiny_clip(precision, layer):
    fp32, processor = vlmstudy.load("clip", device="cpu")
    model, _ = vlmstudy.load("clip", quantization=precision, device="cpu")
    assert model.vlmstudy_precision == precision
    assert type(model.vision_model.encoder.layers[0].mlp.fc1).__name__ == layer
    assert quantize.footprint(model) < 0.35 * quantize.footprint(fp32)
    from vlmstudy import shapes

    images = [s.render() for s in shapes.make_scenes("test", 4, seed=3)]
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(**processor(text=["a red circle", "a blue star"], padding=True, return_tensors="pt"))
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    assert img.shape[0] == 4 and torch.isfinite(img).all() and torch.isfinite(txt).all()
    with torch.no_grad():
        ref = fp32.get_image_features(pixel_values=pixels)
    ref = getattr(ref, "pooler_output", ref)
    cos = torch.nn.functional.cosine_similarity(img.float(), ref, dim=-1)
    assert (cos > 0.9).all(), cos  # quantized, not broken


def test_dynamic_int8_shrinks_and_runs():
    fp32, processor = vlmstudy.load("clip", device="cpu")
    size = quantize.footprint(fp32)
    model, _ = vlmstudy.load("clip", quantization="dynamic-int8", device="cpu")
    assert model.vlmstudy_precision == "dynamic-int8"
    assert quantize.footprint(model) < 0.35 * size
    assert model.get_memory_footprint() < quantize.footprint(model)  # HF's count misses the packed int8 weights
    with torch.no_grad():
        out = model.get_image_features(pixel_values=torch.zeros(2, 3, 64, 64))
    assert torch.isfinite(getattr(out, "pooler_output", out)).all()


def test_fallback_to_dynamic_int8_when_bitsandbytes_is_unusable(monkeypatch, capsys):
    monkeypatch.setattr(quantize, "bitsandbytes_status", lambda: (False, "bitsandbytes is not usable here (test)"))
    model, _ = vlmstudy.load("clip", quantization="nf4", device="cpu")
    assert model.vlmstudy_precision.startswith("dynamic-int8 (fallback for nf4")
    assert "not usable here" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="cannot load"):
        loading.load_quantized("clip", "nf4", device="cuda")


def test_footprint_of_an_unquantized_model_is_get_memory_footprint():
    model, _ = vlmstudy.load("clip", device="cpu")
    assert quantize.footprint(model) == model.get_memory_footprint()
    fb = quantize.footprint_breakdown(model)
    assert fb["quant_state"] == 0 and fb["total"] == fb["parameters"] + fb["buffers"]


def test_footprint_counts_tied_weights_once():
    lin = torch.nn.Linear(8, 8, bias=False)
    model = torch.nn.Sequential(lin, torch.nn.Linear(8, 8, bias=False))
    model[1].weight = lin.weight
    assert quantize.footprint(model) == 8 * 8 * 4


@needs_bnb
def test_compare_precisions_rows_and_ratios(monkeypatch):
    original = precision_benchmark.measure_precision

    def fake(name, precision, **kw):
        if precision == "bf16":
            raise precision_benchmark.PrecisionUnavailable("not here")
        return original(name, precision, **kw)

    monkeypatch.setattr(precision_benchmark, "measure_precision", fake)
    rows = precision_benchmark.compare_precisions("clip", ["fp32", "bf16", "nf4"], n=8, batch_size=4, repeats=1, threads=1,
                                       progress=False)
    assert [r["precision"] for r in rows] == ["fp32", "bf16", "nf4"]
    assert rows[1]["error"] == "not here"
    assert rows[0]["size_ratio"] == 1 and rows[2]["size_ratio"] < 0.35
    assert 0 <= rows[2]["accuracy"] <= 1 and rows[2]["latency_ms"] > 0
    text = precision_benchmark.format_rows(rows)
    assert "unavailable: not here" in text and "nf4" in text


def test_bytes_per_parameter_table():
    table = {r["precision"]: r for r in quantize.bytes_per_parameter_table()}
    assert table["nf4"]["bits"] == 4.5 and abs(table["nf4-dq"]["bits"] - 4.127) < 1e-3
    assert set(quantize.PRECISIONS) <= set(table)


# ----------------------------------------------------------------------------- GPU table fallback


def test_gpu_results_fall_back_to_the_labelled_reference(tmp_path):
    ref = precision_benchmark.gpu_results(tmp_path / "absent.json")
    assert ref["source"] == "reference measurements (anchors.md, H100), not measured by this repo"
    assert {r["precision"] for r in ref["rows"]} == {"fp16", "int8", "nf4-dq"}
    assert ref["rows"][0]["memory_footprint_gb"] == 14.13
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"config": {"small": True}, "device_type": "cpu", "rows": []}))
    assert precision_benchmark.gpu_results(small)["source"].startswith("reference")  # a CPU --small run never stands in
    measured = tmp_path / "gpu.json"
    measured.write_text(json.dumps({"config": {"small": False}, "device_type": "cuda", "device": "NVIDIA X",
                                    "date": "2030-01-01", "rows": [{"precision": "fp16"}]}))
    got = precision_benchmark.gpu_results(measured)
    assert got["source"].startswith("measured by benchmarks/bench_llava_gpu.py on NVIDIA X")


def test_quantization_plots():
    import matplotlib

    matplotlib.use("Agg")
    from vlmstudy import plotting

    rows = [{"precision": "fp32", "footprint_mb": 4.0, "latency_ms": 10.0, "accuracy": 0.9, "size_ratio": 1.0,
             "latency_ratio": 1.0},
            {"precision": "nf4", "footprint_mb": 1.0, "latency_ms": 20.0, "accuracy": 0.89, "size_ratio": 0.25,
             "latency_ratio": 2.0},
            {"precision": "int8", "error": "unavailable"}]
    assert len(plotting.precision_bars(rows).axes) == 3
    with pytest.raises(ValueError, match="lack"):
        plotting.precision_bars([{"precision": "fp32"}])
    table = [{"model": "a", "fp16": 1.0, "nf4-dq": 0.3}, {"model": "b", "fp16": 14.0, "nf4-dq": 4.0}]
    assert plotting.estimate_bars(table, precisions=("fp16", "nf4-dq")) is not None
    with pytest.raises(ValueError, match="int8"):
        plotting.estimate_bars(table, precisions=("fp16", "int8"))
    assert len(plotting.gpu_bars(precision_benchmark.gpu_results(Path("/nonexistent.json"))).axes) == 2


# ---------------------------------------------------------------------------------- benchmarks


@pytest.mark.slow
@needs_bnb
def test_bench_quantization_small(tmp_path, restore_threads, load_script, capsys):
    out = tmp_path / "quantization_cpu.json"
    assert load_script("benchmarks/bench_quantization.py").main(["--small", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "quantization_cpu" and data["config"]["small"]
    for key in ("torch", "transformers", "bitsandbytes", "load_average_before", "cpu_count"):
        assert key in data["machine"], key
    assert set(data["results"]) == {"clip", "llava"}
    for rows in data["results"].values():
        assert [r["precision"] for r in rows] == list(quantize.CPU_PRECISIONS)
        by = {r["precision"]: r for r in rows}
        assert by["nf4"]["footprint_bytes"] < by["int8"]["footprint_bytes"] < by["fp32"]["footprint_bytes"]
        assert all(isinstance(r["latency_ms"], float) and "accuracy_delta" in r for r in rows)
    assert "side by side" in capsys.readouterr().out


@pytest.mark.slow
@needs_bnb
def test_gpu_bench_small_runs_on_cpu(tmp_path, restore_threads, load_script, capsys):
    out = tmp_path / "llava_gpu_small.json"
    assert load_script("benchmarks/bench_llava_gpu.py").main(["--small", "--device", "cpu", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "llava_gpu" and data["config"]["small"] and data["device_type"] == "cpu"
    assert any("no CUDA device" in note for note in data["notes"])
    assert {"torch", "transformers", "bitsandbytes"} <= set(data["versions"])
    rows = {r["precision"]: r for r in data["rows"]}
    assert list(rows) == ["fp16", "int8", "nf4", "nf4-dq"]
    for r in rows.values():
        assert "skipped" not in r, r  # bitsandbytes' CPU backend runs all three here
        assert r["tokens_per_s"] > 0 and r["memory_footprint_gb"] > 0 and r["prefill_s"] > 0
    assert rows["nf4"]["memory_footprint_gb"] < rows["int8"]["memory_footprint_gb"]
    static = data["static_cache"]
    assert static["identical_greedy"] is True and static["compiled"] is False  # no auto-compile on a CPU
    # a CPU --small run never stands in for the GPU table
    assert precision_benchmark.gpu_results(out)["source"].startswith("reference")
    assert "tok/s" in capsys.readouterr().out


def test_estimate_by_hub_id_and_offline_error():
    assert quantize.estimate("llava-hf/llava-1.5-7b-hf", "fp16") == quantize.estimate("llava", "fp16")
    with pytest.raises(vlmstudy.ModelUnavailableError, match="not in the course's zoo"):
        quantize.estimate("someone/not-a-zoo-model", "fp16")  # offline in the tests: no config.json to read
