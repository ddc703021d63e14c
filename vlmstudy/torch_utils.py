"""Small torch helpers the course's modules share: where a model lives, moving a processor's
output to it, and left padding for a batch of prompts."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["model_device_dtype", "move_batch", "to_model", "left_padding"]


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` of ``model``'s first floating-point parameter: where its inputs go and
    the dtype its floating inputs (``pixel_values``) should have. A model with no floating-point
    parameter (fully integer-quantized) gives its first parameter's device and float32."""
    first = None
    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.device, p.dtype
        first = first if first is not None else p
    return (first.device if first is not None else torch.device("cpu")), torch.float32


def move_batch(batch, device, dtype: torch.dtype | None = None) -> dict:
    """A dict (or ``BatchEncoding``) of tensors with every tensor on ``device`` and, when ``dtype``
    is given, the floating ones (``pixel_values``) in ``dtype``; token ids and masks keep theirs.
    Other values pass through."""
    def move(v):
        if not isinstance(v, torch.Tensor):
            return v
        return v.to(device, dtype) if dtype is not None and v.is_floating_point() else v.to(device)

    return {k: move(v) for k, v in dict(batch).items()}


def to_model(model, batch) -> dict:
    """A processor's output (a dict or ``BatchEncoding`` of tensors) ready for ``model``: every
    tensor on the model's device, floating ones (``pixel_values``) in its dtype, token ids and
    masks keeping theirs (:func:`move_batch`, :func:`model_device_dtype`). Other values pass
    through. Use it whenever a processor's output goes into a model yourself: the processor always
    returns CPU tensors, the model may be on a GPU in fp16."""
    return move_batch(batch, *model_device_dtype(model))


@contextlib.contextmanager
def left_padding(tokenizer, side: str = "left"):
    """``with left_padding(processor.tokenizer): ...``: the tokenizer pads on ``side`` inside the
    block (left, so every prompt of a batch ends at the last position, as a decoder-only model
    generates) and gets its own setting back afterwards, even on an error."""
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old
