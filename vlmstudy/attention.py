"""Looking inside vision-language models: cross-attention from scratch, attention maps, rollout,
gradient-weighted relevancy and the pointing game (notebook 09).

Everything returns **numpy maps at patch resolution** (``(grid, grid)``, 8 x 8 for the tiny
stand-ins' 64 px images with 8 px patches; 7 x 7 for ViT-B/32 at 224 px), non-negative and, by
default, scaled to [0, 1] (``normalize="minmax"``; ``normalize=None`` keeps the raw values).
:func:`vlmstudy.plotting.overlay_heatmap` upsamples one onto its image.

Contents

* :class:`CrossAttention`: multi-head cross-attention written out in a few lines of torch; its
  :meth:`CrossAttention.from_hf` takes the weights of a real layer (BLIP's text-decoder
  ``crossattention`` or a Q-Former's) and reproduces that layer's output.
* CLIP: :func:`vision_attentions` (every layer's self-attention), :func:`cls_attention_map` (what
  the CLS token looks at), :func:`attention_rollout` / :func:`rollout_map` (Abnar & Zuidema 2020),
  :func:`clip_relevancy` (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability":
  gradient-weighted attention accumulated through the layers, for one text) and
  :func:`clip_gradcam` (Grad-CAM on the tokens entering the last layer, a simpler variant).
* BLIP: :func:`blip_word_attention`, the decoder's cross-attention from each word to the patches.
* LLaVA: :func:`llava_token_attention`, the language model's attention from each generated token
  to the 64 image tokens (found by ``config.image_token_id``), and :func:`llava_answer_relevancy`,
  input x gradient on those image tokens for an answer word.
* :func:`pointing_game` and :func:`pointing_game_table`: does a map's maximum land on the object a
  phrase names? ``python benchmarks/bench_pointing_game.py --n 200`` (or ``python -m
  vlmstudy.attention --pointing-game --n 200``) writes the table to
  ``benchmarks/results/pointing_game.json``.

Attention weights come from ``output_attentions=True``; transformers 5 returns them only from the
"eager" attention code, so the functions switch a model to it (:func:`use_eager_attention`; the
numbers are the same, SDPA is only faster).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import shapes
from .errors import ConfigError

__all__ = [
    "CrossAttention", "use_eager_attention", "patch_grid",
    "vision_attentions", "cls_attention_map", "attention_rollout", "rollout_map",
    "clip_relevancy", "clip_gradcam",
    "blip_word_attention", "llava_token_attention", "llava_answer_relevancy",
    "normalize_map", "dilate", "pointing_game", "pointing_game_table", "chance_level",
    "PointingResult", "TokenMaps", "METHODS", "DEFAULT_TOLERANCE", "oracle_method", "centre_method",
]

#: Pointing-game tolerance in pixels (at 64 px): a map's maximum within this many pixels of the
#: object's mask counts as a hit (the mask is dilated by a (2t+1) x (2t+1) square, i.e. Chebyshev
#: distance <= t). Anti-aliased edges and an 8 x 8 map's coarse peak make exact-edge hits a lottery.
DEFAULT_TOLERANCE = 2


# ----------------------------------------------------------------------------- cross-attention from scratch

class CrossAttention(nn.Module):
    """Multi-head cross-attention: text queries look at image patches.

    Shapes (B batch, T text tokens, N image tokens, H heads, d = dim_q // H per head)::

        x        (B, T, dim_q)    the queries' hidden states (text tokens, or Q-Former queries)
        context  (B, N, dim_kv)   the image tokens (vision encoder output, CLS first)
        q = x W_q                 -> (B, H, T, d)
        k = context W_k, v = context W_v -> (B, H, N, d)
        weights = softmax(q k^T / sqrt(d) + mask)  (B, H, T, N): each text token's distribution over patches
        context_out = weights v, heads concatenated -> (B, T, H * d)

    With ``post_norm=True`` (BERT / BLIP / Q-Former style) the block also applies its output
    projection, a residual connection and LayerNorm: ``out = LayerNorm(x + W_o context_out)``,
    shape ``(B, T, dim_q)``; with ``post_norm=False`` ``out`` is ``context_out``.

    ``forward`` returns ``(out, weights)``. ``context_mask`` (B, N), 1 = attend, 0 = padding.
    """

    def __init__(self, dim_q: int, dim_kv: int, heads: int, post_norm: bool = True, eps: float = 1e-12):
        super().__init__()
        if dim_q % heads:
            raise ConfigError(f"dim_q ({dim_q}) must be a multiple of heads ({heads}).")
        self.heads, self.head_dim, self.post_norm = heads, dim_q // heads, post_norm
        self.q = nn.Linear(dim_q, dim_q)
        self.k = nn.Linear(dim_kv, dim_q)
        self.v = nn.Linear(dim_kv, dim_q)
        if post_norm:
            self.o = nn.Linear(dim_q, dim_q)
            self.norm = nn.LayerNorm(dim_q, eps=eps)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, H*d) -> (B, H, L, d)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None):
        q, k, v = self._split(self.q(x)), self._split(self.k(context)), self._split(self.v(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)            # (B, H, T, N)
        if context_mask is not None:
            scores = scores.masked_fill(~context_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)                                        # (B, H, T, N)
        out = (weights @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)  # (B, T, H*d)
        if self.post_norm:
            out = self.norm(x + self.o(out))
        return out, weights

    @classmethod
    def from_hf(cls, layer: nn.Module) -> "CrossAttention":
        """A copy of a transformers cross-attention layer, with its weights.

        layer: a whole attention block, ``BlipTextAttention`` (``model.text_decoder.bert.encoder.
        layer[i].crossattention``) or ``Blip2QFormerAttention`` / ``InstructBlipQFormerAttention``
        (``model.qformer.encoder.layer[i].crossattention``): the copy has ``post_norm=True`` and
        reproduces the block's output ``LayerNorm(x + dense(attention))``. Or only its inner
        attention (``.self`` / ``.attention``): ``post_norm=False``, the concatenated heads.
        """
        inner, output = layer, None
        for name in ("self", "attention"):
            sub = getattr(layer, name, None)
            if isinstance(sub, nn.Module) and hasattr(sub, "query"):
                inner, output = sub, getattr(layer, "output", None)
                break
        if not all(hasattr(inner, n) for n in ("query", "key", "value")):
            raise ConfigError(f"{type(layer).__name__} is not a BLIP / Q-Former attention layer (no query, key, value); "
                              "pass e.g. model.text_decoder.bert.encoder.layer[0].crossattention.")
        heads = getattr(inner, "num_attention_heads", None) or inner.config.num_attention_heads
        dim_q, dim_kv = inner.query.in_features, inner.key.in_features
        eps = output.LayerNorm.eps if output is not None else 1e-12
        new = cls(dim_q, dim_kv, heads, post_norm=output is not None, eps=eps)
        with torch.no_grad():
            for mine, theirs in ((new.q, inner.query), (new.k, inner.key), (new.v, inner.value)):
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
            if output is not None:
                new.o.weight.copy_(output.dense.weight)
                new.o.bias.copy_(output.dense.bias)
                new.norm.weight.copy_(output.LayerNorm.weight)
                new.norm.bias.copy_(output.LayerNorm.bias)
        p = inner.query.weight
        return new.to(device=p.device, dtype=p.dtype).eval()

    from_blip_layer = from_hf


# ----------------------------------------------------------------------------- helpers

def use_eager_attention(model) -> nn.Module:
    """Switch ``model`` to transformers' "eager" attention (the code path that can return the
    attention weights) and return it. Same numbers as SDPA, a little slower."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl == "eager" or not getattr(model, "_supports_attention_backend", True):
        return model  # already eager, or a model (BLIP) whose attention code always returns weights
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
            return model
        except (ValueError, AttributeError):  # pragma: no cover - older / unusual models
            pass
    for module in model.modules():  # pragma: no cover
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = "eager"
    return model


