"""The results checklist (notebook 12): every question-answering stand-in over the same images and
prompts, the grid of answers, the failure cases found automatically, a hypothesis for each, and
an HTML report.

::

    from vlmstudy import checklist
    run = checklist.run_checklist()                  # 10 test images x 3 prompts x 5 models
    run.accuracy()                                   # {"blip-vqa": 0.7, ...}
    fails = checklist.find_failures(run, n=5)        # wrong answers, each with a hypothesis
    checklist.save_report(run, fails)                # runs/results-checklist/report.html

The prompts are templates about each scene (:data:`PROMPTS`): a count, and the colour and the
shape of the first object in reading order, named by its position. The truth comes from the
scene itself, so a wrong answer is found by comparison (:func:`vlmstudy.evaluation.answer_matches`:
the VQA answer normalisation, "2" says "two", a sentence holding the answer counts),
whatever the models are: if the grid holds fewer than ``n`` wrong answers, :func:`find_failures`
asks the same models about more test scenes until it has them (or gives up after a bounded
number). Each failure gets a *hypothesis*, a rule-based guess at why, from what the scene holds
(:func:`hypothesis`): the answer belongs to another object (binding), a look-alike colour, a
small object, an answer of the wrong kind, a count off by one ... A hypothesis is a starting
point to test (notebook 09's attention maps, more scenes of that kind), not a diagnosis.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import shapes
from .errors import ConfigError, check_positive_int

__all__ = ["ChecklistPrompt", "PROMPTS", "DEFAULT_MODELS", "Result", "Checklist", "Failure", "run_checklist",
           "hypothesis", "find_failures", "retest_alone", "grid_figure", "failure_figure", "report_html", "save_report",
           "DEFAULT_REPORT", "CARD_METRICS",
           "CASE_FIELDS", "OPTIONAL_CASE_FIELDS", "FailureCase", "FailureCaseError", "failure_record",
           "check_failure_cases"]

#: Every stand-in that answers a question about one image.
DEFAULT_MODELS: tuple[str, ...] = ("blip-vqa", "blip2", "instructblip", "llava", "llava-next")
#: The model-card metric each model's single-question accuracy is held to (``evaluation.check_quality``).
CARD_METRICS: dict[str, str] = {"blip-vqa": "vqa_accuracy", "blip2": "vqa_accuracy", "instructblip": "vqa_accuracy",
                                "llava": "first_turn_accuracy", "llava-next": "single_image_accuracy"}


@dataclass(frozen=True)
class ChecklistPrompt:
    """One prompt of the checklist: ``template`` may hold ``{where}``, the position phrase of the
    scene's first object ("on the left"); ``kind`` says what the truth is (count, colour, shape)."""

    kind: str
    template: str

    def question(self, scene: shapes.Scene) -> str:
        where = shapes.POSITION_PHRASES[scene.objects[0].position]
        return self.template.format(where=where)

    def truth(self, scene: shapes.Scene) -> str:
        first = scene.objects[0]
        if self.kind == "count":
            return shapes.COUNT_WORDS[len(scene.objects)]
        if self.kind == "colour":
            return first.color
        if self.kind == "shape":
            return first.shape
        raise ConfigError(f"Unknown checklist prompt kind {self.kind!r}: use count, colour or shape.")


PROMPTS: tuple[ChecklistPrompt, ...] = (
    ChecklistPrompt("count", "how many shapes are there?"),
    ChecklistPrompt("colour", "what colour is the shape {where}?"),
    ChecklistPrompt("shape", "what shape is {where}?"),
)

#: Where :func:`save_report` writes by default: ``runs/`` is git-ignored.
DEFAULT_REPORT = Path(__file__).resolve().parent.parent / "runs" / "results-checklist" / "report.html"


@dataclass(frozen=True)
class Result:
    """One answer: ``image`` is the scene's index in the run (extra scenes searched for failures
    continue the numbering), ``correct`` compares normalised text with the truth."""

    image: int
    scene: shapes.Scene = field(repr=False)
    model: str
    kind: str
    question: str
    truth: str
    answer: str
    correct: bool


