"""``vlmstudy.Inference``: describe an image, answer a question, run a custom prompt, chat.

One object holds the models and the decoding settings; the ``vlmstudy describe / ask / chat``
commands and the HTTP server (:mod:`vlmstudy.server`) are thin layers on it::

    from vlmstudy import Inference
    infer = Inference()                                   # describe: blip-caption, ask: blip-vqa
    infer.describe("assets/images/shapes-1.png")
    infer.ask("assets/images/shapes-1.png", "what colour is the triangle?")
    infer.generate(image, "list the shapes.", max_new_tokens=20)   # llava, its chat template
    Inference(model="llava").describe_batch([img1, img2])           # one model for every task

The work itself is :mod:`vlmstudy.tasks` (prompt formats per family, batching); this class adds
the task -> model choice, models loaded once and kept, default decoding settings, and a lock so
that one instance can serve several threads (a web server's requests).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from . import tasks
from .errors import ConfigError
from .generation import GenerationSettings, family, generation_settings

__all__ = ["Inference", "DEFAULT_MODELS", "TASKS"]

#: The model each task uses when ``Inference(model=None)`` (defined in the light
#: :mod:`vlmstudy.task_defaults`, so that the CLI's help can show it without torch).
from .task_defaults import DEFAULT_MODELS, TASKS  # noqa: E402

# generate() on a model that cannot caption (BLIP-VQA) reads the prompt as a question
_PROMPT_AS_CAPTION = set(tasks.CAPTION_FAMILIES)

# One lock for every instance: two instances may share a model through tasks.get_model's cache,
# and neither the models nor generate_text (it flips the tokenizer's padding side) are safe to run
# from two threads at once. Torch parallelises inside a call, so serialising calls costs little.
_GENERATE_LOCK = threading.RLock()


class Inference:
    """Describe images, answer questions, run custom prompts and open chats with zoo models.

    model: one model name (or ``(model, processor)`` pair) for every task, or ``None`` for the
    per-task defaults :data:`DEFAULT_MODELS`; models: per-task overrides, e.g.
    ``{"ask": "blip2"}``; preset / settings / generation: the default decoding settings
    (:class:`~vlmstudy.generation.GenerationSettings`; greedy by default), which any call may
    override with its own keyword arguments. Models are loaded on first use (:meth:`load` loads
    them up front) and kept. Every method takes images as :func:`vlmstudy.load_image` does.
    """

    def __init__(self, model=None, *, models: dict | None = None, preset=None,
                 settings: GenerationSettings | None = None, **generation):
        self._sources = {task: (model if model is not None else default) for task, default in DEFAULT_MODELS.items()}
        unknown = sorted(set(models or {}) - set(TASKS))
        if unknown:
            raise ConfigError(f"Unknown task(s) {', '.join(map(repr, unknown))} in models=; the tasks are "
                              f"{', '.join(TASKS)}.")
        self._sources.update(models or {})
        self.settings = generation_settings(preset, settings, **generation)
        self._pairs: dict[str, tuple] = {}

    # ------------------------------------------------------------------ models

    def model_name(self, task: str) -> str:
        """The name of the model ``task`` uses (its family for a ``(model, processor)`` pair)."""
        source = self._source(task)
        return source.strip().lower() if isinstance(source, str) else family(source[0])

    @property
    def model_names(self) -> dict[str, str]:
        """``{task: model name}`` for every task."""
        return {task: self.model_name(task) for task in TASKS}

    def load(self, *task_names: str) -> Inference:
        """Load the models of these tasks now (default: describe and ask) instead of on first use,
        so that a bad model name fails here and the first request pays no loading time."""
        for task in task_names or ("describe", "ask"):
            self._pair(task)
        return self

    def _source(self, task: str):
        if task not in self._sources:
            raise ConfigError(f"Unknown task {task!r}; the tasks are {', '.join(TASKS)}.")
        return self._sources[task]

    def _pair(self, task: str) -> tuple:
        source = self._source(task)
        key = source.strip().lower() if isinstance(source, str) else id(source[0])
        with _GENERATE_LOCK:  # two first requests must not load the same model twice
            if key not in self._pairs:
                self._pairs[key] = tasks.get_model(source)
            return self._pairs[key]

    def _settings(self, generation: dict) -> GenerationSettings:
        if "preset" in generation or "settings" in generation:
            return generation_settings(**generation)
        return self.settings.replace(**generation) if generation else self.settings

    # ------------------------------------------------------------------ one image

    def describe(self, image, prompt: str | None = None, **generation) -> str:
        """A description (caption) of ``image``. ``prompt``: the caption's start for BLIP
        (``"a picture of"``) or the instruction for instruction-following models."""
        return self.describe_batch([image], prompt=prompt, **generation)[0]

    def ask(self, image, question: str, **generation) -> str:
        """The answer to ``question`` about ``image``."""
        return self.ask_batch([image], [question], **generation)[0]

    def generate(self, image, prompt: str, **generation) -> str:
        """What the ``generate`` model writes for ``prompt`` about ``image``: the prompt goes in the
        chat template for chat models (LLaVA), as the instruction for InstructBLIP, as the caption's
        start for BLIP / BLIP-2, and as the question for BLIP-VQA."""
        return self.generate_batch([image], prompt, **generation)[0]

    # ------------------------------------------------------------------ batches

    def describe_batch(self, images: Sequence, prompt: str | None = None, batch_size: int = 8,
                       **generation) -> list[str]:
        """:meth:`describe` for a list of images, ``batch_size`` per forward pass."""
        pair, settings = self._pair("describe"), self._settings(generation)
        with _GENERATE_LOCK:
            return tasks.caption_batch(images, model=pair, prompt=prompt, batch_size=batch_size, progress=False,
                                       settings=settings)

    def ask_batch(self, images: Sequence, questions: Sequence[str] | str, batch_size: int = 8,
                  **generation) -> list[str]:
        """:meth:`ask` for a list of images: one question per image, or one string for all."""
        pair, settings = self._pair("ask"), self._settings(generation)
        with _GENERATE_LOCK:
            return tasks.answer_batch(images, questions, model=pair, batch_size=batch_size, progress=False,
                                      settings=settings)

    def generate_batch(self, images: Sequence, prompt: str, batch_size: int = 8, **generation) -> list[str]:
        """:meth:`generate` with one prompt for a list of images."""
        pair, settings = self._pair("generate"), self._settings(generation)
        if not isinstance(prompt, str):
            raise ConfigError(f"generate_batch takes one prompt string for every image (got {type(prompt).__name__}); "
                              "for a different question per image use ask_batch(images, questions).")
        with _GENERATE_LOCK:
            if family(pair[0]) in _PROMPT_AS_CAPTION:
                return tasks.caption_batch(images, model=pair, prompt=prompt, batch_size=batch_size, progress=False,
                                           settings=settings)
            return tasks.answer_batch(images, prompt, model=pair, batch_size=batch_size, progress=False,
                                      settings=settings)

    # ------------------------------------------------------------------ chat

    def chat(self, image=None, **generation) -> tasks.ChatSession:
        """A :class:`~vlmstudy.tasks.ChatSession` with the ``chat`` model about ``image``, whose
        turns take the same lock as every other call of this class."""
        session = _LockedChatSession(self._pair("chat"), settings=self._settings(generation))
        if image is not None:
            session.set_image(image)
        return session

    def __repr__(self) -> str:
        models = ", ".join(f"{task}={name}" for task, name in self.model_names.items())
        return f"Inference({models}; {self.settings.describe()})"


class _LockedChatSession(tasks.ChatSession):
    """A ChatSession whose turns hold the generate lock (it shares models with other callers)."""

    def ask(self, text: str, **generation) -> str:
        with _GENERATE_LOCK:
            return super().ask(text, **generation)