def _vision_config(model):
    cfg = model.config
    return getattr(cfg, "vision_config", cfg)


def patch_grid(model) -> int:
    """Patches per side of the model's vision encoder: ``image_size // patch_size`` (8 for the stand-ins)."""
    vc = _vision_config(model)
    return int(vc.image_size) // int(vc.patch_size)


def normalize_map(m, normalize: str | None = "minmax") -> np.ndarray:
    """``"minmax"``: scale each map (last two axes) to [0, 1] (a constant map becomes 0);
    ``"sum"``: divide by its sum; ``None``: unchanged. Returns float numpy."""
    if hasattr(m, "detach"):
        m = m.detach().float().cpu().numpy()
    m = np.asarray(m, dtype=np.float64)
    if normalize is None:
        return m
    if normalize == "minmax":
        lo = m.min(axis=(-2, -1), keepdims=True)
        span = m.max(axis=(-2, -1), keepdims=True) - lo
        return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)
    if normalize == "sum":
        s = m.sum(axis=(-2, -1), keepdims=True)
        return np.where(s > 0, m / np.where(s > 0, s, 1.0), 0.0)
    raise ConfigError(f"normalize must be 'minmax', 'sum' or None, not {normalize!r}.")


def _to_grid(patch_values: torch.Tensor, grid: int) -> torch.Tensor:
    """(..., grid*grid) patch scores -> (..., grid, grid), row-major like the patch embedding."""
    if patch_values.shape[-1] != grid * grid:
        raise ConfigError(f"expected {grid * grid} patch values for a {grid} x {grid} grid, got {patch_values.shape[-1]}.")
    return patch_values.reshape(*patch_values.shape[:-1], grid, grid)


def _images(images) -> list:
    from .images import load_image

    if not isinstance(images, (list, tuple)):
        images = [images]
    return [load_image(im) for im in images]


def _device_dtype(model):
    p = next(model.parameters())
    return p.device, p.dtype


def _pixels(processor, images, model) -> torch.Tensor:
    device, dtype = _device_dtype(model)
    return processor(images=_images(images), return_tensors="pt")["pixel_values"].to(device, dtype)


def _vision_tower(model):
    """The vision transformer of CLIP / SigLIP / BLIP (``model.vision_model``) or a bare one."""
    return getattr(model, "vision_model", model)


# ----------------------------------------------------------------------------- CLIP: attention, rollout