@dataclass
class Checklist:
    """The grid: ``results`` holds one :class:`Result` per image x prompt x model."""

    scenes: list
    prompts: tuple
    models: tuple
    results: list
    split: str = "test"
    seed: int = 0
    seconds: float = 0.0

    def accuracy(self, by: str = "model") -> dict[str, float]:
        """Share of right answers per ``model`` or per prompt ``kind``."""
        if by not in ("model", "kind"):
            raise ConfigError(f"accuracy(by=...) takes 'model' or 'kind', not {by!r}.")
        keys = self.models if by == "model" else tuple(p.kind for p in self.prompts)
        out = {}
        for key in keys:
            rows = [r for r in self.results if getattr(r, by) == key]
            out[key] = sum(r.correct for r in rows) / len(rows) if rows else float("nan")
        return out

    def accuracy_table(self) -> dict[str, dict[str, float]]:
        """``{model: {kind: accuracy}}`` (for :func:`vlmstudy.plotting.accuracy_bars`)."""
        return {m: {p.kind: _share([r for r in self.results if r.model == m and r.kind == p.kind])
                    for p in self.prompts} for m in self.models}

    def failures(self) -> list[Result]:
        """Every wrong answer of the grid, in grid order."""
        return [r for r in self.results if not r.correct]

    def cell(self, image: int, model: str, kind: str) -> Result:
        for r in self.results:
            if (r.image, r.model, r.kind) == (image, model, kind):
                return r
        raise KeyError((image, model, kind))

    def table(self, model: str):
        """One model's answers as a :class:`vlmstudy.tasks.Table`: a row per image, a column per
        prompt, ``answer`` with a tick or ``answer x (truth)``."""
        from .tasks import Table

        rows = []
        for i, scene in enumerate(self.scenes):
            cells = []
            for p in self.prompts:
                r = self.cell(i, model, p.kind)
                cells.append(f"{r.answer or '(empty)'} ✓" if r.correct else f"{r.answer or '(empty)'} ✗ ({r.truth})")
            rows.append([str(i + 1), scene.caption] + cells)
        return Table(["image", "truth"] + [p.kind for p in self.prompts], rows)


def _share(rows: Sequence[Result]) -> float:
    return sum(r.correct for r in rows) / len(rows) if rows else float("nan")


def _ask(scenes: Sequence, prompts: Sequence[ChecklistPrompt], models: Sequence[str], first_index: int,
         batch_size: int, progress: bool) -> list[Result]:
    from .evaluation import answer_matches
    from .tasks import answer_batch

    pairs = [(i, s, p) for i, s in enumerate(scenes, start=first_index) for p in prompts]
    images = {i: s.render() for i, s, _ in pairs}
    questions = [p.question(s) for _, s, p in pairs]
    out = []
    for model in models:
        answers = answer_batch([images[i] for i, _, _ in pairs], questions, model=model, batch_size=batch_size,
                               progress=progress)
        for (i, s, p), q, a in zip(pairs, questions, answers):
            truth = p.truth(s)
            out.append(Result(i, s, model, p.kind, q, truth, a, answer_matches(a, truth)))
    return out


def run_checklist(models: Sequence[str] = DEFAULT_MODELS, n_images: int = 10,
                  prompts: Sequence[ChecklistPrompt] = PROMPTS, split: str = "test", seed: int = 12,
                  batch_size: int = 32, progress: bool = True) -> Checklist:
    """Ask every model every prompt about ``n_images`` scenes of ``split`` (greedy decoding:
    the same answers every run). Returns the :class:`Checklist`."""
    check_positive_int(n_images, "n_images")
    if not models or not prompts:
        raise ConfigError("run_checklist needs at least one model and one prompt.")
    if split not in shapes.SPLITS:
        raise ConfigError(f"split must be one of {shapes.SPLITS}, not {split!r}.")
    started = time.perf_counter()
    scenes = shapes.make_scenes(split, n_images, seed=seed)
    results = _ask(scenes, prompts, models, 0, batch_size, progress)
    return Checklist(scenes, tuple(prompts), tuple(models), results, split, seed, time.perf_counter() - started)


