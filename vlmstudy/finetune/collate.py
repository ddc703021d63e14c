"""From training examples to batches: prompts per family, label masking, padding.

Every family is trained on its model's own ``forward(labels=...)``. The *prompt* (chat template,
question, and the image tokens the processor expands ``<image>`` into, or BLIP-2's query-token
placeholders) gets the label ``-100`` (ignored by the loss); only the answer and the end-of-text
token are learned, exactly as :mod:`vlmstudy.zoo.train_generative` trained the stand-ins::

    input_ids   <s> USER : <image> x64 \\n what colour is it ? ASSISTANT :  brown </s>
    labels      -100 ...                                     ... -100     brown </s>

The prompt is encoded by the model's processor (so the number of image tokens is always the
processor's) and the answer is appended as plain token ids; generation at evaluation time uses the
very same prompt text (:func:`prompt_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data import Example
from ..errors import DataFormatError
from ..generation import CHAT_FAMILIES, chat_prompt
from ..images import load_image
from ..prompting import BLIP2_VQA_PROMPT, IGNORE, ids

#: The question used for caption data when the config gives no ``data.prompt``: what the zoo's
#: stand-ins were trained with ("describe the image." for chat and instruction models, an empty
#: prompt for the captioners).
CAPTION_PROMPTS = {"llava": "describe the image.", "llava-next": "describe the image.", "instructblip":
                   "describe the image.", "blip-vqa": "describe the image.", "blip2": "", "blip-caption": ""}
TRAINABLE_FAMILIES: tuple[str, ...] = tuple(CAPTION_PROMPTS)


def prompt_text(fam: str, processor, example: Example, caption_prompt: str | None = None) -> str | None:
    """The prompt the model sees before its answer, in the family's own format.

    llava / llava-next: the chat template (history included); blip2: ``"Question: ... Answer:"``
    (an empty prompt for captions); instructblip / blip-vqa: the question; blip-caption: the
    question, or nothing for a plain caption.
    """
    question = example.question
    if question is None:
        question = CAPTION_PROMPTS.get(fam, "") if caption_prompt is None else caption_prompt
    if example.history and fam not in CHAT_FAMILIES:
        raise DataFormatError(f"Record {example.index} is a multi-turn conversation, which only the chat models "
                              f"({', '.join(CHAT_FAMILIES)}) can learn; {fam} takes one question per image. Use "
                              "single-turn data (vqa format) or a chat model.")
    if fam in CHAT_FAMILIES:
        return chat_prompt(processor, example.turns[:-1] + [(question, None)])
    if fam == "blip2":
        return BLIP2_VQA_PROMPT.format(question) if question else ""
    return question


def _special(tokenizer, name: str) -> int | None:
    value = getattr(tokenizer, f"{name}_token_id", None)
    return int(value) if value is not None else None


@dataclass
class Encoded:
    """One example as tensors (no batch dimension): what :class:`Collator` pads."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    extra: dict = field(default_factory=dict)   # image_sizes, qformer_input_ids, decoder_input_ids ...

    @property
    def n_supervised(self) -> int:
        target = self.extra.get("decoder_labels", self.labels)
        return int((target != IGNORE).sum())


def encode(fam: str, processor, example: Example, image=None, caption_prompt: str | None = None,
           bos_token_id: int | None = None, max_length: int | None = None) -> Encoded:
    """Encode one example for ``fam`` (a family name from :func:`vlmstudy.generation.family`).

    image: the PIL image (default: loaded from ``example.image``); bos_token_id: BLIP's decoder
    start token (``config.text_config.bos_token_id``); max_length: the model's context, checked.
    """
    if fam not in TRAINABLE_FAMILIES:
        raise DataFormatError(f"{fam} cannot be fine-tuned here: choose one of {', '.join(TRAINABLE_FAMILIES)}.")
    tok = processor.tokenizer
    eos = _special(tok, "eos") if fam not in ("blip-caption", "blip-vqa") else (_special(tok, "sep") or _special(tok, "eos"))
    image = load_image(example.image) if image is None else image
    prompt = prompt_text(fam, processor, example, caption_prompt)
    answer_ids = ids(tok, example.answer) + ([eos] if eos is not None else [])
    if not ids(tok, example.answer):
        raise DataFormatError(f"Record {example.index}: the answer {example.answer!r} has no tokens.")
    extra: dict = {}
    if fam == "blip-vqa":
        enc = processor(images=[image], text=prompt, return_tensors="pt")
        bos = bos_token_id if bos_token_id is not None else _special(tok, "bos")
        dec = torch.tensor([bos] + answer_ids)
        prompt_ids = enc["input_ids"][0]
        extra["decoder_input_ids"] = dec
        extra["decoder_labels"] = dec.clone()
        full, labels = prompt_ids, torch.full_like(prompt_ids, IGNORE)
    else:
        if fam == "blip-caption":
            enc = processor(images=[image], text=prompt or "", return_tensors="pt")
            prompt_ids = enc["input_ids"][0]
            if eos is not None and len(prompt_ids) and int(prompt_ids[-1]) == eos:
                prompt_ids = prompt_ids[:-1]   # BERT-style "[CLS] prompt [SEP]": the caption continues the prompt
            if bos_token_id is not None and len(prompt_ids):
                prompt_ids = prompt_ids.clone()
                prompt_ids[0] = bos_token_id   # what BLIP's generate() puts first
        else:
            enc = processor(images=[image], text=prompt, return_tensors="pt")
            prompt_ids = enc["input_ids"][0]
        answer = torch.tensor(answer_ids, dtype=prompt_ids.dtype)
        full = torch.cat([prompt_ids, answer])
        labels = torch.cat([torch.full_like(prompt_ids, IGNORE), answer])
    if max_length is not None and len(full) > max_length:
        raise DataFormatError(f"Record {example.index} is {len(full)} tokens long (prompt, image tokens and answer), "
                              f"more than the model's context of {max_length}. Shorten it or drop it.")
    pixel_values = enc["pixel_values"][0]
    if "image_sizes" in enc:
        extra["image_sizes"] = enc["image_sizes"][0]
    if "qformer_input_ids" in enc:
        extra["qformer_input_ids"] = enc["qformer_input_ids"][0]
    return Encoded(full, labels, pixel_values, extra)


