"""Data quality for instruction tuning: corrupted copies of a dataset, and the checks that find them.

The fine-tuning material's rules: check **prompt-answer consistency first** (an answer must be of
the kind its question asks for, and true of the image), and remove **duplicates and
near-duplicates** (the same image and question, re-worded), which make a model overfit the few
examples it sees again and again. This module makes both kinds of bad data on purpose and
measures what they do:

* :func:`mislabel`: a copy with an exact share of the answers replaced by a wrong answer *of the
  same kind* (a wrong colour for a colour question, "no" for "yes" ...), with the changed
  positions recorded;
* :func:`duplicate`: a copy of the same size made of a few unique records, repeated as exact
  copies and as near-duplicates (same image, question re-worded with the course's phrasings);
* :func:`check_dataset`: what a learner runs before training: answer-kind mismatches (a number
  for a colour question), answers that contradict the scene (when the scene is known),
  conflicting answers to the same question, exact and near duplicates;
* :func:`compare_variants`: the same LoRA fine-tune (one config, one seed, the same steps) on each
  variant, and held-out accuracy per variant, per test set and per question kind.

Records are those of :mod:`vlmstudy.data` in the question-answer formats ``vqa``, ``instruction``
and ``conversations`` (one *answer slot* per answer: ``(record, turn)``, turn 0 for the
single-turn formats, turn k for a conversation's k-th gpt answer)::

    bad = mislabel(records, share=0.2, seed=0)      # bad.records, bad.changed = [(record, turn), ...]
    dup = duplicate(records, unique=0.1, seed=0)    # dup.records, dup.sources, dup.near
    print(check_dataset(bad.records, scenes=scenes_by_image))
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import phrasings, shapes
from ..data import IMAGE_TOKEN, Dataset, Example, detect_format, load_dataset, resolve_format, save_records
from ..errors import ConfigError, DataFormatError

QA_FORMATS = ("vqa", "instruction", "conversations")

#: The answers each question kind takes (ShapesWorld's words); a dataset's own answers of a kind
#: (such as a newly taught colour) join its list when wrong answers are drawn.
ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": tuple(shapes.COLORS),
    "shape": shapes.SHAPES,
    "count": tuple(shapes.COUNT_WORDS.values()),
    "position": tuple(shapes.POSITIONS),
    "exists": ("yes", "no"),
    "size": tuple(shapes.SIZES),
}
KINDS = tuple(ANSWERS)
ISSUE_KINDS = ("type-mismatch", "contradicts-scene", "conflicting-answers", "exact-duplicate", "near-duplicate")

_SPELLING = {"color": "colour", "center": "centre", "middle": "centre", "2": "two", "1": "one", "3": "three"}
_ANSWER_WORDS = {w: k for k, words in ANSWERS.items() for w in words}
_ANSWER_WORDS.update({c: "colour" for c in shapes.ALL_COLORS} | {s: "shape" for s in shapes.ALL_SHAPES})
_POSITION_WORDS = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "centre": "centre"}


# ----------------------------------------------------------------------------- reading questions

def _words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped, British spelling (``"What's the color?"`` ->
    ``["what", "s", "the", "colour"]``)."""
    return [_SPELLING.get(w, w) for w in shapes.normalize_text(text).split()]


def question_kind(question: str) -> str | None:
    """The kind of answer ``question`` asks for (one of :data:`KINDS`), or None for other text.

    Keyword rules that cover every ShapesWorld wording (``phrasings.TEMPLATES``, train and
    held-out): a count, a colour, a size, a position, an existence (yes / no), a shape.
    """
    text = " ".join(_words(question))
    if re.search(r"\bhow many\b|\bnumber of\b|\bcount\b", text):
        return "count"
    if re.search(r"\bcolour\b", text):
        return "colour"
    if re.search(r"\bsize\b|\blarge or small\b|\bhow big\b", text):
        return "size"
    if re.search(r"\bwhere\b|\bwhich part\b|\bposition\b", text):
        return "position"
    if re.search(r"^(?:\w+ )?(?:is there|are there|do you see|can you see|can you spot|does the (?:image|picture) "
                 r"(?:have|contain))\b", text):
        return "exists"
    if re.search(r"\bshape\b|^(?:\w+ )?what s\b|^(?:\w+ )?what is (?:on|at|in)\b", text):
        return "shape"
    return None