# ----------------------------------------------------------------------------- failures and hypotheses

@dataclass(frozen=True)
class Failure:
    """A wrong answer with its hypothesis: ``category`` is a short tag (binding, look-alike,
    small-object, wrong-kind, undercount, overcount, empty, prior), ``hypothesis`` a sentence."""

    result: Result
    category: str
    hypothesis: str


def _color_distance(a: str, b: str) -> float:
    ca, cb = shapes.ALL_COLORS[a], shapes.ALL_COLORS[b]
    return sum((x - y) ** 2 for x, y in zip(ca, cb)) ** 0.5


#: Shapes that share an outline feature (corners, points): hard to tell apart in a few pixels.
LOOK_ALIKE_SHAPES = {frozenset(p) for p in (("square", "diamond"), ("diamond", "star"), ("star", "cross"),
                                             ("triangle", "diamond"), ("circle", "square"), ("star", "triangle"))}
#: RGB distance under which two course colours count as look-alikes (red/orange/pink, blue/purple ...).
LOOK_ALIKE_RGB = 130.0


def hypothesis(result: Result) -> tuple[str, str]:
    """``(category, sentence)``: a rule-based guess at why ``result`` is wrong, from its scene."""
    answer = shapes.normalize_text(result.answer)
    scene, target = result.scene, result.scene.objects[0]
    others = scene.objects[1:]
    words = answer.split()
    if not answer:
        return "empty", ("The model ended its answer at once: the end-of-text token beat every word. Hypothesis: "
                         "this prompt format is rare in its training data (a different wording may work).")
    if result.kind == "count":
        counts = {w: n for n, w in shapes.COUNT_WORDS.items()} | {str(n): n for n in shapes.COUNT_WORDS}
        if answer not in counts:
            return "wrong-kind", (f"Asked for a number, it said '{result.answer}'. Hypothesis: the question's first "
                                  "words are read weakly; the decoder describes the picture instead of counting.")
        said, true = counts[answer], len(scene.objects)
        small = sum(o.size == "small" for o in scene.objects)
        if said < true:
            return "undercount", (f"It counted {said} of {true} objects. Hypothesis: an object is missed, most likely "
                                  f"a small one ({small} of {true} are small; at 64 px a small shape covers only a few "
                                  "of the vision encoder's patches) or two that sit close together.")
        return "overcount", (f"It counted {said} but there are {true}. Hypothesis: a count prior: training scenes hold "
                             "1 to 3 shapes, and with weak evidence the model says a frequent count.")
    vocab = shapes.ALL_COLORS if result.kind == "colour" else shapes.ALL_SHAPES
    attr = (lambda o: o.color) if result.kind == "colour" else (lambda o: o.shape)
    said = next((w for w in words if w in vocab), None)
    if said is None:
        return "wrong-kind", (f"Asked for a {result.kind}, it said '{result.answer}'. Hypothesis: the kind word of the "
                              "question ('colour' / 'shape') is not steering the answer; the model answers the "
                              "question it sees most often.")
    owners = [o for o in others if attr(o) == said]
    if owners:
        where = shapes.POSITION_PHRASES[owners[0].position]
        return "binding", (f"'{said}' is the {result.kind} of the {owners[0].name} {where}, another object in the "
                           f"picture. Hypothesis: it saw the right {result.kind}s but bound them to the wrong position "
                           f"(the position words '{shapes.POSITION_PHRASES[target.position]}' are not grounded).")
    if result.kind == "colour" and said in shapes.ALL_COLORS and _color_distance(said, target.color) < LOOK_ALIKE_RGB:
        return "look-alike", (f"'{said}' and the true '{target.color}' are close colours (RGB distance "
                              f"{_color_distance(said, target.color):.0f}). Hypothesis: a {target.size} shape gives "
                              "too few pixels to separate them, and the textured background shifts the average.")
    if result.kind == "shape" and frozenset((said, target.shape)) in LOOK_ALIKE_SHAPES:
        return "look-alike", (f"'{said}' and the true '{target.shape}' share outline features. Hypothesis: at 64 px a "
                              f"{target.size} {target.shape} is a few dozen pixels; its corners or points blur into "
                              f"a {said}'s.")
    if target.size == "small":
        return "small-object", (f"The target is a small {target.name}; the model said '{said}'. Hypothesis: a small "
                                "object covers few patches, its features are weak and the answer falls back on a prior.")
    return "prior", (f"'{said}' is in no object of the picture. Hypothesis: a language prior (an answer frequent "
                     "in training for this question) outweighs the visual evidence; compare its attention map.")