@torch.no_grad()
def vision_attentions(model, processor, images) -> torch.Tensor:
    """Self-attention of every vision layer: tensor ``(layers, B, heads, S, S)``, S = 1 + grid^2
    (CLS first). Row i is what token i attends to; rows sum to 1."""
    use_eager_attention(model)
    out = _vision_tower(model)(pixel_values=_pixels(processor, images, model), output_attentions=True)
    return torch.stack([a.float() for a in out.attentions])


def cls_attention_map(attentions: torch.Tensor, layer: int = -1, normalize: str | None = "minmax") -> np.ndarray:
    """What the CLS token attends to in one layer, averaged over heads: ``(B, grid, grid)``.

    attentions: ``(layers, B, heads, S, S)`` from :func:`vision_attentions`."""
    a = attentions[layer].mean(dim=1)[:, 0, 1:]                   # (B, grid^2): CLS row, patches only
    return normalize_map(_to_grid(a, int(round(math.sqrt(a.shape[-1])))), normalize)


def attention_rollout(attentions: torch.Tensor, residual: float = 0.5, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): ``(B, S, S)``, how much each output token draws on
    each input token through all layers.

    Per layer, heads are fused (``"mean"``, ``"max"`` or ``"min"``), the residual connection is
    added as ``A' = residual * I + (1 - residual) * A``, rows are renormalised, and the layers are
    multiplied: ``R = A'_L ... A'_2 A'_1``. Identity attention rolls out to the identity; every
    row of the result sums to 1.
    """
    if attentions.dim() != 5:
        raise ConfigError(f"attentions must be (layers, B, heads, S, S), not shape {tuple(attentions.shape)}.")
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}
    if head_fusion not in fuse:
        raise ConfigError(f"head_fusion must be one of {sorted(fuse)}, not {head_fusion!r}.")
    if not 0.0 <= residual <= 1.0:
        raise ConfigError(f"residual must be in [0, 1], not {residual!r}.")
    s = attentions.shape[-1]
    eye = torch.eye(s, dtype=attentions.dtype, device=attentions.device)
    rollout = eye.expand(attentions.shape[1], s, s).clone()
    for layer in attentions:
        a = residual * eye + (1.0 - residual) * fuse[head_fusion](layer)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout


def rollout_map(attentions: torch.Tensor, residual: float = 0.5, head_fusion: str = "mean",
                normalize: str | None = "minmax") -> np.ndarray:
    """The CLS row of :func:`attention_rollout`, patches only: ``(B, grid, grid)``."""
    r = attention_rollout(attentions, residual, head_fusion)[:, 0, 1:]
    return normalize_map(_to_grid(r, int(round(math.sqrt(r.shape[-1])))), normalize)


# ----------------------------------------------------------------------------- CLIP: gradient-weighted maps

def _texts(texts, n: int) -> list[str]:
    if isinstance(texts, str):
        texts = [texts] * n
    texts = list(texts)
    if len(texts) != n:
        raise ConfigError(f"got {len(texts)} texts for {n} images: pass one text per image (or one text for all).")
    return texts


def _clip_scores(model, processor, images, texts, **vision_kwargs):
    """Cosine similarity of each image with its text (B,), and the vision tower's outputs."""
    images = _images(images)
    texts = _texts(texts, len(images))
    device, dtype = _device_dtype(model)
    tok = processor.tokenizer
    enc = tok(texts, padding=True, return_tensors="pt").to(device)
    pixels = _pixels(processor, images, model).requires_grad_(True)   # gradients flow even if weights are frozen
    vout = model.vision_model(pixel_values=pixels, **vision_kwargs)
    img = model.visual_projection(vout.pooler_output)
    with torch.no_grad():
        txt = model.get_text_features(**enc)
        txt = getattr(txt, "pooler_output", txt)
    scores = (F.normalize(img, dim=-1) * F.normalize(txt.to(img.dtype), dim=-1)).sum(-1)
    return scores, vout


def clip_relevancy(model, processor, images, texts, normalize: str | None = "minmax",
                   return_scores: bool = False):
    """Gradient-weighted relevancy of the image patches for image-text similarity (Chefer et al. 2021).

    For each image and its text (one text per image, or one for all): the similarity ``s`` is
    differentiated with respect to every vision layer's attention ``A`` (B, heads, S, S); per layer
    ``Ā = mean_heads( (∂s/∂A ⊙ A)^+ )`` (keep only the parts of attention that *raise* s) and the
    relevancy starts at the identity and accumulates ``R ← R + Ā R``. The CLS row of ``R`` over the
    patches is the map, ``(B, grid, grid)``. Unlike raw attention it depends on the text.
    """
    use_eager_attention(model)
    with torch.enable_grad():
        scores, vout = _clip_scores(model, processor, images, texts, output_attentions=True)
        attns = vout.attentions
        grads = torch.autograd.grad(scores.sum(), attns)
    b, _, s, _ = attns[0].shape
    r = torch.eye(s).expand(b, s, s).clone()
    for a, g in zip(attns, grads):
        cam = (g.detach().float() * a.detach().float()).clamp(min=0).mean(dim=1)   # (B, S, S)
        r = r + cam @ r
    grid = int(round(math.sqrt(s - 1)))
    maps = normalize_map(_to_grid(r[:, 0, 1:], grid), normalize)
    return (maps, scores.detach().cpu().numpy()) if return_scores else maps


