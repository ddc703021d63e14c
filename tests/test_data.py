"""vlmstudy.data: the five formats (the guide's four and LLaVA's conversations), every bad-record
report, hostile files (paths out of the folder, deep nesting, other encodings), loading, converters."""

from __future__ import annotations

import json

import pytest

from vlmstudy import data, shapes
from vlmstudy.errors import DataFormatError


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    shapes.make_scenes("train", 1, seed=0)[0].render().save(tmp_path / "images" / "a.png")
    return tmp_path


def write(folder, records, name="d.json"):
    path = folder / name
    path.write_text(json.dumps(records))
    return path


def conv(*turns):
    return [{"from": r, "value": v} for r, v in turns]


GOOD = {   # the fine-tuning guide's four formats as it writes them, and LLaVA's conversations
    "caption": {"image": "images/a.png", "text": "a red circle"},
    "vqa": {"image": "images/a.png", "question": "what colour is it?", "answer": "red"},
    "instruction": {"image": "images/a.png", "instruction": "Describe this shape", "input": "", "output": "a red circle"},
    "text": {"image": "images/a.png", "text": "User: what is it?\nAssistant: a circle\nUser: and its colour?\n"
                                              "Assistant: red"},
    "conversations": {"image": "images/a.png", "conversations": conv(("human", "<image>\nwhat is it?"),
                                                                     ("gpt", "a circle"), ("human", "and its colour?"),
                                                                     ("gpt", "red"))},
}


@pytest.mark.parametrize("fmt", data.FORMATS)
def test_good_records_load_with_absolute_images_and_detected_format(folder, fmt):
    ds = data.load_dataset(write(folder, [GOOD[fmt], GOOD[fmt]]))
    assert ds.format == fmt and len(ds) == 2 and not ds.skipped
    assert ds[0]["image"] == str((folder / "images" / "a.png").resolve())
    assert data.validate_records([GOOD[fmt]], fmt, folder) == []


@pytest.mark.parametrize("fmt", ["text", "conversations"])
def test_to_examples_one_per_answer_with_history(fmt):
    ex = data.to_examples([GOOD[fmt]], fmt)
    assert [(e.question, e.answer) for e in ex] == [("what is it?", "a circle"), ("and its colour?", "red")]
    assert ex[0].history == () and ex[1].history == (("what is it?", "a circle"),)
    assert ex[1].turns == [("what is it?", "a circle"), ("and its colour?", None)]
    cap = data.to_examples([GOOD["caption"]], "caption")[0]
    assert cap.question is None and cap.answer == "a red circle"


def test_every_format_maps_to_prompt_and_target():
    """What the collator trains on: (question, answer) per format; instruction + input join."""
    pairs = {fmt: [(e.question, e.answer) for e in data.to_examples([GOOD[fmt]], fmt)] for fmt in data.FORMATS}
    assert pairs["caption"] == [(None, "a red circle")]
    assert pairs["vqa"] == [("what colour is it?", "red")]
    assert pairs["instruction"] == [("Describe this shape", "a red circle")]
    with_input = dict(GOOD["instruction"], input="in one word")
    assert data.to_examples([with_input], "instruction")[0].question == "Describe this shape\nin one word"
    assert pairs["text"] == pairs["conversations"]


def test_detection_and_the_earlier_spellings(folder):
    """'caption' as the caption key, and 'instruction' naming a file of conversations, still work."""
    assert data.load_dataset(write(folder, [{"image": "images/a.png", "caption": "a red circle"}])).format == "caption"
    legacy = data.load_dataset(write(folder, [GOOD["conversations"]]), "instruction")
    assert legacy.format == "conversations" and len(legacy.examples()) == 2
    assert data.load_dataset(write(folder, [GOOD["instruction"]]), "instruction").format == "instruction"
    # a "text" that is not a dialogue is a caption; one that is, a text turn
    assert data.detect_format([{"image": "x", "text": "a cat. User: no"}]) == "caption"
    assert data.detect_format([{"image": "x", "text": "user: hi\nASSISTANT: yes"}]) == "text"
    assert data.parse_text_turns("User: a\nAssistant: b\nwith a second line") == [("User", "a"),
                                                                                  ("Assistant", "b\nwith a second line")]


