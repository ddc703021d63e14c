"""checklist.check_failure_cases: the structure of the failure cases a learner writes in notebook 12
(issue 22). Each wrong structure must be refused with a message naming the case and the field."""

import pytest
from PIL import Image

from vlmstudy import checklist, shapes
from vlmstudy.checklist import Failure, FailureCaseError, Result
from vlmstudy.errors import VlmStudyError


def _cases(n=5):
    scenes = shapes.make_scenes("test", n, seed=3)
    return [{"image": scene, "question": f"how many shapes are there? ({i})", "expected": str(len(scene.objects)),
             "got": "seven", "hypothesis": f"counting fails when shapes touch, test {i} with spaced copies"}
            for i, scene in enumerate(scenes)]


def _refused(cases, *needles, **kwargs):
    with pytest.raises(FailureCaseError) as err:
        checklist.check_failure_cases(cases, **kwargs)
    message = str(err.value)
    assert "\n" not in message, "one line"
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_five_good_cases_pass_and_come_back_as_failure_cases():
    out = checklist.check_failure_cases(_cases())
    assert [type(c) for c in out] == [checklist.FailureCase] * 5
    assert out[2].got == "seven" and out[2].hypothesis.startswith("counting fails") and out[2].model is None
    assert issubclass(FailureCaseError, VlmStudyError)


def test_too_few_cases_and_not_a_list():
    _refused(_cases(3), "3 cases written, 5 asked for")
    _refused([], "0 cases written")
    assert len(checklist.check_failure_cases(_cases(3), n=3)) == 3
    _refused(_cases(1)[0], "not one dict")
    _refused("five failures", "not a str")


def test_missing_unknown_and_placeholder_fields_are_named_by_case():
    cases = _cases()
    del cases[1]["hypothesis"]
    cases[2]["answer"] = cases[2].pop("got")
    cases[3]["question"] = "  "
    cases[4]["hypothesis"] = "TODO"
    message = _refused(cases, "case 2 lacks 'hypothesis'", "case 3 lacks 'got'", "case 3 has unknown field(s) 'answer'",
                       "case 4: 'question' is empty", "case 5: 'hypothesis' is a placeholder ('TODO')")
    assert "case 1" not in message


def test_a_right_answer_is_not_a_failure_under_the_vqa_normalisation():
    cases = _cases()
    cases[0].update(expected="2", got="Two.")
    cases[1].update(expected="red circle", got="it is a red circle")
    _refused(cases, "case 1: 'got' 'Two.' matches 'expected' '2'", "case 2: 'got'")
    cases = _cases()
    cases[0].update(expected="red circle", got="red square")     # right words, wrong object: a failure
    assert checklist.check_failure_cases(cases)


def test_hypotheses_must_be_sentences_and_distinct():
    cases = _cases()
    cases[0]["hypothesis"] = "binding"
    cases[3]["hypothesis"] = cases[2]["hypothesis"].upper()
    _refused(cases, "case 1: 'hypothesis' 'binding' is 1 word", "case 4: 'hypothesis' repeats case 3's")


def test_images_paths_numbers_and_duplicates(tmp_path):
    good = tmp_path / "mine.png"
    Image.new("RGB", (8, 8)).save(good)
    cases = _cases()
    cases[0]["image"] = str(good)
    cases[1]["image"] = Image.new("RGB", (8, 8))
    cases[2]["image"] = 3
    assert checklist.check_failure_cases(cases)
    cases[3]["image"] = str(tmp_path / "missing.png")
    cases[4]["image"] = [1, 2]
    _refused(cases, "case 4: 'image'", "is no file", "case 5: 'image' is a list")
    cases = _cases()
    cases[0]["image"] = cases[1]["image"] = 4
    cases[1]["question"] = cases[0]["question"].upper() + "!"
    _refused(cases, "case 2: asks case 1's question about the same image (of the same model) again")
    cases[0]["model"], cases[1]["model"] = "llava", "blip2"     # two models failing the same question: two cases
    assert checklist.check_failure_cases(cases)


def test_grid_numbers_are_bounded_by_the_run():
    run = checklist.Checklist(scenes=shapes.make_scenes("test", 4, seed=0), prompts=list(checklist.PROMPTS),
                              models=["m"], results=[])
    cases = _cases()
    cases[0]["image"] = 4                                    # the grid's rows are labelled #1 ... #4
    assert checklist.check_failure_cases(cases, run=run)
    cases[0]["image"] = 5
    _refused(cases, "case 1: 'image' 5 is no row of the grid (its rows are #1 to #4)", run=run)
    cases[0]["image"] = 0
    _refused(cases, "case 1: 'image' 0 is no row of the grid (its rows are #1, #2 ...)")
    cases[0]["image"] = True
    _refused(cases, "case 1: 'image' is True")


def test_failure_record_feeds_the_checker():
    scenes = shapes.make_scenes("test", 5, seed=1)
    failures = [Failure(Result(i, s, "llava", "count", f"how many shapes? {i}", str(len(s.objects)), "nine", False),
                        "overcount", f"the model counts some shapes twice in scene {i}, retest them alone")
                for i, s in enumerate(scenes)]
    records = [checklist.failure_record(f) for f in failures]
    assert set(records[0]) == set(checklist.CASE_FIELDS) | {"model", "category"}
    out = checklist.check_failure_cases(records)
    assert [c.model for c in out] == ["llava"] * 5 and out[0].category == "overcount"