def _failure(result: Result) -> Failure:
    category, sentence = hypothesis(result)
    return Failure(result, category, sentence)


def _diverse(failures: Sequence[Failure], n: int) -> list[Failure]:
    """Up to ``n`` failures, spread over categories first, then models, then prompt kinds."""
    chosen: list[Failure] = []
    seen_cat, seen_model, seen_kind = set(), set(), set()
    for key in (lambda f: f.category not in seen_cat and f.result.model not in seen_model,
                lambda f: f.category not in seen_cat,
                lambda f: f.result.model not in seen_model,
                lambda f: f.result.kind not in seen_kind,
                lambda f: True):
        for f in failures:
            if len(chosen) >= n:
                return chosen
            if f not in chosen and key(f):
                chosen.append(f)
                seen_cat.add(f.category)
                seen_model.add(f.result.model)
                seen_kind.add(f.result.kind)
    return chosen


def find_failures(run: Checklist, n: int = 5, max_extra_images: int = 200, chunk: int = 20,
                  progress: bool = False) -> list[Failure]:
    """``n`` wrong answers of the run's models on ``run.split``, each with its hypothesis, spread
    over categories and models. The grid's own wrong answers come first; when there are fewer than
    ``n`` kinds of them, the same models and prompts are asked about further scenes (``chunk`` at
    a time, at most ``max_extra_images``). Fewer than ``n`` come back only when the models are
    right on all of those; ``run.results`` is not changed."""
    check_positive_int(n, "n")
    failures = [_failure(r) for r in run.failures()]
    extra_seed, searched = run.seed + 1_000, 0
    while len(failures) < n and searched < max_extra_images:
        scenes = shapes.make_scenes(run.split, min(chunk, max_extra_images - searched), seed=extra_seed + searched)
        more = _ask(scenes, run.prompts, run.models, len(run.scenes) + searched, 32, progress)
        failures += [_failure(r) for r in more if not r.correct]
        searched += len(scenes)
    return _diverse(failures, n)


def retest_alone(failure: Failure) -> Result:
    """Test a failure's hypothesis the simplest way: ask its model the same question about the
    same picture with only the asked-about object left (same background, same place). Right
    now: the other objects were the trouble (binding, a distractor); still wrong: the object
    itself is hard for the model (its colour, shape or size). A one-object scene makes a count
    question trivially different, so count failures are retested as they are."""
    from dataclasses import replace

    from .evaluation import answer_matches
    from .tasks import answer

    r = failure.result
    scene = r.scene if r.kind == "count" else replace(r.scene, objects=r.scene.objects[:1])
    said = answer(scene.render(), r.question, model=r.model)  # the truth is unchanged: it is about objects[0]
    return Result(r.image, scene, r.model, r.kind, r.question, r.truth, said, answer_matches(said, r.truth))


# ----------------------------------------------------------------------------- figures and report

