"""The course's three JSON data formats: schema, validation, loading, converters.

A data file is a JSON list of records, one per image (instruction) or per image-text pair::

    caption:      [{"image": "images/0001.png", "caption": "a red circle on the left"}]
    vqa:          [{"image": "images/0001.png", "question": "what colour is the circle?", "answer": "red"}]
    instruction:  [{"image": "images/0001.png", "conversations": [
                     {"from": "human", "value": "<image>\\nwhat is in the picture?"},
                     {"from": "gpt",   "value": "a red circle on the left."}]}]

``image`` is a path relative to the data file's folder (or ``image_root``); other keys in a record
(``"id"`` ...) are kept and ignored. An instruction conversation alternates ``human`` / ``gpt``,
starts with ``human``, ends with ``gpt``, and its first human turn holds the ``<image>`` token
exactly once (the LLaVA convention; :mod:`vlmstudy.shapes` exports all three formats).

:func:`load_dataset` checks every record and reports each bad one by index and field (missing
image file, wrong type, missing ``<image>``, empty answer, bad role order ...): one
:class:`~vlmstudy.errors.DataFormatError` lists them, unless ``skip_invalid=True`` drops them.
:func:`coco_to_caption` and :func:`vqav2_to_vqa` convert the public COCO-captions and VQAv2 files.
:func:`to_examples` turns any format into training examples ``(image, history, question, answer)``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import DataFormatError

FORMATS: tuple[str, ...] = ("caption", "vqa", "instruction")
#: Required keys of each format, in the order they are reported.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "caption": ("image", "caption"),
    "vqa": ("image", "question", "answer"),
    "instruction": ("image", "conversations"),
}
IMAGE_TOKEN = "<image>"
ROLES: tuple[str, ...] = ("human", "gpt")
#: How many problems an error message lists before it says "... and N more".
MAX_PROBLEMS = 10


# ----------------------------------------------------------------------------- problems

@dataclass(frozen=True)
class Problem:
    """One bad record: its index in the file, the field, and what is wrong."""

    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"record {self.index}, field {self.field!r}: {self.message}"


def _problems_error(source: str, problems: Sequence[Problem], n_records: int, max_problems: int = MAX_PROBLEMS,
                    hint: str = "") -> DataFormatError:
    shown = "; ".join(str(p) for p in problems[:max_problems])
    more = f"; ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
    bad = len({p.index for p in problems})
    return DataFormatError(
        f"{source} has {bad} invalid record(s) out of {n_records}: {shown}{more}. {hint}".strip())


# ----------------------------------------------------------------------------- validation

def _type_name(value: Any) -> str:
    return "null" if value is None else {"str": "string", "list": "list", "dict": "object", "int": "number",
                                        "float": "number", "bool": "true/false"}.get(type(value).__name__,
                                                                                  type(value).__name__)


def detect_format(records: Sequence[Any]) -> str:
    """The format of ``records`` from the keys of its first record (``conversations`` ->
    instruction, ``question`` -> vqa, ``caption`` -> caption)."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        raise DataFormatError("Cannot tell the data format: the file holds no JSON objects. Each record must be "
                              "an object such as {'image': 'images/0001.png', 'caption': '...'}.")
    for fmt, key in (("instruction", "conversations"), ("vqa", "question"), ("caption", "caption")):
        if key in first:
            return fmt
    raise DataFormatError(
        f"Cannot tell the data format from the first record's keys {sorted(first)}: a caption record has "
        "'image' and 'caption', a vqa record 'image', 'question' and 'answer', an instruction record 'image' and "
        "'conversations'. Fix the record or pass the format explicitly.")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        import difflib

        close = difflib.get_close_matches(str(fmt), FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataFormatError(f"Unknown data format {fmt!r}.{hint} Allowed: {', '.join(FORMATS)}.")
    return fmt


def _text(problems: list, i: int, rec: dict, key: str, what: str) -> None:
    value = rec.get(key)
    if key not in rec:
        problems.append(Problem(i, key, f"missing (a {what} string is required)"))
    elif not isinstance(value, str):
        problems.append(Problem(i, key, f"wrong type: expected a string, got {_type_name(value)} {value!r:.40}"))
    elif not value.strip():
        problems.append(Problem(i, key, f"empty {what}"))


def _check_conversations(problems: list, i: int, conv: Any) -> None:
    key = "conversations"
    if not isinstance(conv, list):
        problems.append(Problem(i, key, f"wrong type: expected a list of turns, got {_type_name(conv)}"))
        return
    if not conv:
        problems.append(Problem(i, key, "empty conversation (needs a human turn and a gpt answer)"))
        return
    for t, turn in enumerate(conv):
        where = f"{key}[{t}]"
        if not isinstance(turn, dict):
            problems.append(Problem(i, where, f"wrong type: expected an object with 'from' and 'value', got "
                                              f"{_type_name(turn)}"))
            continue
        role, value = turn.get("from"), turn.get("value")
        expected = ROLES[t % 2]
        if role not in ROLES:
            problems.append(Problem(i, f"{where}.from", f"unknown role {role!r}; allowed: {', '.join(ROLES)}"))
        elif role != expected:
            problems.append(Problem(i, f"{where}.from", f"bad role order: turn {t} is {role!r} but should be "
                                                        f"{expected!r} (turns alternate human, gpt, human, ...)"))
        if "value" not in turn:
            problems.append(Problem(i, f"{where}.value", "missing"))
        elif not isinstance(value, str):
            problems.append(Problem(i, f"{where}.value", f"wrong type: expected a string, got {_type_name(value)}"))
        else:
            n_tokens = value.count(IMAGE_TOKEN)
            if t == 0 and n_tokens != 1:
                problems.append(Problem(i, f"{where}.value", f"the first human turn must hold the {IMAGE_TOKEN} "
                                                             f"token exactly once (found {n_tokens})"))
            elif t > 0 and n_tokens:
                problems.append(Problem(i, f"{where}.value", f"{IMAGE_TOKEN} may appear only in the first human "
                                                             "turn (one image per record)"))
            if not value.replace(IMAGE_TOKEN, "").strip():
                problems.append(Problem(i, f"{where}.value", "empty answer" if role == "gpt" else "empty question"))
    if isinstance(conv[-1], dict) and conv[-1].get("from") == "human":
        problems.append(Problem(i, f"{key}[{len(conv) - 1}].from", "bad role order: the conversation ends with a "
                                                                   "human turn that has no gpt answer"))


def validate_records(records: Any, fmt: str | None = None, image_root: str | Path | None = None,
                     check_images: bool = True) -> list[Problem]:
    """Every problem of every record (an empty list when all are fine).

    fmt: one of :data:`FORMATS` (default: :func:`detect_format`); image_root: the folder image
    paths are relative to (default: the current folder); check_images: whether each image file
    must exist.
    """
    if not isinstance(records, list):
        raise DataFormatError(f"A data file must hold a JSON list of records, not {_type_name(records)}.")
    fmt = check_format(fmt) if fmt else detect_format(records)
    root = Path(image_root) if image_root is not None else Path(".")
    problems: list[Problem] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            problems.append(Problem(i, "(record)", f"wrong type: expected an object, got {_type_name(rec)}"))
            continue
        _text(problems, i, rec, "image", "image path")
        if isinstance(rec.get("image"), str) and rec["image"].strip() and check_images:
            path = root / rec["image"]
            if not path.is_file():
                problems.append(Problem(i, "image", f"image file not found: {path}"))
        if fmt == "caption":
            _text(problems, i, rec, "caption", "caption")
        elif fmt == "vqa":
            _text(problems, i, rec, "question", "question")
            _text(problems, i, rec, "answer", "answer")
        else:
            if "conversations" not in rec:
                problems.append(Problem(i, "conversations", "missing (a list of human / gpt turns is required)"))
            else:
                _check_conversations(problems, i, rec["conversations"])
    return problems


# ----------------------------------------------------------------------------- loading

@dataclass
class Dataset:
    """Validated records of one format, with image paths made absolute.

    records: the valid records (``image`` resolved against ``image_root``); skipped: the problems
    of records left out by ``skip_invalid=True``; source: where they came from.
    """

    records: list[dict]
    format: str
    source: str = "<records>"
    image_root: str = "."
    skipped: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    def examples(self) -> list["Example"]:
        return to_examples(self.records, self.format)

    def __repr__(self) -> str:
        skipped = f", {len(self.skipped)} problem(s) skipped" if self.skipped else ""
        return f"Dataset({len(self.records)} {self.format} records from {self.source}{skipped})"


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"Data file not found: {path}. Check the path (relative paths start from "
                              f"{os.getcwd()}).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.") from None


