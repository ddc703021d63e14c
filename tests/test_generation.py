"""vlmstudy.generation: families, chat prompts, decoding settings, generate_text's contract."""

from __future__ import annotations

import pytest
import torch

import vlmstudy
from vlmstudy import shapes
from vlmstudy.errors import ConfigError, VlmStudyError
from vlmstudy.generation import (
    CHAT_FAMILIES,
    DEFAULT_GENERATION,
    FAMILIES,
    PRESETS,
    GenerationSettings,
    chat_prompt,
    context_length,
    family,
    generate_text,
    generation_settings,
)


@pytest.fixture(scope="module")
def llava():
    return vlmstudy.load("llava")


@pytest.fixture(scope="module")
def blip_vqa():
    return vlmstudy.load("blip-vqa")


@pytest.fixture(scope="module")
def scene_images():
    return [s.render() for s in shapes.make_scenes("test", 3, seed=0)]


# ----------------------------------------------------------------------------- settings

def test_presets_and_defaults():
    assert set(PRESETS) == {"greedy", "beam", "sample"}
    assert generation_settings() == PRESETS["greedy"] == GenerationSettings()
    assert PRESETS["beam"].num_beams == 3 and PRESETS["beam"].strategy == "beam"
    sample = PRESETS["sample"]
    assert sample.do_sample and sample.seed is not None and 0 < sample.temperature and 0 < sample.top_p <= 1
    assert DEFAULT_GENERATION == {"max_new_tokens": 32, "do_sample": False, "num_beams": 1}
    assert 8 <= GenerationSettings().max_new_tokens <= 128


def test_generate_kwargs_only_pass_sampling_knobs_when_sampling():
    assert "temperature" not in PRESETS["greedy"].generate_kwargs()
    assert "top_p" not in PRESETS["beam"].generate_kwargs()
    kw = PRESETS["sample"].generate_kwargs()
    assert kw["do_sample"] is True and {"temperature", "top_p", "top_k"} <= set(kw) and "seed" not in kw
    assert GenerationSettings(repetition_penalty=1.3).generate_kwargs()["repetition_penalty"] == 1.3


def test_overrides_and_describe():
    s = generation_settings("beam", max_new_tokens=8)
    assert (s.num_beams, s.max_new_tokens) == (3, 8)
    assert generation_settings(settings=s) is s
    assert generation_settings(preset=" Sample ").do_sample
    assert "num_beams=3" in s.describe() and s.describe().startswith("beam")
    assert PRESETS["sample"].describe().startswith("sample") and "temperature" in PRESETS["sample"].describe()
    assert s.replace(num_beams=1).strategy == "greedy"


@pytest.mark.parametrize("kwargs, words", [
    ({"preset": "bam"}, ["'bam'", "greedy", "beam", "sample"]),
    ({"max_new_token": 3}, ["max_new_token", "Did you mean 'max_new_tokens'"]),
    ({"foo": 1}, ["'foo'", "Allowed"]),
    ({"temperature": 0}, ["temperature", "greedy"]),
    ({"num_beams": 0}, ["num_beams"]),
    ({"top_p": 1.5}, ["top_p"]),
    ({"max_new_tokens": -1}, ["max_new_tokens"]),
    ({"preset": "beam", "settings": GenerationSettings()}, ["either"]),
    ({"preset": 3}, ["GenerationSettings"]),
])
def test_bad_settings_raise_config_error(kwargs, words):
    with pytest.raises(ConfigError) as err:
        generation_settings(**kwargs)
    assert isinstance(err.value, VlmStudyError)
    for w in words:
        assert w in str(err.value)


# ----------------------------------------------------------------------------- families and prompts

def test_family_of_every_stand_in(llava, blip_vqa):
    assert family(llava[0]) == "llava" and family(blip_vqa[0]) == "blip-vqa"
    assert set(CHAT_FAMILIES) <= set(FAMILIES.values())
    with pytest.raises(ConfigError, match="not one of the course's model families"):
        family(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError):  # ConfigError is a ValueError, as before
        family(torch.nn.Linear(2, 2))