def answer_kind(answer: str) -> str | None:
    """The kind of a short answer (``"red"`` -> ``"colour"``, ``"2"`` -> ``"count"``), or None."""
    words = _words(answer)
    return _ANSWER_WORDS.get(words[0]) if len(words) == 1 else None


@dataclass(frozen=True)
class Signature:
    """What a question asks, whatever its wording: its kind and the colour, shape and position
    words that pick the object (``"what colour is the shape on the left?"`` and ``"tell me the
    colour of the object at the left."`` have one signature)."""

    kind: str | None
    colors: frozenset[str]
    shapes: frozenset[str]
    positions: frozenset[str]

    @property
    def names_object(self) -> bool:
        return bool(self.colors or self.shapes or self.positions)


def signature(question: str) -> Signature:
    words = _words(question)
    return Signature(question_kind(question), frozenset(w for w in words if w in shapes.ALL_COLORS),
                     frozenset(w for w in words if w in shapes.ALL_SHAPES),
                     frozenset(_POSITION_WORDS[w] for w in words if w in _POSITION_WORDS))


def _pick(scene: shapes.Scene, sig: Signature) -> list[shapes.ShapeObject]:
    return [o for o in scene.objects if (not sig.colors or o.color in sig.colors) and
            (not sig.shapes or o.shape in sig.shapes) and (not sig.positions or o.position in sig.positions)]


def scene_answer(scene: shapes.Scene, question: str, history: Sequence[str] = ()) -> str | None:
    """The true answer to ``question`` about ``scene``, or None when the scene does not decide it
    (an unknown kind, no single object named). A follow-up ("and what colour is it?") names its
    object in the first question of ``history``."""
    sig = signature(question)
    if sig.kind == "count":
        return shapes.COUNT_WORDS.get(len(scene.objects))
    if sig.kind is None:
        return None
    if not sig.names_object and history:   # "it": the object of the dialogue's first question
        first = signature(history[0])
        sig = Signature(sig.kind, first.colors, first.shapes, first.positions)
    if not sig.names_object:
        return None
    found = _pick(scene, sig)
    if sig.kind == "exists":
        return "yes" if found else "no"
    if len(found) != 1:
        return None
    obj = found[0]
    return {"colour": obj.color, "shape": obj.shape, "position": obj.position, "size": obj.size}[sig.kind]


# ----------------------------------------------------------------------------- answer slots

def _as_records(data, fmt: str | None) -> tuple[list[dict], str]:
    if isinstance(data, Dataset):
        records, fmt = data.records, fmt or data.format
    elif isinstance(data, (str, Path)):
        ds = load_dataset(data, fmt)
        records, fmt = ds.records, ds.format
    else:
        records = list(data)
    if not records:
        raise DataFormatError("The dataset holds no records: pass a list of records, a Dataset or a data file.")
    fmt = resolve_format(fmt, records) if fmt else detect_format(records)
    if fmt not in QA_FORMATS:
        raise DataFormatError(f"data quality works on question-answer data ({', '.join(QA_FORMATS)}), not {fmt!r}: "
                              "convert it first, e.g. data.convert(records, None, 'vqa').")
    return [dict(r) for r in records], fmt


@dataclass(frozen=True)
class AnswerSlot:
    """One answer of a dataset: ``record`` index, ``turn`` (0, or a conversation's k-th answer),
    its ``question``, ``answer`` and the earlier questions of the dialogue (``history``)."""

    record: int
    turn: int
    question: str
    answer: str
    history: tuple[str, ...] = ()