def load_dataset(source: str | Path | list, fmt: str | None = None, image_root: str | Path | None = None,
                 skip_invalid: bool = False, max_problems: int = MAX_PROBLEMS, check_images: bool = True) -> Dataset:
    """Read and check a data file (or a list of records already in memory).

    fmt: ``caption``, ``vqa`` or ``instruction`` (default: detected from the first record).
    image_root: folder the image paths are relative to (default: the data file's folder).
    skip_invalid: drop bad records (with a warning) instead of refusing the whole file.
    max_problems: how many problems the error message lists.
    """
    if isinstance(source, (str, Path)):
        records, name = read_json(source), str(source)
        root = Path(image_root) if image_root is not None else Path(source).resolve().parent
    else:
        records, name = source, "<records>"
        root = Path(image_root) if image_root is not None else Path(".")
    if not isinstance(records, list):
        raise DataFormatError(f"{name} must hold a JSON list of records, not {_type_name(records)}.")
    if not records:
        raise DataFormatError(f"{name} holds no records.")
    fmt = check_format(fmt) if fmt else detect_format(records)
    problems = validate_records(records, fmt, root, check_images=check_images)
    bad = {p.index for p in problems}
    if problems and not skip_invalid:
        raise _problems_error(name, problems, len(records), max_problems,
                              f"Fix them, or set skip_invalid: true to use only the {len(records) - len(bad)} valid "
                              "ones.")
    if len(bad) == len(records):
        raise _problems_error(name, problems, len(records), max_problems, "No valid record is left.")
    if problems:
        warnings.warn(f"{name}: skipping {len(bad)} invalid record(s) of {len(records)} (skip_invalid is on); first: "
                      f"{problems[0]}", stacklevel=2)
    kept = []
    for i, rec in enumerate(records):
        if i not in bad:
            rec = dict(rec)
            rec["image"] = str((root / rec["image"]).resolve())
            kept.append(rec)
    return Dataset(kept, fmt, name, str(root), problems)