def grid_figure(run: Checklist, title: str | None = None):
    """The whole grid in one figure: a row per image (its thumbnail on the left), a column per
    model x prompt, each cell the answer on green (right) or red (wrong). Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [(m, p.kind) for m in run.models for p in run.prompts]
    n = len(run.scenes)
    fig = plt.figure(figsize=(1.0 + 0.8 * len(cols), 0.55 * n + 1.4))
    grid = fig.add_gridspec(n, 2, width_ratios=[0.75, len(cols)], wspace=0.02, hspace=0.08)
    table = fig.add_subplot(grid[:, 1])
    ok = np.array([[run.cell(i, m, k).correct for m, k in cols] for i in range(n)], dtype=float)
    table.imshow(ok, cmap=plt.matplotlib.colors.ListedColormap(["#f4c7c3", "#c8e6c9"]), vmin=0, vmax=1, aspect="auto")
    for i in range(n):
        for j, (m, k) in enumerate(cols):
            r = run.cell(i, m, k)
            table.text(j, i, (r.answer or "(empty)")[:10], ha="center", va="center", fontsize=7)
        thumb = fig.add_subplot(grid[i, 0])
        thumb.imshow(run.scenes[i].render())
        thumb.set_axis_off()
    table.set_xticks(range(len(cols)), [f"{m}\n{k}" for m, k in cols], fontsize=7, rotation=60, ha="right")
    table.set_yticks(range(n), [f"#{i + 1}" for i in range(n)], fontsize=7)
    table.yaxis.tick_right()
    for x in range(len(run.prompts), len(cols), len(run.prompts)):
        table.axvline(x - 0.5, color="k", lw=1)
    table.set_title(title or f"{n} {run.split} images x {len(run.prompts)} prompts x {len(run.models)} models "
                             "(green: right, red: wrong)", fontsize=10)
    return fig


def failure_figure(failures: Sequence[Failure]):
    """The failure cases side by side: picture, model, category, question, answer and truth."""
    import textwrap

    import matplotlib.pyplot as plt

    if not failures:
        raise ConfigError("No failures to show.")
    fig, axes = plt.subplots(1, len(failures), figsize=(2.9 * len(failures), 4.1), squeeze=False)
    for ax, f in zip(axes[0], failures):
        ax.imshow(f.result.scene.render(128))
        ax.set_axis_off()
        lines = [f"{f.result.model} [{f.category}]", *textwrap.wrap(f.result.question, 32),
                 f"said '{f.result.answer}', truth '{f.result.truth}'"]
        ax.set_title("\n".join(lines), fontsize=8)
    fig.tight_layout()
    return fig


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def report_html(run: Checklist, failures: Sequence[Failure], title: str = "vlmstudy results checklist") -> str:
    """A self-contained HTML page (pictures inlined): accuracy per model and prompt, the grid
    with each picture, the failure cases with their hypotheses."""
    from .plotting import image_png
    from .settings import get_mode

    esc = html.escape
    thumbs = {i: _png_data_uri(image_png(s.render(), 96)) for i, s in enumerate(run.scenes)}
    acc = run.accuracy_table()
    acc_rows = "".join(f"<tr><td>{esc(m)}</td>" + "".join(f"<td>{acc[m][p.kind]:.2f}</td>" for p in run.prompts)
                       + f"<td><b>{run.accuracy()[m]:.2f}</b></td></tr>" for m in run.models)
    head = "".join(f"<th>{esc(m)}<br>{esc(p.kind)}</th>" for m in run.models for p in run.prompts)
    grid_rows = []
    for i, scene in enumerate(run.scenes):
        cells = []
        for m in run.models:
            for p in run.prompts:
                r = run.cell(i, m, p.kind)
                cls = "ok" if r.correct else "bad"
                tip = esc(f"{r.question} (truth: {r.truth})")
                cells.append(f'<td class="{cls}" title="{tip}">{esc(r.answer) or "(empty)"}</td>')
        grid_rows.append(f'<tr><td><img src="{thumbs[i]}" width="64"></td><td class="cap">#{i + 1} '
                         f'{esc(scene.caption)}</td>{"".join(cells)}</tr>')
    fail_rows = "".join(
        f'<tr><td><img src="{_png_data_uri(image_png(f.result.scene.render(), 128))}" width="128"></td>'
        f"<td>{esc(f.result.model)}</td><td>{esc(f.result.question)}</td><td class='bad'>{esc(f.result.answer) or '(empty)'}</td>"
        f"<td>{esc(f.result.truth)}</td><td><b>{esc(f.category)}</b>: {esc(f.hypothesis)}</td></tr>" for f in failures)
    wrong = len(run.failures())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; font-size: 13px; vertical-align: middle; }}
td.ok {{ background: #c8e6c9; }} td.bad {{ background: #f4c7c3; }} td.cap {{ max-width: 16em; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>{len(run.scenes)} {esc(run.split)} images (seed {run.seed}) x {len(run.prompts)} prompts x {len(run.models)} models
in {esc(get_mode())} mode: {len(run.results)} answers, {wrong} wrong, in {run.seconds:.1f} s.</p>
<h2>Accuracy</h2>
<table><tr><th>model</th>{"".join(f"<th>{esc(p.kind)}</th>" for p in run.prompts)}<th>all</th></tr>{acc_rows}</table>
<h2>The grid</h2>
<p>Prompts: {"; ".join(esc(p.template) for p in run.prompts)} ({{where}}: the first object's position).
Hover a cell for its question and truth.</p>
<table><tr><th>image</th><th>truth</th>{head}</tr>{"".join(grid_rows)}</table>
<h2>Failure cases</h2>
<table class="failures"><tr><th>image</th><th>model</th><th>question</th><th>answer</th><th>truth</th><th>hypothesis</th></tr>
{fail_rows}</table>
</body></html>
"""


