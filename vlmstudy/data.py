"""The course's JSON data formats: schema, validation, loading, converters.

A data file is a JSON list of records, one per image (multi-turn formats) or per image-text pair.
The fine-tuning guide's four formats and LLaVA's conversations load as written::

    caption:       [{"image": "images/0001.png", "text": "a red circle on the left"}]
                   (the key "caption" works too)
    vqa:           [{"image": "images/0001.png", "question": "what colour is the circle?", "answer": "red"}]
    instruction:   [{"image": "images/0001.png", "instruction": "Describe the picture.", "input": "",
                     "output": "a red circle on the left."}]
    text:          [{"image": "images/0001.png", "text": "User: what is in the picture?\\nAssistant: a red circle."}]
    conversations: [{"image": "images/0001.png", "conversations": [
                     {"from": "human", "value": "<image>\\nwhat is in the picture?"},
                     {"from": "gpt",   "value": "a red circle on the left."}]}]

:func:`detect_format` tells them apart by the first record's keys (``conversations``;
``instruction`` / ``output``; ``question``; ``caption``; ``text`` holding ``User: ...`` and
``Assistant: ...`` lines is a text turn, any other ``text`` a caption). The format name
``instruction`` given for a file of ``conversations`` records means conversations (the course's
earlier spelling), so old configs keep working.

``image`` is a path relative to the data file's folder (or ``image_root``); other keys in a record
(``"id"`` ...) are kept and ignored. An image path that leads outside that folder
(``../../etc/passwd``, ``/etc/hostname``) is refused, naming the record, unless
``allow_outside_root=True``. A conversation alternates ``human`` / ``gpt``, starts with
``human``, ends with ``gpt``, and its first human turn holds the ``<image>`` token exactly once
(the LLaVA convention); a text turn alternates ``User:`` / ``Assistant:`` the same way.

:func:`load_dataset` checks every record and reports each bad one by index and field (missing
image file, wrong type, missing ``<image>``, empty answer, bad role order ...): one
:class:`~vlmstudy.errors.DataFormatError` lists them, unless ``skip_invalid=True`` drops them.
:func:`convert` turns any format into any other (through :func:`to_examples`);
:func:`coco_to_caption` and :func:`vqav2_to_vqa` convert the public COCO-captions and VQAv2 files;
:func:`create_sample_multimodal_dataset` writes a ready ShapesWorld folder in any format.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataFormatError

FORMATS: tuple[str, ...] = ("caption", "vqa", "instruction", "text", "conversations")
#: Required keys of each format, in the order they are reported (caption: "text" or "caption").
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "caption": ("image", "text"),
    "vqa": ("image", "question", "answer"),
    "instruction": ("image", "instruction", "output"),
    "text": ("image", "text"),
    "conversations": ("image", "conversations"),
}
IMAGE_TOKEN = "<image>"
ROLES: tuple[str, ...] = ("human", "gpt")
TEXT_ROLES: tuple[str, ...] = ("User", "Assistant")
#: How many problems an error message lists before it says "... and N more".
MAX_PROBLEMS = 10
#: The question a caption becomes when converted to a question-answer format.
CAPTION_QUESTION = "describe the image."

_TEXT_TURN = re.compile(r"(?:^|\n)[ \t]*(user|assistant)[ \t]*:", re.IGNORECASE)


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


def parse_text_turns(text: str) -> list[tuple[str, str]] | None:
    """``"User: q\\nAssistant: a"`` -> ``[("User", "q"), ("Assistant", "a")]`` (roles case-insensitive,
    one per line start); ``None`` when ``text`` does not start with a role line."""
    if not isinstance(text, str):
        return None
    parts = _TEXT_TURN.split(text.strip())
    if len(parts) < 3 or parts[0].strip():
        return None
    return [(role.capitalize(), value.strip()) for role, value in zip(parts[1::2], parts[2::2])]


def _looks_like_text_turn(rec: dict) -> bool:
    turns = parse_text_turns(rec.get("text"))
    return bool(turns) and any(role == "Assistant" for role, _ in turns)


def detect_format(records: Sequence[Any]) -> str:
    """The format of ``records`` from the keys of its first record (see the module docstring)."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        raise DataFormatError("Cannot tell the data format: the file holds no JSON objects. Each record must be "
                              "an object such as {'image': 'images/0001.png', 'text': '...'}.")
    if "conversations" in first:
        return "conversations"
    if "instruction" in first or "output" in first:
        return "instruction"
    if "question" in first:
        return "vqa"
    if "caption" in first:
        return "caption"
    if "text" in first:
        return "text" if _looks_like_text_turn(first) else "caption"
    raise DataFormatError(
        f"Cannot tell the data format from the first record's keys {sorted(first)}: a caption record has "
        "'image' and 'text' (or 'caption'), a vqa record 'image', 'question' and 'answer', an instruction record "
        "'image', 'instruction', 'input' and 'output', a text-turn record 'image' and 'text' ('User: ...\\n"
        "Assistant: ...'), a conversations record 'image' and 'conversations'. Fix the record or pass the format "
        "explicitly.")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        import difflib

        close = difflib.get_close_matches(str(fmt), FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataFormatError(f"Unknown data format {fmt!r}.{hint} Allowed: {', '.join(FORMATS)}.")
    return fmt


def resolve_format(fmt: str | None, records: Sequence[Any]) -> str:
    """``fmt`` checked, or detected when ``None``; ``instruction`` for records that hold
    ``conversations`` (and no ``instruction`` key) means ``conversations``, the earlier name."""
    if not fmt:
        return detect_format(records)
    check_format(fmt)
    first = next((r for r in records if isinstance(r, dict)), None) if isinstance(records, list) else None
    if fmt == "instruction" and first is not None and "conversations" in first and "instruction" not in first:
        return "conversations"
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
            problems.append(Problem(i, f"{where}.from", f"unknown role {role!r:.40}; allowed: {', '.join(ROLES)}"))
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


def _check_text_turns(problems: list, i: int, rec: dict) -> None:
    _text(problems, i, rec, "text", "dialogue ('User: ...\\nAssistant: ...')")
    if not isinstance(rec.get("text"), str) or not rec["text"].strip():
        return
    turns = parse_text_turns(rec["text"])
    if not turns:
        problems.append(Problem(i, "text", "a text turn must start with 'User:' and hold an 'Assistant:' answer "
                                           "on its own line ('User: ...\\nAssistant: ...')"))
        return
    for t, (role, value) in enumerate(turns):
        expected = TEXT_ROLES[t % 2]
        if role != expected:
            problems.append(Problem(i, "text", f"bad role order: turn {t} is {role!r} but should be {expected!r} "
                                               "(turns alternate User, Assistant, User, ...)"))
            return
        if not value.replace(IMAGE_TOKEN, "").strip():
            problems.append(Problem(i, "text", f"turn {t} ({role}) is empty"))
    if turns[-1][0] == "User":
        problems.append(Problem(i, "text", "the dialogue ends with a User turn that has no Assistant answer"))


def _check_caption(problems: list, i: int, rec: dict) -> None:
    key = "caption" if "caption" in rec or "text" not in rec else "text"
    if key not in rec:
        problems.append(Problem(i, "text", "missing (a caption string is required, under 'text' or 'caption')"))
    else:
        _text(problems, i, rec, key, "caption")


def _check_instruction(problems: list, i: int, rec: dict) -> None:
    _text(problems, i, rec, "instruction", "instruction")
    if "input" in rec and not isinstance(rec["input"], str):
        problems.append(Problem(i, "input", f"wrong type: expected a string (may be empty), got "
                                            f"{_type_name(rec['input'])}"))
    _text(problems, i, rec, "output", "output")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _check_image(problems: list, i: int, rec: dict, root: Path, confine: bool, check_images: bool) -> None:
    _text(problems, i, rec, "image", "image path")
    name = rec.get("image")
    if not isinstance(name, str) or not name.strip():
        return
    path = root / name
    if confine:
        # resolve() follows symlinks and "..", so a link inside the folder that points out counts as outside
        target, base = path.resolve(), root.resolve()
        if not _inside(target, base):
            problems.append(Problem(i, "image", f"{name!r} leads outside the data folder {base} (to {target}); "
                                                "image paths must stay inside it. Move the image into the folder, "
                                                "or set allow_outside_root: true (--allow-outside-root) if you "
                                                "trust this file"))
            return
    if check_images and not path.is_file():
        problems.append(Problem(i, "image", f"image file not found: {path}"))


def validate_records(records: Any, fmt: str | None = None, image_root: str | Path | None = None,
                     check_images: bool = True, allow_outside_root: bool = False) -> list[Problem]:
    """Every problem of every record (an empty list when all are fine).

    fmt: one of :data:`FORMATS` (default: :func:`detect_format`); image_root: the folder image
    paths are relative to and must stay inside (default: the current folder, not confined);
    check_images: whether each image file must exist; allow_outside_root: accept image paths
    that lead outside ``image_root``.
    """
    if not isinstance(records, list):
        raise DataFormatError(f"A data file must hold a JSON list of records, not {_type_name(records)}.")
    fmt = resolve_format(fmt, records)
    root = Path(image_root) if image_root is not None else Path(".")
    confine = image_root is not None and not allow_outside_root
    problems: list[Problem] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            problems.append(Problem(i, "(record)", f"wrong type: expected an object, got {_type_name(rec)}"))
            continue
        _check_image(problems, i, rec, root, confine, check_images)
        if fmt == "caption":
            _check_caption(problems, i, rec)
        elif fmt == "vqa":
            _text(problems, i, rec, "question", "question")
            _text(problems, i, rec, "answer", "answer")
        elif fmt == "instruction":
            _check_instruction(problems, i, rec)
        elif fmt == "text":
            _check_text_turns(problems, i, rec)
        elif "conversations" not in rec:
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

    def examples(self) -> list[Example]:
        return to_examples(self.records, self.format)

    def __repr__(self) -> str:
        skipped = f", {len(self.skipped)} problem(s) skipped" if self.skipped else ""
        return f"Dataset({len(self.records)} {self.format} records from {self.source}{skipped})"


_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"))


def decode_text(raw: bytes, name: str) -> str:
    """Text of a data file: UTF-8 (with or without a byte-order mark), or UTF-16 / UTF-32 with
    their byte-order mark; anything else is refused with one line (what it is, how to fix it)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{name} starts with a {encoding.upper()} byte-order mark but is not valid "
                                      f"{encoding.upper()} (byte {err.start}). Save it again as UTF-8.") from None
    if b"\x00" in raw[:4096]:
        raise DataFormatError(f"{name} holds NUL bytes: it looks like UTF-16 or UTF-32 text without a byte-order "
                              "mark, or a binary file. Save it as UTF-8 JSON.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{name} is not UTF-8 text (byte {err.start} is {raw[err.start:err.start + 1]!r}). "
                              "Save it as UTF-8 (your editor's 'save with encoding' menu).") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's content; every way it can be unreadable is one :class:`DataFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"Data file not found: {path}. Check the path (relative paths start from "
                              f"{os.getcwd()}).")
    text = decode_text(path.read_bytes(), str(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.") from None
    except RecursionError:
        raise DataFormatError(f"{path} nests JSON lists / objects too deeply to read (Python's limit is about "
                              f"{sys.getrecursionlimit()} levels). A data file is a flat list of records.") from None
    except ValueError as err:   # e.g. an integer of more digits than Python converts
        raise DataFormatError(f"{path} is not usable JSON: {' '.join(str(err).split())[:200]}.") from None


def load_dataset(source: str | Path | list, fmt: str | None = None, image_root: str | Path | None = None,
                 skip_invalid: bool = False, max_problems: int = MAX_PROBLEMS, check_images: bool = True,
                 allow_outside_root: bool = False) -> Dataset:
    """Read and check a data file (or a list of records already in memory).

    fmt: one of :data:`FORMATS` (default: detected from the first record).
    image_root: folder the image paths are relative to (default: the data file's folder); image
    paths must stay inside it unless ``allow_outside_root``. A list of records without an
    ``image_root`` is not confined (paths are relative to the current folder).
    skip_invalid: drop bad records (with a warning) instead of refusing the whole file.
    max_problems: how many problems the error message lists.
    """
    if isinstance(source, (str, Path)):
        records, name = read_json(source), str(source)
        root = Path(image_root) if image_root is not None else Path(source).resolve().parent
        confine_root = root
    else:
        records, name = source, "<records>"
        root = Path(image_root) if image_root is not None else Path(".")
        confine_root = Path(image_root) if image_root is not None else None
    if not isinstance(records, list):
        raise DataFormatError(f"{name} must hold a JSON list of records, not {_type_name(records)}.")
    if not records:
        raise DataFormatError(f"{name} holds no records.")
    fmt = resolve_format(fmt, records)
    if confine_root is None:
        problems = validate_records(records, fmt, None, check_images=False)
        if check_images:
            problems += [Problem(i, "image", f"image file not found: {root / r['image']}") for i, r in
                         enumerate(records) if isinstance(r, dict) and isinstance(r.get("image"), str)
                         and r["image"].strip() and not (root / r["image"]).is_file()]
            problems.sort(key=lambda p: p.index)
    else:
        problems = validate_records(records, fmt, confine_root, check_images=check_images,
                                    allow_outside_root=allow_outside_root)
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


def _dialogue_examples(image, pairs: Sequence[tuple[str, str]], index: int) -> list[Example]:
    out, history = [], []
    for q, a in pairs:
        out.append(Example(image, q, a, tuple(history), index))
        history.append((q, a))
    return out


def record_pairs(rec: dict, fmt: str) -> list[tuple[str | None, str]]:
    """A validated record as ``[(question, answer), ...]`` in order (question ``None`` for a caption).

    instruction: the question is ``instruction``, followed by ``input`` on a new line when it is
    not empty; text: each ``User:`` / ``Assistant:`` pair; conversations: each human / gpt pair.
    """
    if fmt == "caption":
        return [(None, (rec["caption"] if "caption" in rec else rec["text"]).strip())]
    if fmt == "vqa":
        return [(rec["question"].strip(), rec["answer"].strip())]
    if fmt == "instruction":
        extra = (rec.get("input") or "").strip()
        question = rec["instruction"].strip() + (f"\n{extra}" if extra else "")
        return [(question, rec["output"].strip())]
    if fmt == "text":
        turns = parse_text_turns(rec["text"])
        return [(strip_image_token(turns[t][1]), turns[t + 1][1].strip()) for t in range(0, len(turns) - 1, 2)]
    conv = rec["conversations"]
    return [(strip_image_token(conv[t]["value"]), conv[t + 1]["value"].strip()) for t in range(0, len(conv) - 1, 2)]


def to_examples(records: Iterable[dict], fmt: str) -> list[Example]:
    """Training examples from validated records: one per caption and per question; one per
    answer of a dialogue (text turns, conversations), with the earlier turns as history (only
    that turn's answer is learned)."""
    fmt = check_format(fmt)
    out = []
    records = list(records)
    fmt = resolve_format(fmt, records)
    for i, rec in enumerate(records):
        pairs = record_pairs(rec, fmt)
        if fmt == "caption":
            out.append(Example(rec["image"], None, pairs[0][1], (), i))
        else:
            out.extend(_dialogue_examples(rec["image"], pairs, i))
    return out


def _dialogue(examples: Sequence[Example], question: str) -> list[tuple[str, str]]:
    """The full dialogue of the last example of a record: its history and its own turn."""
    last = examples[-1]
    return list(last.history) + [(last.question if last.question is not None else question, last.answer)]


def records_from_examples(examples: Iterable[Example], fmt: str = "vqa", question: str = CAPTION_QUESTION) -> list[dict]:
    """Records of format ``fmt`` from examples (the inverse of :func:`to_examples`).

    Multi-turn dialogues (examples of one ``index`` with a history) stay one record in ``text``
    and ``conversations``; ``vqa`` and ``instruction`` take one record per turn, its history
    dropped. A caption (``question`` ``None``) asks ``question`` in the question formats; only
    captions convert to ``caption``.
    """
    fmt = check_format(fmt)
    examples = list(examples)
    if fmt == "caption":
        not_captions = [e.index for e in examples if e.question is not None]
        if not_captions:
            raise DataFormatError(f"Converting to the caption format needs caption data, but record "
                                  f"{not_captions[0]} holds a question: a question-answer pair is not a caption.")
        return [{"image": e.image, "text": e.answer} for e in examples]
    if fmt in ("vqa", "instruction"):
        out = []
        for e in examples:
            q = e.question if e.question is not None else question
            out.append({"image": e.image, "question": q, "answer": e.answer} if fmt == "vqa" else
                       {"image": e.image, "instruction": q, "input": "", "output": e.answer})
        return out
    groups: list[list[Example]] = []
    for e in examples:   # consecutive examples of one record (same index, growing history) form a dialogue
        if groups and e.history and e.index == groups[-1][-1].index and len(e.history) == len(groups[-1]):
            groups[-1].append(e)
        else:
            groups.append([e])
    out = []
    for group in groups:
        turns = _dialogue(group, question)
        if fmt == "text":
            out.append({"image": group[0].image,
                        "text": "\n".join(f"User: {q}\nAssistant: {a}" for q, a in turns)})
        else:
            conv = []
            for k, (q, a) in enumerate(turns):
                conv += [{"from": "human", "value": (f"{IMAGE_TOKEN}\n" if k == 0 else "") + q},
                         {"from": "gpt", "value": a}]
            out.append({"image": group[0].image, "conversations": conv})
    return out


def convert(records: Sequence[dict], source_fmt: str | None, target_fmt: str, question: str = CAPTION_QUESTION) -> list[dict]:
    """Convert validated records from ``source_fmt`` (``None``: detected) to ``target_fmt``.

    Every format converts to ``text`` and ``conversations`` without loss; to ``vqa`` and
    ``instruction`` one record per turn (a dialogue's history is dropped: meant for single-turn
    data); to ``caption`` only from caption data. A caption becomes the answer to ``question``.
    """
    records = list(records)
    source_fmt = resolve_format(source_fmt, records)
    check_format(target_fmt)
    if source_fmt == target_fmt:
        return [dict(r) for r in records]
    return records_from_examples(to_examples(records, source_fmt), target_fmt, question)


def convert_file(source: str | Path, out: str | Path, target_fmt: str, fmt: str | None = None,
                 image_root: str | Path | None = None, question: str = CAPTION_QUESTION,
                 allow_outside_root: bool = False) -> tuple[Path, str, int]:
    """Check ``source`` (every bad record reported), convert it to ``target_fmt`` and write ``out``
    with image paths relative to ``out``'s folder. Returns ``(out, source format, records written)``."""
    ds = load_dataset(source, fmt, image_root, allow_outside_root=allow_outside_root)
    out = Path(out)
    if out.resolve() == Path(source).resolve():
        raise DataFormatError(f"data convert would overwrite its input {source}: write to another file.")
    records = convert(ds.records, ds.format, target_fmt, question)
    base = out.resolve().parent
    for rec in records:
        rec["image"] = os.path.relpath(rec["image"], base)
    return save_records(records, out), ds.format, len(records)


def create_sample_multimodal_dataset(path: str | Path = "data/multimodal_train.json", n: int = 100,
                                     format: str = "caption", split: str = "train", seed: int = 0) -> Path:
    """A ready data folder in the guide's layout, made of ``n`` ShapesWorld scenes: PNGs under
    ``images/`` next to the JSON file ``path`` (a folder gets ``multimodal_train.json``) in
    ``format`` (:data:`FORMATS`). vqa and instruction hold several questions per scene, text and
    conversations a multi-turn dialogue per scene. Returns the JSON file's path.
    """
    from . import shapes

    check_format(format)
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path / "multimodal_train.json"
    folder = path.parent
    exported = shapes.export_dataset(shapes.make_scenes(split, n, seed=seed), folder, seed=seed)
    source = {"caption": "caption", "vqa": "vqa", "instruction": "vqa", "text": "instruction",
              "conversations": "instruction"}[format]
    records = json.loads(exported[source].read_text())
    records = convert(records, None, format)
    for name in ("caption", "vqa", "instruction", "scenes"):   # only the requested file stays
        if exported[name].resolve() != path.resolve():
            exported[name].unlink(missing_ok=True)
    return save_records(records, path)


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
