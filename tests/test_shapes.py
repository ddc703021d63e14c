"""ShapesWorld: determinism, splits, masks, text, export."""

import json
import random

import numpy as np
import pytest

from vlmstudy import shapes
from vlmstudy.zoo.tokenizer import build_tokenizer


def test_same_seed_same_scenes_and_pixels():
    a = shapes.make_scenes("train", 20, seed=3)
    b = shapes.make_scenes("train", 20, seed=3)
    assert a == b
    assert np.array_equal(shapes.render_batch(a), shapes.render_batch(b))
    assert shapes.make_scenes("train", 20, seed=4) != a


def test_world_size_and_public_tables():
    assert len(shapes.COLORS) >= 8 and len(shapes.SHAPES) >= 6
    assert not set(shapes.NOVEL_COLORS) & set(shapes.COLORS)
    assert not set(shapes.NOVEL_SHAPES) & set(shapes.SHAPES)
    for color, shape in shapes.HELD_OUT_COMBOS:
        assert color in shapes.COLORS and shape in shapes.SHAPES


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_held_out_combos_and_novel_words_never_in_ordinary_splits(split):
    for scene in shapes.make_scenes(split, 1500, seed=0):
        for obj in scene.objects:
            assert (obj.color, obj.shape) not in shapes.HELD_OUT_COMBOS
            assert obj.color in shapes.COLORS and obj.shape in shapes.SHAPES
        for qa in shapes.questions(scene):  # not even mentioned in text ("is there a red triangle?")
            for color, shape in shapes.HELD_OUT_COMBOS:
                assert f"{color} {shape}" not in qa.question


def test_heldout_split_always_has_a_held_out_object():
    for scene in shapes.make_scenes("heldout", 300, seed=0):
        assert any((o.color, o.shape) in shapes.HELD_OUT_COMBOS for o in scene.objects)


def test_splits_do_not_repeat_each_other():
    train = {json.dumps(s.to_dict()) for s in shapes.make_scenes("train", 3000)}
    for split in ("val", "test"):
        assert not train & {json.dumps(s.to_dict()) for s in shapes.make_scenes(split, 1000)}


def test_scene_layout_counts_positions_and_order():
    scenes = shapes.make_scenes("train", 500, seed=1)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    for s in scenes:
        positions = [o.position for o in s.objects]
        assert len(set(positions)) == len(positions)
        assert [round(o.x, 1) for o in s.objects] == sorted(round(o.x, 1) for o in s.objects)  # reading order
        assert len({(o.color, o.shape) for o in s.objects}) == len(s.objects)
    assert shapes.make_scenes("test", 10, n_objects=2)[0].objects.__len__() == 2


def test_masks_cover_pixels_of_the_right_colour():
    scene = shapes.make_scenes("test", 5, seed=2, n_objects=3)[0]
    img = np.asarray(scene.render(64)).astype(int)
    masks = shapes.masks(scene, 64)
    assert masks.shape == (3, 64, 64)
    assert not (masks[0] & masks[1]).any() and not (masks[1] & masks[2]).any()
    for obj, mask in zip(scene.objects, masks):
        inside = img[mask].mean(axis=0)
        assert np.abs(inside - np.array(shapes.COLORS[obj.color])).max() < 20, obj
        assert mask.sum() > 30
    boxes = shapes.boxes(scene, 64)
    for (x0, y0, x1, y1), mask in zip(boxes, masks):
        ys, xs = np.nonzero(mask)
        assert x0 == xs.min() and x1 == xs.max() + 1 and y0 == ys.min() and y1 == ys.max() + 1


def test_render_size_and_mode():
    img = shapes.make_scenes("test", 1)[0].render(96)
    assert img.size == (96, 96) and img.mode == "RGB"