# every kind of bad record, reported by index and field
BAD = [
    ("vqa", {"image": "images/missing.png", "question": "q?", "answer": "a"}, "image", "image file not found"),
    ("vqa", {"question": "q?", "answer": "a"}, "image", "missing"),
    ("vqa", {"image": 5, "question": "q?", "answer": "a"}, "image", "wrong type"),
    ("vqa", {"image": "images/a.png", "question": "q?", "answer": ""}, "answer", "empty answer"),
    ("vqa", {"image": "images/a.png", "question": "q?", "answer": 3}, "answer", "wrong type"),
    ("vqa", {"image": "images/a.png", "question": "  ", "answer": "a"}, "question", "empty question"),
    ("vqa", {"image": "images/a.png", "answer": "a"}, "question", "missing"),
    ("caption", {"image": "images/a.png", "caption": ["a", "b"]}, "caption", "wrong type"),
    ("caption", {"image": "images/a.png", "caption": ""}, "caption", "empty caption"),
    ("caption", {"image": "images/a.png", "text": 3}, "text", "wrong type"),
    ("caption", {"image": "images/a.png"}, "text", "missing (a caption string"),
    ("instruction", {"image": "images/a.png", "instruction": "Describe", "input": ""}, "output", "missing"),
    ("instruction", {"image": "images/a.png", "input": "", "output": "x"}, "instruction", "missing"),
    ("instruction", {"image": "images/a.png", "instruction": "Describe", "input": 5, "output": "x"}, "input",
     "wrong type"),
    ("instruction", {"image": "images/a.png", "instruction": "Describe", "output": " "}, "output", "empty output"),
    ("text", {"image": "images/a.png", "text": "a red circle"}, "text", "must start with 'User:'"),
    ("text", {"image": "images/a.png", "text": "User: what is it?"}, "text", "ends with a User turn"),
    ("text", {"image": "images/a.png", "text": "User: what is it?\nAssistant:  "}, "text", "turn 1 (Assistant) is empty"),
    ("text", {"image": "images/a.png", "text": "User: q\nUser: a"}, "text", "bad role order"),
    ("text", {"image": "images/a.png"}, "text", "missing"),
    ("caption", {"image": "../../../../etc/passwd", "text": "x"}, "image", "leads outside the data folder"),
    ("vqa", {"image": "/etc/hostname", "question": "q?", "answer": "a"}, "image", "leads outside the data folder"),
    ("conversations", {"image": "images/a.png"}, "conversations", "missing"),
    ("conversations", {"image": "images/a.png", "conversations": "hi"}, "conversations", "wrong type"),
    ("conversations", {"image": "images/a.png", "conversations": []}, "conversations", "empty conversation"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "what is it?"), ("gpt", "x"))},
     "conversations[0].value", "<image> token exactly once"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> <image> q"), ("gpt", "x"))},
     "conversations[0].value", "exactly once (found 2)"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("gpt", "<image> q"), ("human", "x"))},
     "conversations[0].from", "bad role order"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("human", "x"))},
     "conversations[1].from", "bad role order"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("gpt", "a"), ("human", "q2"))},
     "conversations[2].from", "ends with a human turn"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("bot", "a"))},
     "conversations[1].from", "unknown role 'bot'"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("gpt", " "))},
     "conversations[1].value", "empty answer"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("gpt", "a"),
                                                                    ("human", "<image> again"), ("gpt", "b"))},
     "conversations[2].value", "only in the first human turn"),
    ("conversations", {"image": "images/a.png", "conversations": [{"from": "human", "value": "<image> q"}, "gpt: a"]},
     "conversations[1]", "wrong type"),
    ("conversations", {"image": "images/a.png", "conversations": conv(("human", "<image> q"), ("gpt", 7))},
     "conversations[1].value", "wrong type"),
]