def clip_gradcam(model, processor, images, texts, normalize: str | None = "minmax") -> np.ndarray:
    """Grad-CAM on CLIP's vision tokens entering the last layer: channel weights are the mean
    gradient of the similarity over the patch tokens, the map is ``ReLU(sum_c w_c h_c)`` per patch.
    (The last layer's *output* patch tokens get no gradient: CLIP pools only CLS.) ``(B, grid, grid)``."""
    with torch.enable_grad():
        scores, vout = _clip_scores(model, processor, images, texts, output_hidden_states=True)
        h = vout.hidden_states[-2]                                        # input of the last layer
        (g,) = torch.autograd.grad(scores.sum(), [h])
    h, g = h.detach()[:, 1:].float(), g.detach()[:, 1:].float()
    cam = (h * g.mean(dim=1, keepdim=True)).sum(-1).clamp(min=0)        # (B, grid^2)
    return normalize_map(_to_grid(cam, int(round(math.sqrt(cam.shape[-1])))), normalize)


# ----------------------------------------------------------------------------- BLIP: word -> patch

@dataclass
class TokenMaps:
    """Per-token maps: ``tokens[i]`` and ``maps[i]`` (grid, grid); ``text`` the whole text."""

    tokens: list[str]
    maps: np.ndarray
    text: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, word: str) -> np.ndarray:
        """The map of the first token equal to ``word``."""
        if word not in self.tokens:
            raise KeyError(f"{word!r} is not one of the tokens {self.tokens}.")
        return self.maps[self.tokens.index(word)]


def _blip_text_ids(processor, text: str) -> list[int]:
    tok = processor.tokenizer
    return tok(text, add_special_tokens=False).input_ids


def _blip_cross_attentions(model, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Decoder cross-attention ``(layers, B, heads, T, 1 + grid^2)`` for teacher-forced ``ids``."""
    use_eager_attention(model)
    image_embeds = model.vision_model(pixel_values=pixels)[0]
    out = model.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image_embeds,
                             output_attentions=True, return_dict=True)
    return torch.stack([a.float() for a in out.cross_attentions])


@torch.no_grad()
def blip_word_attention(model, processor, image, text: str | None = None, step: str = "predict",
                        layers: Sequence[int] | None = None, normalize: str | None = "minmax") -> TokenMaps:
    """Where BLIP's captioning decoder looks for each word: cross-attention to the image patches,
    averaged over heads and ``layers`` (all by default), CLS dropped. ``(words, grid, grid)``.

    text: the caption to explain (teacher-forced); ``None`` generates one first. step:
    ``"predict"`` (default) takes the attention at the decoding step that *writes* each word (its
    query is the previous token), ``"read"`` the attention of the word's own position.
    """
    if step not in ("predict", "read"):
        raise ConfigError(f"step must be 'predict' or 'read', not {step!r}.")
    from .generation import generate_text

    images = _images(image)[:1]
    if text is None:
        text = generate_text(model, processor, images, [None], max_new_tokens=24)[0]
    words = _blip_text_ids(processor, text)
    if not words:
        raise ConfigError("text has no tokens to explain.")
    bos = model.config.text_config.bos_token_id
    device, _ = _device_dtype(model)
    ids = torch.tensor([[bos] + words], device=device)
    att = _blip_cross_attentions(model, _pixels(processor, images, model), ids, torch.ones_like(ids))
    att = att[list(layers)] if layers is not None else att
    a = att.mean(dim=(0, 2))[0]                     # (T+1, 1 + grid^2)
    rows = slice(0, len(words)) if step == "predict" else slice(1, len(words) + 1)
    maps = _to_grid(a[rows, 1:], patch_grid(model))
    tokens = processor.tokenizer.convert_ids_to_tokens(words)
    return TokenMaps(tokens, normalize_map(maps, normalize), text)


# ----------------------------------------------------------------------------- LLaVA: generated token -> image tokens

def _image_token_id(model) -> int:
    cfg = model.config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(cfg, name, None)
        if value is not None:
            return int(value)
    raise ConfigError(f"{type(model).__name__} has no image_token_id in its config.")  # pragma: no cover


def _llava_maps(model, enc: dict, query_positions: torch.Tensor, layers=None) -> torch.Tensor:
    """Attention from ``query_positions`` (B, K) to each row's image tokens: (B, K, grid, grid),
    averaged over heads and ``layers``."""
    use_eager_attention(model)
    out = model(**enc, output_attentions=True, return_dict=True)
    att = torch.stack([a.float() for a in out.attentions])          # (L, B, H, S, S)
    att = att[list(layers)] if layers is not None else att
    att = att.mean(dim=(0, 2))                                      # (B, S, S)
    is_image = enc["input_ids"] == _image_token_id(model)
    grid = patch_grid(model)
    maps = []
    for b in range(att.shape[0]):
        pos = is_image[b].nonzero().flatten()
        if len(pos) != grid * grid:
            raise ConfigError(f"found {len(pos)} image tokens, expected {grid * grid} ({grid} x {grid} patches): "
                              "only single-image LLaVA-1.5-style prompts are supported.")
        rows = att[b, query_positions[b]]                           # (K, S)
        maps.append(_to_grid(rows[:, pos], grid))
    return torch.stack(maps), out


@torch.no_grad()
def llava_token_attention(model, processor, image, question: str, max_new_tokens: int = 8,
                          layers: Sequence[int] | None = None, normalize: str | None = "minmax") -> TokenMaps:
    """Answer ``question`` about ``image`` greedily, then show, for every generated token, the
    language model's attention from the step that produced it to the image tokens, averaged over
    heads and ``layers`` (all by default). ``maps``: ``(new tokens, grid, grid)``.

    The prompt is the model's chat template (:func:`vlmstudy.generation.chat_prompt`); image
    tokens are the positions whose id is ``config.image_token_id``. The attention is recomputed
    in one teacher-forced pass over prompt + answer (identical to the generation steps' attention).
    """
    from .generation import chat_prompt, to_model

    use_eager_attention(model)
    prompt = chat_prompt(processor, [(question, None)])
    enc = to_model(model, processor(images=_images(image)[:1], text=[prompt], return_tensors="pt"))
    device = enc["input_ids"].device
    n_prompt = enc["input_ids"].shape[1]
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, n_prompt:]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    keep = []
    for t in new.tolist():
        if t in eos:
            break
        keep.append(t)
    if not keep:
        keep = new[:1].tolist()
    full = torch.cat([enc["input_ids"][0], torch.tensor(keep, device=device)])[None]
    enc2 = dict(enc, input_ids=full, attention_mask=torch.ones_like(full))
    query = torch.arange(n_prompt - 1, n_prompt - 1 + len(keep), device=device)[None]
    maps, _ = _llava_maps(model, enc2, query, layers)
    tokens = processor.tokenizer.convert_ids_to_tokens(keep)
    return TokenMaps(tokens, normalize_map(maps[0], normalize), processor.tokenizer.decode(keep),
                     extra={"question": question})


# ----------------------------------------------------------------------------- pointing game

def dilate(mask: np.ndarray, pixels: int = DEFAULT_TOLERANCE) -> np.ndarray:
    """Grow a boolean mask (..., H, W) by ``pixels`` in every direction (a square structuring
    element: Chebyshev distance <= pixels)."""
    m = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return m
    t = torch.from_numpy(m.astype(np.float32)).reshape(-1, 1, *m.shape[-2:])
    out = F.max_pool2d(t, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return out.reshape(m.shape).numpy() > 0.5


def _peak(heatmap, size: int) -> tuple[int, int]:
    """(row, col) of the map's maximum after bilinear upsampling to ``size`` x ``size``."""
    from .plotting import upsample_heatmap

    h = np.asarray(heatmap, dtype=np.float64)
    up = h if h.shape == (size, size) else upsample_heatmap(h, (size, size))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(up)), up.shape))


