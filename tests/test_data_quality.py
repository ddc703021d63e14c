"""vlmstudy.finetune.data_quality: mislabelled and duplicated copies, the checker, the runs.

The data tests use small ShapesWorld exports (no model, well under a second each); one slow test
fine-tunes the shipped tiny LLaVA for one step per variant.
"""

from __future__ import annotations

import json
import random

import pytest

from vlmstudy import data, phrasings, shapes
from vlmstudy.errors import ConfigError, DataFormatError
from vlmstudy.finetune import concept
from vlmstudy.finetune import data_quality as dq

FORM_KIND = {"count": "count", "colour_at": "colour", "colour_of": "colour", "shape_at": "shape",
             "shape_of": "shape", "position": "position", "exists": "exists", "follow_colour": "colour",
             "follow_shape": "shape", "follow_position": "position", "follow_size": "size"}
SLOTS = {"where": "on the left", "shape": "circle", "color": "red", "obj": "a red circle"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """20 ShapesWorld scenes: vqa.json, instruction.json (conversations), scenes.json."""
    return shapes.export_dataset(shapes.make_scenes("train", 20, seed=0), tmp_path_factory.mktemp("shapes"), seed=0)


@pytest.fixture(scope="module")
def scenes(export):
    return dq.load_scenes(export["scenes"])


@pytest.fixture(scope="module")
def vqa(export):
    return data.load_dataset(export["vqa"])


@pytest.mark.parametrize("form", sorted(phrasings.TEMPLATES))
def test_question_kind_reads_every_wording(form):
    for phrasing in ("train", "heldout"):
        for template in phrasings.TEMPLATES[form][phrasing]:
            question = template.format(**SLOTS)
            assert dq.question_kind(question) == FORM_KIND[form], question
            assert dq.question_kind(question.upper().rstrip("?").replace("COLOUR", "COLOR")) == FORM_KIND[form]
    assert dq.question_kind("describe the image.") is None


def test_answer_kind():
    assert [dq.answer_kind(a) for a in ("red", "Brown.", "2", "three", "centre", "center", "yes", "small", "hexagon")] \
        == ["colour", "colour", "count", "count", "position", "position", "exists", "size", "shape"]
    assert dq.answer_kind("a red circle on the left") is None


def test_scene_answer_is_never_wrong_on_paraphrases():
    rng, decided, total = random.Random(0), 0, 0
    for scene in shapes.make_scenes("train", 60, seed=3):
        for qa in shapes.questions(scene, rng):
            for phrasing in ("train", "heldout"):
                question = phrasings.paraphrase(qa, rng, phrasing)
                truth = dq.scene_answer(scene, question)
                total += 1
                if truth is not None:
                    decided += 1
                    assert truth == qa.answer, (question, truth, qa.answer)
    assert decided >= 0.95 * total, f"the scene decided only {decided} of {total} questions"


def test_scene_answer_follows_a_dialogue():
    scene = shapes.make_scenes("train", 1, seed=4)[0]
    obj = scene.objects[0]
    where = shapes.POSITION_PHRASES[obj.position]
    assert dq.scene_answer(scene, "and what colour is it?", [f"what shape is {where}?"]) == obj.color
    assert dq.scene_answer(scene, "and what size is it?", [f"what shape is {where}?"]) == obj.size
    assert dq.scene_answer(scene, "and what colour is it?") is None, "no object named: undecided"


# ----------------------------------------------------------------------------- mislabel

@pytest.mark.parametrize("share", [0.0, 0.2, 0.37, 1.0])
def test_mislabel_share_is_exact_and_answers_are_wrong_of_the_same_kind(vqa, scenes, share):
    bad = dq.mislabel(vqa, share=share, seed=1)
    n = len(vqa)
    assert len(bad.changed) == round(share * n) and bad.n_answers == n and len(bad.records) == n
    changed = {r for r, _ in bad.changed}
    for i, (before, after) in enumerate(zip(vqa.records, bad.records)):
        if i in changed:
            assert after["answer"] != before["answer"] and bad.original[(i, 0)] == before["answer"]
            assert dq.answer_kind(after["answer"]) == dq.answer_kind(before["answer"]), (before, after)
            truth = dq.scene_answer(scenes["images/" + after["image"].rsplit("/", 1)[1]], after["question"])
            assert truth is not None and truth != after["answer"], "a mislabelled answer is wrong for its scene"
        else:
            assert after == before
    assert vqa.records[0]["answer"] == data.load_dataset(vqa.source).records[0]["answer"], "the input is not changed"


def test_mislabel_is_seeded(vqa):
    a, b, c = dq.mislabel(vqa, 0.2, seed=0), dq.mislabel(vqa, 0.2, seed=0), dq.mislabel(vqa, 0.2, seed=5)
    assert a.records == b.records and a.changed == b.changed
    assert a.changed != c.changed


def test_mislabel_conversations(export, scenes):
    records = json.loads(export["instruction"].read_text())
    bad = dq.mislabel(records, share=0.5, seed=0)
    slots = dq.answer_slots(records, "conversations")
    assert bad.format == "conversations" and len(bad.changed) == round(0.5 * len(slots))
    assert not data.validate_records(bad.records, "conversations", check_images=False), "still valid conversations"
    for r, t in bad.changed:
        old, new = records[r]["conversations"][2 * t + 1]["value"], bad.records[r]["conversations"][2 * t + 1]["value"]
        assert old != new and dq.answer_kind(old) == dq.answer_kind(new)
    report = dq.check_dataset(bad.records, scenes=scenes, image_root=export["vqa"].parent)
    assert set(report.records("contradicts-scene")) <= set(bad.indices)
    assert report.counts["contradicts-scene"] >= 0.9 * len(bad.changed), "the checker finds the changed turns"


def test_mislabel_refuses_bad_input(vqa):
    with pytest.raises(ConfigError, match="share must be a fraction"):
        dq.mislabel(vqa, share=1.5)
    with pytest.raises(DataFormatError, match="question-answer data"):
        dq.mislabel([{"image": "a.png", "text": "a red circle"}])
    with pytest.raises(DataFormatError, match="known kind"):
        dq.mislabel([{"image": "a.png", "question": "describe it", "answer": "a red circle"}], share=1.0)


# ----------------------------------------------------------------------------- duplicate

@pytest.mark.parametrize("unique", [0.1, 7, 1])
def test_duplicate_keeps_the_size_and_reduces_unique_examples(vqa, scenes, unique):
    dup = dq.duplicate(vqa, unique=unique, near=0.5, seed=0)
    n = len(vqa)
    k = unique if isinstance(unique, int) else round(unique * n)
    assert len(dup.records) == n and dup.n_unique == k and len(set(dup.sources)) == k
    assert len(dup.near) == round(0.5 * (n - k)) and dup.n_exact == n - k - len(dup.near)
    for i, (rec, src) in enumerate(zip(dup.records, dup.sources)):
        original = vqa.records[src]
        assert rec["image"] == original["image"] and rec["answer"] == original["answer"]
        if i in dup.near and phrasings.question_form(original["question"]):
            assert rec["question"] != original["question"], "a near-duplicate says the question another way"
            assert dq.signature(rec["question"]) == dq.signature(original["question"])
        elif i not in dup.near:
            assert rec == original
    report = dq.check_dataset(dup.records, scenes=scenes)
    assert report.n_unique == k, "the checker merges exact and near duplicates into the unique examples"
    assert report.counts["exact-duplicate"] + report.counts["near-duplicate"] == n - k
    assert report.counts["contradicts-scene"] == 0 and report.counts["type-mismatch"] == 0


def test_duplicate_refuses_bad_input(vqa):
    with pytest.raises(ConfigError, match="unique must leave between 1"):
        dq.duplicate(vqa, unique=0)
    with pytest.raises(ConfigError, match="near must be a fraction"):
        dq.duplicate(vqa, near=2)


# ----------------------------------------------------------------------------- the checker

def test_checker_passes_a_clean_set(export, vqa, scenes):
    report = dq.check_dataset(vqa, scenes=scenes)
    assert report.ok, str(report)
    assert report.n_checked == report.n_answers == len(vqa), "every answer was checked against its scene"
    assert report.n_unique == len(vqa)
    convs = dq.check_dataset(export["instruction"], scenes=scenes)
    assert convs.ok and convs.n_checked == convs.n_answers, str(convs)


def test_checker_finds_planted_problems(vqa, scenes):
    records = [dict(r) for r in vqa.records]
    colour = next(i for i, r in enumerate(records) if dq.question_kind(r["question"]) == "colour")
    records[colour]["answer"] = "three"                                   # a count for a colour question
    shape = next(i for i, r in enumerate(records) if dq.question_kind(r["question"]) == "shape")
    truth = records[shape]["answer"]
    records[shape]["answer"] = next(s for s in shapes.SHAPES if s != truth)   # a wrong shape
    records.append(dict(records[0]))                                      # an exact copy of record 0
    near = next(i for i, r in enumerate(records) if phrasings.question_form(r["question"]) and i not in (0, colour, shape))
    records.append({**records[near], "question": phrasings.paraphrase_question(records[near]["question"],
                                                                               random.Random(1), noise=False)})
    conflict = next(i for i, r in enumerate(records) if r["answer"] == "yes" and i not in (0, near))
    records.append({**records[conflict], "answer": "no"})                 # same question, other answer
    n = len(vqa)
    report = dq.check_dataset(records, scenes=scenes)
    found = {(i.kind, i.record) for i in report.issues}
    assert ("type-mismatch", colour) in found
    assert ("contradicts-scene", shape) in found
    assert ("exact-duplicate", n) in found and report.issues[[i.record for i in report.issues].index(n)].other == 0
    assert ("near-duplicate", n + 1) in found
    assert ("conflicting-answers", n + 2) in found and ("contradicts-scene", n + 2) in found
    assert len(report.issues) == 6, str(report)
    assert not report.ok and "type-mismatch" in str(report)
    # without scenes the wrong shape cannot be seen, everything else still is
    blind = dq.check_dataset(records)
    assert blind.counts["contradicts-scene"] == 0 and blind.counts["type-mismatch"] == 1
    assert blind.counts["conflicting-answers"] == 1 and blind.n_checked == 0


def test_checker_finds_every_mislabelled_answer(vqa, scenes):
    bad = dq.mislabel(vqa, 0.2, seed=3)
    report = dq.check_dataset(bad.records, scenes=scenes)
    assert report.records("contradicts-scene") == bad.indices and bad.indices


def test_an_image_copied_under_another_name_is_the_same_image(tmp_path, vqa):
    record = dict(vqa.records[0])
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(record["image"], "rb").read())
    report = dq.check_dataset([record, {**record, "image": str(copy)}])
    assert report.counts["exact-duplicate"] == 1
    assert dq.check_dataset([record, {**record, "image": str(copy)}], hash_images=False).ok