@pytest.mark.parametrize("fmt,record,field,message", BAD, ids=[f"{b[0]}-{b[2]}-{b[3][:20]}" for b in BAD])
def test_each_bad_record_is_reported_by_index_and_field(folder, fmt, record, field, message):
    records = [GOOD[fmt], record]
    problems = data.validate_records(records, fmt, folder)
    assert problems, record
    assert any(p.index == 1 and p.field == field and message in p.message for p in problems), problems
    assert all(p.index == 1 for p in problems)  # the good record is not blamed
    with pytest.raises(DataFormatError) as err:
        data.load_dataset(write(folder, records), fmt)
    text = str(err.value)
    assert f"record 1, field {field!r}" in text and "skip_invalid" in text


def test_not_an_object_record(folder):
    problems = data.validate_records([GOOD["vqa"], "oops"], "vqa", folder)
    assert [(p.index, p.field) for p in problems] == [(1, "(record)")]


def test_error_lists_at_most_max_problems_and_counts_the_rest(folder):
    bad = [{"image": "images/a.png", "question": "q", "answer": ""}] * 7
    with pytest.raises(DataFormatError) as err:
        data.load_dataset(write(folder, [GOOD["vqa"]] + bad), "vqa", max_problems=3)
    text = str(err.value)
    assert "7 invalid record(s) out of 8" in text and text.count("field ") == 3
    assert "and 4 more" in text


def test_skip_invalid_keeps_the_good_ones_and_warns(folder):
    records = [GOOD["vqa"], {"image": "images/a.png", "question": "q", "answer": ""}, GOOD["vqa"]]
    with pytest.warns(UserWarning, match="skipping 1 invalid"):
        ds = data.load_dataset(write(folder, records), skip_invalid=True)
    assert len(ds) == 2 and [p.index for p in ds.skipped] == [1]
    with pytest.raises(DataFormatError, match="No valid record"):
        data.load_dataset(write(folder, records[1:2]), "vqa", skip_invalid=True)


def test_file_level_errors(folder):
    with pytest.raises(DataFormatError, match="not found"):
        data.load_dataset(folder / "nope.json")
    (folder / "broken.json").write_text("[{")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        data.load_dataset(folder / "broken.json")
    with pytest.raises(DataFormatError, match="JSON list"):
        data.load_dataset(write(folder, {"image": "x"}))
    with pytest.raises(DataFormatError, match="no records"):
        data.load_dataset(write(folder, []))
    with pytest.raises(DataFormatError, match="Cannot tell the data format"):
        data.load_dataset(write(folder, [{"image": "images/a.png", "words": "x"}]))
    with pytest.raises(DataFormatError, match="Did you mean 'vqa'"):
        data.load_dataset(write(folder, [GOOD["vqa"]]), "vqaa")


def test_image_root_and_check_images(folder):
    other = folder / "sub"
    other.mkdir()
    path = write(other, [GOOD["vqa"]])
    with pytest.raises(DataFormatError, match="image file not found"):
        data.load_dataset(path)
    assert len(data.load_dataset(path, image_root=folder)) == 1
    assert len(data.load_dataset(path, check_images=False)) == 1


def test_shapes_export_is_valid_in_its_three_files(tmp_path):
    paths = shapes.export_dataset(shapes.make_scenes("train", 3, seed=1), tmp_path)
    for name, fmt in (("caption", "caption"), ("vqa", "vqa"), ("instruction", "conversations")):
        ds = data.load_dataset(paths[name], "instruction" if name == "instruction" else None)
        assert ds.format == fmt and len(ds.examples()) >= 3


def test_convert_between_formats(folder):
    inst = data.convert([GOOD["vqa"]], "vqa", "conversations")
    assert data.validate_records(inst, "conversations", folder) == []
    assert inst[0]["conversations"][1]["value"] == "red"
    back = data.convert([GOOD["conversations"]], "conversations", "vqa")
    assert [r["answer"] for r in back] == ["a circle", "red"]
    cap = data.convert([GOOD["caption"]], "caption", "vqa", question="describe it.")
    assert cap == [{"image": "images/a.png", "question": "describe it.", "answer": "a red circle"}]
    with pytest.raises(DataFormatError, match="caption format"):
        data.convert([GOOD["vqa"]], "vqa", "caption")
    assert data.convert([GOOD["vqa"]], None, "instruction") == [
        {"image": "images/a.png", "instruction": "what colour is it?", "input": "", "output": "red"}]


