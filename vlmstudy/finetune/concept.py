"""Teaching a model a word it has never seen: the notebook's ShapesWorld datasets.

The zoo's stand-ins never saw ``shapes.NOVEL_COLORS`` (brown) or ``shapes.NOVEL_SHAPES``
(hexagon): the words are in the tokenizer, but no training text used them. These helpers put the
new colour (or shape) on one object of ordinary scenes and build

* a training file in the vqa format, mixing questions about the new scenes (many of them
  answered by the new word) with questions about ordinary scenes, so that fine-tuning does not
  make the model forget what it knew (:func:`concept_dataset`);
* held-out test questions whose answer *is* the new word, and ordinary held-out questions
  (:func:`concept_test`).
"""

from __future__ import annotations

import random
from pathlib import Path

from .. import shapes
from ..data import Example, save_records


def with_concept(scene: shapes.Scene, rng: random.Random, color: str | None = "brown",
                 shape: str | None = None) -> shapes.Scene:
    """``scene`` with one random object recoloured to ``color`` (and/or reshaped to ``shape``)."""
    objs = list(scene.objects)
    i = rng.randrange(len(objs))
    o = objs[i]
    objs[i] = shapes.ShapeObject(shape or o.shape, color or o.color, o.size, o.position, o.x, o.y)
    return shapes.Scene(tuple(objs), scene.background, scene.texture_seed)


def concept_scenes(n: int, seed: int = 0, split: str = "train", color: str | None = "brown",
                   shape: str | None = None) -> list[shapes.Scene]:
    """``n`` scenes of ``split``, each with exactly one object of the new colour / shape."""
    rng = random.Random(seed)
    return [with_concept(s, rng, color, shape) for s in shapes.make_scenes(split, n, seed=seed)]


def _word(color, shape) -> str:
    return color or shape


def target_questions(scene: shapes.Scene, color: str | None = "brown", shape: str | None = None) -> list[shapes.QA]:
    """The questions about ``scene`` whose answer is the new word."""
    word = _word(color, shape)
    return [qa for qa in shapes.questions(scene, random.Random(0)) if qa.answer == word]


def concept_dataset(out_dir: str | Path, n_concept: int = 150, n_ordinary: int = 150, per_scene: int = 3,
                    seed: int = 0, color: str | None = "brown", shape: str | None = None, size: int = 64) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/vqa.json``; returns the JSON's path.

    Each of the ``n_concept`` new scenes gives one question answered by the new word plus
    ``per_scene - 1`` other questions about it (some name the new word in the question); each of
    the ``n_ordinary`` ordinary scenes gives ``per_scene`` questions.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    new = concept_scenes(n_concept, seed, "train", color, shape)
    ordinary = shapes.make_scenes("train", n_ordinary, seed=seed + 1)
    records = []
    for k, (scene, is_new) in enumerate([(s, True) for s in new] + [(s, False) for s in ordinary]):
        rel = f"images/{k:04d}.png"
        scene.render(size).save(out / rel)
        pool = shapes.questions(scene, rng)
        chosen = []
        if is_new:
            targets = [qa for qa in pool if qa.answer == _word(color, shape)]
            chosen.append(rng.choice(targets))
            pool = [qa for qa in pool if qa not in chosen]
        chosen += rng.sample(pool, min(len(pool), per_scene - len(chosen)))
        records += [{"image": rel, "question": qa.question, "answer": qa.answer} for qa in chosen]
    rng.shuffle(records)
    return save_records(records, out / "vqa.json")


def concept_test(n: int = 60, seed: int = 7, color: str | None = "brown", shape: str | None = None,
                 size: int = 64, n_ordinary: int | None = None) -> tuple[list[Example], list[Example]]:
    """``(new, ordinary)`` held-out examples (images in memory, ``test`` split scenes):
    ``n`` questions answered by the new word, one per new scene, and ``n_ordinary`` (default
    ``n``) ordinary questions, one per ordinary scene."""
    rng = random.Random(seed)
    new_ex, old_ex = [], []
    for i, scene in enumerate(concept_scenes(n, seed, "test", color, shape)):
        qa = rng.choice(target_questions(scene, color, shape))
        new_ex.append(Example(scene.render(size), qa.question, qa.answer, (), i))
    for i, scene in enumerate(shapes.make_scenes("test", n if n_ordinary is None else n_ordinary, seed=seed + 1)):
        qa = rng.choice(shapes.questions(scene, rng))
        old_ex.append(Example(scene.render(size), qa.question, qa.answer, (), i))
    return new_ex, old_ex