def test_concept_scenes_match_the_concept_dataset(tmp_path):
    clean = concept.concept_dataset(tmp_path / "c", n_concept=8, n_ordinary=8, per_scene=3, seed=2)
    report = dq.check_dataset(clean, scenes=dq.concept_scenes_by_image(8, 8, seed=2))
    assert report.ok and report.n_checked == report.n_answers == 48, str(report)
    wrong = dq.check_dataset(clean, scenes=dq.concept_scenes_by_image(8, 8, seed=3))
    assert wrong.counts["contradicts-scene"] > 10, "the wrong scenes contradict the answers"


def test_write_variants_and_save_variant(tmp_path):
    clean = concept.concept_dataset(tmp_path / "c", n_concept=6, n_ordinary=6, per_scene=3, seed=0)
    v = dq.write_variants(clean, share=0.25, unique=4, seed=0)
    assert set(v.paths) == {"clean", "mislabelled", "duplicated"}
    for path in v.paths.values():
        assert path.parent == clean.parent and len(data.load_dataset(path)) == 36
    assert sum(a["answer"] != b["answer"] for a, b in zip(data.load_dataset(clean), data.load_dataset(
        v.paths["mislabelled"]))) == 9
    with pytest.raises(DataFormatError, match="outside"):
        dq.save_variant(data.load_dataset(clean).records, tmp_path / "elsewhere" / "x.json")


