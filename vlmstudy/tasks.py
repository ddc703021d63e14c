"""Captioning, visual question answering and chat, the same three calls for every model family.

::

    from vlmstudy import tasks
    tasks.caption("photo.png")                                  # BLIP captioner
    tasks.answer(image, "what colour is the circle?")           # BLIP VQA
    tasks.answer(image, "what colour is the circle?", model="llava", preset="beam")
    chat = tasks.ChatSession("llava").set_image(image)
    chat.ask("what shape is on the left?"); chat.ask("and what colour is it?")

``model=`` is a name (loaded once, then cached: :func:`get_model`) or a ``(model, processor)``
pair. Each family gets its prompt in the format it was trained on: BLIP-VQA and InstructBLIP the
plain question, BLIP-2 ``"Question: ... Answer:"``, LLaVA its chat template. Decoding settings
(``preset="greedy" | "beam" | "sample"``, ``max_new_tokens=...``) are
:class:`~vlmstudy.generation.GenerationSettings`. Images may be paths, PIL images, numpy arrays
or bytes (:func:`vlmstudy.images.load_image`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

from .errors import ConfigError, check_positive_int
from .generation import (
    CHAT_FAMILIES,
    PRESETS,
    GenerationSettings,
    chat_prompt,
    context_length,
    family,
    generate_text,
    generation_settings,
)
from .images import load_image

__all__ = [
    "caption", "answer", "caption_batch", "answer_batch", "ChatSession", "GenerationSettings", "PRESETS",
    "generation_settings", "get_model", "clear_cache", "format_question", "compare_decoding", "Table",
    "ContextLengthError", "ContextTrimmedWarning", "image_token_count", "anyres_layout",
]

#: What each family is for, and which model to use instead when a task does not fit.
CAPTION_PROMPTS = {"instructblip": "describe the image.", "llava": "describe the image.",
                   "llava-next": "describe the image."}
CAPTION_FAMILIES = ("blip-caption", "blip2", "instructblip") + CHAT_FAMILIES
ANSWER_FAMILIES = ("blip-vqa", "blip2", "instructblip") + CHAT_FAMILIES


class ContextLengthError(ConfigError):
    """A prompt (or a chat turn, even with no history) that cannot fit into the model's context."""


class ContextTrimmedWarning(UserWarning):
    """The oldest chat turns were dropped so that the conversation fits the context."""


# ----------------------------------------------------------------------------- models

_CACHE: dict[tuple[str, str], tuple] = {}
_LARGE: set[tuple[str, str]] = set()  # keys of cached hub-mode models above hub_guard.LARGE_MODEL_BYTES


def get_model(model="blip-caption"):
    """``(model, processor)`` for a name (loaded with :func:`vlmstudy.load` once per name and
    mode, then cached) or an already loaded ``(model, processor)`` pair (returned as is).

    In hub mode the cache holds at most one *large* model (estimated above
    :data:`vlmstudy.zoo.hub_guard.LARGE_MODEL_BYTES`, 2 GB: BLIP-2 and the 7 B-class models):
    loading another first drops the previous one from the cache, with a printed line. A pair you
    still hold stays usable (it is only forgotten here, and freed once nothing holds it)."""
    if isinstance(model, str):
        from .settings import get_mode
        from .zoo import load

        key = (model.strip().lower(), get_mode())
        if key not in _CACHE:
            large = key[1] == "hub" and _is_large(model)
            if large:
                _evict_large(model)  # before loading: the two must not be in memory together
            _CACHE[key] = load(model)
            if large:
                _LARGE.add(key)
        return _CACHE[key]
    if isinstance(model, (tuple, list)) and len(model) == 2 and hasattr(model[0], "generate"):
        return tuple(model)
    raise ConfigError(f"model= must be a model name such as 'blip-vqa' or 'llava', or a (model, processor) pair "
                      f"from vlmstudy.load(...); got {type(model).__name__}.")


def clear_cache() -> None:
    """Forget the models :func:`get_model` loaded (frees their memory once nothing else holds them)."""
    _CACHE.clear()
    _LARGE.clear()
    _release_memory()


