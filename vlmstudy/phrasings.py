"""Questions as people type them: paraphrase templates for every ShapesWorld question form.

A stand-in trained on one wording per question answers nonsense to another ("What color is the
shape?" instead of "what colour is the shape on the left?"). So training draws each question from
a set of ``"train"`` templates, with surface noise (capitals, American spelling, a missing "?",
"what's"), and evaluation asks with ``"heldout"`` templates that no training ever saw. Words
outside the tiny models' vocabulary become ``<unk>``; training inserts a few such words so that an
unknown word does not derail the answer.

Pure text, no imports from the rest of the package (``shapes`` builds its vocabulary from the
training templates here)::

    rng = random.Random(0)
    paraphrase_form("colour_at", {"where": "on the left"}, rng, "heldout")
    # 'what colour does the shape on the left have?'
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

PHRASING_SETS = ("train", "heldout")

#: form -> phrasing set -> templates. The canonical wording (``shapes.questions``) is the first
#: training template of each form; slots: ``{where}`` ("on the left"), ``{shape}``, ``{color}``,
#: ``{obj}`` ("a red circle").
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "count": {
        "train": ("how many shapes are there?", "how many objects are there?", "how many shapes are in the image?",
                  "how many shapes do you see?", "what is the number of shapes?", "count the shapes.",
                  "how many shapes are in this picture?"),
        "heldout": ("how many shapes can you see?", "how many objects does the image have?",
                    "tell me how many shapes there are."),
    },
    "colour_at": {
        "train": ("what colour is the shape {where}?", "what colour is the object {where}?",
                  "which colour is the shape {where}?", "what is the colour of the shape {where}?",
                  "what's the colour of the object {where}?", "the shape {where} is what colour?",
                  "tell me the colour of the shape {where}."),
        "heldout": ("what colour does the shape {where} have?", "can you tell me the colour of the object {where}?",
                    "colour of the shape {where}?"),
    },
    "colour_of": {
        "train": ("what colour is the {shape}?", "what is the colour of the {shape}?", "which colour is the {shape}?",
                  "what's the {shape}'s colour?", "tell me the colour of the {shape}.", "the {shape} is what colour?"),
        "heldout": ("what colour does the {shape} have?", "can you tell me what colour the {shape} is?",
                    "{shape} colour?"),
    },
    "shape_at": {
        "train": ("what shape is {where}?", "what shape is the object {where}?", "which shape is {where}?",
                  "what is the shape {where}?", "what kind of shape is {where}?", "tell me the shape {where}.",
                  "what's {where}?"),
        "heldout": ("what shape do you see {where}?", "can you name the shape {where}?",
                    "which kind of shape is the object {where}?"),
    },
    "shape_of": {
        "train": ("what shape is the {color} object?", "what shape is the {color} one?", "which shape is {color}?",
                  "what is the {color} shape?", "what kind of shape is the {color} object?",
                  "tell me the shape of the {color} object."),
        "heldout": ("what shape does the {color} object have?", "can you name the {color} shape?",
                    "the {color} object is which shape?"),
    },
    "position": {
        "train": ("where is the {color} {shape}?", "where's the {color} {shape}?", "where is the {color} {shape} in the image?",
                  "in which part of the image is the {color} {shape}?", "where can you see the {color} {shape}?",
                  "tell me where the {color} {shape} is."),
        "heldout": ("where is the {color} {shape} located?", "which part of the picture has the {color} {shape}?",
                    "can you tell me where the {color} {shape} is?"),
    },
    "exists": {
        "train": ("is there {obj}?", "is there {obj} in the image?", "do you see {obj}?", "can you see {obj}?",
                  "does the image have {obj}?", "is there {obj} in this picture?"),
        "heldout": ("does the picture contain {obj}?", "can you spot {obj}?", "is there {obj} anywhere?"),
    },
    # follow-up turns of a dialogue: they refer back to the object of the first turn
    "follow_colour": {
        "train": ("and what colour is it?", "what colour is it?", "and its colour?", "what about its colour?",
                  "and which colour is it?"),
        "heldout": ("and what colour does it have?", "its colour?"),
    },
    "follow_shape": {
        "train": ("and what shape is it?", "what shape is it?", "and its shape?", "what about its shape?",
                  "which shape is it?"),
        "heldout": ("and what kind of shape is it?", "its shape?"),
    },
    "follow_position": {
        "train": ("and where is it?", "where is it?", "and where's it?", "where is it in the image?",
                  "what about its position?"),
        "heldout": ("and where can you see it?", "its position?"),
    },
    "follow_size": {
        "train": ("and what size is it?", "what size is it?", "is it large or small?", "and how big is it?",
                  "what about its size?"),
        "heldout": ("and which size is it?", "its size?"),
    },
}

#: The canonical follow-up questions (``shapes.dialogue``) and their forms.
FOLLOW_UP_FORMS = {TEMPLATES[f]["train"][0]: f for f in ("follow_colour", "follow_shape", "follow_position", "follow_size")}

#: Other ways to say where an object is (the answer stays the position name).
WHERE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "on the left": {"train": ("on the left", "on the left side", "at the left"), "heldout": ("to the left",)},
    "on the right": {"train": ("on the right", "on the right side", "at the right"), "heldout": ("to the right",)},
    "at the top": {"train": ("at the top", "at the top of the image", "on top"), "heldout": ("near the top",)},
    "at the bottom": {"train": ("at the bottom", "at the bottom of the image", "on the bottom"),
                      "heldout": ("near the bottom",)},
    "in the centre": {"train": ("in the centre", "in the center", "in the middle"),
                      "heldout": ("in the middle of the picture",)},
}

#: Words no stand-in knows (they tokenize to ``<unk>``); training inserts a few so that a
#: learner's own unknown word does not derail the answer. Evaluation's held-out templates bring
#: their own unknown words ("located", "contain", "spot" ...).
UNKNOWN_FILLERS = ("hey", "um", "quickly", "exactly", "thing", "kindly", "hello", "now")


def _fill(template: str, slots: Mapping[str, str]) -> str:
    return template.format(**{k: v for k, v in slots.items()})


def surface(text: str, rng: random.Random) -> str:
    """How people type: American spelling, "what's", a capital letter, no final "?" (each sometimes)."""
    if rng.random() < 0.4:
        text = text.replace("colour", "color").replace("centre", "center")
    if rng.random() < 0.25:
        text = re.sub(r"\bwhat is\b", "what's", text)
    if rng.random() < 0.4:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.25:
        text = text.rstrip("?.")
    return text


def add_unknown_words(text: str, rng: random.Random, share: float = 0.15) -> str:
    """With probability ``share``, insert one word from :data:`UNKNOWN_FILLERS` at the start,
    after the first word, or at the end (where people add "hey", "now", "exactly")."""
    if rng.random() >= share:
        return text
    words = text.split()
    words.insert(rng.choice([0, 1, len(words)]), rng.choice(UNKNOWN_FILLERS))
    return " ".join(words)


def paraphrase_form(form: str, slots: Mapping[str, str], rng: random.Random, phrasing: str = "train",
                    noise: bool = True) -> str:
    """A question of ``form`` with ``slots``, in a template of ``phrasing`` ("train" or "heldout").

    noise: add :func:`surface` variation (and, for ``"train"``, an occasional unknown word).
    """
    if phrasing not in PHRASING_SETS:
        raise ValueError(f"phrasing must be one of {PHRASING_SETS}, not {phrasing!r}")
    if form not in TEMPLATES:
        raise ValueError(f"unknown question form {form!r}; known: {sorted(TEMPLATES)}")
    slots = dict(slots)
    if "where" in slots and slots["where"] in WHERE_PHRASES:
        slots["where"] = rng.choice(WHERE_PHRASES[slots["where"]][phrasing])
    text = _fill(rng.choice(TEMPLATES[form][phrasing]), slots)
    if noise:
        text = surface(text, rng)
        if phrasing == "train":
            text = add_unknown_words(text, rng)
    return text


def paraphrase(qa, rng: random.Random, phrasing: str = "train", noise: bool = True) -> str:
    """``qa.question`` (a :class:`vlmstudy.shapes.QA` with ``form`` and ``slots``) said another way."""
    if not qa.form:
        return qa.question
    return paraphrase_form(qa.form, dict(qa.slots), rng, phrasing, noise)


def training_words() -> set[str]:
    """Every word the training templates use (the tiny tokenizers' vocabulary includes them)."""
    words: set[str] = set()
    texts = [t for sets in TEMPLATES.values() for t in sets["train"]]
    texts += [p for sets in WHERE_PHRASES.values() for p in sets["train"]]
    for text in texts:
        text = re.sub(r"\{\w+\}", " ", text)
        words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return words


#: What each slot of a canonical question can hold (one word, or a known position phrase).
_SLOT_PATTERNS = {"where": "|".join(map(re.escape, WHERE_PHRASES)), "color": r"\w+", "shape": r"\w+",
                  "obj": r"(?:a|an) \w+ \w+"}


def _canonical_pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>{_SLOT_PATTERNS[p[1:-1]]})" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


#: Canonical wording -> form: the first training template of every form, as a pattern.
_CANONICAL = [(form, _canonical_pattern(sets["train"][0])) for form, sets in TEMPLATES.items()]


def question_form(question: str) -> tuple[str, dict[str, str]] | None:
    """``(form, slots)`` of a question in its canonical wording, or None for any other text."""
    for form, pattern in _CANONICAL:
        match = pattern.match(question)
        if match:
            return form, match.groupdict()
    return None


def paraphrase_question(question: str, rng: random.Random, phrasing: str = "train", noise: bool = True) -> str:
    """Any canonical ShapesWorld question (first turns, follow-ups, counts) said another way;
    text that is not a canonical question comes back unchanged."""
    found = question_form(question)
    return paraphrase_form(found[0], found[1], rng, phrasing, noise) if found else question