@dataclass
class PointingResult:
    """One method's pointing-game score: ``hits`` of ``trials`` (scene, object) pairs."""

    method: str
    hits: int
    trials: int
    chance: float
    seconds: float = 0.0
    per_trial: list[bool] = field(default_factory=list, repr=False)
    extra: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.hits / self.trials if self.trials else 0.0

    def as_row(self) -> dict:
        lo, hi = _wilson(self.hits, self.trials)
        return {"method": self.method, "accuracy": round(self.accuracy, 4), "hits": self.hits, "trials": self.trials,
                "ci95": [round(lo, 4), round(hi, 4)], "chance": round(self.chance, 4),
                "seconds": round(self.seconds, 2), **self.extra}


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pointing_trials(scenes: Sequence[shapes.Scene]) -> tuple[list[shapes.Scene], list[int]]:
    """Every (scene, object index) pair: each object of each scene is a target once."""
    pairs = [(s, i) for s in scenes for i in range(len(s.objects))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def chance_level(scenes: Sequence[shapes.Scene], size: int = 64, tolerance: int = DEFAULT_TOLERANCE) -> float:
    """Hit rate of a uniformly random point: mean share of the image covered by the target's
    (dilated) mask, over every (scene, object) trial."""
    shares = [dilate(shapes.masks(s, size)[i], tolerance).mean() for s, i in zip(*pointing_trials(scenes))]
    return float(np.mean(shares)) if shares else 0.0


def pointing_game(method: Callable, scenes: Sequence[shapes.Scene], size: int = 64,
                  tolerance: int = DEFAULT_TOLERANCE, name: str | None = None, batch_size: int = 32) -> PointingResult:
    """The pointing game: for every object of every scene, ask ``method`` for a map of that object
    and count a hit when the map's maximum (after bilinear upsampling to ``size`` px) lies inside
    the object's mask dilated by ``tolerance`` px (:data:`DEFAULT_TOLERANCE`).

    method: ``method(scenes, targets) -> maps``, a batch: ``targets[i]`` is the index of the
    object in ``scenes[i].objects``; maps ``(n, h, w)`` at any resolution (8 x 8 patches, or
    ``size`` x ``size``). Returns a :class:`PointingResult` with the chance level alongside.
    """
    all_scenes, all_targets = pointing_trials(scenes)
    hits: list[bool] = []
    shares: list[float] = []
    start = time.perf_counter()
    for i in range(0, len(all_scenes), batch_size):
        sc, tg = all_scenes[i:i + batch_size], all_targets[i:i + batch_size]
        maps = method(sc, tg)
        if len(maps) != len(sc):
            raise ConfigError(f"method returned {len(maps)} maps for {len(sc)} trials; return one map per trial.")
        for scene, t, m in zip(sc, tg, maps):
            target = dilate(shapes.masks(scene, size)[t], tolerance)
            r, c = _peak(m, size)
            hits.append(bool(target[r, c]))
            shares.append(float(target.mean()))
    seconds = time.perf_counter() - start
    return PointingResult(name or getattr(method, "__name__", "method"), int(sum(hits)), len(hits),
                          float(np.mean(shares)) if shares else 0.0, seconds, hits)


# ----------------------------------------------------------------------------- pointing-game methods

def _render(scenes, size: int = 64):
    return [shapes.render(s, size) for s in scenes]


def _clip_text(obj) -> str:
    return shapes.object_phrase(obj)


def clip_relevancy_method(model, processor) -> Callable:
    """Pointing-game method: :func:`clip_relevancy` with the object's phrase ("a red circle")."""
    def method(scenes, targets):
        return clip_relevancy(model, processor, _render(scenes), [_clip_text(s.objects[t]) for s, t in zip(scenes, targets)])
    return method


def clip_gradcam_method(model, processor) -> Callable:
    def method(scenes, targets):
        return clip_gradcam(model, processor, _render(scenes), [_clip_text(s.objects[t]) for s, t in zip(scenes, targets)])
    return method


def clip_cls_method(model, processor) -> Callable:
    """Phrase-independent baseline: last-layer CLS attention (the same map for every object)."""
    def method(scenes, targets):
        return cls_attention_map(vision_attentions(model, processor, _render(scenes)))
    return method


def clip_rollout_method(model, processor) -> Callable:
    """Phrase-independent baseline: attention rollout from CLS."""
    def method(scenes, targets):
        return rollout_map(vision_attentions(model, processor, _render(scenes)))
    return method


def _caption_with_spans(processor, scene) -> tuple[list[int], list[list[int]]]:
    """The scene's caption as token ids, and for each object the positions of its colour and shape words."""
    ids, spans = [], []
    for i, obj in enumerate(scene.objects):
        if i:
            ids += _blip_text_ids(processor, "and")
        start = len(ids)
        phrase = _blip_text_ids(processor, shapes.object_phrase(obj))
        ids += phrase + _blip_text_ids(processor, shapes.POSITION_PHRASES[obj.position])
        # "a red circle": the colour and shape are the phrase's last two tokens
        spans.append([start + len(phrase) - 2, start + len(phrase) - 1])
    return ids, spans


def blip_words_method(model, processor, step: str = "predict", layers=None) -> Callable:
    """Pointing-game method: BLIP decoder cross-attention for the object's colour and shape words,
    teacher-forcing the scene's caption (see :func:`blip_word_attention` for ``step``)."""
    @torch.no_grad()
    def method(scenes, targets):
        device, _ = _device_dtype(model)
        bos = model.config.text_config.bos_token_id
        rows, spans = zip(*[_caption_with_spans(processor, s) for s in scenes])
        width = max(len(r) for r in rows) + 1
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, : len(r) + 1] = torch.tensor([bos] + r)
            mask[b, : len(r) + 1] = 1
        att = _blip_cross_attentions(model, _pixels(processor, _render(scenes), model), ids, mask)
        att = att[list(layers)] if layers is not None else att
        a = att.mean(dim=(0, 2))                                     # (B, T, 1 + grid^2)
        shift = 0 if step == "predict" else 1                        # row j predicts token j (ids shifted by BOS)
        grid = patch_grid(model)
        out = []
        for b, (span, t) in enumerate(zip(spans, targets)):
            rows_ = [p + shift for p in span[t]]
            out.append(_to_grid(a[b, rows_, 1:].mean(0), grid).cpu().numpy())
        return np.stack(out)
    return method


