"""The tiny Qwen2-VL stand-in (issue 24): loads as the real checkpoint does, keeps dynamic
resolution and M-RoPE, answers questions, meets the floors its model card sets, and the
simulated Hub's Qwen2-VL loads through the same code."""

import json
import subprocess
import sys

import pytest
import torch

import vlmstudy
from vlmstudy import evaluation, shapes
from vlmstudy.generation import chat_prompt, family, generate_text
from vlmstudy.zoo import get_card
from vlmstudy.zoo.evaluate import HEADLINE, TARGETS, evaluate_generative

HUB_ID = "Qwen/Qwen2-VL-2B-Instruct"


@pytest.fixture(scope="module")
def loaded():
    return vlmstudy.load(HUB_ID)


@pytest.fixture(scope="module")
def scene():
    return shapes.make_scenes("test", 1, seed=3, n_objects=2)[0]


def test_loads_through_the_zoo_with_the_real_classes(loaded):
    model, processor = loaded
    card = get_card(HUB_ID)
    assert card.name == "qwen2-vl" and card.stand_in == "tiny-qwen2-vl"
    assert type(model).__name__ == card.model_class == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == card.processor_class == "Qwen2VLProcessor"
    assert family(model) == "qwen2-vl"
    assert processor.image_token == "<|image_pad|>" and processor.image_token_id == model.config.image_token_id


@pytest.mark.parametrize("size", [48, 64, 96, 128])
def test_image_tokens_grow_with_the_image_as_the_processor_says(loaded, scene, size):
    model, processor = loaded
    ip = processor.image_processor
    enc = processor(images=[scene.render(size)], text=[chat_prompt(processor, [("what is this?", None)])],
                    return_tensors="pt")
    t, h, w = enc["image_grid_thw"][0].tolist()
    factor = ip.patch_size * ip.merge_size
    assert (t, h * ip.patch_size, w * ip.patch_size) == (1, size // factor * factor, size // factor * factor)
    n_tokens = int((enc["input_ids"] == processor.image_token_id).sum())
    assert n_tokens == t * h * w // ip.merge_size ** 2 == (size // factor) ** 2
    assert enc["pixel_values"].shape == (t * h * w, 3 * ip.temporal_patch_size * ip.patch_size ** 2)


def test_different_sizes_give_different_token_counts(loaded, scene):
    _, processor = loaded
    counts = [int((processor(images=[scene.render(s)], text=["<|vision_start|><|image_pad|><|vision_end|>"],
                             return_tensors="pt")["input_ids"] == processor.image_token_id).sum()) for s in (64, 128)]
    assert counts == [16, 64]


def test_mrope_position_ids_have_three_rows(loaded, scene):
    model, processor = loaded
    enc = processor(images=[scene.render(64)], text=[chat_prompt(processor, [("what is this?", None)])],
                    return_tensors="pt")
    positions, _ = model.model.get_rope_index(enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"],
                                              attention_mask=enc["attention_mask"])
    assert positions.shape == (3, 1, enc["input_ids"].shape[1])
    image = enc["input_ids"][0] == processor.image_token_id
    text_rows = positions[:, 0, ~image]
    assert torch.equal(text_rows[0], text_rows[1]) and torch.equal(text_rows[1], text_rows[2])  # text: 1D
    h, w = positions[1, 0, image], positions[2, 0, image]
    assert len(set(h.tolist())) == 4 and len(set(w.tolist())) == 4  # a 4 x 4 grid of merged tokens
    assert not torch.equal(h, w)
    assert sum(model.config.text_config.rope_parameters["mrope_section"]) * 2 == \
        model.config.text_config.hidden_size // model.config.text_config.num_attention_heads


def test_generate_answers_a_question(loaded, scene):
    model, processor = loaded
    prompt = chat_prompt(processor, [("how many shapes are there?", None)])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert processor.tokenizer.unk_token_id not in processor.tokenizer(prompt).input_ids
    (text,) = generate_text(model, processor, [scene.render()], [prompt], max_new_tokens=10)
    assert text and "<|" not in text


@pytest.mark.trained
def test_model_card_and_small_sample_evaluation(loaded):
    card = get_card("qwen2-vl")
    record = json.loads((card.stand_in_dir / "training.json").read_text())
    assert set(TARGETS["qwen2-vl"]) <= set(record["metrics"]) and record["command"].startswith("vlmstudy zoo train qwen2-vl")
    assert (card.stand_in_dir / "model.safetensors").stat().st_size < 4.5e6  # 2.06 M fp16 parameters (zoo budget: test_zoo)
    model, processor = loaded
    metrics = evaluate_generative("qwen2-vl", model, processor, n=24, progress=False)
    for prefix in ("", "second_"):  # floors from the model card (value minus two standard errors of 24 scenes)
        key = prefix + HEADLINE["qwen2-vl"]
        check = evaluation.check_quality("qwen2-vl", key, metrics[key], n=24, quiet=True)
        assert check.asserted and check.passed, str(check)


_HUB_CHECK = r"""
import json, vlmstudy
from vlmstudy.generation import chat_prompt, generate_text
from vlmstudy.shapes import make_scenes, render
model, proc = vlmstudy.load("qwen2-vl")
image = render(make_scenes("test", n=1, seed=0)[0], size=200)
prompt = chat_prompt(proc, [("what colour is the circle?", None)])
enc = proc(images=[image], text=[prompt], return_tensors="pt")
out = generate_text(model, proc, [image], [prompt], max_new_tokens=3)
print("RESULT " + json.dumps({"mode": vlmstudy.get_mode(), "source": model.config._name_or_path,
      "grid": enc["image_grid_thw"].tolist(), "n_image": int((enc["input_ids"] == 151655).sum()),
      "vocab": model.config.text_config.vocab_size, "tokenizer": type(proc.tokenizer).__name__, "out": out}))
"""


@pytest.mark.hub
def test_simulated_hub_checkpoint_loads_at_real_sizes(tmp_path):
    from vlmstudy.testing.hubsim import build_hub_cache, hub_environment

    build_hub_cache(tmp_path, names=["qwen2-vl"])
    proc = subprocess.run([sys.executable, "-c", _HUB_CHECK], env=hub_environment(tmp_path), capture_output=True,
                          text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    r = json.loads(line[0][len("RESULT "):])
    assert r["mode"] == "hub" and r["source"] == HUB_ID
    # 200 px -> smart_resize to 196 px (a multiple of 28) -> 14 x 14 patches -> 49 merged tokens
    assert r["grid"] == [[1, 14, 14]] and r["n_image"] == 49
    assert r["vocab"] == 151936 and r["tokenizer"] == "Qwen2Tokenizer" and isinstance(r["out"][0], str)
