"""Projectors: the small module that turns vision-tower patch features into language-model tokens.

Shapes (``B`` images, ``N`` patches on a ``g x g`` grid, ``C`` vision width, ``D`` LM width):

- ``linear`` (LLaVA-1): ``(B, N, C) -> (B, N, D)``, one linear map.
- ``mlp`` (LLaVA-1.5): ``(B, N, C) -> (B, N, D)``, Linear -> GELU -> Linear.
- ``pixel_shuffle`` (Idefics3 / SmolVLM): ``(B, N, C) -> (B, N / r^2, C r^2) -> (B, N / r^2, D)``:
  each ``r x r`` neighbourhood of patches becomes one token ``r^2`` times as wide, so the
  language model reads ``r^2`` times fewer image tokens.

The first two are the very module ``LlavaForConditionalGeneration`` builds
(``LlavaMultiModalProjector``; ``linear`` is it with the identity as its activation), so those
checkpoints load with plain transformers. The pixel-shuffle projector keeps the same parameter
names (``linear_1``, ``linear_2``) and is put in ``model.model.multi_modal_projector``, which is
all that LLaVA's ``get_image_features`` calls: ``projector(features)`` with ``features`` of shape
``(B, N, C)``; the number of ``<image>`` tokens in the prompt must equal what it returns.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

#: Projector kinds :func:`make_projector` knows.
KINDS = ("linear", "mlp", "pixel_shuffle")


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Space-to-depth on a square grid of tokens: ``(B, N, C) -> (B, N / scale^2, C * scale^2)``.

    Output token ``(i, j)`` (row-major on the ``g/scale`` grid) is the concatenation of input
    patches ``(scale*i + a, scale*j + b)`` for ``a, b`` in ``range(scale)``, ``a`` outer.
    """
    b, n, c = x.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ConfigError(f"pixel_shuffle needs a square grid of patches; got {n} tokens. Drop the CLS token first.")
    if scale < 1 or g % scale:
        raise ConfigError(f"pixel_shuffle scale {scale} must divide the {g} x {g} patch grid "
                          f"(divisors: {[d for d in range(1, g + 1) if g % d == 0]}).")
    h = g // scale
    x = x.reshape(b, h, scale, h, scale, c)  # (B, row block, a, column block, b, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, row block, column block, a, b, C)
    return x.reshape(b, h * h, scale * scale * c)


def pixel_unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The inverse of :func:`pixel_shuffle`: ``(B, N / scale^2, C * scale^2) -> (B, N, C)``."""
    b, m, wide = x.shape
    h = math.isqrt(m)
    if h * h != m or wide % (scale * scale):
        raise ConfigError(f"pixel_unshuffle: {m} tokens of width {wide} are not a square grid at scale {scale}.")
    c = wide // (scale * scale)
    x = x.reshape(b, h, h, scale, scale, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h * scale) ** 2, c)


class PixelShuffleProjector(nn.Module):
    """Pixel shuffle, then LLaVA-1.5's MLP: ``(B, N, C) -> (B, N / scale^2, D)``.

    Idefics3 / SmolVLM follow the shuffle with a single bias-free linear layer; the MLP here keeps
    the ablation about the token count alone (same MLP as the ``mlp`` projector, wider input).
    """

    def __init__(self, vision_dim: int, text_dim: int, scale: int = 2, act: str = "gelu", bias: bool = True):
        super().__init__()
        from transformers.activations import ACT2FN

        self.scale = scale
        self.linear_1 = nn.Linear(vision_dim * scale * scale, text_dim, bias=bias)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(text_dim, text_dim, bias=bias)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(pixel_shuffle(image_features, self.scale))))


def projector_spec(kind: str, n_patches: int, image_tokens: int | None = None) -> dict:
    """Check a projector choice and return ``{"kind", "scale", "image_tokens"}``.

    image_tokens: for ``pixel_shuffle``, how many tokens per image (``n_patches / scale^2``;
    default: scale 2). ``linear`` / ``mlp`` keep one token per patch.
    """
    if kind not in KINDS:
        raise ConfigError(f"Unknown projector {kind!r}; choose one of {', '.join(KINDS)}.")
    if kind != "pixel_shuffle":
        if image_tokens not in (None, n_patches):
            raise ConfigError(f"A {kind} projector keeps one token per patch ({n_patches}); to get {image_tokens} "
                              f"image tokens use projector='pixel_shuffle'.")
        return {"kind": kind, "scale": 1, "image_tokens": n_patches}
    image_tokens = image_tokens or n_patches // 4
    scale = math.isqrt(n_patches // image_tokens) if image_tokens > 0 and n_patches % image_tokens == 0 else 0
    g = math.isqrt(n_patches)
    if scale < 2 or scale * scale * image_tokens != n_patches or g % scale:
        options = [(g // d) ** 2 for d in range(2, g + 1) if g % d == 0]
        raise ConfigError(f"pixel_shuffle cannot turn {n_patches} patches ({g} x {g}) into {image_tokens} tokens; "
                          f"possible token counts: {options}.")
    return {"kind": kind, "scale": scale, "image_tokens": image_tokens}


def make_projector(spec: dict, vision_dim: int, text_dim: int, reference: nn.Module | None = None) -> nn.Module:
    """The projector module for ``spec`` (from :func:`projector_spec`).

    reference: the ``LlavaMultiModalProjector`` transformers built; ``linear`` and ``mlp`` use it
    as it is (``linear``: its second layer starts as the identity, so the whole map is linear).
    """
    kind = spec["kind"]
    if kind == "pixel_shuffle":
        return PixelShuffleProjector(vision_dim, text_dim, spec["scale"])
    if reference is None:
        raise ConfigError("make_projector needs the LLaVA model's own projector for 'linear' and 'mlp'.")
    if kind == "linear":
        with torch.no_grad():
            reference.linear_2.weight.copy_(torch.eye(text_dim))
            if reference.linear_2.bias is not None:
                reference.linear_2.bias.zero_()
    return reference