@pytest.mark.parametrize("source", data.FORMATS)
@pytest.mark.parametrize("target", data.FORMATS)
def test_every_conversion_gives_valid_records_with_the_same_targets(folder, source, target):
    if target == "caption" and source != "caption":
        pytest.skip("only captions convert to captions")
    out = data.convert([GOOD[source]], source, target)
    assert data.validate_records(out, target, folder) == []
    before = [e.answer for e in data.to_examples([GOOD[source]], source)]
    assert [e.answer for e in data.to_examples(out, target)] == before
    if target in ("text", "conversations") and source in ("text", "conversations"):   # dialogues lose nothing
        assert data.to_examples(out, target) == data.to_examples([GOOD[source]], source)


def test_convert_file_rewrites_image_paths_for_the_new_folder(folder):
    src = write(folder, [GOOD["conversations"]])
    out, fmt, n = data.convert_file(src, folder / "converted" / "t.json", "text")
    assert fmt == "conversations" and n == 1
    ds = data.load_dataset(out, allow_outside_root=True)   # ../images/a.png, outside converted/
    assert ds.format == "text" and ds[0]["image"] == str((folder / "images" / "a.png").resolve())
    with pytest.raises(DataFormatError, match="leads outside"):
        data.load_dataset(out)


@pytest.mark.parametrize("fmt", data.FORMATS)
def test_create_sample_multimodal_dataset(tmp_path, fmt):
    path = data.create_sample_multimodal_dataset(tmp_path / "data" / "multimodal_train.json", 3, format=fmt)
    ds = data.load_dataset(path)
    assert ds.format == fmt and len(ds) >= 3 and path.name == "multimodal_train.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["images", "multimodal_train.json"]
    assert len(list((path.parent / "images").iterdir())) == 3


# ----------------------------------------------------------------------------- hostile files (issue 25)