def save_records(records: Sequence[dict], path: str | Path) -> Path:
    """Write records as an indented JSON list (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(records), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- training examples

@dataclass(frozen=True)
class Example:
    """One supervised target: for ``image``, after the earlier ``history`` turns, ``question``
    (``None`` for a plain caption) is answered by ``answer``. ``index`` is the source record.
    ``image`` is a file path (from a data file) or an image in memory (PIL)."""

    image: Any
    question: str | None
    answer: str
    history: tuple[tuple[str, str], ...] = ()
    index: int = -1

    @property
    def turns(self) -> list[tuple[str, str | None]]:
        """The conversation up to the answer: ``[(q, a), ..., (question, None)]``."""
        return list(self.history) + [(self.question or "", None)]


def strip_image_token(text: str) -> str:
    """A human turn without its ``<image>`` token (the chat template puts the image back)."""
    return " ".join(text.replace(IMAGE_TOKEN, " ").split())


def to_examples(records: Iterable[dict], fmt: str) -> list[Example]:
    """Training examples from validated records: one per caption and per question; one per gpt
    turn of a conversation, with the earlier turns as history (only that turn's answer is learned)."""
    fmt = check_format(fmt)
    out = []
    for i, rec in enumerate(records):
        if fmt == "caption":
            out.append(Example(rec["image"], None, rec["caption"].strip(), (), i))
        elif fmt == "vqa":
            out.append(Example(rec["image"], rec["question"].strip(), rec["answer"].strip(), (), i))
        else:
            conv, history = rec["conversations"], []
            for t in range(0, len(conv) - 1, 2):
                q, a = strip_image_token(conv[t]["value"]), conv[t + 1]["value"].strip()
                out.append(Example(rec["image"], q, a, tuple(history), i))
                history.append((q, a))
    return out


def records_from_examples(examples: Iterable[Example], fmt: str = "vqa") -> list[dict]:
    """The inverse for single-turn examples: ``vqa`` or ``caption`` records."""
    fmt = check_format(fmt)
    if fmt == "vqa":
        return [{"image": e.image, "question": e.question or "", "answer": e.answer} for e in examples]
    if fmt == "caption":
        return [{"image": e.image, "caption": e.answer} for e in examples]
    return [{"image": e.image, "conversations": [
        *[m for q, a in e.history for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})],
        {"from": "human", "value": e.question or ""}, {"from": "gpt", "value": e.answer}]} for e in examples]


