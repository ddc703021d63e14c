"""One way to run ``generate`` on every generative family and get back only the new text.

The families differ in small ways that trip people up: BLIP returns the prompt with the answer,
BLIP-2 / InstructBLIP / LLaVA return the whole input sequence, LLaVA wants its chat template.
:func:`generate_text` hides that; :mod:`vlmstudy.tasks` builds captioning, VQA and chat on it.

How the next token is picked is a :class:`GenerationSettings` (or one of the :data:`PRESETS`):

=========  ==============================================================================
greedy     the most likely token every step: deterministic, the course's default
beam       keep the ``num_beams`` best partial answers, return the best whole one
sample     draw from the distribution (``temperature``, ``top_p``), seeded: varied answers
=========  ==============================================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import ConfigError, check_positive_int
from .images import load_image

# to_model is this module's name for it too (notebooks: from vlmstudy.generation import to_model)
from .torch_utils import left_padding, model_device_dtype, to_model  # noqa: F401

#: transformers class name -> course family
FAMILIES = {
    "CLIPModel": "clip", "SiglipModel": "siglip",
    "BlipForConditionalGeneration": "blip-caption", "BlipForQuestionAnswering": "blip-vqa",
    "Blip2ForConditionalGeneration": "blip2", "InstructBlipForConditionalGeneration": "instructblip",
    "LlavaForConditionalGeneration": "llava", "LlavaNextForConditionalGeneration": "llava-next",
    "Qwen2VLForConditionalGeneration": "qwen2-vl", "Idefics3ForConditionalGeneration": "smolvlm",
}
CHAT_FAMILIES = ("llava", "llava-next", "qwen2-vl", "smolvlm")
GENERATIVE_FAMILIES = ("blip-caption", "blip-vqa", "blip2", "instructblip") + CHAT_FAMILIES


# ----------------------------------------------------------------------------- decoding settings

@dataclass(frozen=True)
class GenerationSettings:
    """How ``generate`` picks tokens. Every field has a safe default; change one with
    ``settings.replace(num_beams=5)`` or ``generation_settings("beam", max_new_tokens=8)``.

    max_new_tokens: longest answer, in tokens (ShapesWorld answers are 1-20 tokens).
    num_beams: 1 = greedy / plain sampling; > 1 = beam search over that many candidates.
    do_sample: draw the next token at random from the model's distribution instead of taking
        the most likely one.
    temperature: (sampling only) divides the logits: < 1 sharper, > 1 flatter, more random.
    top_p: (sampling only) nucleus sampling: draw only from the smallest set of tokens whose
        probabilities add up to ``top_p`` (1.0 = all tokens).
    top_k: (sampling only) draw only from the ``top_k`` most likely tokens (0 = no limit).
    repetition_penalty: > 1 makes tokens already in the text less likely (1.0 = off).
    seed: (sampling only) makes sampling repeatable without touching the global random state;
        ``None`` uses the global generator (see :func:`vlmstudy.seed_everything`).
    """

    max_new_tokens: int = 32
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        problems = []
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be a positive integer (got {self.max_new_tokens!r})")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            problems.append(f"num_beams must be an integer >= 1 (got {self.num_beams!r})")
        if not isinstance(self.do_sample, bool):
            problems.append(f"do_sample must be True or False (got {self.do_sample!r})")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            problems.append(f"temperature must be a number > 0 (got {self.temperature!r}); for no randomness "
                            "use the 'greedy' preset instead of a temperature of 0")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p!r})")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            problems.append(f"top_k must be an integer >= 0, 0 meaning no limit (got {self.top_k!r})")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be a number > 0, 1.0 meaning off (got {self.repetition_penalty!r})")
        if self.seed is not None and not isinstance(self.seed, int):
            problems.append(f"seed must be an integer or None (got {self.seed!r})")
        if problems:
            raise ConfigError("Invalid generation settings: " + "; ".join(problems) + ".")

    @property
    def strategy(self) -> str:
        """``"greedy"``, ``"beam"``, ``"sample"`` or ``"beam sample"``."""
        if self.do_sample:
            return "beam sample" if self.num_beams > 1 else "sample"
        return "beam" if self.num_beams > 1 else "greedy"

    def replace(self, **changes) -> GenerationSettings:
        """A copy with some fields changed (unknown names raise :class:`ConfigError`)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def generate_kwargs(self) -> dict:
        """The keyword arguments for ``model.generate`` (sampling knobs only when sampling)."""
        out = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.do_sample:
            out.update(temperature=float(self.temperature), top_p=float(self.top_p), top_k=self.top_k)
        if self.repetition_penalty != 1.0:
            out["repetition_penalty"] = float(self.repetition_penalty)
        return out

    def describe(self) -> str:
        """One line for tables: ``"beam (num_beams=3, max_new_tokens=32)"``."""
        parts = [f"max_new_tokens={self.max_new_tokens}"]
        if self.num_beams > 1:
            parts.insert(0, f"num_beams={self.num_beams}")
        if self.do_sample:
            parts[:0] = [f"temperature={self.temperature:g}", f"top_p={self.top_p:g}"] + \
                        ([f"top_k={self.top_k}"] if self.top_k else []) + ([f"seed={self.seed}"] if self.seed is not None else [])
        if self.repetition_penalty != 1.0:
            parts.append(f"repetition_penalty={self.repetition_penalty:g}")
        return f"{self.strategy} ({', '.join(parts)})"