class Collator:
    """Pads a list of :class:`Encoded` examples into one batch for ``model(**batch)``.

    Padding goes on the right with the tokenizer's pad id; padded positions have
    ``attention_mask`` 0 and label -100. Prompt and image tokens already carry -100 from
    :func:`encode`, so the loss covers answers only.
    """

    def __init__(self, processor, fam: str):
        self.fam = fam
        tok = processor.tokenizer
        pad = _special(tok, "pad")
        self.pad_id = pad if pad is not None else (_special(tok, "eos") or 0)
        qtok = getattr(processor, "qformer_tokenizer", None)
        qpad = _special(qtok, "pad") if qtok is not None else None
        self.qformer_pad_id = qpad if qpad is not None else 0

    @staticmethod
    def pad(rows: Sequence[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), value, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
            mask[i, :len(r)] = 1
        return out, mask

    def __call__(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        input_ids, mask = self.pad([e.input_ids for e in items], self.pad_id)
        batch = {"input_ids": input_ids, "attention_mask": mask}
        pix = [e.pixel_values for e in items]
        if len({tuple(p.shape) for p in pix}) > 1:  # LLaVA-NeXT: different tile counts per image
            most = max(p.shape[0] for p in pix)
            pix = [torch.cat([p, p.new_zeros((most - p.shape[0], *p.shape[1:]))]) for p in pix]
        batch["pixel_values"] = torch.stack(pix)
        if self.fam == "blip-vqa":
            dec, dec_mask = self.pad([e.extra["decoder_input_ids"] for e in items], self.pad_id)
            labels, _ = self.pad([e.extra["decoder_labels"] for e in items], IGNORE)
            batch.update(decoder_input_ids=dec, decoder_attention_mask=dec_mask, labels=labels)
        else:
            batch["labels"], _ = self.pad([e.labels for e in items], IGNORE)
        if "image_sizes" in items[0].extra:
            batch["image_sizes"] = torch.stack([e.extra["image_sizes"] for e in items])
        if "qformer_input_ids" in items[0].extra:
            q, q_mask = self.pad([e.extra["qformer_input_ids"] for e in items], self.qformer_pad_id)
            batch.update(qformer_input_ids=q, qformer_attention_mask=q_mask)
        return batch


class EncodedDataset(torch.utils.data.Dataset):
    """Examples encoded once, on first use, and kept (the course's datasets are small)."""

    def __init__(self, examples: Sequence[Example], processor, fam: str, caption_prompt: str | None = None,
                 bos_token_id: int | None = None, max_length: int | None = None, resize: Sequence[int] | None = None):
        self.resize = tuple(resize) if resize else None   # (width, height) before the processor (the guide's resize)
        self.examples = list(examples)
        self.processor, self.fam = processor, fam
        self.kwargs = dict(caption_prompt=caption_prompt, bos_token_id=bos_token_id, max_length=max_length)
        self._cache: dict[int, Encoded] = {}
        self._images: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Encoded:
        if i not in self._cache:
            self._cache[i] = encode(self.fam, self.processor, self.examples[i], self.image(i), **self.kwargs)
        return self._cache[i]

    def image(self, i: int):
        """The example's image, loaded once per file (examples may also hold PIL images)."""
        src = self.examples[i].image
        key = src if isinstance(src, str) else id(src)
        if key not in self._images:
            image = load_image(src)
            self._images[key] = image.resize(self.resize) if self.resize else image
        return self._images[key]
