"""vlmstudy.checklist: the grid, the automatic failure search, the hypotheses and the report.
Most tests use a scripted answer function (so they hold whatever the stand-ins answer); one
runs a real stand-in. Notebook 12 runs the full grid."""

import html as html_lib

import pytest

from vlmstudy import checklist, shapes, tasks
from vlmstudy.checklist import Result
from vlmstudy.errors import ConfigError


def _scripted(monkeypatch, reply):
    """Replace the models: ``reply(model, question)`` gives each answer."""
    calls = []

    def answer_batch(images, questions, model, batch_size=8, progress=True):
        calls.append((model, len(questions)))
        return [reply(model, q) for q in questions]

    monkeypatch.setattr(tasks, "answer_batch", answer_batch)
    return calls


def _result(scene, kind, answer):
    prompt = next(p for p in checklist.PROMPTS if p.kind == kind)
    truth = prompt.truth(scene)
    return Result(0, scene, "m", kind, prompt.question(scene), truth, answer,
                  shapes.normalize_text(answer) == truth)


def test_prompts_ask_about_the_first_object():
    scene = shapes.make_scenes("test", 1, seed=1, n_objects=3)[0]
    first = scene.objects[0]
    count, colour, shape = checklist.PROMPTS
    assert count.truth(scene) == "three" and colour.truth(scene) == first.color and shape.truth(scene) == first.shape
    assert shapes.POSITION_PHRASES[first.position] in colour.question(scene)
    assert any(qa.question == shape.question(scene) and qa.answer == first.shape for qa in shapes.questions(scene))
    with pytest.raises(ConfigError):
        checklist.ChecklistPrompt("size", "how big?").truth(scene)


def test_grid_accuracy_and_table_with_a_scripted_model(monkeypatch):
    calls = _scripted(monkeypatch, lambda model, q: "one" if model == "a" else "red")
    run = checklist.run_checklist(models=("a", "b"), n_images=4, progress=False)
    assert calls == [("a", 12), ("b", 12)], "one batched call per model"
    assert len(run.results) == 4 * 3 * 2 and run.split == "test"
    ones = sum(len(s.objects) == 1 for s in run.scenes) / 4
    assert run.accuracy_table()["a"]["count"] == pytest.approx(ones)
    assert run.accuracy_table()["a"]["colour"] == 0 and run.accuracy()["a"] == pytest.approx(ones / 3)
    assert set(run.accuracy("kind")) == {"count", "colour", "shape"}
    assert len(run.failures()) == sum(not r.correct for r in run.results) > 0
    table = run.table("b")
    assert table.header == ["image", "truth", "count", "colour", "shape"] and len(table.rows) == 4
    assert all("✗" in cell or "✓" in cell for row in table.rows for cell in row[2:])
    with pytest.raises(ConfigError):
        run.accuracy(by="colour")
    for bad in ({"n_images": 0}, {"models": ()}, {"split": "nope"}):
        with pytest.raises(ConfigError):
            checklist.run_checklist(progress=False, **bad)


def test_find_failures_searches_further_when_the_grid_is_all_right(monkeypatch):
    run_scenes = shapes.make_scenes("test", 3, seed=12)
    _scripted(monkeypatch, lambda m, q: "placeholder")
    run = checklist.run_checklist(models=("a",), n_images=3, progress=False)
    # rewrite the grid as all right: find_failures must look at more scenes
    run.results = [Result(r.image, r.scene, r.model, r.kind, r.question, r.truth, r.truth, True) for r in run.results]
    assert run.failures() == [] and [s.caption for s in run.scenes] == [s.caption for s in run_scenes]
    calls = _scripted(monkeypatch, lambda m, q: "no idea")
    failures = checklist.find_failures(run, n=5, chunk=4, max_extra_images=40)
    assert len(failures) == 5 and all(not f.result.correct for f in failures)
    assert all(f.result.image >= 3 for f in failures), "extra scenes continue the numbering"
    assert calls == [("a", 12)], "one chunk of 4 scenes x 3 prompts was enough"
    assert all(f.category == "wrong-kind" for f in failures)

    _scripted(monkeypatch, lambda m, q: "")  # never gives up silently: bounded, then fewer come back
    assert len(checklist.find_failures(run, n=5, chunk=2, max_extra_images=1)) == 3
    with pytest.raises(ConfigError):
        checklist.find_failures(run, n=0)