def convert(records: Sequence[dict], source_fmt: str, target_fmt: str, question: str = "describe the image.") -> list[dict]:
    """Convert between the formats: caption / vqa -> instruction (one turn each, ``<image>`` in it);
    caption -> vqa (``question`` asks for the caption); instruction -> vqa (one record per turn,
    the history dropped: only for single-turn data)."""
    check_format(source_fmt)
    check_format(target_fmt)
    if source_fmt == target_fmt:
        return [dict(r) for r in records]
    if target_fmt == "caption":
        raise DataFormatError("Converting to the caption format is not supported: a question-answer pair is not a "
                              "caption.")
    out = []
    for rec in records:
        if source_fmt == "caption":
            q, a = question, rec["caption"]
        elif source_fmt == "vqa":
            q, a = rec["question"], rec["answer"]
        else:
            conv = rec["conversations"]
            out.extend({"image": rec["image"], "question": strip_image_token(conv[t]["value"]),
                        "answer": conv[t + 1]["value"]} for t in range(0, len(conv) - 1, 2))
            continue
        if target_fmt == "vqa":
            out.append({"image": rec["image"], "question": q, "answer": a})
        else:
            out.append({"image": rec["image"], "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{q}"},
                                                                 {"from": "gpt", "value": a}]})
    return out


# ----------------------------------------------------------------------------- converters

def _load_obj(obj: str | Path | dict, what: str) -> dict:
    data = read_json(obj) if isinstance(obj, (str, Path)) else obj
    if not isinstance(data, dict):
        raise DataFormatError(f"The {what} file must hold a JSON object, not {_type_name(data)}.")
    return data


def _list_key(data: dict, key: str, what: str) -> list:
    if key not in data:
        raise DataFormatError(f"The {what} file has no {key!r} list (keys: {sorted(data)}).")
    if not isinstance(data[key], list):
        raise DataFormatError(f"{what}: {key!r} must be a list, not {_type_name(data[key])}.")
    return data[key]


def _image_path(image_dir: str | Path, name: str, out: str | Path | None) -> str:
    path = Path(image_dir) / name
    if out is not None:  # relative to the output file's folder, so the data stays movable
        return os.path.relpath(path.resolve(), Path(out).resolve().parent)
    return str(path)


def _finish(records: list[dict], problems: list[str], what: str, out, max_problems: int) -> list[dict]:
    if problems:
        shown = "; ".join(problems[:max_problems])
        more = f"; ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise DataFormatError(f"Cannot convert the {what} data: {shown}{more}.")
    if out is not None:
        save_records(records, out)
    return records