def test_chat_prompt_uses_the_template(llava):
    _, processor = llava
    one = chat_prompt(processor, [("what shape is on the left?", None)])
    assert one == "USER: <image>\nwhat shape is on the left? ASSISTANT:"
    two = chat_prompt(processor, [("what shape is on the left?", "circle"), ("and what colour is it?", None)])
    assert two.startswith(one) and "circle" in two and two.endswith("and what colour is it? ASSISTANT:")
    assert two.count("<image>") == 1  # images go in the first user turn only
    assert chat_prompt(processor, [("which image has more shapes?", None)], n_images=2).count("<image>") == 2
    finished = chat_prompt(processor, [("q", "a")])
    assert not finished.rstrip().endswith("ASSISTANT:")


def test_chat_prompt_errors(blip_vqa, llava):
    with pytest.raises(ConfigError, match="no chat template"):
        chat_prompt(blip_vqa[1], [("q", None)])
    with pytest.raises(ConfigError, match="at least one"):
        chat_prompt(llava[1], [])


def test_context_length(llava):
    model, processor = llava
    assert context_length(model, processor) == min(model.config.text_config.max_position_embeddings,
                                                   processor.tokenizer.model_max_length)

    class Huge:
        model_max_length = int(1e30)

    assert context_length(model, Huge()) == model.config.text_config.max_position_embeddings


# ----------------------------------------------------------------------------- generate_text

def test_generate_text_contract(llava, blip_vqa, scene_images):
    model, processor = llava
    prompts = [chat_prompt(processor, [(q, None)]) for q in ("how many shapes are there?", "describe the image.")]
    out = generate_text(model, processor, scene_images[:2], prompts)  # the way evaluate.py calls it
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(t, str) for t in out)
    assert not any("ASSISTANT" in t.upper() or "<image>" in t for t in out)  # new text only
    vqa = generate_text(*blip_vqa, scene_images[:1], ["how many shapes are there?"], max_new_tokens=4)
    assert len(vqa) == 1 and isinstance(vqa[0], str)


def test_generate_text_input_errors(llava, blip_vqa, scene_images):
    model, processor = llava
    good = chat_prompt(processor, [("how many shapes are there?", None)])
    with pytest.raises(ConfigError, match="chat template"):
        generate_text(model, processor, scene_images[:1], ["how many shapes are there?"])
    with pytest.raises(ConfigError, match="pass exactly 2 images"):
        generate_text(model, processor, scene_images[:1], [good], images_per_prompt=2)
    with pytest.raises(ConfigError, match="one image per prompt"):
        generate_text(*blip_vqa, scene_images[:2], ["q"], images_per_prompt=2)
    with pytest.raises(ConfigError, match="Unknown generation setting"):
        generate_text(model, processor, scene_images[:1], [good], beams=2)
    clip = vlmstudy.load("clip")
    with pytest.raises(ConfigError, match="not a generative model"):
        generate_text(*clip, scene_images[:1], ["q"])


def test_seeded_sampling_is_repeatable_and_leaves_global_rng_alone(llava, scene_images):
    model, processor = llava
    prompt = [chat_prompt(processor, [("describe the image.", None)])]
    settings = generation_settings("sample", temperature=1.5, max_new_tokens=8)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = generate_text(model, processor, scene_images[:1], prompt, settings=settings)
    after = torch.rand(3)
    assert torch.equal(after, expected), "seeded sampling must not move the global random state"
    b = generate_text(model, processor, scene_images[:1], prompt, settings=settings)
    assert a == b
    greedy = generate_text(model, processor, scene_images[:1], prompt, max_new_tokens=8)
    assert greedy == generate_text(model, processor, scene_images[:1], prompt, max_new_tokens=8)


def test_beam_search_runs_and_respects_max_new_tokens(blip_vqa, scene_images):
    model, processor = blip_vqa
    out = generate_text(model, processor, scene_images, ["how many shapes are there?"] * 3, preset="beam",
                        max_new_tokens=3)
    assert len(out) == 3
    assert all(len(processor.tokenizer(t, add_special_tokens=False).input_ids) <= 3 for t in out)


def test_family_sees_through_a_peft_wrapper():
    import peft

    import vlmstudy
    from vlmstudy.generation import family

    model, _ = vlmstudy.load("llava")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert family(wrapped) == "llava"
