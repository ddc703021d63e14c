"""vlmstudy.evaluation: VQA answer scoring, and quality floors read from the stand-ins' model cards."""

from __future__ import annotations

import json

import pytest
import torch

from vlmstudy import evaluation, settings
from vlmstudy.errors import ConfigError
from vlmstudy.zoo.registry import get_card


@pytest.mark.parametrize("text, normal", [
    ("Two red Circles.", "2 red circles"),
    ("The answer is: none!", "answer is 0"),
    ("a blue square", "blue square"),
    ("1,000 dogs", "1000 dogs"),
    ("3.5", "3.5"),
    ("It dont matter", "it don't matter"),
    (None, ""),
])
def test_normalize_answer_follows_the_vqa_rules(text, normal):
    assert evaluation.normalize_answer(text) == normal


@pytest.mark.parametrize("answer, truth, right", [
    ("2", "two", True),                              # BLIP-VQA answers counts as digits
    ("There are two shapes in the image.", "2", True),  # a chat model answers in a sentence
    ("The circle is red.", "red", True),
    ("Yes.", "yes", True),
    ("yes and no", "yes", False),                    # both: says neither
    ("no, there is not", "no", True),
    ("red square", "red circle", False),             # every word, in order
    ("a red circle on the left", "red circle", True),
    ("reddish", "red", False),                       # whole words only
    ("", "red", False),
    ("", "", True),
])
def test_answer_matches(answer, truth, right):
    assert evaluation.answer_matches(answer, truth) is right


def test_accuracies():
    assert evaluation.answer_accuracy(["2", "blue", "a circle"], ["two", "red", "circle"]) == pytest.approx(2 / 3)
    by_kind = evaluation.accuracy_by_kind(["2", "blue", "red"], ["two", "red", "red"], ["count", "colour", "colour"])
    assert by_kind == {"colour": 0.5, "count": 1.0}
    with pytest.raises(ConfigError, match="2 answers but 1 truths"):
        evaluation.answer_accuracy(["a", "b"], ["a"])
    with pytest.raises(ConfigError):
        evaluation.answer_accuracy([], [])


def test_tolerance_is_two_standard_errors_with_a_minimum():
    assert evaluation.tolerance(0.75, 48) == pytest.approx(2 * (0.75 * 0.25 / 48) ** 0.5)
    assert evaluation.tolerance(1.0, 200) == evaluation.MIN_TOLERANCE
    assert evaluation.tolerance(0.5) == evaluation.DEFAULT_TOLERANCE
    with pytest.raises(ConfigError):
        evaluation.tolerance(0.5, 0)


def _card_metrics(name: str) -> dict:
    return json.loads((get_card(name).stand_in_dir / "training.json").read_text())["metrics"]


def test_a_stand_in_must_reach_its_card_floor(capsys):
    metrics = _card_metrics("clip")
    floor = metrics["zero_shot_accuracy"] - evaluation.tolerance(metrics["zero_shot_accuracy"], 200)
    ok = evaluation.check_quality("clip", "zero_shot_accuracy", floor + 0.001, n=200)
    assert ok.origin == "stand-in" and ok.asserted and ok.floor == pytest.approx(floor)
    assert "tiny-clip/training.json" in capsys.readouterr().out
    with pytest.raises(evaluation.QualityError, match="below the stand-in's floor") as err:
        evaluation.check_quality("clip", "zero_shot_accuracy", floor - 0.001, n=200)
    assert isinstance(err.value, AssertionError)  # a failed check in a notebook reads as one


def test_a_loaded_stand_in_is_recognised_by_its_folder():
    import vlmstudy

    model, processor = vlmstudy.load("clip")
    assert evaluation.model_origin(model)[:2] == ("stand-in", "clip")
    assert evaluation.model_origin((model, processor))[:2] == ("stand-in", "clip")


def test_per_kind_floor_uses_the_samples_mix():
    metrics = _card_metrics("blip2")
    kinds = ["count"] * 10 + ["shape"] * 30
    expected = (10 * metrics["vqa_accuracy_count"] + 30 * metrics["vqa_accuracy_shape"]) / 40
    check = evaluation.quality_floor("blip2", "vqa_accuracy", n=40, kinds=kinds)
    assert check.expected == pytest.approx(expected)
    assert check.floor == pytest.approx(expected - evaluation.tolerance(expected, 40))


def test_a_metric_the_card_lacks_needs_a_stated_floor():
    with pytest.raises(ConfigError, match="has no 'binding_accuracy'"):
        evaluation.check_quality("clip", "binding_accuracy", 0.9)
    assert evaluation.check_quality("clip", "binding_accuracy", 0.9, floor=0.5).floor == 0.5
    with pytest.raises(evaluation.QualityError):
        evaluation.check_quality("clip", "binding_accuracy", 0.4, floor=0.5)


def test_a_real_checkpoint_is_printed_beside_its_published_figure_never_asserted(capsys):
    settings.set_mode("hub")
    check = evaluation.check_quality("llava", "first_turn_accuracy", 0.0)
    assert check.origin == "hub" and not check.asserted and check.passed
    out = capsys.readouterr().out
    assert "not asserted" in out and "VQAv2" in out


def test_a_folder_without_a_card_is_printed_only(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check = evaluation.check_quality(str(tmp_path), "vqa_accuracy", 0.0, quiet=True)
    assert check.origin == "other" and not check.asserted


def test_to_model_moves_floats_to_the_models_dtype_and_keeps_ids():
    from vlmstudy.generation import to_model

    model = torch.nn.Linear(2, 2).to(torch.float64)
    batch = to_model(model, {"pixel_values": torch.zeros(1, 3), "input_ids": torch.ones(1, 2, dtype=torch.long),
                             "note": "kept"})
    assert batch["pixel_values"].dtype == torch.float64 and batch["input_ids"].dtype == torch.long
    assert batch["note"] == "kept"