def answer_slots(records: Sequence[dict], fmt: str) -> list[AnswerSlot]:
    """Every answer of ``records`` (format ``fmt``) in order."""
    out = []
    for i, rec in enumerate(records):
        if fmt == "vqa":
            out.append(AnswerSlot(i, 0, rec["question"], rec["answer"]))
        elif fmt == "instruction":
            extra = (rec.get("input") or "").strip()
            out.append(AnswerSlot(i, 0, rec["instruction"] + (f"\n{extra}" if extra else ""), rec["output"]))
        else:
            conv, asked = rec["conversations"], []
            for t in range(0, len(conv) - 1, 2):
                q = conv[t]["value"].replace(IMAGE_TOKEN, " ").strip()
                out.append(AnswerSlot(i, t // 2, q, conv[t + 1]["value"], tuple(asked)))
                asked.append(q)
    return out


def _set_answer(rec: dict, fmt: str, turn: int, answer: str) -> dict:
    rec = dict(rec)
    if fmt == "vqa":
        rec["answer"] = answer
    elif fmt == "instruction":
        rec["output"] = answer
    else:
        conv = [dict(t) for t in rec["conversations"]]
        conv[2 * turn + 1]["value"] = answer
        rec["conversations"] = conv
    return rec


def _reword(rec: dict, fmt: str, rng: random.Random) -> dict:
    """``rec`` with every question said another way (canonical ShapesWorld wordings only)."""
    def say(q: str) -> str:
        for _ in range(8):
            new = phrasings.paraphrase_question(q, rng, "train", noise=False)
            if new != q:
                return new
        return q

    rec = dict(rec)
    if fmt == "vqa":
        rec["question"] = say(rec["question"])
    elif fmt == "instruction":
        rec["instruction"] = say(rec["instruction"])
    else:
        conv = [dict(t) for t in rec["conversations"]]
        for t in range(0, len(conv), 2):
            value = conv[t]["value"]
            has_token = IMAGE_TOKEN in value
            new = say(value.replace(IMAGE_TOKEN, " ").strip())
            conv[t]["value"] = f"{IMAGE_TOKEN}\n{new}" if has_token else new
        rec["conversations"] = conv
    return rec


# ----------------------------------------------------------------------------- (a) mislabelled

@dataclass
class Mislabelled:
    """What :func:`mislabel` returns: the corrupted ``records``, their ``format``, the changed
    answer slots ``changed`` (``[(record, turn), ...]``, sorted), the answers they had
    (``original``), and ``n_answers``, the answers there were in all."""

    records: list[dict]
    format: str
    changed: list[tuple[int, int]]
    original: dict[tuple[int, int], str]
    n_answers: int

    @property
    def share(self) -> float:
        return len(self.changed) / self.n_answers

    @property
    def indices(self) -> list[int]:
        """The records that hold a changed answer."""
        return sorted({r for r, _ in self.changed})

    def __repr__(self) -> str:
        return (f"Mislabelled({len(self.changed)} of {self.n_answers} answers ({self.share:.0%}) replaced by a wrong "
                f"answer of the same kind, in {len(self.indices)} of {len(self.records)} records)")


def mislabel(data, share: float = 0.2, seed: int = 0, fmt: str | None = None) -> Mislabelled:
    """A copy of ``data`` (records, a Dataset or a data file) in which exactly
    ``round(share x answers)`` answers, drawn with ``seed``, are replaced by a wrong answer of the
    same kind (another colour, shape, count, position, size; yes <-> no).

    Only answers whose kind is known (:func:`answer_kind`) can be replaced; if there are too few,
    the error says how many.
    """
    if not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ConfigError(f"share must be a fraction in [0, 1], not {share!r} (0.2 replaces 20 % of the answers).")
    records, fmt = _as_records(data, fmt)
    slots = answer_slots(records, fmt)
    n = round(share * len(slots))
    known = [s for s in slots if answer_kind(s.answer)]
    if n > len(known):
        raise DataFormatError(f"mislabel needs {n} answers of a known kind (colour, shape, count, position, yes/no, "
                              f"size) to replace {share:.0%} of {len(slots)}, but only {len(known)} are: use a smaller "
                              "share.")
    vocab = {k: set(words) for k, words in ANSWERS.items()}
    for s in known:   # a dataset's own answers (a newly taught colour) are answers of that kind too
        vocab[answer_kind(s.answer)].add(_words(s.answer)[0])
    rng = random.Random(seed)
    chosen = sorted(rng.sample(known, n), key=lambda s: (s.record, s.turn))
    original = {}
    for s in chosen:
        kind, said = answer_kind(s.answer), _words(s.answer)[0]
        wrong = rng.choice(sorted(vocab[kind] - {said}))
        records[s.record] = _set_answer(records[s.record], fmt, s.turn, wrong)
        original[(s.record, s.turn)] = s.answer
    return Mislabelled(records, fmt, [(s.record, s.turn) for s in chosen], original, len(slots))


# ----------------------------------------------------------------------------- (b) duplicated

@dataclass
class Duplicated:
    """What :func:`duplicate` returns: ``records`` (as many as the input), ``sources[i]`` the
    input record that ``records[i]`` copies, ``near`` the positions whose questions were re-worded
    (near-duplicates), and ``n_unique`` the distinct input records used."""

    records: list[dict]
    format: str
    sources: list[int]
    near: list[int]

    @property
    def n_unique(self) -> int:
        return len(set(self.sources))

    @property
    def n_exact(self) -> int:
        """Exact copies beyond each unique record's own first appearance (never re-worded)."""
        return len(self.records) - self.n_unique - len(self.near)

    def __repr__(self) -> str:
        return (f"Duplicated({len(self.records)} records from {self.n_unique} unique ones: {self.n_exact} exact "
                f"copies, {len(self.near)} near-duplicates)")


def duplicate(data, unique: float | int = 0.1, near: float = 0.5, seed: int = 0, fmt: str | None = None) -> Duplicated:
    """A heavily duplicated copy of ``data`` with as many records: ``unique`` of them (a count, or a
    fraction of the records) drawn with ``seed``, each repeated about equally often; of the
    repeats, ``round(near x repeats)`` are near-duplicates (same image, every question re-worded
    with :func:`vlmstudy.phrasings.paraphrase_question`), the rest exact copies. Order shuffled."""
    records, fmt = _as_records(data, fmt)
    n = len(records)
    k = unique if isinstance(unique, int) and not isinstance(unique, bool) else round(float(unique) * n)
    if not 1 <= k <= n:
        raise ConfigError(f"unique must leave between 1 and {n} unique records (a count, or a fraction such as 0.1), "
                          f"not {unique!r}.")
    if not 0 <= near <= 1:
        raise ConfigError(f"near must be a fraction in [0, 1], not {near!r}.")
    rng = random.Random(seed)
    chosen = rng.sample(range(n), k)
    sources = chosen + [chosen[j % k] for j in range(n - k)]   # each unique record repeated about equally
    repeats = list(range(k, n))
    reworded = set(rng.sample(repeats, round(near * len(repeats))))
    out = [_reword(records[src], fmt, rng) if i in reworded else dict(records[src]) for i, src in enumerate(sources)]
    order = list(range(n))
    rng.shuffle(order)
    new_pos = {old: new for new, old in enumerate(order)}
    return Duplicated([out[i] for i in order], fmt, [sources[i] for i in order], sorted(new_pos[i] for i in reworded))


# ----------------------------------------------------------------------------- (c) the checker

@dataclass(frozen=True)
class Issue:
    """One problem: ``kind`` (one of :data:`ISSUE_KINDS`), the answer slot (``record``, ``turn``),
    what is wrong, and for a duplicate or a conflict the earlier record it repeats (``other``)."""

    kind: str
    record: int
    turn: int
    message: str
    other: int | None = None

    def __str__(self) -> str:
        return f"record {self.record}" + (f" turn {self.turn}" if self.turn else "") + f" [{self.kind}]: {self.message}"


@dataclass
class QualityReport:
    """What :func:`check_dataset` found: ``issues``; ``n_records``, ``n_answers``; ``n_unique``,
    the distinct examples once exact and near duplicates are merged; ``n_checked``, the answers
    the scenes decided (0 without scenes)."""

    issues: list[Issue]
    n_records: int
    n_answers: int
    n_unique: int
    n_checked: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.counts = {k: sum(i.kind == k for i in self.issues) for k in ISSUE_KINDS}

    @property
    def ok(self) -> bool:
        return not self.issues

    def records(self, *kinds: str) -> list[int]:
        """Records with an issue of one of ``kinds`` (all kinds when none is given)."""
        return sorted({i.record for i in self.issues if not kinds or i.kind in kinds})

    def summary(self) -> str:
        lines = [f"{self.n_records} records, {self.n_answers} answers, {self.n_unique} unique "
                 f"({self.n_unique / max(self.n_answers, 1):.0%})" +
                 (f"; {self.n_checked} answers checked against their scene" if self.n_checked else "")]
        lines += [f"  {k:20} {n}" for k, n in self.counts.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        shown = [f"  {i}" for i in self.issues[:8]]
        more = [f"  ... and {len(self.issues) - 8} more"] if len(self.issues) > 8 else []
        return "\n".join([self.summary(), *(["first issues:"] + shown + more if self.issues else ["no issues found"])])

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def image_key(image: str, root: Path | None = None) -> str:
    """How two records are known to show the same image: the file's content hash when it can be
    read (a copy under another name is the same image), else the path as written."""
    path = Path(image) if root is None or Path(image).is_absolute() else root / image
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return str(image)


def _scene_for(scenes: Mapping, image: str):
    if image in scenes:
        return scenes[image]
    tail = "/".join(Path(image).parts[-2:])   # "images/0001.png" matches an absolute path to it
    scene = scenes.get(tail)
    return shapes.Scene.from_dict(scene) if isinstance(scene, dict) else scene


def check_dataset(data, fmt: str | None = None, scenes: Mapping | None = None, image_root: str | Path | None = None,
                  hash_images: bool = True) -> QualityReport:
    """Every prompt-answer inconsistency and duplicate in ``data`` (records, a Dataset or a file).

    Per answer: **type-mismatch** (the answer is of another kind than the question asks: "three"
    to a colour question), **contradicts-scene** (``scenes`` maps image paths, or their last two
    parts "images/0001.png", to :class:`~vlmstudy.shapes.Scene` or its dict, and the scene says
    otherwise), **conflicting-answers** (the same question about the same image answered
    differently). Per record after the first of its group: **exact-duplicate** (same image,
    question and answer) and **near-duplicate** (same image and answer, the question re-worded:
    same :func:`signature`). Images are compared by content (``hash_images``) when the files can be
    read from ``image_root`` (default: the data file's folder, or as written).
    """
    root = Path(image_root) if image_root is not None else (Path(data).parent if isinstance(data, (str, Path)) else None)
    records, fmt = _as_records(data, fmt)
    slots = answer_slots(records, fmt)
    issues: list[Issue] = []
    n_checked = 0
    for s in slots:
        qk, ak = question_kind(s.question), answer_kind(s.answer)
        if qk and ak and qk != ak:
            issues.append(Issue("type-mismatch", s.record, s.turn,
                                f"{s.question!r} asks for a {qk} but the answer {s.answer!r} is a {ak}"))
            continue
        scene = _scene_for(scenes, records[s.record]["image"]) if scenes else None
        truth = scene_answer(scene, s.question, s.history) if scene is not None else None
        if truth is not None:
            n_checked += 1
            if _words(s.answer) != _words(truth):
                issues.append(Issue("contradicts-scene", s.record, s.turn,
                                    f"{s.question!r} is answered {s.answer!r} but the scene says {truth!r}"))
    by_record: dict[int, list[AnswerSlot]] = {}
    for s in slots:
        by_record.setdefault(s.record, []).append(s)
    image_of = {}
    for i, rec in enumerate(records):
        name = rec["image"]
        image_of[i] = image_key(name, root) if hash_images else str(name)
    # duplicates: per record, the sequence of (question text, answer) and of (signature, answer)
    exact_seen: dict[tuple, int] = {}
    near_seen: dict[tuple, int] = {}
    asked: dict[tuple, tuple[int, str]] = {}
    for i in range(len(records)):
        mine = by_record[i]
        texts = tuple((" ".join(_words(s.question)), " ".join(_words(s.answer))) for s in mine)
        sigs = tuple((signature(s.question), " ".join(_words(s.answer))) for s in mine)
        exact, near = (image_of[i], texts), (image_of[i], sigs)
        if exact in exact_seen:
            issues.append(Issue("exact-duplicate", i, 0, f"repeats record {exact_seen[exact]} exactly",
                                exact_seen[exact]))
        elif near in near_seen:
            issues.append(Issue("near-duplicate", i, 0, f"repeats record {near_seen[near]} with the question re-worded "
                                f"({mine[0].question!r})", near_seen[near]))
        exact_seen.setdefault(exact, i)
        near_seen.setdefault(near, i)
        for s, (sig, answer) in zip(mine, sigs):
            if sig.kind is None or (not sig.names_object and sig.kind != "count" and not s.history):
                continue
            question_key = (image_of[i], tuple(signature(h) for h in s.history), sig)
            if question_key in asked and asked[question_key][1] != answer:
                first, said = asked[question_key]
                issues.append(Issue("conflicting-answers", i, s.turn, f"{s.question!r} is answered {s.answer!r} here "
                                    f"but {said!r} in record {first}", first))
            asked.setdefault(question_key, (i, answer))
    issues.sort(key=lambda x: (x.record, x.turn, ISSUE_KINDS.index(x.kind)))
    n_unique = len({key for key in near_seen})
    return QualityReport(issues, len(records), len(slots), n_unique, n_checked)


def load_scenes(path: str | Path) -> dict[str, shapes.Scene]:
    """``{image path: Scene}`` from the ``scenes.json`` that :func:`vlmstudy.shapes.export_dataset`
    (and ``vlmstudy data shapes``) writes next to the data."""
    from ..data import read_json

    return {row["image"]: shapes.Scene.from_dict(row) for row in read_json(path)}


def concept_scenes_by_image(n_concept: int = 150, n_ordinary: int = 150, seed: int = 0, color: str | None = "brown",
                            shape: str | None = None) -> dict[str, shapes.Scene]:
    """The scenes behind :func:`vlmstudy.finetune.concept.concept_dataset`'s images (same
    arguments): the new-concept scenes first, then the ordinary ones, ``images/0000.png`` on."""
    from .concept import concept_scenes

    scenes = concept_scenes(n_concept, seed, "train", color, shape) + shapes.make_scenes("train", n_ordinary,
                                                                                         seed=seed + 1)
    return {f"images/{k:04d}.png": s for k, s in enumerate(scenes)}


# ----------------------------------------------------------------------------- (d) the runs

def save_variant(records: Sequence[dict], path: str | Path) -> Path:
    """Write ``records`` to ``path`` with image paths relative to its folder, which must hold the
    images (write variants next to the clean data file)."""
    path = Path(path)
    base = path.resolve().parent
    out = []
    for rec in records:
        image = Path(rec["image"])
        rel = os.path.relpath(image.resolve() if image.is_absolute() else (base / image).resolve(), base)
        if rel.startswith(".."):
            raise DataFormatError(f"save_variant: image {rec['image']} lies outside {base}; write the variant into "
                                  "the folder of the clean data file, beside its images/.")
        out.append({**rec, "image": rel})
    return save_records(out, path)


@dataclass
class Variants:
    """What :func:`write_variants` returns: ``paths`` (``{"clean", "mislabelled", "duplicated"}``
    -> data file, all beside the clean one), and the :class:`Mislabelled` and :class:`Duplicated`
    that made them."""

    paths: dict[str, Path]
    mislabelled: Mislabelled
    duplicated: Duplicated


def write_variants(clean: str | Path, share: float = 0.2, unique: float | int = 0.1, near: float = 0.5,
                   seed: int = 0) -> Variants:
    """The clean data file ``clean``, a ``share``-mislabelled copy and a heavily duplicated copy
    (``unique``, ``near``) of it, the copies written beside it (``NAME-mislabelled.json``,
    ``NAME-duplicated.json``), all seeded with ``seed``."""
    clean = Path(clean)
    ds = load_dataset(clean)
    bad, dup = mislabel(ds, share, seed), duplicate(ds, unique, near, seed)
    paths = {"clean": clean,
             "mislabelled": save_variant(bad.records, clean.with_name(f"{clean.stem}-mislabelled.json")),
             "duplicated": save_variant(dup.records, clean.with_name(f"{clean.stem}-duplicated.json"))}
    return Variants(paths, bad, dup)


def concept_config(data_path: str | Path, output_dir: str | Path, steps: int = 80, batch_size: int = 16,
                   seed: int = 0, model: str | None = None) -> dict:
    """Notebook 11's LoRA recipe for teaching "brown" (r 8, alpha 16, every linear layer of the
    language model and the projector, brown's rows trainable, lr 3e-3), no eval split: the run
    :func:`compare_variants` repeats on each variant. model: default the shipped tiny LLaVA
    stand-in's folder (in hub mode too: random hub weights would learn nothing to compare)."""
    if model is None:
        from ..zoo import get_card

        folder = get_card("llava").stand_in_dir
        if folder is None or not (folder / "config.json").is_file():
            raise ConfigError(f"the tiny LLaVA stand-in is not on disk ({folder}): build it with `vlmstudy zoo train "
                              "llava`, or pass model=.")
        model = str(folder)
    return {"model": model, "output_dir": str(output_dir), "seed": seed,
            "data": {"path": str(data_path), "format": "vqa", "eval_split": 0},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["all-linear", "multi_modal_projector"],
                     "trainable_tokens": ["brown"]},
            "training": {"max_steps": steps, "batch_size": batch_size, "learning_rate": 3e-3, "warmup_steps": 3,
                         "eval_every": None, "save_every": None}}


def question_kinds(examples: Sequence[Example]) -> list[str]:
    """The question kind of each test example (``"other"`` when unknown)."""
    return [question_kind(e.question or "") or "other" for e in examples]


def compare_variants(variants: Mapping[str, str | Path], config, tests: Mapping[str, Sequence[Example]],
                     work_dir: str | Path, baseline: bool = False, progress: bool = True) -> dict:
    """Fine-tune the same config (one seed, the same steps) on each variant's data file and score
    each result on every test set (exact match, as :func:`vlmstudy.finetune.evaluate`).

    variants: ``{name: data file}``; config: a fine-tune config (dict, YAML path or
    FinetuneConfig) whose ``data.path`` and ``output_dir`` are replaced per variant
    (``work_dir/NAME``); tests: ``{name: examples}``; baseline: also score the model before any
    fine-tuning (as ``"before"``). Returns ``{variant: {"accuracy": {test: acc}, "by_kind":
    {test: {kind: acc}}, "n": {test: count}, "train_loss", "train_seconds", "steps"}}``.
    """
    from tqdm.auto import tqdm

    from .train import evaluate, finetune

    if not variants:
        raise ConfigError("compare_variants needs at least one variant: {'clean': 'data/vqa.json', ...}.")
    work = Path(work_dir)

    def score(model, processor) -> dict:
        out = {"accuracy": {}, "by_kind": {}, "n": {}}
        for name, examples in tests.items():
            rows = evaluate(model, processor, examples, loss=False)["predictions"]
            kinds = question_kinds(examples)
            out["accuracy"][name] = sum(r["correct"] for r in rows) / len(rows)
            out["by_kind"][name] = {k: sum(r["correct"] for r, kk in zip(rows, kinds) if kk == k) / kinds.count(k)
                                    for k in sorted(set(kinds))}
            out["n"][name] = len(rows)
        return out

    results = {}
    if baseline:
        from .config import load_config
        from .model import load_base

        model, processor, _ = load_base(load_config(config).model)
        results["before"] = score(model, processor)
    for name, path in tqdm(list(variants.items()), desc="fine-tunes", disable=not progress):
        res = finetune(config, callbacks=[], progress=False, overwrite=True,
                       **{"output_dir": str(work / name), "data.path": str(path)})
        results[name] = {**score(res.model, res.processor), "train_loss": res.metrics.get("train_loss"),
                         "train_seconds": round(res.seconds, 2), "steps": res.steps}
    return results