def llava_question(obj) -> str:
    """The question the LLaVA pointing-game methods ask about an object: its colour, by position
    (``"what colour is the shape on the left?"``); the answer is the object's colour word."""
    return f"what colour is the shape {shapes.POSITION_PHRASES[obj.position]}?"


def _llava_batch(model, processor, images, questions) -> dict:
    """Chat prompts for one question per image, left-padded so every prompt ends at the last position."""
    from .generation import chat_prompt, to_model

    prompts = [chat_prompt(processor, [(q, None)]) for q in questions]
    tok = processor.tokenizer
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = processor(images=_images(images), text=prompts, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old
    return to_model(model, enc)


def _record(record: dict | None, logits: torch.Tensor, truth: list[int]) -> None:
    if record is not None:
        pred = logits.argmax(-1).tolist()
        record["correct"] = record.get("correct", 0) + sum(p == q for p, q in zip(pred, truth))
        record["total"] = record.get("total", 0) + len(pred)


def _answer_ids(processor, answers: Sequence[str]) -> list[int]:
    ids = [_blip_text_ids(processor, a) for a in answers]
    if any(not i for i in ids):
        raise ConfigError(f"every answer needs at least one token; got {list(answers)}.")
    return [i[0] for i in ids]


def llava_answer_relevancy(model, processor, images, questions, answers: Sequence[str] | None = None,
                           normalize: str | None = "minmax", record: dict | None = None) -> np.ndarray:
    """Input x gradient on LLaVA's image tokens: which of the 64 image tokens raise the probability
    of the answer's first token? ``(B, grid, grid)``.

    One question per image. answers: the answer whose log-probability is explained (e.g. the
    true colour word); ``None`` explains the model's own greedy answer. The image tokens are the
    projector's outputs (what the language model receives); the map is
    ``ReLU(sum_channels(feature * d log p(answer) / d feature))``.
    """
    images = _images(images)
    questions = _texts(questions, len(images))
    enc = _llava_batch(model, processor, images, questions)
    store: dict = {}

    def hook(module, args, output):  # make the projected image features a leaf we can differentiate
        out = output.detach().requires_grad_(True)
        store["features"] = out
        return out

    handle = model.model.multi_modal_projector.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(**enc, return_dict=True).logits[:, -1].float()
            truth = _answer_ids(processor, answers) if answers is not None else logits.argmax(-1).tolist()
            logp = logits.log_softmax(-1).gather(1, torch.tensor(truth, device=logits.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, [store["features"]])
    finally:
        handle.remove()
    _record(record, logits.detach(), truth)
    feats = store["features"].detach().float()
    cam = (feats * grad.float()).sum(-1).clamp(min=0)             # (B, image tokens)
    grid = patch_grid(model)
    cam = cam.reshape(len(images), -1, grid * grid)[:, 0]          # one image per prompt
    return normalize_map(_to_grid(cam, grid), normalize)


def llava_attention_method(model, processor, layers=None, record: dict | None = None) -> Callable:
    """Pointing-game method: LLaVA's attention to the image tokens at the step that writes the
    answer to :func:`llava_question` (the target's colour word), averaged over heads and layers.
    ``record`` (a dict) collects how often that answer is the right colour."""
    @torch.no_grad()
    def method(scenes, targets):
        enc = _llava_batch(model, processor, _render(scenes), [llava_question(s.objects[t]) for s, t in zip(scenes, targets)])
        last = torch.full((len(scenes), 1), enc["input_ids"].shape[1] - 1, device=enc["input_ids"].device)
        maps, out = _llava_maps(model, enc, last, layers)
        _record(record, out.logits[:, -1], _answer_ids(processor, [s.objects[t].color for s, t in zip(scenes, targets)]))
        return maps[:, 0].cpu().numpy()
    return method


def llava_relevancy_method(model, processor, record: dict | None = None) -> Callable:
    """Pointing-game method: :func:`llava_answer_relevancy` for :func:`llava_question` and the
    target's true colour word."""
    def method(scenes, targets):
        return llava_answer_relevancy(model, processor, _render(scenes),
                                      [llava_question(s.objects[t]) for s, t in zip(scenes, targets)],
                                      [s.objects[t].color for s, t in zip(scenes, targets)], record=record)
    return method



def centre_method(scenes, targets):
    """Text-blind, model-free baseline: a map peaked at the image centre (hits whenever the target
    is the centre object). Attention maps that score like this are only looking at the middle."""
    g = np.arange(8) - 3.5
    bump = np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / 8.0)
    return np.repeat(bump[None], len(scenes), axis=0)


def oracle_method(scenes, targets):
    """The target's own mask: scores 100 % (a check of the scoring, not a model)."""
    return np.stack([shapes.masks(s)[t].astype(np.float32) for s, t in zip(scenes, targets)])


#: The pointing-game table's methods: name -> (model name, factory(model, processor) -> method, text-conditioned?);
#: a model name of None: the method needs no model (factory() returns it).
METHODS: dict[str, tuple[str, Callable, bool]] = {
    "CLIP relevancy (Chefer et al.)": ("clip", clip_relevancy_method, True),
    "CLIP Grad-CAM (penultimate tokens)": ("clip", clip_gradcam_method, True),
    "CLIP last-layer CLS attention": ("clip", clip_cls_method, False),
    "CLIP attention rollout": ("clip", clip_rollout_method, False),
    "BLIP cross-attention (colour + shape words)": ("blip-caption", blip_words_method, True),
    "LLaVA attention writing the colour word": ("llava", llava_attention_method, True),
    "LLaVA input x gradient of the colour word": ("llava", llava_relevancy_method, True),
    "image centre (fixed map, no model)": (None, lambda: centre_method, False),
}


def pointing_scenes(n: int = 200, seed: int = 0, split: str = "test", min_objects: int = 2) -> list[shapes.Scene]:
    """The first ``n`` scenes of ``split`` (drawn with ``seed``) that have at least ``min_objects`` objects."""
    out: list[shapes.Scene] = []
    batch = 2 * n + 8
    while len(out) < n:
        pool = shapes.make_scenes(split, batch, seed)
        out = [s for s in pool if len(s.objects) >= min_objects][:n]
        batch *= 2
    return out


def _training_status(name: str) -> dict:
    import json

    from .zoo import get_card

    card = get_card(name)
    path = card.stand_in_dir / "training.json"
    if not path.exists():
        return {"trained": None}
    import hashlib

    data = json.loads(path.read_text())
    weights = card.stand_in_dir / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.exists() else None
    return {"trained": True, "train_steps": (data.get("config") or {}).get("steps") or
            (data.get("config") or {}).get("train_steps"), "metrics": data.get("metrics", {}),
            "weights_sha256_16": digest}


def pointing_game_table(n: int = 200, seed: int = 0, methods: Sequence[str] | None = None, split: str = "test",
                        tolerance: int = DEFAULT_TOLERANCE, models: dict | None = None,
                        progress: bool = False) -> list[dict]:
    """Every method of :data:`METHODS` (or ``methods``) on the same ``n`` scenes with 2-3 objects
    (every object a target once), side by side with the chance level. Returns rows (dicts):
    method, accuracy, hits, trials, ci95 (Wilson), chance, seconds, model, text_conditioned
    (and answer_accuracy for LLaVA). ``models``: ``{"clip": (model, processor), ...}`` to reuse
    loaded models; the others are loaded with :func:`vlmstudy.load`.
    """
    from .zoo import load

    names = list(methods) if methods is not None else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
    scenes = pointing_scenes(n, seed, split)
    models = dict(models or {})
    rows = []
    for name in names:
        model_name, factory, conditioned = METHODS[name]
        record: dict = {}
        if model_name is None:
            method = factory()
        else:
            if model_name not in models:
                models[model_name] = load(model_name)
            model, processor = models[model_name]
            takes_record = factory in (llava_attention_method, llava_relevancy_method)
            method = factory(model, processor, record=record) if takes_record else factory(model, processor)
        result = pointing_game(method, scenes, tolerance=tolerance, name=name)
        row = result.as_row()
        row.update(model=model_name, text_conditioned=conditioned)
        if record.get("total"):
            row["answer_accuracy"] = round(record["correct"] / record["total"], 4)
        rows.append(row)
        if progress:
            print(f"{name:55s} {row['accuracy']:.3f}  ({row['hits']}/{row['trials']}, {row['seconds']:.1f} s)", flush=True)
    chance = chance_level(scenes, tolerance=tolerance)
    rows.append({"method": "chance (random point)", "accuracy": round(chance, 4), "hits": None,
                 "trials": rows[0]["trials"] if rows else None, "ci95": None, "chance": round(chance, 4),
                 "seconds": 0.0, "model": None, "text_conditioned": None})
    return rows


def results_path():
    """Where ``python -m vlmstudy.attention --pointing-game`` writes its table by default."""
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "pointing_game.json"


def stored_results() -> dict | None:
    """The stored full-size pointing-game run (``benchmarks/results/pointing_game.json``), or None."""
    import json

    path = results_path()
    return json.loads(path.read_text()) if path.exists() else None


def format_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`pointing_game_table` as a Markdown table."""
    lines = ["| method | reads the text | pointing accuracy | hits / trials | 95% CI | chance | model's answers right |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f"{r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}" if r.get("ci95") else ""
        ht = f"{r['hits']}/{r['trials']}" if r.get("hits") is not None else ""
        reads = {True: "yes", False: "no"}.get(r.get("text_conditioned"), "")
        answers = f"{r['answer_accuracy']:.2f}" if r.get("answer_accuracy") is not None else ""
        lines.append(f"| {r['method']} | {reads} | {r['accuracy']:.3f} | {ht} | {ci} | {r['chance']:.3f} | {answers} |")
    return "\n".join(lines)


def _main(argv: Sequence[str] | None = None, prog: str = "python -m vlmstudy.attention --pointing-game") -> int:
    import argparse
    import json
    import os
    import platform
    from pathlib import Path

    parser = argparse.ArgumentParser(prog=prog.removesuffix(" --pointing-game"),
                                     description="Attention-map pointing game on ShapesWorld (notebook 09).")
    parser.add_argument("--pointing-game", action="store_true", help="run the pointing-game table")
    parser.add_argument("--n", type=int, default=200, help="test scenes with 2-3 objects (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE, help="mask dilation in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None,
                        help="JSON file (default benchmarks/results/pointing_game.json in the repository)")
    args = parser.parse_args(argv)
    if not args.pointing_game:
        parser.print_help()
        return 0
    import transformers

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = pointing_game_table(args.n, args.seed, tolerance=args.tolerance, progress=True)
    print()
    print(format_table(rows))
    out = Path(args.out) if args.out else results_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": "pointing_game",
        "command": f"{prog} --n {args.n} --seed {args.seed}" + (f" --tolerance {args.tolerance}"
                                                                   if args.tolerance != DEFAULT_TOLERANCE else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": {"n_scenes": args.n, "seed": args.seed, "split": "test", "objects_per_scene": "2-3",
                   "targets": "every object of every scene", "image_size": 64, "tolerance_px": args.tolerance,
                   "hit": "argmax of the map, bilinearly upsampled to 64 px, inside the target mask dilated by "
                          f"{args.tolerance} px (square structuring element)"},
        "rows": rows,
        "models": {m: _training_status(m) for m in sorted({v[0] for v in METHODS.values()} - {None})},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "load_average": list(os.getloadavg()),
                    "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
