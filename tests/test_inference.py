"""vlmstudy.Inference: describe / ask / generate / chat, batches, defaults, errors, threads.

The tiny stand-ins' answers are weak, so these tests check behaviour, not accuracy: non-empty
strings, the same answer twice, batch == one by one, the same answer as the tasks layer it wraps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vlmstudy
from vlmstudy import shapes, tasks
from vlmstudy.errors import ConfigError, ImageError, UnknownModelError
from vlmstudy.inference import DEFAULT_MODELS, Inference

QUESTION = "what colour is the triangle?"


@pytest.fixture(scope="module")
def sample_paths(request):
    from pathlib import Path

    paths = sorted((Path(request.config.rootpath) / "assets" / "images").glob("shapes-*.png"))
    assert len(paths) == 3, "assets/images should ship shapes-1.png ... shapes-3.png"
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def infer():
    return Inference().load("describe", "ask", "generate")


def test_shipped_sample_images_are_the_shapesworld_test_scenes(sample_paths):
    """assets/images is what its README says: make_scenes("test", 3, seed=0) rendered at 128 px."""
    for path, scene in zip(sample_paths, shapes.make_scenes("test", 3, seed=0)):
        assert np.array_equal(np.asarray(vlmstudy.load_image(path)), np.asarray(scene.render(128)))


def test_exported_from_the_package():
    assert vlmstudy.Inference is Inference and "Inference" in vlmstudy.__all__


def test_defaults_per_task(infer):
    assert infer.model_names == DEFAULT_MODELS == {"describe": "blip-caption", "ask": "blip-vqa",
                                                   "generate": "llava", "chat": "llava"}
    one = Inference(model="LLaVA", models={"ask": "blip-vqa"})
    assert one.model_names == {"describe": "llava", "ask": "blip-vqa", "generate": "llava", "chat": "llava"}
    assert "describe=blip-caption" in repr(infer) and "greedy" in repr(infer)


def test_describe_and_ask_are_non_empty_deterministic_and_equal_the_tasks_layer(infer, sample_paths):
    path = sample_paths[0]
    text = infer.describe(path)
    assert isinstance(text, str) and text.strip() and text == infer.describe(path)
    assert text == tasks.caption(path, model="blip-caption")
    answer = infer.ask(path, QUESTION)
    assert isinstance(answer, str) and answer.strip() and answer == infer.ask(path, QUESTION)
    assert answer == tasks.answer(path, QUESTION, model="blip-vqa")


def test_batches_equal_one_by_one(infer, sample_paths):
    assert infer.describe_batch(sample_paths) == [infer.describe(p) for p in sample_paths]
    questions = [QUESTION, "how many shapes are there?", "what shape is on the right?"]
    assert infer.ask_batch(sample_paths, questions) == [infer.ask(p, q) for p, q in zip(sample_paths, questions)]
    assert infer.ask_batch(sample_paths, QUESTION, batch_size=2) == [infer.ask(p, QUESTION) for p in sample_paths]
    prompt = "list the shapes."
    assert infer.generate_batch(sample_paths, prompt) == [infer.generate(p, prompt) for p in sample_paths]


def test_images_in_any_form_give_the_same_answer(infer, sample_paths):
    path = sample_paths[1]
    pil = vlmstudy.load_image(path)
    with open(path, "rb") as fh:
        data = fh.read()
    assert infer.describe(pil) == infer.describe(data) == infer.describe(np.asarray(pil)) == infer.describe(path)


def test_generate_uses_the_family_prompt_format(sample_paths):
    """generate on a chat model wraps the prompt in the chat template, i.e. it asks the question;
    on BLIP-VQA the prompt is the question; on BLIP it is the caption's start."""
    path = sample_paths[2]
    llava = Inference(model="llava")
    assert llava.generate(path, QUESTION) == llava.ask(path, QUESTION) == tasks.answer(path, QUESTION, model="llava")
    vqa = Inference(models={"generate": "blip-vqa"})
    assert vqa.generate(path, QUESTION) == vqa.ask(path, QUESTION)
    blip = Inference(models={"generate": "blip-caption"})
    assert blip.generate(path, "a picture of") == blip.describe(path, prompt="a picture of")