def save_report(run: Checklist, failures: Sequence[Failure], path: str | Path | None = None) -> Path:
    """Write :func:`report_html` to ``path`` (default :data:`DEFAULT_REPORT`, under the
    git-ignored ``runs/``), creating its folder; returns the path."""
    path = Path(path) if path is not None else DEFAULT_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(run, failures), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- failure cases written by hand

#: The fields of a failure case a learner writes (:func:`check_failure_cases`).
CASE_FIELDS: tuple[str, ...] = ("image", "question", "expected", "got", "hypothesis")
#: Fields a case may carry besides those (free text).
OPTIONAL_CASE_FIELDS: tuple[str, ...] = ("model", "category", "notes")
_PLACEHOLDERS = {"", "...", "todo", "tbd", "?", "none", "n/a", "xxx", "fill me in", "your hypothesis"}
MIN_HYPOTHESIS_WORDS = 5


class FailureCaseError(ConfigError):
    """A list of hand-written failure cases that does not have the checked structure."""


@dataclass(frozen=True)
class FailureCase:
    """One failure case, checked: what was asked about which image, what the truth is, what the
    model said, and a hypothesis about why (a sentence that could be tested)."""

    image: object
    question: str
    expected: str
    got: str
    hypothesis: str
    model: str | None = None
    category: str | None = None
    notes: str | None = None


def failure_record(failure: Failure) -> dict:
    """A :class:`Failure` found by :func:`find_failures` as the dict :func:`check_failure_cases`
    takes: the rendered scene, the question, the truth, the answer and the rule's hypothesis."""
    r = failure.result
    return {"image": r.scene, "question": r.question, "expected": r.truth, "got": r.answer,
            "hypothesis": failure.hypothesis, "model": r.model, "category": failure.category}


def _image_problem(image, n_scenes: int | None) -> str | None:
    from PIL import Image

    if isinstance(image, (Image.Image, shapes.Scene)):
        return None
    if isinstance(image, bool):
        return f"'image' is {image!r}"
    if isinstance(image, int):   # the grid's row label: #1 ... #n
        if image < 1 or (n_scenes is not None and image > n_scenes):
            rows = f"#1 to #{n_scenes}" if n_scenes is not None else "#1, #2 ..."
            return f"'image' {image} is no row of the grid (its rows are {rows})"
        return None
    if isinstance(image, (str, Path)):
        if not str(image).strip():
            return "'image' is empty"
        if not Path(image).expanduser().is_file():
            return f"'image' {str(image)!r} is no file (give a path that exists, a PIL image, a scene or a grid number)"
        return None
    return (f"'image' is a {type(image).__name__}; give a PIL image, a ShapesWorld scene, a path to an image "
            "file or the image's number in the grid")


def _text_problem(record: dict, key: str) -> str | None:
    value = record[key]
    if not isinstance(value, str):
        return f"'{key}' must be text, not {type(value).__name__}"
    if value.strip().lower() in _PLACEHOLDERS:
        return f"'{key}' is {'empty' if not value.strip() else f'a placeholder ({value.strip()!r})'}"
    return None