# ----------------------------------------------------------------------------- the runs

@pytest.mark.slow
def test_compare_variants_runs_the_same_finetune_on_each(tmp_path):
    import vlmstudy

    if not vlmstudy.get_card("llava").is_present():
        pytest.skip("the tiny LLaVA stand-in is not on disk")
    clean = concept.concept_dataset(tmp_path / "c", n_concept=4, n_ordinary=4, per_scene=2, seed=0)
    v = dq.write_variants(clean, share=0.5, unique=2, seed=0)
    new, old = concept.concept_test(n=3, seed=7, n_ordinary=4)
    config = dq.concept_config(clean, tmp_path / "unused", steps=1, batch_size=2)
    results = dq.compare_variants(v.paths, config, {"brown": new, "ordinary": old}, tmp_path / "runs",
                                  baseline=True, progress=False)
    assert list(results) == ["before", "clean", "mislabelled", "duplicated"]
    for name in ("clean", "mislabelled", "duplicated"):
        row = results[name]
        assert row["steps"] == 1 and row["n"] == {"brown": 3, "ordinary": 4}
        assert 0 <= row["accuracy"]["brown"] <= 1 and set(row["by_kind"]["brown"]) == {"colour"}
        run = json.loads((tmp_path / "runs" / name / "run.json").read_text())
        assert run["data"]["records"] == 16 and run["steps"] == 1
        saved = (tmp_path / "runs" / name / "config.yaml").read_text()
        assert str(v.paths[name]) in saved and "seed: 0" in saved
    assert results["before"]["accuracy"]["brown"] == 0.0, "the untrained stand-in never says brown"