#: Named decoding strategies: ``generation_settings("beam")``, ``tasks.caption(img, preset="sample")``.
PRESETS: dict[str, GenerationSettings] = {
    "greedy": GenerationSettings(),
    "beam": GenerationSettings(num_beams=3),
    "sample": GenerationSettings(do_sample=True, temperature=0.8, top_p=0.9, seed=0),
}

_FIELDS = tuple(f.name for f in dataclasses.fields(GenerationSettings))

#: Greedy decoding, short answers: the defaults every helper uses unless told otherwise.
DEFAULT_GENERATION = PRESETS["greedy"].generate_kwargs()


def _check_names(names) -> None:
    unknown = [n for n in names if n not in _FIELDS]
    if unknown:
        import difflib

        hints = [m for n in unknown for m in difflib.get_close_matches(n, _FIELDS, n=1)]
        hint = f" Did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
        raise ConfigError(
            f"Unknown generation setting(s) {', '.join(repr(n) for n in unknown)}.{hint} Allowed: "
            f"{', '.join(_FIELDS)}, or preset= one of {', '.join(repr(p) for p in PRESETS)}, or "
            "settings=GenerationSettings(...)."
        )


def generation_settings(preset: str | GenerationSettings | None = None, settings: GenerationSettings | None = None,
                        **overrides) -> GenerationSettings:
    """Resolve what a learner passed into one :class:`GenerationSettings`.

    preset: a name in :data:`PRESETS` (``"greedy"``, ``"beam"``, ``"sample"``) or a
    ``GenerationSettings``; settings: a ``GenerationSettings`` (same as passing it as preset);
    overrides: single fields (``max_new_tokens=8``) applied on top. Unknown names or values raise
    :class:`ConfigError` saying what is allowed.
    """
    if preset is not None and settings is not None:
        raise ConfigError("Pass either preset= or settings=, not both.")
    base = settings if settings is not None else preset
    if base is None:
        base = PRESETS["greedy"]
    elif isinstance(base, str):
        key = base.strip().lower()
        if key not in PRESETS:
            raise ConfigError(f"Unknown generation preset {base!r}. Choose one of "
                              f"{', '.join(repr(p) for p in PRESETS)}, or pass settings=GenerationSettings(...).")
        base = PRESETS[key]
    elif not isinstance(base, GenerationSettings):
        raise ConfigError(f"preset / settings must be a preset name or a GenerationSettings, not {type(base).__name__}.")
    if overrides:
        base = base.replace(**overrides)
    return base


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Run the body with ``torch.manual_seed(seed)`` and restore the global RNG afterwards."""
    if seed is None:
        yield
        return
    kind = device.type if device.type in ("cuda", "mps") else "cuda"
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=kind):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------- prompts

def family(model) -> str:
    """The course family of a model instance (``"llava"``, ``"blip2"`` ...)."""
    if hasattr(model, "get_base_model"):  # a peft model: PeftModel -> LoraModel -> the transformers model
        model = model.get_base_model()
    name = type(model).__name__
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"{name} is not one of the course's model families ({', '.join(FAMILIES)}). "
                          "Load one with vlmstudy.load(NAME).") from None


def chat_prompt(processor, turns: Sequence[tuple[str, str | None]], n_images: int = 1) -> str:
    """Render a conversation with the processor's own chat template.

    turns: ``[(user_text, assistant_text_or_None), ...]``; the images go in the first user turn;
    a final ``None`` answer asks for a generation prompt (``"... ASSISTANT:"``).
    """
    if not turns:
        raise ConfigError("chat_prompt needs at least one (user, assistant) turn.")
    if not getattr(processor, "chat_template", None):
        raise ConfigError(f"{type(processor).__name__} has no chat template: only the chat models "
                          f"({', '.join(CHAT_FAMILIES)}) take chat prompts. Pass a plain prompt string instead.")
    messages = []
    for i, (user, assistant) in enumerate(turns):
        content = ([{"type": "image"}] * n_images if i == 0 else []) + [{"type": "text", "text": user}]
        messages.append({"role": "user", "content": content})
        if assistant is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return processor.apply_chat_template(messages, add_generation_prompt=turns[-1][1] is None)


def context_length(model, processor=None) -> int:
    """How many tokens (prompt, image tokens and answer together) the language model can see:
    ``text_config.max_position_embeddings``, or the tokenizer's ``model_max_length`` when that is
    smaller (a tokenizer with no limit reports a huge number, which is ignored)."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    limits = [getattr(text_config, "max_position_embeddings", None)]
    tok = getattr(processor, "tokenizer", processor)
    limits.append(getattr(tok, "model_max_length", None))
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10_000_000]
    if not limits:
        raise ConfigError(f"Cannot tell the context length of {type(model).__name__}: its config has no "
                          "max_position_embeddings. Pass it explicitly (e.g. ChatSession(..., max_context=4096)).")
    return min(limits)


