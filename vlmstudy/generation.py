"""One way to run ``generate`` on every generative family and get back only the new text.

The families differ in small ways that trip people up: BLIP returns the prompt with the answer,
BLIP-2 / InstructBLIP / LLaVA return the whole input sequence, LLaVA wants its chat template.
:func:`generate_text` hides that; :mod:`vlmstudy.tasks` builds captioning, VQA and chat on it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .images import load_image

#: transformers class name -> course family
FAMILIES = {
    "CLIPModel": "clip", "SiglipModel": "siglip",
    "BlipForConditionalGeneration": "blip-caption", "BlipForQuestionAnswering": "blip-vqa",
    "Blip2ForConditionalGeneration": "blip2", "InstructBlipForConditionalGeneration": "instructblip",
    "LlavaForConditionalGeneration": "llava", "LlavaNextForConditionalGeneration": "llava-next",
}
CHAT_FAMILIES = ("llava", "llava-next")

#: Greedy decoding, short answers: the defaults every helper uses unless told otherwise.
DEFAULT_GENERATION = {"max_new_tokens": 32, "do_sample": False, "num_beams": 1}


def family(model) -> str:
    """The course family of a model instance (``"llava"``, ``"blip2"`` ...)."""
    model = getattr(model, "base_model", model) if type(model).__name__.startswith("Peft") else model
    name = type(model).__name__
    if name not in FAMILIES and hasattr(model, "get_base_model"):
        name = type(model.get_base_model()).__name__
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"{name} is not one of the course's model families ({', '.join(FAMILIES)}).") from None


def chat_prompt(processor, turns: Sequence[tuple[str, str | None]], n_images: int = 1) -> str:
    """Render a conversation with the processor's own chat template.

    turns: ``[(user_text, assistant_text_or_None), ...]``; the images go in the first user turn;
    a final ``None`` answer asks for a generation prompt (``"... ASSISTANT:"``).
    """
    messages = []
    for i, (user, assistant) in enumerate(turns):
        content = ([{"type": "image"}] * n_images if i == 0 else []) + [{"type": "text", "text": user}]
        messages.append({"role": "user", "content": content})
        if assistant is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return processor.apply_chat_template(messages, add_generation_prompt=turns[-1][1] is None)


def _device_dtype(model):
    p = next(model.parameters())
    return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)


@torch.no_grad()
def generate_text(model, processor, images: Sequence, prompts: Sequence[str | None], images_per_prompt: int = 1,
                  **generation) -> list[str]:
    """Generate for a batch: ``images`` (``len(prompts) * images_per_prompt`` of them, in order) and
    ``prompts`` (already in the model's prompt format; ``None`` for unconditional captions).

    Returns the new text only, one string per prompt, special tokens removed.
    """
    fam = family(model)
    kwargs = dict(DEFAULT_GENERATION, **generation)
    images = [load_image(im) for im in images]
    device, dtype = _device_dtype(model)
    tok = processor.tokenizer
    if fam in ("blip-caption",) and all(p is None for p in prompts):
        enc = processor(images=images, return_tensors="pt")
    else:
        texts = [p or "" for p in prompts]
        old_side = tok.padding_side
        tok.padding_side = "left" if fam not in ("blip-caption", "blip-vqa") else "right"
        try:
            enc = processor(images=images, text=texts, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = old_side
    enc = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in enc.items()}
    out = model.generate(**enc, **kwargs)
    if fam == "blip-caption":
        # BLIP returns "<bos> prompt continuation"; drop the prompt's tokens
        n_prompt = 0 if "input_ids" not in enc else enc["input_ids"].shape[1] - 1
        out = out[:, n_prompt:] if n_prompt > 1 else out
    elif fam != "blip-vqa" and "input_ids" in enc and out.shape[1] >= enc["input_ids"].shape[1] \
            and torch.equal(out[:, :enc["input_ids"].shape[1]], enc["input_ids"]):
        out = out[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]