def test_image_paths_outside_the_folder_are_refused_naming_the_record(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    shapes.make_scenes("train", 1, seed=0)[0].render().save(outside / "real.png")
    (folder / "images" / "link.png").symlink_to(outside / "real.png")
    records = [GOOD["vqa"], dict(GOOD["vqa"], image=str(outside / "real.png")),
               dict(GOOD["vqa"], image="images/../../etc/passwd"), dict(GOOD["vqa"], image="images/link.png")]
    path = write(folder, records)
    with pytest.raises(DataFormatError) as err:
        data.load_dataset(path)
    text = str(err.value)
    assert "3 invalid record(s) out of 4" in text
    for i in (1, 2, 3):
        assert f"record {i}, field 'image'" in text
    assert "allow_outside_root" in text
    assert len(data.load_dataset(path, allow_outside_root=True, check_images=False)) == 4
    # records in memory (no data folder) are not confined; an explicit image_root is
    assert len(data.load_dataset([dict(GOOD["vqa"], image=str(outside / "real.png"))])) == 1
    with pytest.raises(DataFormatError, match="leads outside"):
        data.load_dataset([dict(GOOD["vqa"], image=str(outside / "real.png"))], image_root=folder)


def test_deeply_nested_json_is_one_line_error(folder):
    path = folder / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="nests JSON lists / objects too deeply"):
        data.load_dataset(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig", "utf-32", "latin-1"])
def test_other_encodings(folder, encoding):
    path = folder / "enc.json"
    record = dict(GOOD["vqa"], answer="rouge \u00e9")
    path.write_bytes(json.dumps([record], ensure_ascii=False).encode(encoding))
    if encoding in ("utf-16", "utf-8-sig", "utf-32"):   # a byte-order mark says what it is: read it
        assert data.load_dataset(path)[0]["answer"] == "rouge \u00e9"
    else:
        message = "NUL bytes" if encoding == "utf-16-le" else "not UTF-8"
        with pytest.raises(DataFormatError, match=message):
            data.load_dataset(path)


def test_cli_data_check_gives_one_line_errors(folder, capsys):
    from vlmstudy.cli import main

    deep = folder / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    wide = folder / "wide.json"
    wide.write_bytes(json.dumps([GOOD["vqa"]]).encode("utf-16-le"))
    escape = write(folder, [dict(GOOD["vqa"], image="../../../../etc/passwd")], "escape.json")
    for path, message in ((deep, "too deeply"), (wide, "NUL bytes"), (escape, "record 0, field 'image'")):
        assert main(["data", "check", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert main(["data", "check", str(escape), "--allow-outside-root", "--no-check-images"]) == 0


# ----------------------------------------------------------------------------- converters

def coco_fixture():
    return {"images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
            "annotations": [{"image_id": 1, "id": 10, "caption": "A dog  on a sofa."},
                            {"image_id": 1, "id": 11, "caption": "A brown dog."},
                            {"image_id": 2, "id": 12, "caption": "Two cats."}]}


def test_coco_to_caption(tmp_path):
    src = tmp_path / "captions.json"
    src.write_text(json.dumps(coco_fixture()))
    out = tmp_path / "out" / "caption.json"
    records = data.coco_to_caption(src, tmp_path / "train2017", out=out)
    assert [r["caption"] for r in records] == ["A dog on a sofa.", "A brown dog.", "Two cats."]
    assert records[0]["image"] == "../train2017/000000000001.jpg"      # relative to the output file
    assert json.loads(out.read_text()) == records
    assert data.validate_records(records, "caption", out.parent, check_images=False, allow_outside_root=True) == []
    one = data.coco_to_caption(coco_fixture(), "imgs", max_per_image=1)
    assert [r["image"] for r in one] == ["imgs/000000000001.jpg", "imgs/000000000002.jpg"]


def test_coco_problems_are_reported():
    bad = coco_fixture()
    bad["annotations"] += [{"image_id": 99, "caption": "x"}, {"image_id": 1, "caption": ""}, {"caption": "y"}]
    with pytest.raises(DataFormatError) as err:
        data.coco_to_caption(bad, "imgs")
    text = str(err.value)
    assert "annotations[3]: image_id 99" in text and "annotations[4] has no caption" in text
    assert "annotations[5] has no 'image_id'" in text
    with pytest.raises(DataFormatError, match="no 'annotations' list"):
        data.coco_to_caption({"images": []}, "imgs")


def vqa_fixture():
    questions = {"questions": [{"image_id": 9, "question": "What color is the bus?", "question_id": 90},
                               {"image_id": 25, "question": "How many people?", "question_id": 250}]}
    answers = [{"answer": "2", "answer_confidence": "yes", "answer_id": i} for i in range(1, 4)]
    annotations = {"annotations": [
        {"question_id": 90, "image_id": 9, "multiple_choice_answer": "red", "answers": [{"answer": "red"}]},
        {"question_id": 250, "image_id": 25, "multiple_choice_answer": "2", "answers": answers}]}
    return questions, annotations


def test_vqav2_to_vqa(tmp_path):
    q, a = vqa_fixture()
    (tmp_path / "q.json").write_text(json.dumps(q))
    (tmp_path / "a.json").write_text(json.dumps(a))
    out = tmp_path / "vqa.json"
    records = data.vqav2_to_vqa(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "val2014", split="val2014",
                                out=out)
    assert [(r["question"], r["answer"]) for r in records] == [("What color is the bus?", "red"),
                                                              ("How many people?", "2")]
    assert records[0]["image"] == "val2014/COCO_val2014_000000000009.jpg"
    assert data.vqav2_image_name(25, "train2014") == "COCO_train2014_000000000025.jpg"
    assert data.validate_records(json.loads(out.read_text()), "vqa", tmp_path, check_images=False) == []


def test_vqav2_falls_back_to_the_human_answers_and_reports_problems():
    q, a = vqa_fixture()
    del a["annotations"][1]["multiple_choice_answer"]
    assert data.vqav2_to_vqa(q, a, "imgs")[1]["answer"] == "2"
    q["questions"].append({"image_id": 3, "question": "Is it?", "question_id": 30})   # no annotation
    a["annotations"][0]["image_id"] = 8                                                # wrong image
    with pytest.raises(DataFormatError) as err:
        data.vqav2_to_vqa(q, a, "imgs")
    text = str(err.value)
    assert "question_id 30) has no annotation" in text and "about image 9 but its annotation about image 8" in text
