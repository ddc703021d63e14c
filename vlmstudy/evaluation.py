"""Scoring answers, and the two kinds of checks a notebook makes: mechanics and quality.

*Mechanics* (shapes, a loss equal to the model's own, a trimmed chat really dropping turns) hold
for any weights, so notebooks assert them directly, in every mode. *Quality* (accuracy) belongs
to a model, so a notebook hands its measurement to :func:`check_quality` and the package decides:

* a **shipped stand-in** (a model loaded from ``assets/models/<name>``) must reach the floor its
  model card sets: the value in ``training.json`` (``metrics``, measured by ``vlmstudy zoo
  train`` / ``evaluate`` on held-out test scenes) minus a tolerance for the notebook's smaller
  sample (:func:`tolerance`). Below it, :class:`QualityError` says so;
* a **real checkpoint** (hub mode) is never asserted on, because nothing here can measure the real
  weights: the value is printed beside the checkpoint's published figure (:data:`PUBLISHED`);
* anything else (a fine-tuned folder) is printed only.

Free-form answers are scored with the standard VQA answer normalisation (:func:`normalize_answer`:
lower case, punctuation, articles, number words as digits, common contractions) and
:func:`answer_matches` also accepts the answer word inside a sentence ("There are 2 shapes."
answers "how many shapes are there?" with truth "two"), because real chat models answer in
sentences and real BLIP-VQA answers counts as digits.

::

    from vlmstudy import evaluation
    evaluation.answer_matches("There are two circles.", "2")           # True
    acc = evaluation.answer_accuracy(answers, truths)
    evaluation.check_quality(model, "vqa_accuracy", acc, n=len(truths), kinds=kinds)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, VlmStudyError

__all__ = [
    "normalize_answer", "answer_matches", "answer_accuracy", "accuracy_by_kind", "check_quality", "quality_floor",
    "tolerance", "model_origin", "QualityCheck", "QualityError", "PUBLISHED", "MIN_TOLERANCE", "DEFAULT_TOLERANCE",
]

# ----------------------------------------------------------------------------- answer normalisation
# The rules of the official VQA evaluation script (Antol et al. 2015; vqaEval.py): number words
# become digits, articles go, punctuation goes (a full stop between digits stays), and common
# contractions written without their apostrophe are restored.

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't",
    "isnt": "isn't", "shouldnt": "shouldn't", "thats": "that's", "theres": "there's", "wasnt": "wasn't",
    "werent": "weren't", "whats": "what's", "wont": "won't", "wouldnt": "wouldn't", "youre": "you're",
}
_PERIOD_STRIP = re.compile(r"\.(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCTUATION = set(";/[]\"{}()=+\\_-><@`,?!*#%^&$:|~") | {"'"}


def normalize_answer(text) -> str:
    """An answer in the VQA evaluation's canonical form: ``"Two red Circles."`` -> ``"2 red circles"``.

    Lower case; ``1,000`` -> ``1000``; punctuation dropped (a full stop only when it is not a
    decimal point); number words zero-ten (and "none") as digits; articles removed; ``dont`` ->
    ``don't``. ``None`` and non-strings are turned into strings first.
    """
    text = str("" if text is None else text).lower().replace("\n", " ").replace("\t", " ").strip()
    text = _COMMA_STRIP.sub(r"\1\3", text)
    for ch in _PUNCTUATION:
        text = text.replace(ch, " " if ch != "'" else "")
    text = _PERIOD_STRIP.sub(" ", text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def answer_matches(answer, truth) -> bool:
    """True when ``answer`` says ``truth``: equal after :func:`normalize_answer`, or the truth's
    words appear, whole and in order, inside the answer ("it is a red circle" says "circle" and
    "red circle", not "red square"). A yes/no truth must not come with its opposite ("yes and no"
    says neither). An empty truth matches only an empty answer."""
    said, true = normalize_answer(answer), normalize_answer(truth)
    if said == true:
        return True
    if not true or not said:
        return False
    words, target = said.split(), true.split()
    if true in ("yes", "no") and ({"yes", "no"} - {true}) & set(words):
        return False
    k = len(target)
    return any(words[i:i + k] == target for i in range(len(words) - k + 1))


def answer_accuracy(answers: Sequence, truths: Sequence) -> float:
    """Share of ``answers`` that :func:`answer_matches` their ``truths`` (same length, not empty)."""
    answers, truths = list(answers), list(truths)
    if len(answers) != len(truths):
        raise ConfigError(f"answer_accuracy got {len(answers)} answers but {len(truths)} truths: pass one truth per answer.")
    if not truths:
        raise ConfigError("answer_accuracy needs at least one (answer, truth) pair.")
    return sum(answer_matches(a, t) for a, t in zip(answers, truths)) / len(truths)


def accuracy_by_kind(answers: Sequence, truths: Sequence, kinds: Sequence[str]) -> dict[str, float]:
    """:func:`answer_accuracy` per question kind (``"colour"``, ``"count"`` ...), sorted by kind."""
    answers, truths, kinds = list(answers), list(truths), list(kinds)
    if not len(answers) == len(truths) == len(kinds):
        raise ConfigError(f"accuracy_by_kind got {len(answers)} answers, {len(truths)} truths and {len(kinds)} kinds: "
                          "pass one of each per question.")
    return {k: answer_accuracy([a for a, kk in zip(answers, kinds) if kk == k], [t for t, kk in zip(truths, kinds) if kk == k])
            for k in sorted(set(kinds))}


# ----------------------------------------------------------------------------- published figures

#: What each real checkpoint scored in its paper, printed next to a hub-mode measurement (on
#: ShapesWorld, a different test, so the two are side by side for scale, not to be compared as
#: equals): card name -> (benchmark, value in [0, 1] or a score, source).
PUBLISHED: dict[str, tuple[str, float, str]] = {
    "clip": ("ImageNet zero-shot top-1", 0.632, "Radford et al. 2021, ViT-B/32"),
    "siglip": ("ImageNet zero-shot top-1", 0.762, "Zhai et al. 2023, B/16 at 224 px"),
    "blip-caption": ("COCO Karpathy test CIDEr", 133.3, "Li et al. 2022, ViT-B, 129M images"),
    "blip-vqa": ("VQAv2 test-dev accuracy", 0.7825, "Li et al. 2022, ViT-B, 129M images"),
    "blip2": ("VQAv2 test-dev zero-shot accuracy", 0.523, "Li et al. 2023, ViT-g + OPT-2.7B"),
    "instructblip": ("GQA zero-shot accuracy", 0.492, "Dai et al. 2023, Vicuna-7B"),
    "llava": ("VQAv2 test-dev accuracy", 0.785, "Liu et al. 2024, LLaVA-1.5-7B"),
    "llava-next": ("VQAv2 test-dev accuracy", 0.822, "Liu et al. 2024 (LLaVA-NeXT release), Mistral-7B"),
}

# ----------------------------------------------------------------------------- quality checks

#: The smallest tolerance below a card value (a sample that reproduces the card exactly still
#: varies by a few answers between phrasings and scenes).
MIN_TOLERANCE = 0.05
#: The tolerance when the notebook does not say how many samples its value averages.
DEFAULT_TOLERANCE = 0.10


class QualityError(VlmStudyError, AssertionError):
    """A shipped stand-in measured below the floor its model card sets (wrong or untrained weights)."""


@dataclass(frozen=True)
class QualityCheck:
    """One quality measurement and what was made of it.

    metric / value: what the notebook measured; model: the card name (``"clip"``) or the path;
    origin: ``"stand-in"``, ``"hub"`` or ``"other"``; floor: the bound a stand-in must reach
    (``None`` when nothing is asserted); expected: the card's value (per-kind mix when kinds were
    given) or the notebook's stated floor; source: where the floor comes from; published: the
    real checkpoint's figure (:data:`PUBLISHED`) or ``None``.
    """

    metric: str
    value: float
    model: str
    origin: str
    floor: float | None
    expected: float | None
    source: str
    published: tuple[str, float, str] | None = None

    @property
    def asserted(self) -> bool:
        return self.floor is not None

    @property
    def passed(self) -> bool:
        return self.floor is None or self.value >= self.floor

    def __str__(self) -> str:
        head = f"{self.model} {self.metric} = {self.value:.3f}"
        if self.origin == "stand-in":
            return f"{head}  (stand-in floor {self.floor:.3f}: {self.source})  {'ok' if self.passed else 'BELOW THE FLOOR'}"
        if self.published:
            bench, fig, cite = self.published
            shown = f"{fig:.1%}" if fig <= 1 else f"{fig:g}"
            return f"{head} on ShapesWorld  (not asserted: a real checkpoint; published: {bench} {shown}, {cite})"
        return f"{head}  (not asserted: {self.source})"


def tolerance(expected: float, n: int | None = None) -> float:
    """How far below ``expected`` a sample of ``n`` answers may land: two standard errors of a
    proportion, ``2 * sqrt(p (1 - p) / n)``, but at least :data:`MIN_TOLERANCE`; without ``n``,
    :data:`DEFAULT_TOLERANCE`."""
    if n is None:
        return DEFAULT_TOLERANCE
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be the positive number of samples the value averages (got {n!r}).")
    p = min(max(float(expected), 0.0), 1.0)
    return max(MIN_TOLERANCE, 2 * math.sqrt(p * (1 - p) / n))


def _card_record(directory: Path) -> dict | None:
    path = Path(directory) / "training.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_origin(model) -> tuple[str, str, dict | None]:
    """``(origin, name, card_record)`` for a model, a ``(model, processor)`` pair or a zoo name.

    origin: ``"stand-in"`` (a folder with a model card ``training.json``: its record is returned),
    ``"hub"`` (a real checkpoint, named by its Hub id) or ``"other"``. name: the zoo's short name
    when known, else the path. A zoo name resolves in the current mode (:func:`vlmstudy.get_mode`).
    """
    from .zoo.loading import resolve_source
    from .zoo.registry import get_card

    if isinstance(model, (tuple, list)) and model:
        model = model[0]
    if isinstance(model, str):
        source, card = resolve_source(model)
        if card is not None and source == card.hub_id:
            return "hub", card.name, None
        path = source
    else:
        if hasattr(model, "get_base_model"):  # a peft model: judge the model under the adapters
            model = model.get_base_model()
        path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "")
    path = str(path or "")
    if path and Path(path).expanduser().is_dir():
        folder = Path(path).expanduser().resolve()
        record = _card_record(folder)
        if record is not None and record.get("model"):
            try:
                return "stand-in", get_card(record["model"]).name, dict(record, card_file=_shown(folder / "training.json"))
            except VlmStudyError:
                pass
        return "other", path, None
    try:
        card = get_card(path)
    except VlmStudyError:
        return "other", path or type(model).__name__, None
    return "hub", card.name, None


def _expected(metrics: dict, metric: str, kinds: Sequence[str] | None) -> tuple[float | None, str]:
    if kinds:
        kinds = list(kinds)
        per_kind = {k: metrics.get(f"{metric}_{k}") for k in set(kinds)}
        if all(v is not None for v in per_kind.values()):
            value = sum(per_kind[k] for k in kinds) / len(kinds)
            return value, f"card {metric} per kind, weighted by this sample's {len(kinds)} questions: {value:.3f}"
    if metric in metrics:
        return float(metrics[metric]), f"card {metric} {float(metrics[metric]):.3f}"
    return None, ""


def quality_floor(model, metric: str, n: int | None = None, kinds: Sequence[str] | None = None,
                  floor: float | None = None) -> QualityCheck:
    """What :func:`check_quality` would require of ``model`` for ``metric`` (value not yet known:
    ``value`` is NaN). See :func:`check_quality` for the arguments."""
    return _judge(model, metric, float("nan"), n, kinds, floor)


def _judge(model, metric, value, n, kinds, floor) -> QualityCheck:
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"metric must be a name such as 'vqa_accuracy' (got {metric!r}).")
    origin, name, record = model_origin(model)
    if origin == "hub":  # the published figure is the checkpoint's headline, shown beside card metrics only
        return QualityCheck(metric, value, name, origin, None, None, "a real checkpoint",
                            PUBLISHED.get(name) if floor is None else None)
    if origin == "other":
        return QualityCheck(metric, value, name, origin, None, None, "not a shipped stand-in, no model card")
    metrics = record.get("metrics", {})
    expected, how = _expected(metrics, metric, kinds)
    card_file = record["card_file"]
    if expected is not None:
        tol = tolerance(expected, n)
        return QualityCheck(metric, value, name, origin, expected - tol, expected,
                            f"{how} - tolerance {tol:.3f} ({card_file})")
    if floor is None:
        raise ConfigError(f"The model card of {name!r} ({card_file}) has no {metric!r} (it has: "
                          f"{', '.join(metrics) or 'none'}). Use one of those, or state the floor this notebook "
                          "asserts for the stand-in with floor=...")
    return QualityCheck(metric, value, name, origin, float(floor), float(floor),
                        f"the notebook's stated floor (the card does not measure {metric})")


def _shown(path: Path) -> str:
    """A card path relative to the repository when it is inside it (shorter in a printout)."""
    from .settings import REPO_DIR

    try:
        return str(path.relative_to(REPO_DIR))
    except ValueError:
        return str(path)


def check_quality(model, metric: str, value: float, n: int | None = None, kinds: Sequence[str] | None = None,
                  floor: float | None = None, quiet: bool = False) -> QualityCheck:
    """Judge one quality measurement the same way in every mode; prints one line, returns a
    :class:`QualityCheck`.

    model: the model that was measured (a model, a ``(model, processor)`` pair or a zoo name).
    metric: a metric of the model card (``"vqa_accuracy"``, ``"zero_shot_accuracy"`` ...; see
    ``assets/models/<name>/training.json``). value: the measurement, in [0, 1] for accuracies.
    n: how many samples ``value`` averages (sets the tolerance, :func:`tolerance`). kinds: the
    question kind of every sample (``qa.kind``): the floor then uses the card's per-kind
    accuracies (``vqa_accuracy_colour`` ...) in this sample's mix. floor: for a metric the card
    does not measure, the floor the notebook states for the stand-in (ignored when the card has
    the metric).

    A shipped stand-in below its floor raises :class:`QualityError`; a real checkpoint or any
    other model is printed, never asserted.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"value must be a number (got {value!r}).") from None
    check = _judge(model, metric, value, n, kinds, floor)
    if not quiet:
        print(check)
    if not check.passed:
        raise QualityError(f"{check.model} {metric} = {value:.3f} is below the stand-in's floor {check.floor:.3f} "
                           f"({check.source}): the weights are not the shipped, trained ones. Restore them with "
                           f"`git checkout -- assets/models/` or retrain with `vlmstudy zoo train {check.model}`.")
    return check