def test_generation_settings_default_and_per_call(infer, sample_paths):
    path = sample_paths[0]
    full = infer.describe(path)
    short = infer.describe(path, max_new_tokens=2)
    assert full.startswith(short) and len(short) < len(full)  # greedy: the first 2 tokens are the same
    assert Inference(max_new_tokens=2).describe(path) == short
    assert Inference(preset="beam").describe(path) == infer.describe(path, preset="beam")
    assert isinstance(infer.describe(path, preset="sample"), str)


def test_models_are_loaded_once_and_kept(monkeypatch, sample_paths):
    import vlmstudy.zoo

    monkeypatch.setattr(tasks, "_CACHE", {})  # an empty shared cache for this test only
    fresh = Inference().load()
    expected = fresh.describe(sample_paths[0])

    def no_more_loading(*args, **kwargs):
        raise AssertionError("the model was loaded again")

    tasks._CACHE.clear()  # even when the shared cache forgets them, the instance keeps its models
    monkeypatch.setattr(vlmstudy.zoo, "load", no_more_loading)
    assert fresh.describe(sample_paths[0]) == expected
    assert isinstance(fresh.ask(sample_paths[0], QUESTION), str)


@pytest.mark.slow
def test_concurrent_calls_from_threads_give_the_sequential_answers(infer, sample_paths):
    jobs = [(kind, sample_paths[i % 3]) for i in range(12) for kind in ("describe", "ask")]
    expected = [infer.describe(p) if kind == "describe" else infer.ask(p, QUESTION) for kind, p in jobs]

    def run(job):
        kind, path = job
        return infer.describe(path) if kind == "describe" else infer.ask(path, QUESTION)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, jobs)) == expected


def test_generation_calls_never_overlap(monkeypatch, infer, sample_paths):
    """The models are shared: calls from several threads take turns (a lock), they never interleave."""
    import threading
    import time

    real, guard, state = tasks.caption_batch, threading.Lock(), {"active": 0, "peak": 0}

    def tracked(*args, **kwargs):
        with guard:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        try:
            time.sleep(0.02)  # widen the window in which an overlap would show
            return real(*args, **kwargs)
        finally:
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(tasks, "caption_batch", tracked)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(infer.describe, sample_paths * 3))
    assert results == [infer.describe(p) for p in sample_paths] * 3
    assert state["peak"] == 1


def test_chat_first_turn_is_the_question_and_keeps_history(infer, sample_paths):
    chat = Inference().chat(sample_paths[0])
    reply = chat.ask(QUESTION)
    assert reply == infer.generate(sample_paths[0], QUESTION)  # generate's default model is the chat model
    chat.ask("and what shape is on the right?")
    assert [user for user, _ in chat.history] == [QUESTION, "and what shape is on the right?"]
    chat.set_image(sample_paths[1])
    assert chat.history == []


@pytest.mark.parametrize("make, call, error, match", [
    (lambda: Inference(model="no-such-model"), lambda i, p: i.describe(p), UnknownModelError, "no-such-model"),
    (lambda: Inference(), lambda i, p: i.describe("missing.png"), ImageError, "missing.png"),
    (lambda: Inference(model="blip-vqa"), lambda i, p: i.describe(p), ConfigError, "blip-caption"),
    (lambda: Inference(model="blip-caption"), lambda i, p: i.ask(p, QUESTION), ConfigError, "blip-vqa"),
    (lambda: Inference(), lambda i, p: i.ask(p, "  "), ConfigError, "non-empty"),
    (lambda: Inference(), lambda i, p: i.describe(p, max_new_token=3), ConfigError, "max_new_tokens"),
    (lambda: Inference(), lambda i, p: i.generate_batch([p], ["a", "b"]), ConfigError, "one prompt"),
    (lambda: Inference(), lambda i, p: i.describe_batch([]), ConfigError, "empty"),
])
def test_bad_input_raises_a_clear_error(make, call, error, match, sample_paths):
    with pytest.raises(error, match=match):
        call(make(), sample_paths[0])


def test_bad_construction():
    with pytest.raises(ConfigError, match="Unknown task"):
        Inference(models={"caption": "blip-caption"})
    with pytest.raises(ConfigError, match="temperature"):
        Inference(temperature=0)
    with pytest.raises(ConfigError, match="Unknown task"):
        Inference().load("translate")