def _is_large(name: str) -> bool:
    from .zoo import hub_guard

    size = hub_guard.model_bytes(name)
    return size is not None and size > hub_guard.LARGE_MODEL_BYTES


def _evict_large(incoming: str) -> None:
    gone = [key for key in _CACHE if key in _LARGE]
    for key in gone:
        del _CACHE[key]
        _LARGE.discard(key)
    if gone:
        _release_memory()
        print(f"model cache: dropped {', '.join(repr(name) for name, _ in gone)} before loading {incoming!r} "
              f"(hub mode keeps one large model at a time; a pair you still hold stays usable)", flush=True)


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()  # models hold reference cycles (modules <-> hooks); free them now, not at some later collection
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _family_for(model, processor, allowed: Sequence[str], task: str, instead: str) -> str:
    fam = family(model)
    if fam not in allowed:
        raise ConfigError(f"{fam} cannot {task}: use model={instead!r} (or any of {', '.join(allowed)}).")
    return fam


def format_question(question: str, model="blip-vqa") -> str:
    """The prompt string a family expects for a question about one image: the plain question
    (BLIP-VQA, InstructBLIP), ``"Question: ... Answer:"`` (BLIP-2), or the chat template with
    one ``<image>`` (LLaVA, LLaVA-NeXT)."""
    model, processor = get_model(model)
    fam = _family_for(model, processor, ANSWER_FAMILIES, "answer questions", "blip-vqa")
    question = _user_text(question, "question", processor)
    if fam == "blip2":
        from .prompting import BLIP2_VQA_PROMPT

        return BLIP2_VQA_PROMPT.format(question)
    if fam in CHAT_FAMILIES:
        return chat_prompt(processor, [(question, None)], n_images=1)
    return question


def _caption_prompt(fam: str, processor, prompt: str | None) -> str | None:
    if fam in CHAT_FAMILIES:
        return chat_prompt(processor, [(prompt or CAPTION_PROMPTS[fam], None)], n_images=1)
    if fam == "instructblip":
        return prompt or CAPTION_PROMPTS[fam]
    return prompt or None


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"The {what} must be a non-empty string (got {value!r}).")
    return value.strip()


def _user_text(value, what: str, processor) -> str:
    """``_text``, and refused if it holds the processor's image placeholder: the processor would
    expand a typed ``<image>`` into image tokens too, and the model fail on the count mismatch."""
    text = _text(value, what)
    token = getattr(processor, "image_token", None)
    if token is not None and str(token) in text:
        raise ConfigError(f"The {what} contains {str(token)!r}, the placeholder this model's processor replaces with "
                          f"the picture; write it without that text (say 'image' or 'picture').")
    return text


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    check_positive_int(batch_size, "batch_size")
    bar = tqdm(total=n, desc=desc, leave=False, disable=not progress)
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield start, stop
            bar.update(stop - start)
    finally:
        bar.close()


# ----------------------------------------------------------------------------- captioning and VQA

def caption(image, model="blip-caption", prompt: str | None = None, **generation) -> str:
    """Describe one image. ``prompt``: the start of the caption for BLIP / BLIP-2 (``"a picture
    of"``; the answer is what follows it), the instruction for InstructBLIP / LLaVA (default
    ``"describe the image."``). ``generation``: ``preset=`` or :class:`GenerationSettings` fields."""
    return caption_batch([image], model=model, prompt=prompt, progress=False, **generation)[0]


def caption_batch(images: Sequence, model="blip-caption", prompt: str | None = None, batch_size: int = 8,
                  progress: bool = True, **generation) -> list[str]:
    """:func:`caption` for many images, ``batch_size`` at a time, with a progress bar."""
    model, processor = get_model(model)
    fam = _family_for(model, processor, CAPTION_FAMILIES, "write captions", "blip-caption")
    settings = generation_settings(**generation)
    if prompt is not None:
        prompt = _user_text(prompt, "prompt", processor)
    text = _caption_prompt(fam, processor, prompt)
    images = _image_list(images)
    check_prompt_fits(model, processor, images, [text] * len(images), settings.max_new_tokens, what="prompt")
    out: list[str] = []
    for start, stop in _batches(len(images), batch_size, progress, "captioning"):
        out.extend(generate_text(model, processor, images[start:stop], [text] * (stop - start), settings=settings))
    return out


