"""vlmstudy.tasks: caption, answer, batches, ChatSession (history, trimming, multi-image), inputs, errors.

The tests marked "trained" (docstring and pytest marker) check what the trained stand-ins can do (they fail
on untrained placeholder weights, on purpose: nothing here is xfail).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from vlmstudy import shapes, tasks
from vlmstudy.errors import ConfigError, ImageError, VlmStudyError
from vlmstudy.generation import chat_prompt
from vlmstudy.shapes import normalize_text


@pytest.fixture(scope="module")
def scenes():
    return shapes.make_scenes("test", 6, seed=0)


@pytest.fixture(scope="module")
def images(scenes):
    return [s.render() for s in scenes]


@pytest.fixture(scope="module")
def one_object_scene():
    return shapes.make_scenes("test", 1, seed=3, n_objects=1)[0]


# ----------------------------------------------------------------------------- caption and answer

@pytest.mark.parametrize("name", ["blip-caption", "blip2", "instructblip", "llava", "llava-next"])
def test_caption_returns_a_string(name, images):
    text = tasks.caption(images[0], model=name, max_new_tokens=6)
    assert isinstance(text, str)


@pytest.mark.parametrize("name", ["blip-vqa", "blip2", "instructblip", "llava", "llava-next"])
def test_answer_returns_a_string(name, images):
    assert isinstance(tasks.answer(images[0], "how many shapes are there?", model=name, max_new_tokens=4), str)


def test_question_formats_per_family():
    q = "what colour is the circle?"
    assert tasks.format_question(q, "blip-vqa") == q
    assert tasks.format_question(q, "instructblip") == q
    assert tasks.format_question(q, "blip2") == f"Question: {q} Answer:"
    assert tasks.format_question(q, "llava") == f"USER: <image>\n{q} ASSISTANT:"
    assert tasks.format_question(q, "llava-next") == f"[INST] <image>\n{q} [/INST]"


def test_models_are_loaded_once_and_pairs_accepted(images):
    first = tasks.get_model("blip-vqa")
    assert tasks.get_model("blip-vqa") is first and tasks.get_model(" BLIP-VQA ") is first
    assert tasks.get_model(first) == first
    assert tasks.answer(images[0], "how many shapes are there?", model=first, max_new_tokens=4) == \
        tasks.answer(images[0], "how many shapes are there?", model="blip-vqa", max_new_tokens=4)
    with pytest.raises(ConfigError, match="model name"):
        tasks.get_model(42)


@pytest.mark.parametrize("name", ["blip-vqa", "blip2", "llava"])
def test_batched_answers_equal_one_by_one(name, scenes, images):
    questions = [shapes.questions(s)[i % 3].question for i, s in enumerate(scenes)]  # different lengths
    batched = tasks.answer_batch(images, questions, model=name, batch_size=4, progress=False, max_new_tokens=8)
    single = [tasks.answer(im, q, model=name, max_new_tokens=8) for im, q in zip(images, questions)]
    assert batched == single


def test_batched_captions_equal_one_by_one(images):
    batched = tasks.caption_batch(images[:4], batch_size=3, progress=False, max_new_tokens=12)
    assert batched == [tasks.caption(im, max_new_tokens=12) for im in images[:4]]
    prompted = tasks.caption_batch(images[:2], prompt="a picture of", progress=False, max_new_tokens=12)
    assert prompted == [tasks.caption(im, prompt="a picture of", max_new_tokens=12) for im in images[:2]]
    assert len(tasks.caption_batch(shapes.render_batch(shapes.make_scenes("test", 2)), progress=False,
                                   max_new_tokens=4)) == 2  # a stacked (N, H, W, 3) array is a batch


def test_one_question_for_every_image(images):
    out = tasks.answer_batch(images[:3], "how many shapes are there?", progress=False, max_new_tokens=4)
    assert len(out) == 3


@pytest.mark.trained
def test_trained_captions_and_answers():
    """trained: BLIP captions and answers ShapesWorld scenes it never saw."""
    scenes = shapes.make_scenes("test", 12, seed=1)
    images = [s.render() for s in scenes]
    captions = tasks.caption_batch(images, progress=False)
    # the stand-in names all 27 objects right (exact captions: 99 % on its card, target 90 %);
    # guessing a colour-shape pair is right 2 % of the time.
    named = sum(f"{o.color} {o.shape}" in normalize_text(c) for c, s in zip(captions, scenes) for o in s.objects)
    assert named >= 24, captions
    # counting through the chat model (tiny LLaVA counts 12 / 12 of these right)
    answers = tasks.answer_batch(images, "how many shapes are there?", model="llava", progress=False)
    assert sum(a == shapes.COUNT_WORDS[len(s.objects)] for a, s in zip(answers, scenes)) >= 10, answers


# ----------------------------------------------------------------------------- image inputs

def test_image_inputs_path_numpy_bytes(tmp_path, images):
    img = images[1]
    path = tmp_path / "scene.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    q = "what colour is the shape on the left?"
    expected = tasks.answer(img, q, max_new_tokens=4)
    for form in (str(path), path, np.asarray(img), buf.getvalue()):
        assert tasks.answer(form, q, max_new_tokens=4) == expected
    chat = tasks.ChatSession("llava", max_new_tokens=4).set_image(buf.getvalue())
    assert chat.images[0].size == img.size


def test_unreadable_bytes_raise_image_error():
    with pytest.raises(ImageError):
        tasks.answer(b"certainly not a png", "how many shapes are there?")
    with pytest.raises(ImageError):
        tasks.ChatSession("llava").set_image(b"\x89PNG broken")


# ----------------------------------------------------------------------------- errors

def test_user_errors_are_vlmstudy_errors(images):
    img = images[0]
    cases = [
        lambda: tasks.answer(img, "how many?", preset="fastest"),
        lambda: tasks.caption(img, num_beam=3),
        lambda: tasks.caption(img, model="blip-vqa"),
        lambda: tasks.answer(img, "how many?", model="blip-caption"),
        lambda: tasks.answer(img, "how many?", model="clip"),
        lambda: tasks.answer(img, "   "),
        lambda: tasks.answer_batch([img, img], ["a?"], progress=False),
        lambda: tasks.answer_batch([], "a?", progress=False),
        lambda: tasks.caption_batch(img, progress=False),
        lambda: tasks.caption_batch([img], batch_size=0, progress=False),
        lambda: tasks.ChatSession("blip2"),
        lambda: tasks.ChatSession("llava").ask("anything?"),
        lambda: tasks.ChatSession("llava", max_context=0),
        lambda: tasks.answer(img, "how many?", model="no-such-model"),
    ]
    for case in cases:
        with pytest.raises(VlmStudyError) as err:
            case()
        assert len(str(err.value)) > 20


def test_unknown_preset_message_lists_presets(images):
    with pytest.raises(ConfigError, match="'greedy', 'beam', 'sample'"):
        tasks.caption(images[0], preset="fastest")


def test_decoding_presets(images):
    greedy = tasks.caption(images[0], max_new_tokens=10)
    assert tasks.caption(images[0], preset="greedy", max_new_tokens=10) == greedy
    assert isinstance(tasks.caption(images[0], preset="beam", max_new_tokens=10), str)
    s1 = tasks.caption(images[0], preset="sample", max_new_tokens=10)
    assert tasks.caption(images[0], preset="sample", max_new_tokens=10) == s1  # seeded
    table = tasks.compare_decoding(images[:2], presets=("greedy", "beam", tasks.PRESETS["sample"]), max_new_tokens=6,
                                   truths=["x", "y"])
    assert table.header[:3] == ["image", "greedy", "beam"] and table.header[-1] == "truth"
    assert table.column("greedy")[0] == tasks.caption(images[0], max_new_tokens=6)
    assert "| image |" in table._repr_markdown_() and "greedy" in str(table)


# ----------------------------------------------------------------------------- chat

def test_chat_history_grows_and_prompt_holds_earlier_turns(one_object_scene):
    chat = tasks.ChatSession("llava", max_new_tokens=6).set_image(one_object_scene.render())
    first_q = f"what shape is {shapes.POSITION_PHRASES[one_object_scene.objects[0].position]}?"
    first = chat.ask(first_q)
    assert chat.history == [(first_q, first)]
    assert chat.last_prompt == chat_prompt(chat.processor, [(first_q, None)])
    chat.ask("and what colour is it?")
    assert len(chat.history) == 2 and chat.history[0] == (first_q, first)
    prompt = chat.last_prompt
    assert prompt.count("<image>") == 1
    assert prompt.index(first_q) < prompt.index("and what colour is it?")
    assert prompt == chat_prompt(chat.processor, [(first_q, first), ("and what colour is it?", None)])
    assert chat.render("how many shapes are there?").startswith(prompt)
    history = chat.history
    history.append(("x", "y"))  # a copy: the session's own history is untouched
    assert len(chat.history) == 2
    chat.clear()
    assert chat.history == [] and chat.dropped_turns == 0 and chat.last_prompt is None
    assert len(chat.images) == 1  # clear() keeps the image
    chat.ask("how many shapes are there?")
    assert chat.last_prompt == chat_prompt(chat.processor, [("how many shapes are there?", None)])
    chat.set_image(one_object_scene.render())
    assert chat.history == []


@pytest.mark.trained
def test_trained_follow_up_is_answered_from_history(one_object_scene):
    """trained: "and what colour is it?" after "what shape is on the ...?" names the colour."""
    obj = one_object_scene.objects[0]
    chat = tasks.ChatSession("llava").set_image(one_object_scene.render())
    assert chat.ask(f"what shape is {shapes.POSITION_PHRASES[obj.position]}?") == obj.shape
    assert chat.ask("and what colour is it?") == obj.color


@pytest.mark.trained
def test_trained_history_changes_the_answer():
    """trained: on scenes with several differently coloured objects, the follow-up about the
    *last* object is right with the history and (at least once) different without it."""
    picked = [s for s in shapes.make_scenes("test", 40, seed=11)
              if len(s.objects) >= 2 and len({o.color for o in s.objects}) == len(s.objects)][:10]
    assert len(picked) == 10
    with_history, without = [], []
    for scene in picked:
        obj = scene.objects[-1]
        chat = tasks.ChatSession("llava").set_image(scene.render())
        chat.ask(f"what shape is {shapes.POSITION_PHRASES[obj.position]}?")
        with_history.append(chat.ask("and what colour is it?") == obj.color)
        without.append(chat.clear().ask("and what colour is it?"))
    # The tiny LLaVA answers 77 % of follow-ups (its card; the course target is 85 %): 8/10 here
    # with the history, 4/10 guessing without it.
    assert sum(with_history) >= 7, with_history
    assert sum(with_history) >= sum(w == s.objects[-1].color for w, s in zip(without, picked)), (with_history, without)
    assert any(w != s.objects[-1].color for w, s in zip(without, picked)), without


def test_context_trimming_drops_oldest_turns_with_a_warning(one_object_scene):
    chat = tasks.ChatSession("llava", max_context=100, max_new_tokens=4).set_image(one_object_scene.render())
    assert chat.context_length == 100
    questions = ["how many shapes are there?", "what shape is on the left?", "is there a red circle?",
                 "how many shapes are there?", "where is the blue star?"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", tasks.ContextTrimmedWarning)
        for q in questions[:2]:
            chat.ask(q)
    assert chat.dropped_turns == 0
    with pytest.warns(tasks.ContextTrimmedWarning, match="dropped the oldest") as record:
        for q in questions[2:]:
            chat.ask(q)
    assert chat.dropped_turns >= 1 and len(record) >= 1
    assert "clear()" in str(record[0].message) and "100 tokens" in str(record[0].message)
    assert chat.history[-1][0] == questions[-1]
    assert chat.count_tokens(chat.last_prompt) + 4 <= 100
    # the turns kept are the newest ones, in order
    assert [q for q, _ in chat.history] == questions[-len(chat.history):]
    assert chat.dropped_turns == len(questions) - len(chat.history)


def test_context_too_small_for_even_one_question(one_object_scene):
    chat = tasks.ChatSession("llava", max_context=70).set_image(one_object_scene.render())
    with pytest.raises(tasks.ContextLengthError, match="max_new_tokens") as err:
        chat.ask("how many shapes are there?")
    assert isinstance(err.value, VlmStudyError)
    assert chat.history == []


def test_token_count_matches_the_processor(one_object_scene):
    chat = tasks.ChatSession("llava-next").set_image(one_object_scene.render()).add_image(one_object_scene.render(128))
    prompt = chat.render("which image has more shapes?")
    enc = chat.processor(images=chat.images, text=[prompt], return_tensors="pt")
    assert chat.count_tokens(prompt) == enc["input_ids"].shape[1]


def test_multi_image_chat_on_llava_next():
    a, b = shapes.make_scenes("test", 2, seed=5)
    chat = tasks.ChatSession("llava-next", max_new_tokens=12).set_image(a.render()).add_image(b.render())
    assert len(chat.images) == 2
    reply = chat.ask("what is in the second image?")
    assert isinstance(reply, str)
    assert chat.last_prompt.count("<image>") == 2 and chat.last_prompt.startswith("[INST] <image>\n<image>\n")
    chat.set_image(a.render())
    assert len(chat.images) == 1 and chat.history == []


@pytest.mark.trained
def test_trained_two_image_questions_on_llava_next():
    """trained: LLaVA-NeXT compares two images and describes the second one."""
    pairs = [p for p in zip(shapes.make_scenes("test", 12, seed=21), shapes.make_scenes("test", 12, seed=22))
             if len(p[0].objects) != len(p[1].objects)][:4]
    right = 0
    for a, b in pairs:
        chat = tasks.ChatSession("llava-next").set_image(a.render()).add_image(b.render())
        right += chat.ask("which image has more shapes?") == ("the first" if len(a.objects) > len(b.objects) else "the second")
        right += normalize_text(chat.clear().ask("what is in the second image?")) == normalize_text(b.caption)
    # The tiny LLaVA-NeXT reaches 0.62 on two-image questions (its card; target 0.80): it compares
    # counts (4/4 here) and describes the second image exactly once in four.
    assert right >= 4, right


def test_anyres_layout_and_image_tokens():
    m, processor = tasks.get_model("llava-next")
    scene = shapes.make_scenes("test", 1)[0]
    small = tasks.anyres_layout(processor, scene.render(64))
    assert small["image_tokens"] == 136 and small["crops"] == 2 and small["grid"] == (1, 1)
    large = tasks.anyres_layout(processor, scene.render(256))
    assert large["best_resolution"] == (128, 128) and large["grid"] == (2, 2) and large["crops"] == 5
    assert large["image_tokens"] > small["image_tokens"]
    assert tasks.image_token_count(tasks.get_model("llava")[1], scene.render()) == 64
    with pytest.raises(ConfigError, match="image_grid_pinpoints"):
        tasks.anyres_layout(tasks.get_model("llava")[1], scene.render())


def test_generative_plots():
    import matplotlib.pyplot as plt

    from vlmstudy import plotting

    fig = plotting.accuracy_bars({"colour": 0.9, "shape": 1.0}, title="t", target=0.85)
    fig2 = plotting.accuracy_bars({"a": {"x": 0.5, "y": 0.7}, "b": {"x": 0.6}})
    fig3 = plotting.token_strip(["<s>", "user", ":"] + ["<image>"] * 64 + ["what", "?"])
    _, processor = tasks.get_model("llava-next")
    img = shapes.make_scenes("test", 1)[0].render(200)
    fig4 = plotting.anyres_tiles(img, tasks.anyres_layout(processor, img))
    assert "64 of them <image>" in fig3.axes[0].get_title()
    assert len(fig4.axes) == 3 and "336 image tokens" in fig4._suptitle.get_text()
    with pytest.raises(ValueError):
        plotting.accuracy_bars({})
    for f in (fig, fig2, fig3, fig4):
        plt.close(f)