def coco_to_caption(captions: str | Path | dict, image_dir: str | Path, out: str | Path | None = None,
                    max_per_image: int | None = None, max_problems: int = MAX_PROBLEMS) -> list[dict]:
    """COCO captions (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``)
    -> caption records, one per annotation (``max_per_image`` keeps the first N of each image).

    image_dir: folder holding the ``file_name`` images. out: write the JSON there; image paths are
    then relative to its folder (else ``image_dir/file_name``). Problems (an annotation whose
    ``image_id`` has no image, a missing field) are reported together.
    """
    data = _load_obj(captions, "COCO captions")
    images = _list_key(data, "images", "COCO captions")
    annotations = _list_key(data, "annotations", "COCO captions")
    problems, names = [], {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            problems.append(f"images[{i}] needs 'id' and a string 'file_name'")
        else:
            names[im["id"]] = im["file_name"]
    records, per_image = [], {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            problems.append(f"annotations[{i}] has no 'image_id'")
            continue
        cap = ann.get("caption")
        if not isinstance(cap, str) or not cap.strip():
            problems.append(f"annotations[{i}] has no caption text")
            continue
        if ann["image_id"] not in names:
            problems.append(f"annotations[{i}]: image_id {ann['image_id']!r} is not in 'images'")
            continue
        n = per_image.get(ann["image_id"], 0)
        if max_per_image is not None and n >= max_per_image:
            continue
        per_image[ann["image_id"]] = n + 1
        records.append({"image": _image_path(image_dir, names[ann["image_id"]], out),
                        "caption": " ".join(cap.split())})
    return _finish(records, problems, "COCO captions", out, max_problems)


def vqav2_image_name(image_id: int, split: str = "train2014") -> str:
    """``COCO_train2014_000000000009.jpg``: VQAv2's image file name for ``image_id``."""
    return f"COCO_{split}_{int(image_id):012d}.jpg"


def vqav2_to_vqa(questions: str | Path | dict, annotations: str | Path | dict, image_dir: str | Path,
                 split: str = "train2014", out: str | Path | None = None,
                 answer_field: str = "multiple_choice_answer", max_problems: int = MAX_PROBLEMS) -> list[dict]:
    """VQAv2 (``questions.json`` + ``annotations.json``) -> vqa records, joined on ``question_id``.

    The answer is each annotation's ``multiple_choice_answer`` (the most common of the ten human
    answers); image files are ``COCO_{split}_{image_id:012d}.jpg`` in ``image_dir``. A question
    without an annotation (VQAv2's test questions have none) or an annotation whose image differs
    from its question's is reported.
    """
    qdata = _load_obj(questions, "VQAv2 questions")
    adata = _load_obj(annotations, "VQAv2 annotations")
    qs = _list_key(qdata, "questions", "VQAv2 questions")
    anns = _list_key(adata, "annotations", "VQAv2 annotations")
    problems, by_qid = [], {}
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or "question_id" not in ann:
            problems.append(f"annotations[{i}] has no 'question_id'")
            continue
        answer = ann.get(answer_field)
        if answer_field == "answers" or not isinstance(answer, str):
            # fall back to the most frequent of the human answers
            votes = [a.get("answer") for a in ann.get("answers") or [] if isinstance(a, dict)]
            votes = [v for v in votes if isinstance(v, str) and v.strip()]
            answer = max(set(votes), key=lambda v: (votes.count(v), v)) if votes else None
        if not isinstance(answer, str) or not answer.strip():
            problems.append(f"annotations[{i}] (question_id {ann['question_id']}) has no answer")
            continue
        by_qid[ann["question_id"]] = (ann.get("image_id"), answer.strip())
    records = []
    for i, q in enumerate(qs):
        if not isinstance(q, dict) or not {"question_id", "image_id", "question"} <= set(q):
            problems.append(f"questions[{i}] needs 'question_id', 'image_id' and 'question'")
            continue
        if q["question_id"] not in by_qid:
            problems.append(f"questions[{i}] (question_id {q['question_id']}) has no annotation (test questions "
                            "have no answers and cannot be used for training)")
            continue
        image_id, answer = by_qid[q["question_id"]]
        if image_id is not None and image_id != q["image_id"]:
            problems.append(f"question_id {q['question_id']}: the question is about image {q['image_id']} but its "
                            f"annotation about image {image_id}")
            continue
        records.append({"image": _image_path(image_dir, vqav2_image_name(q["image_id"], split), out),
                        "question": " ".join(str(q["question"]).split()), "answer": answer,
                        "question_id": q["question_id"]})
    return _finish(records, problems, "VQAv2", out, max_problems)