def _check_inputs(fam: str, processor, images: Sequence, prompts: Sequence, images_per_prompt: int) -> None:
    if fam not in GENERATIVE_FAMILIES:
        raise ConfigError(f"{fam} is not a generative model: it embeds images and texts but writes no text. "
                          "Use vlmstudy.contrastive for it, or a generative model (blip-caption, blip-vqa, blip2, "
                          "instructblip, llava, llava-next).")
    check_positive_int(images_per_prompt, "images_per_prompt")
    if len(prompts) == 0:
        raise ConfigError("generate_text needs at least one prompt.")
    if len(images) != len(prompts) * images_per_prompt:
        raise ConfigError(f"Got {len(images)} images for {len(prompts)} prompts with images_per_prompt="
                          f"{images_per_prompt}: pass exactly {len(prompts) * images_per_prompt} images, in prompt order.")
    if fam in CHAT_FAMILIES:
        token = str(getattr(processor, "image_token", "<image>"))
        for p in prompts:
            if p is None or p.count(token) != images_per_prompt:
                raise ConfigError(
                    f"A {fam} prompt must be rendered with the chat template and hold one {token} per image "
                    f"({images_per_prompt}); got {p!r}. Build it with vlmstudy.generation.chat_prompt(processor, "
                    "[(question, None)], n_images=...) or call vlmstudy.tasks.answer / ChatSession.")
    elif images_per_prompt != 1:
        raise ConfigError(f"{fam} takes one image per prompt; only {', '.join(CHAT_FAMILIES)} take several.")


@torch.no_grad()
def generate_text(model, processor, images: Sequence, prompts: Sequence[str | None], images_per_prompt: int = 1,
                  **generation) -> list[str]:
    """Generate for a batch: ``images`` (``len(prompts) * images_per_prompt`` of them, in order) and
    ``prompts`` (already in the model's prompt format; ``None`` for unconditional captions).

    generation: ``preset=`` (``"greedy"``, ``"beam"``, ``"sample"``), ``settings=`` a
    :class:`GenerationSettings`, and/or its fields (``max_new_tokens=8``); greedy by default.
    Returns the new text only, one string per prompt, special tokens removed.
    """
    fam = family(model)
    settings = generation_settings(**generation)
    _check_inputs(fam, processor, images, prompts, images_per_prompt)
    images = [load_image(im) for im in images]
    device = model_device_dtype(model)[0]
    tok = processor.tokenizer
    if fam in ("blip-caption",) and all(p is None for p in prompts):
        enc = processor(images=images, return_tensors="pt")
    else:
        texts = [p or "" for p in prompts]
        with left_padding(tok, "left" if fam not in ("blip-caption", "blip-vqa") else "right"):
            enc = processor(images=images, text=texts, padding=True, return_tensors="pt")
    enc = to_model(model, enc)
    with _seeded(settings.seed if settings.do_sample else None, device):
        out = model.generate(**enc, **settings.generate_kwargs())
    if fam == "blip-caption":
        # BLIP returns "<bos> prompt continuation"; drop the prompt's tokens
        n_prompt = 0 if "input_ids" not in enc else enc["input_ids"].shape[1] - 1
        out = out[:, n_prompt:] if n_prompt > 1 else out
    elif fam != "blip-vqa" and "input_ids" in enc and out.shape[1] >= enc["input_ids"].shape[1] \
            and torch.equal(out[:, :enc["input_ids"].shape[1]], enc["input_ids"]):
        out = out[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]