def answer(image, question: str, model="blip-vqa", **generation) -> str:
    """Answer one question about one image, in the prompt format of the model's family
    (:func:`format_question`). ``generation``: ``preset=`` or :class:`GenerationSettings` fields."""
    return answer_batch([image], [question], model=model, progress=False, **generation)[0]


def answer_batch(images: Sequence, questions: Sequence[str] | str, model="blip-vqa", batch_size: int = 8,
                 progress: bool = True, **generation) -> list[str]:
    """:func:`answer` for many (image, question) pairs; one question string is asked of every image."""
    model, processor = get_model(model)
    _family_for(model, processor, ANSWER_FAMILIES, "answer questions", "blip-vqa")
    settings = generation_settings(**generation)
    images = _image_list(images)
    if isinstance(questions, str):
        questions = [questions] * len(images)
    questions = list(questions)
    if len(questions) != len(images):
        raise ConfigError(f"answer_batch got {len(images)} images but {len(questions)} questions: pass one question "
                          "per image, or a single question string to ask of every image.")
    prompts = [format_question(q, (model, processor)) for q in questions]
    check_prompt_fits(model, processor, images, prompts, settings.max_new_tokens, what="question")
    out: list[str] = []
    for start, stop in _batches(len(images), batch_size, progress, "answering"):
        out.extend(generate_text(model, processor, images[start:stop], prompts[start:stop], settings=settings))
    return out


def _image_list(images) -> list:
    if getattr(images, "ndim", None) == 4:  # a stacked batch (N, H, W, C), e.g. shapes.render_batch
        images = list(images)
    if isinstance(images, (str, bytes, bytearray)) or hasattr(images, "mode") or hasattr(images, "shape"):
        raise ConfigError("The batched functions take a list of images; for one image use caption(...) / answer(...).")
    images = list(images)
    if not images:
        raise ConfigError("Got an empty list of images: pass at least one.")
    return [load_image(im) for im in images]


# ----------------------------------------------------------------------------- prompt length

# families whose processor writes image tokens into input_ids (LLaVA: one per patch; BLIP-2 and
# InstructBLIP: one per query token); BLIP's picture goes to the text model as cross-attention only
_IMAGE_TOKENS_IN_PROMPT = ("blip2", "instructblip") + CHAT_FAMILIES


@contextlib.contextmanager
def _quiet_tokenizer():
    """Counting only: transformers' "longer than model_max_length" warning is beside the point here."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _image_tokens(processor, fam: str, image) -> int:
    """Tokens the processor adds to a prompt's input_ids for ``image`` (0 for BLIP)."""
    if fam not in _IMAGE_TOKENS_IN_PROMPT:
        return 0
    probe = chat_prompt(processor, [("x", None)], n_images=1) if fam in CHAT_FAMILIES else "x"
    enc = processor(images=[image], text=[probe], return_tensors="pt")
    return int(enc["input_ids"].shape[1]) - len(processor.tokenizer(probe).input_ids)