def test_caption_and_questions_follow_the_scene():
    obj_l = shapes.ShapeObject("circle", "red", "large", "left", 0.2, 0.5)
    obj_r = shapes.ShapeObject("square", "blue", "small", "right", 0.8, 0.5)
    scene = shapes.Scene((obj_l, obj_r), (240, 240, 240), 0)
    assert shapes.caption(scene) == "a red circle on the left and a blue square on the right"
    qa = {q.question: q.answer for q in shapes.questions(scene, random.Random(0))}
    assert qa["how many shapes are there?"] == "two"
    assert qa["what shape is on the left?"] == "circle"
    assert qa["what colour is the square?"] == "blue"
    assert qa["where is the red circle?"] == "left"
    assert qa["is there a red circle?"] == "yes"
    assert "no" in qa.values()


def test_dialogue_follow_ups_need_the_first_turn():
    for scene in shapes.make_scenes("test", 50, seed=5):
        turns = shapes.dialogue(scene, random.Random(1))
        assert len(turns) >= 2
        assert turns[1][0].startswith("and ") and "it" in shapes.normalize_text(turns[1][0]).split()


def test_variants_differ_in_one_thing():
    rng = random.Random(0)
    for scene in shapes.make_scenes("train", 100, seed=6, n_objects=2):
        for kind in ("shape", "color", "swap"):
            other = shapes.variant(scene, rng, kind)
            if other != scene:
                assert shapes.caption(other) != shapes.caption(scene)
                assert sorted(o.position for o in other.objects) == sorted(o.position for o in scene.objects)


def test_two_image_questions():
    a, b = shapes.make_scenes("test", 2, seed=9, n_objects=None)
    one, three = shapes.make_scenes("test", 1, n_objects=1)[0], shapes.make_scenes("test", 1, n_objects=3)[0]
    qa = {q.question: q.answer for q in shapes.two_image_questions(one, three)}
    assert qa["which image has more shapes?"] == "the second"
    assert qa["what is in the first image?"] == shapes.caption(one)


def test_every_text_is_in_the_tokenizer_vocabulary():
    tok = build_tokenizer()
    texts = []
    rng = random.Random(0)
    for scene in shapes.make_scenes("train", 300) + shapes.make_scenes("heldout", 50):
        texts += [shapes.caption(scene, with_size=True), shapes.short_description(scene)]
        texts += [q.question + " " + q.answer for q in shapes.questions(scene, rng)]
        texts += [q + " " + a for q, a in shapes.dialogue(scene, rng)]
    texts += [t.format("brown hexagon") for t in shapes.PROMPT_TEMPLATES]
    texts += ["USER: <image>\nwhat? ASSISTANT:", "[INST] <image>\nwhat [/INST]", "<<SYS>>"]
    unk = tok.unk_token_id
    bad = [t for t in texts if unk in tok(t).input_ids]
    assert not bad, bad[:3]


def test_normalize_text():
    assert shapes.normalize_text("  A Red, circle! ") == "a red circle"


def test_export_round_trip(tmp_path):
    from PIL import Image

    scenes = shapes.make_scenes("test", 6, seed=4)
    paths = shapes.export_dataset(scenes, tmp_path / "ds")
    captions = json.loads(paths["caption"].read_text())
    vqa = json.loads(paths["vqa"].read_text())
    instruction = json.loads(paths["instruction"].read_text())
    assert [r["caption"] for r in captions] == [shapes.caption(s) for s in scenes]
    for row in captions + vqa + instruction:
        assert (tmp_path / "ds" / row["image"]).exists()
    assert all(set(r) == {"image", "question", "answer"} and r["answer"] for r in vqa)
    for row in instruction:
        conv = row["conversations"]
        assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<image>\n")
        assert [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
    restored = [shapes.Scene.from_dict(r) for r in json.loads(paths["scenes"].read_text())]
    assert restored == scenes
    png = Image.open(tmp_path / "ds" / captions[0]["image"])
    assert np.array_equal(np.asarray(png), np.asarray(scenes[0].render(64)))


def test_show_scenes_returns_a_figure():
    fig = shapes.show_scenes(shapes.make_scenes("test", 3), cols=3)
    assert len(fig.axes) == 3 and fig.axes[0].get_title()
