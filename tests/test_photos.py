"""The real photos (vlmstudy.photos): shipped files, recorded licences, hand-written facts, helpers."""

from __future__ import annotations

import importlib.util
import io

import pytest
import torch
from PIL import Image

import vlmstudy
from vlmstudy import photos
from vlmstudy.errors import ConfigError, ImageError
from vlmstudy.settings import REPO_DIR

PHOTOS_DIR = photos.photos_dir()


def _tool():
    spec = importlib.util.spec_from_file_location("make_photos", REPO_DIR / "tools" / "make_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_photo_is_shipped_small_and_loads():
    total = 0
    for entry in photos.CATALOGUE:
        path = PHOTOS_DIR / f"{entry.name}.jpg"
        assert path.is_file(), f"{path} is missing"
        total += path.stat().st_size
        with Image.open(path) as raw:
            assert raw.format == "JPEG" and max(raw.size) == 384, (entry.name, raw.format, raw.size)
    assert total < 300 * 1024, f"the photos take {total / 1024:.0f} KB; keep them under 300 KB"
    loaded = vlmstudy.real_photos()
    assert [p.name for p in loaded] == list(photos.PHOTO_NAMES) and len(loaded) >= 5
    assert all(p.image.mode == "RGB" and max(p.image.size) == 384 for p in loaded)
    assert sorted(f.name for f in PHOTOS_DIR.iterdir()) == sorted([f"{n}.jpg" for n in photos.PHOTO_NAMES] + ["LICENSES.md"])


def test_every_licence_is_recorded_and_permissive():
    licences = (PHOTOS_DIR / "LICENSES.md").read_text()
    assert licences == _tool().licences_markdown(), "LICENSES.md is out of date: python tools/make_photos.py"
    for entry in photos.CATALOGUE:
        row = next(line for line in licences.splitlines() if line.startswith(f"| `{entry.name}.jpg`"))
        assert entry.author in row and entry.licence in row and entry.skimage_function in row
        assert entry.licence.startswith(("CC0", "public domain")), entry.licence
        assert len(entry.source_sha256) == 64
    for photo, entry in zip(vlmstudy.real_photos(), photos.CATALOGUE):
        assert photo.licence.startswith(f"{entry.title}: photo by {entry.author}, {entry.licence}")
        assert "scikit-image 0.26" in photo.licence and entry.skimage_function in photo.licence


def test_captions_labels_and_questions_are_consistent():
    for p in vlmstudy.real_photos():
        assert p.caption.strip() and len(p.labels) == len(set(p.labels)) >= 3
        assert p.label in p.labels, f"{p.name}: the right label {p.label!r} is not among {p.labels}"
        assert p.labels[0] != p.label, f"{p.name}: a model that ties picks the first label; the truth must not be first"
        assert 2 <= len(p.questions) <= 3 and all(q.strip().endswith("?") and a.strip() for q, a in p.questions)
        assert p.things and all(t.strip() for t in p.things)
    assert len({p.label for p in vlmstudy.real_photos()}) == len(photos.PHOTO_NAMES), "each photo has its own subject"


def test_lookup_by_name_and_clear_errors(monkeypatch, tmp_path):
    assert vlmstudy.real_photo(" Chelsea ").name == "chelsea"
    assert [p.name for p in vlmstudy.real_photos(["rocket", "coffee"])] == ["rocket", "coffee"]
    assert "chelsea" in repr(vlmstudy.real_photo("chelsea"))
    with pytest.raises(ConfigError, match="no real photo called 'dog'.*chelsea, coffee"):
        vlmstudy.real_photo("dog")
    with pytest.raises(ConfigError, match="must be a string"):
        vlmstudy.real_photo(3)
    monkeypatch.setattr(vlmstudy.settings, "ASSETS_DIR", tmp_path)
    with pytest.raises(ImageError, match="is missing: restore it with `git checkout -- assets/images/photos`"):
        vlmstudy.real_photo("chelsea")


def test_make_photos_refuses_files_of_another_version(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, "PNG")
    (source / photos.CATALOGUE[0].source_file).write_bytes(buf.getvalue())
    with pytest.raises(SystemExit, match="SHA-256 .* not scikit-image 0.26.0's"):
        _tool().main(["--source", str(source), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / f"{photos.CATALOGUE[0].name}.jpg").exists()


def test_zero_shot_on_the_photos_is_well_formed():
    clip, processor = vlmstudy.load("clip")
    chosen = vlmstudy.real_photos(["chelsea", "camera"])
    rows = photos.zero_shot(clip, processor, chosen)
    assert [r.photo.name for r in rows] == ["chelsea", "camera"]
    for r in rows:
        assert r.probs.shape == (len(r.photo.labels),)
        assert torch.allclose(r.probs.sum(), torch.tensor(1.0), atol=1e-5), "CLIP: a softmax over the photo's labels"
        assert r.predicted in r.photo.labels and 0 <= r.truth_probability <= r.confidence <= 1
    fig = photos.show_predictions(rows)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and all("truth:" in t for t in titles)
    with pytest.raises(ConfigError, match="takes the list that photos.zero_shot"):
        photos.show_predictions(chosen)


def test_caption_and_question_tables_hold_every_answer():
    chosen = vlmstudy.real_photos(["coffee"])
    table = photos.question_table({"BLIP-VQA": "blip-vqa"}, chosen, max_new_tokens=4)
    assert table.header == ["photo", "question", "our answer", "BLIP-VQA"]
    assert len(table.rows) == len(chosen[0].questions)
    assert table.column("our answer") == [a for _, a in chosen[0].questions]
    assert all(isinstance(a, str) for a in table.column("BLIP-VQA"))
    captions = photos.caption_table("blip-caption", chosen, max_new_tokens=6)
    assert captions.header == ["photo", "written by a person", "blip-caption"] and len(captions.rows) == 1
    with pytest.raises(ConfigError, match="models= is empty"):
        photos.question_table({}, chosen)
    with pytest.raises(ConfigError, match="RealPhoto records"):
        photos.caption_table("blip-caption", [chosen[0].image])


def test_question_table_marks_answers_that_say_ours(monkeypatch):
    from vlmstudy import tasks

    said = {"what animal is this?": "It is a cat.", "what colour are its eyes?": "blue",
            "how many eyes can you see?": "two"}
    monkeypatch.setattr(tasks, "answer_batch", lambda images, questions, model, progress, **kw: [said[q] for q in questions])
    table = photos.question_table({"fake": "blip-vqa"}, vlmstudy.real_photos(["chelsea"]), mark=True)
    assert table.column("fake") == ["It is a cat. ✓", "blue", "two ✓"], "VQA normalisation: 'two' says '2'"
    plain = photos.question_table({"fake": "blip-vqa"}, vlmstudy.real_photos(["chelsea"]))
    assert plain.column("fake") == ["It is a cat.", "blue", "two"]