def check_prompt_fits(model, processor, images: Sequence, prompts: Sequence[str | None], max_new_tokens: int,
                      what: str = "prompt") -> None:
    """Raise :class:`ContextLengthError` before the model runs if a prompt, with its image tokens
    and ``max_new_tokens`` for the answer, is longer than the model's context (:func:`context_length`).

    Without this check a long question fails deep inside the model (BLIP: "The size of tensor a
    (24002) must match the size of tensor b (64)"; BLIP-2: an index error) or, for LLaVA, runs on
    positions the model was never trained on. BLIP-VQA writes its answer with a separate decoder,
    so only the question counts there; InstructBLIP's Q-Former reads the prompt too and has its own
    limit. The text is tokenized first, so a 100 kB question is refused without touching the image.
    """
    fam = family(model)
    try:
        limit = context_length(model, processor)
    except ConfigError:  # no known limit: nothing to check against
        return
    reserve = 0 if fam == "blip-vqa" else max_new_tokens
    qformer_tok = getattr(processor, "qformer_tokenizer", None)
    qformer_limit = getattr(getattr(model.config, "qformer_config", None), "max_position_embeddings", None)
    image_tokens: dict[tuple, int] = {}
    with _quiet_tokenizer():
        for image, prompt in zip(images, prompts):
            if prompt is None:
                continue
            n = len(processor.tokenizer(prompt).input_ids)   # a chat prompt's <image> placeholder counts once here
            early = n + reserve > limit                      # too long before its image tokens: no need to count them
            if not early:
                size = getattr(image, "size", None)
                if size not in image_tokens:   # LLaVA-NeXT's count depends on the picture's size
                    image_tokens[size] = _image_tokens(processor, fam, image)
                n += image_tokens[size]
            if n + reserve > limit:
                before = " before its image tokens" if early and fam in _IMAGE_TOKENS_IN_PROMPT else ""
                answer_room = f" plus max_new_tokens={reserve} for the answer" if reserve else ""
                raise ContextLengthError(
                    f"The {what} needs {n} tokens{before}{answer_room}, more than the {limit}-token context of this "
                    f"{fam} model. Use a shorter {what}" + (", or lower max_new_tokens." if reserve else "."))
            if qformer_tok is not None and isinstance(qformer_limit, int):
                q = len(qformer_tok(prompt).input_ids)
                if q > qformer_limit:
                    raise ContextLengthError(
                        f"The {what} needs {q} tokens in {fam}'s Q-Former, more than its {qformer_limit}-token "
                        f"context. Use a shorter {what}.")


# ----------------------------------------------------------------------------- decoding comparison

class Table:
    """A small table that prints as aligned text and shows as Markdown in a notebook."""

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence]):
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in r] for r in rows]

    def column(self, name: str) -> list[str]:
        return [r[self.header.index(name)] for r in self.rows]

    def __str__(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return "\n".join([line(self.header), line(["-" * w for w in widths])] + [line(r) for r in self.rows])

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        esc = lambda c: c.replace("|", "\\|")  # noqa: E731
        return "\n".join(["| " + " | ".join(esc(h) for h in self.header) + " |",
                          "|" + "---|" * len(self.header)] +
                         ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows])


def compare_decoding(images: Sequence, model="blip-caption", presets: Sequence = ("greedy", "beam", "sample"),
                     question: str | None = None, truths: Sequence[str] | None = None, **generation) -> Table:
    """Caption (or, with ``question``, answer about) each image once per decoding preset; one row
    per image, one column per preset (a name or a :class:`GenerationSettings`), plus ``truth``
    when given. ``generation`` applies to every preset (e.g. ``max_new_tokens=20``)."""
    columns, results = [], []
    for p in presets:
        settings = generation_settings(p, **generation)
        columns.append(p if isinstance(p, str) else settings.describe())
        if question is None:
            results.append(caption_batch(images, model=model, settings=settings, progress=False))
        else:
            results.append(answer_batch(images, question, model=model, settings=settings, progress=False))
    header = ["image"] + columns + (["truth"] if truths is not None else [])
    rows = []
    for i in range(len(results[0])):
        rows.append([str(i)] + [r[i] for r in results] + ([truths[i]] if truths is not None else []))
    return Table(header, rows)


# ----------------------------------------------------------------------------- image tokens