def test_failures_are_spread_over_categories_and_models():
    scene = shapes.make_scenes("test", 1, seed=3, n_objects=1)[0]
    fails = []
    for model, answer in (("a", "one two"), ("a", ""), ("b", ""), ("c", "")):
        r = _result(scene, "colour", answer)
        fails.append(checklist.Failure(Result(0, scene, model, r.kind, r.question, r.truth, answer, False),
                                       *checklist.hypothesis(r)))
    chosen = checklist._diverse(fails, 3)
    # categories and models first, then the models not seen yet
    assert [f.result.model for f in chosen] == ["a", "b", "c"]
    assert [f.category for f in chosen] == ["wrong-kind", "empty", "empty"]


def test_hypothesis_rules():
    three = next(s for s in shapes.make_scenes("test", 50, seed=7) if len(s.objects) == 3
                 and len({o.color for o in s.objects}) == 3 and len({o.shape for o in s.objects}) == 3)
    other = three.objects[1]
    assert checklist.hypothesis(_result(three, "colour", other.color))[0] == "binding"
    assert other.name in checklist.hypothesis(_result(three, "shape", other.shape))[1]
    assert checklist.hypothesis(_result(three, "count", "two"))[0] == "undercount"
    assert checklist.hypothesis(_result(three, "colour", "circle"))[0] == "wrong-kind"
    assert checklist.hypothesis(_result(three, "count", "red"))[0] == "wrong-kind"
    assert checklist.hypothesis(_result(three, "shape", ""))[0] == "empty"
    one = next(s for s in shapes.make_scenes("test", 50, seed=8, n_objects=1) if s.objects[0].color == "red")
    assert checklist.hypothesis(_result(one, "count", "three"))[0] == "overcount"
    assert checklist.hypothesis(_result(one, "colour", "orange"))[0] == "look-alike"
    far = checklist.hypothesis(_result(one, "colour", "cyan"))[0]
    assert far == ("small-object" if one.objects[0].size == "small" else "prior")


def test_report_is_self_contained_and_escaped(monkeypatch, tmp_path):
    # no digit in the answer: "alert(1)" would say "one" under the VQA answer normalisation
    _scripted(monkeypatch, lambda m, q: "<script>alert(x)</script>")
    run = checklist.run_checklist(models=("a",), n_images=2, progress=False)
    failures = checklist.find_failures(run, n=2)
    path = checklist.save_report(run, failures, tmp_path / "out" / "report.html")
    text = path.read_text()
    assert path.parent.is_dir() and text.startswith("<!doctype html>")
    assert "<script>" not in text and html_lib.escape("<script>alert(x)</script>") in text
    assert text.count("data:image/png;base64,") == 2 + 2 and "http" not in text, "pictures inlined, nothing fetched"
    assert "6 answers, 6 wrong" in text
    assert checklist.DEFAULT_REPORT.parts[-3] == "runs", "the default report goes under the git-ignored runs/"


def test_figures(monkeypatch):
    import matplotlib.pyplot as plt

    _scripted(monkeypatch, lambda m, q: "one")
    run = checklist.run_checklist(models=("a", "b"), n_images=3, progress=False)
    fig = checklist.grid_figure(run)
    assert len(fig.axes) == 1 + 3
    fig = checklist.failure_figure(checklist.find_failures(run, n=2))
    assert len(fig.axes) == 2
    plt.close("all")
    with pytest.raises(ConfigError):
        checklist.failure_figure([])


def test_a_real_stand_in_and_retest_alone():
    run = checklist.run_checklist(models=("blip-vqa",), n_images=3, progress=False)
    assert len(run.results) == 9 and all(isinstance(r.answer, str) for r in run.results)
    failures = checklist.find_failures(run, n=2, max_extra_images=40)
    assert failures and all(not f.result.correct for f in failures)
    again = checklist.retest_alone(failures[0])
    r = failures[0].result
    assert again.question == r.question and again.truth == r.truth and again.model == r.model
    if r.kind != "count":
        assert again.scene.objects == r.scene.objects[:1] and again.scene.background == r.scene.background