def check_failure_cases(cases, n: int = 5, run: Checklist | None = None) -> list[FailureCase]:
    """Check a learner's list of failure cases and return them as :class:`FailureCase` objects.

    Each case is a dict with the fields :data:`CASE_FIELDS` (and optionally
    :data:`OPTIONAL_CASE_FIELDS`): ``image`` (a PIL image, a ShapesWorld scene, a path to an image
    file, or the image's number in ``run``'s grid: 3 for the row labelled #3), ``question``, ``expected`` (the true answer),
    ``got`` (what the model said, which must *not* match ``expected`` under the VQA answer
    normalisation: a failure case is a wrong answer) and ``hypothesis`` (a sentence of at least
    :data:`MIN_HYPOTHESIS_WORDS` words, not a copy of another case's). At least ``n`` cases, no
    question asked twice about the same image (of the same ``model``). Anything else raises :class:`FailureCaseError`
    with one line naming each problem by case number and field.
    """
    from .evaluation import answer_matches

    if isinstance(cases, dict):
        raise FailureCaseError("Give a list of failure cases (dicts), not one dict: wrap it in [ ... ].")
    if not isinstance(cases, (list, tuple)):
        raise FailureCaseError(f"Give a list of failure cases (dicts), not a {type(cases).__name__}.")
    n_scenes = len(run.scenes) if run is not None else None
    problems: list[str] = []
    if len(cases) < n:
        problems.append(f"{len(cases)} case{'s' if len(cases) != 1 else ''} written, {n} asked for")
    seen_hypotheses: dict[str, int] = {}
    seen_questions: dict[tuple, int] = {}
    out: list[FailureCase] = []
    for number, case in enumerate(cases, start=1):
        where = f"case {number}"
        if not isinstance(case, dict):
            problems.append(f"{where} is a {type(case).__name__}, not a dict with the fields {', '.join(CASE_FIELDS)}")
            continue
        missing = [k for k in CASE_FIELDS if k not in case]
        unknown = sorted(str(k) for k in case if k not in CASE_FIELDS + OPTIONAL_CASE_FIELDS)
        if missing:
            problems.append(f"{where} lacks {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(f"{where} has unknown field(s) {', '.join(map(repr, unknown))} (the fields are "
                            f"{', '.join(CASE_FIELDS)}; optional: {', '.join(OPTIONAL_CASE_FIELDS)})")
        if missing or unknown:
            continue
        own = [p for p in (_image_problem(case["image"], n_scenes), *(_text_problem(case, k) for k in CASE_FIELDS[1:]))
               if p]
        for key in OPTIONAL_CASE_FIELDS:
            if case.get(key) is not None and not isinstance(case[key], str):
                own.append(f"'{key}' must be text or None")
        if not own:
            if answer_matches(case["got"], case["expected"]):
                own.append(f"'got' {case['got']!r} matches 'expected' {case['expected']!r}: that answer is right, "
                           "not a failure")
            words = case["hypothesis"].split()
            if len(words) < MIN_HYPOTHESIS_WORDS:
                own.append(f"'hypothesis' {case['hypothesis']!r} is {len(words)} word{'s' if len(words) != 1 else ''}; "
                           f"write a sentence of at least {MIN_HYPOTHESIS_WORDS} saying why it failed and how to test it")
            key = " ".join(w.lower() for w in words)
            if key in seen_hypotheses:
                own.append(f"'hypothesis' repeats case {seen_hypotheses[key]}'s; each failure needs its own")
            seen_hypotheses.setdefault(key, number)
            image_key = case["image"] if isinstance(case["image"], (int, str, Path)) else id(case["image"])
            asked = (str(image_key), shapes.normalize_text(case["question"]), (case.get("model") or "").lower())
            if asked in seen_questions:
                own.append(f"asks case {seen_questions[asked]}'s question about the same image (of the same model) again")
            seen_questions.setdefault(asked, number)
        problems.extend(f"{where}: {p}" for p in own)
        if not own:
            out.append(FailureCase(**{k: case.get(k) for k in CASE_FIELDS + OPTIONAL_CASE_FIELDS}))
    if problems:
        raise FailureCaseError("Failure cases not ready: " + "; ".join(problems) + ".")
    return out
