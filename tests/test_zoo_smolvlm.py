"""The tiny SmolVLM stand-in (issue 24): Idefics3 classes through vlmstudy.load, image splitting and
token counts, generation, a floor read from its model card, and the simulated Hub entry."""

import json
import math
import os
import subprocess
import sys

import vlmstudy
from vlmstudy import shapes
from vlmstudy.generation import chat_prompt, generate_text
from vlmstudy.zoo import get_card
from vlmstudy.zoo.build_smolvlm import IMAGE_SEQ_LEN
from vlmstudy.zoo.evaluate import evaluate_generative


def test_loads_with_the_real_classes_and_splits_images():
    card = get_card("HuggingFaceTB/SmolVLM-256M-Instruct")
    model, processor = vlmstudy.load(card.hub_id, mode="tiny")
    assert type(model).__name__ == card.model_class == "Idefics3ForConditionalGeneration"
    assert type(processor).__name__ == card.processor_class
    image = shapes.make_scenes("test", 1, seed=2)[0].render()
    enc = processor(images=[image], text=[chat_prompt(processor, [("how many shapes are there?", None)])],
                    return_tensors="pt")
    assert enc["pixel_values"].shape[1] == 5  # 2 x 2 tiles + the global image
    n_image = int((enc["input_ids"] == model.config.image_token_id).sum())
    cfg = model.config
    per_tile = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 // cfg.scale_factor ** 2
    assert n_image == 5 * per_tile == 5 * processor.image_seq_len == 5 * IMAGE_SEQ_LEN
    answer = generate_text(model, processor, [image], [chat_prompt(processor, [("how many shapes are there?", None)])],
                           max_new_tokens=8)[0]
    assert answer and "<image>" not in answer and "<end_of_utterance>" not in answer


def test_card_floor_on_a_small_sample():
    card = get_card("smolvlm")
    record = json.loads((card.stand_in_dir / "training.json").read_text())
    assert record["config"]["size_mb"] <= 3.5
    model, processor = vlmstudy.load("smolvlm", mode="tiny")
    n = 24
    got = evaluate_generative("smolvlm", model, processor, n=n, progress=False, conditions={"": ("plain", None)})
    card_value = record["metrics"]["first_turn_accuracy"]
    floor = card_value - 2 * math.sqrt(card_value * (1 - card_value) / n)
    assert got["first_turn_accuracy"] >= floor, (got["first_turn_accuracy"], floor)


def test_hub_sim_entry_loads_with_real_token_counts(tmp_path):
    from vlmstudy.testing.hubsim import build_hub_cache, hub_environment

    build_hub_cache(tmp_path, names=["smolvlm"])
    code = ("import vlmstudy; from vlmstudy import shapes; from vlmstudy.generation import chat_prompt\n"
            "m, p = vlmstudy.load('HuggingFaceTB/SmolVLM-256M-Instruct')\n"
            "enc = p(images=[shapes.make_scenes('test', 1)[0].render()], text=[chat_prompt(p, [('hi?', None)])])\n"
            "print(type(m).__name__, len(enc['pixel_values'][0]), sum(i == p.image_token_id for i in enc['input_ids'][0]))")
    env = hub_environment(tmp_path)
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["Idefics3ForConditionalGeneration", "17", "1088"]  # 4 x 4 tiles + global, 64 each
