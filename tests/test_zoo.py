"""The shipped stand-ins load offline through vlmstudy.load and the plain Auto classes, and the
training / evaluation code runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoProcessor

import vlmstudy
from vlmstudy import shapes
from vlmstudy.zoo import CARDS, get_card
from vlmstudy.zoo.common import to_pixels
from vlmstudy.zoo.evaluate import TARGETS, check_targets, evaluate_contrastive
from vlmstudy.zoo.table import build_on_meta, real_config, real_parameter_count, zoo_rows, zoo_table

CONTRASTIVE = ["clip", "siglip"]


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_contrastive_stand_in_loads_offline_both_ways(name):
    card = get_card(name)
    model, processor = vlmstudy.load(card.hub_id)
    assert type(model).__name__ == card.model_class and type(processor).__name__ == card.processor_class
    plain = AutoModel.from_pretrained(card.stand_in_dir)
    plain_proc = AutoProcessor.from_pretrained(card.stand_in_dir)
    assert type(plain).__name__ == card.model_class and type(plain_proc).__name__ == card.processor_class
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
    image = shapes.make_scenes("test", 1)[0].render()
    probs = vlmstudy.contrastive.zero_shot(model, processor, [image], ["red circle", "blue square"], progress=False)
    assert probs.shape == (1, 2) and torch.isfinite(probs).all()


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_stand_in_card_records_training_and_metrics(name):
    card = get_card(name)
    record = json.loads((card.stand_in_dir / "training.json").read_text())
    assert record["command"].startswith(f"vlmstudy zoo train {name}") and record["train_seconds"] > 0
    assert set(TARGETS[name]) <= set(record["metrics"])
    assert (card.stand_in_dir / "README.md").read_text().count("|") > 6


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_pixel_shortcut_matches_the_processor(name):
    """Training feeds pre-rendered pixels; they must be what the processor would produce."""
    _, processor = vlmstudy.load(name)
    images = [s.render() for s in shapes.make_scenes("test", 4)]
    via_processor = processor(images=images, return_tensors="pt")["pixel_values"]
    ip = processor.image_processor
    fast = to_pixels(np.stack([np.asarray(i) for i in images]), ip.image_mean, ip.image_std)
    assert torch.allclose(via_processor, fast, atol=1e-5)


@pytest.mark.trained
@pytest.mark.parametrize("name", CONTRASTIVE)
def test_evaluate_on_a_small_sample_is_well_above_chance(name):
    model, processor = vlmstudy.load(name)
    metrics = evaluate_contrastive(model, processor, n=60, progress=False)
    assert set(metrics) == set(TARGETS[name])
    # chance is 1/48 for zero-shot and ~1/60 for retrieval; a broken model or pipeline is near it
    assert metrics["zero_shot_accuracy"] > 0.6 and metrics["text_to_image_recall@1"] > 0.6


def test_check_targets_reports_misses():
    assert check_targets("clip", {k: 1.0 for k in TARGETS["clip"]}) == []
    misses = check_targets("clip", {"zero_shot_accuracy": 0.5})
    assert len(misses) == len(TARGETS["clip"]) and "zero_shot_accuracy = 0.500 < 0.97" in misses[0]


@pytest.mark.slow  # a fresh interpreter
def test_evaluate_command_exit_code(subprocess_env):
    ok = subprocess.run([sys.executable, "-m", "vlmstudy", "zoo", "evaluate", "clip", "--n", "40", "--no-progress"],
                        env=subprocess_env, capture_output=True, text=True, timeout=300)
    line = json.loads(ok.stdout.strip().splitlines()[-1])
    assert line["model"] == "clip" and line["n"] == 40
    # exit code follows the targets, whichever way this small sample falls
    assert ok.returncode == (0 if line["targets_met"] else 1), ok.stderr


@pytest.mark.slow  # a training loop (issue 23 tiers)
def test_micro_training_run_saves_a_loadable_model(tmp_path):
    from vlmstudy.zoo.train import train_model

    result = train_model("clip", models_dir=tmp_path, progress=False, eval_n=8, quick=True)
    out = tmp_path / "tiny-clip"
    assert (out / "model.safetensors").exists() and (out / "training.json").exists()
    model, processor = vlmstudy.load(str(out))
    assert type(model).__name__ == "CLIPModel"
    assert result["history"][0]["step"] == 0 and len(result["history"]) >= 1


def test_zoo_table_real_sizes_come_from_the_architecture():
    rows = {r["name"]: r for r in zoo_rows()}
    assert abs(rows["clip"]["real_params"] - 151_277_313) / 151_277_313 < 0.001   # openai/clip-vit-base-patch32
    assert abs(rows["llava"]["real_params"] - 7.063e9) / 7.063e9 < 0.005        # anchors.md
    assert rows["blip2"]["real_params"] > 3.5e9
    text = zoo_table()
    for card in CARDS:
        assert card.hub_id in text


def test_meta_device_count_equals_a_real_instantiation_of_a_small_config():
    """The meta-device count is what a real (allocated) model of the same config has."""
    import transformers

    config = real_config("clip")
    config.vision_config.num_hidden_layers = 1
    config.text_config.num_hidden_layers = 1
    with torch.device("meta"):
        on_meta = transformers.CLIPModel(config)
    real = transformers.CLIPModel(config)
    assert sum(p.numel() for p in on_meta.parameters()) == sum(p.numel() for p in real.parameters())
    assert next(build_on_meta("clip").parameters()).device.type == "meta"
    assert real_parameter_count("clip") > 1e8


def test_readme_zoo_table_is_current(repo, load_script):
    module = load_script("tools/update_readme_zoo.py")
    assert module.rendered() == (repo / "README.md").read_text(encoding="utf-8"), \
        "run python tools/update_readme_zoo.py"


def test_zoo_fits_the_size_budget():
    total = sum(f.stat().st_size for card in CARDS for f in card.stand_in_dir.iterdir() if f.is_file())
    assert total < 40e6, f"the zoo is {total / 1e6:.1f} MB; the budget is 40 MB"