def image_token_count(processor, image) -> int:
    """How many ``<image>`` tokens the processor puts in the prompt for one image (64 for the
    tiny LLaVA-1.5, 136 for a 64 px picture in tiny LLaVA-NeXT, more for larger pictures)."""
    token = getattr(processor, "image_token", None)
    if token is None or not getattr(processor, "chat_template", None):
        raise ConfigError(f"{type(processor).__name__} is not a LLaVA-style processor: only those expand one <image> "
                          "into many image tokens (use vlmstudy.load('llava') or 'llava-next').")
    token = str(token)
    with _quiet_tokenizer():
        enc = processor(images=[load_image(image)], text=[token], return_tensors="pt")
    tok_id = processor.tokenizer.convert_tokens_to_ids(token)
    return int((enc["input_ids"] == tok_id).sum())


def anyres_layout(processor, image) -> dict:
    """How LLaVA-NeXT's "any resolution" processing cuts an image (no model needed).

    Returns ``image_size`` (width, height), ``grid_pinpoints``, the chosen ``best_resolution``
    (width, height), ``tile_size``, the tile ``grid`` (rows, cols), ``crops`` (tiles + the
    downscaled base image), ``resized`` (the picture's size inside the canvas before padding)
    and ``image_tokens``.
    """
    from transformers.image_processing_utils import select_best_resolution

    img = load_image(image)
    ip = processor.image_processor
    pinpoints = getattr(ip, "image_grid_pinpoints", None)
    if not pinpoints:
        raise ConfigError(f"{type(ip).__name__} has no image_grid_pinpoints: any-resolution tiling is LLaVA-NeXT's "
                          "(use vlmstudy.load('llava-next')).")
    crop = ip.crop_size
    tile = (crop["width"], crop["height"]) if isinstance(crop, dict) else (crop.width, crop.height)
    w, h = img.size
    best_h, best_w = select_best_resolution((h, w), pinpoints)
    scale = min(best_w / w, best_h / h)
    resized = (min(best_w, round(w * scale)), min(best_h, round(h * scale)))
    grid = (best_h // tile[1], best_w // tile[0])
    return {"image_size": (w, h), "grid_pinpoints": [list(p) for p in pinpoints], "best_resolution": (best_w, best_h),
            "tile_size": tile, "grid": grid, "crops": grid[0] * grid[1] + 1, "resized": resized,
            "image_tokens": image_token_count(processor, img)}


# ----------------------------------------------------------------------------- chat

class ChatSession:
    """A conversation about one or more images with a chat model (LLaVA-1.5, LLaVA-NeXT).

    Every turn re-renders the whole conversation with the processor's chat template (the model
    has no memory between ``generate`` calls: the history *is* the prompt). The images go in the
    first user turn, as the models were trained. When the conversation would no longer fit the
    model's context (``context_length`` tokens, image tokens and ``max_new_tokens`` included),
    the oldest turns are dropped with a :class:`ContextTrimmedWarning` and counted in
    ``dropped_turns``.

    model: a chat model name or ``(model, processor)``; images: optional first image(s);
    max_context: a smaller context limit than the model's (to experiment with trimming);
    preset / settings / generation: decoding settings for every :meth:`ask`.
    """

    def __init__(self, model="llava", images=None, max_context: int | None = None, preset=None,
                 settings: GenerationSettings | None = None, **generation):
        self.model, self.processor = get_model(model)
        self.family = family(self.model)
        if self.family not in CHAT_FAMILIES:
            raise ConfigError(f"ChatSession needs a chat model ({', '.join(CHAT_FAMILIES)}); {self.family} has no chat "
                              "template. For one question use vlmstudy.tasks.answer(image, question, model=...).")
        self.settings = generation_settings(preset, settings, **generation)
        limit = context_length(self.model, self.processor)
        if max_context is not None:
            if not isinstance(max_context, int) or max_context < 1:
                raise ConfigError(f"max_context must be a positive integer (got {max_context!r}).")
            limit = min(limit, max_context)
        self.context_length = limit
        self.dropped_turns = 0
        self.last_prompt: str | None = None
        self._images: list = []
        self._history: list[tuple[str, str]] = []
        self._image_extra: int | None = None
        if images is not None:
            for im in (images if isinstance(images, (list, tuple)) else [images]):
                self.add_image(im)

    # -- state
    @property
    def history(self) -> list[tuple[str, str]]:
        """The finished turns, oldest first: ``[(user, assistant), ...]`` (a copy)."""
        return list(self._history)

    @property
    def images(self) -> list:
        """The images of the conversation, as PIL images (a copy of the list)."""
        return list(self._images)

    def set_image(self, image) -> ChatSession:
        """Talk about this image from now on: replaces the images and clears the history."""
        self._images = [load_image(image)]
        self._image_extra = None
        self.clear()
        return self

    def add_image(self, image) -> ChatSession:
        """Add one more image (several images in one prompt: LLaVA-NeXT); the history stays."""
        self._images.append(load_image(image))
        self._image_extra = None
        return self

    def clear(self) -> ChatSession:
        """Forget the conversation (history, dropped-turn count, last prompt); the images stay."""
        self._history = []
        self.dropped_turns = 0
        self.last_prompt = None
        return self

    # -- prompts
    def render(self, text: str, history: Sequence[tuple[str, str]] | None = None) -> str:
        """The prompt string :meth:`ask` would send for ``text`` with ``history`` (default: the
        session's; no trimming)."""
        self._need_images()
        turns = list(self._history if history is None else history) + [(_user_text(text, "question", self.processor),
                                                                         None)]
        return chat_prompt(self.processor, turns, n_images=len(self._images))

    def count_tokens(self, prompt: str) -> int:
        """Tokens the model reads for ``prompt`` with this session's images (image tokens included)."""
        if self._image_extra is None:
            probe = chat_prompt(self.processor, [("x", None)], n_images=len(self._images))
            enc = self.processor(images=self._images, text=[probe], return_tensors="pt")
            self._image_extra = int(enc["input_ids"].shape[1]) - len(self.processor.tokenizer(probe).input_ids)
        return len(self.processor.tokenizer(prompt).input_ids) + self._image_extra

    def _need_images(self) -> None:
        if not self._images:
            raise ConfigError("The chat has no image yet: call set_image(image) first (add_image for more).")

    def _fit(self, text: str, max_new_tokens: int) -> tuple[str, int]:
        budget = self.context_length - max_new_tokens
        history = list(self._history)
        dropped = 0
        prompt = self.render(text, history)
        while self.count_tokens(prompt) > budget and history:
            history.pop(0)
            dropped += 1
            prompt = self.render(text, history)
        n = self.count_tokens(prompt)
        if n > budget:
            raise ContextLengthError(
                f"Even with no history, this question and the {len(self._images)} image(s) need {n} tokens plus "
                f"max_new_tokens={max_new_tokens}, more than the context of {self.context_length} tokens. Ask a shorter "
                "question, use fewer or smaller images, or lower max_new_tokens.")
        return prompt, dropped

    def ask(self, text: str, **generation) -> str:
        """Ask the next question; returns the answer and appends the turn to :attr:`history`.
        ``generation`` overrides the session's settings for this turn only."""
        if "preset" in generation or "settings" in generation:
            settings = generation_settings(**generation)
        else:
            settings = self.settings.replace(**generation) if generation else self.settings
        prompt, dropped = self._fit(text, settings.max_new_tokens)
        if dropped:
            self._history = self._history[dropped:]
            self.dropped_turns += dropped
            warnings.warn(
                f"The conversation no longer fits in the context of {self.context_length} tokens "
                f"(images included, {settings.max_new_tokens} kept free for the answer): dropped the oldest "
                f"{dropped} turn(s), {self.dropped_turns} so far. The model no longer sees them; repeat what matters "
                "in your question, or call clear() to start over.", ContextTrimmedWarning, stacklevel=2)
        self.last_prompt = prompt
        reply = generate_text(self.model, self.processor, self._images, [prompt],
                              images_per_prompt=len(self._images), settings=settings)[0]
        self._history.append((text.strip(), reply))
        return reply

    def __repr__(self) -> str:
        return (f"ChatSession({self.family}, {len(self._images)} image(s), {len(self._history)} turn(s), "
                f"context {self.context_length} tokens, {self.settings.describe()})")
