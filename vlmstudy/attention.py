"""Looking inside vision-language models: cross-attention from scratch, attention maps, rollout,
gradient-weighted relevancy (notebook 09).

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
The pointing game (does a map's maximum land on the object a phrase names?), its methods built
from these maps, its table and command line are :mod:`vlmstudy.pointing`.

Attention weights come from ``output_attentions=True``; transformers 5 returns them only from the
"eager" attention code, so the functions switch a model to it (:func:`use_eager_attention`; the
numbers are the same, SDPA is only faster).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .torch_utils import left_padding, model_device_dtype, to_model

__all__ = [
    "CrossAttention", "use_eager_attention", "patch_grid",
    "vision_attentions", "cls_attention_map", "attention_rollout", "rollout_map",
    "clip_relevancy", "clip_gradcam",
    "blip_word_attention", "llava_token_attention", "llava_answer_relevancy",
    "normalize_map", "TokenMaps",
]


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
    def from_hf(cls, layer: nn.Module) -> CrossAttention:
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


def _pixels(processor, images, model) -> torch.Tensor:
    device, dtype = model_device_dtype(model)
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
    device, dtype = model_device_dtype(model)
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
    device, _ = model_device_dtype(model)
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
    from .generation import chat_prompt

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


# ----------------------------------------------------------------------------- LLaVA: input x gradient for an answer

def _llava_batch(model, processor, images, questions) -> dict:
    """Chat prompts for one question per image, left-padded so every prompt ends at the last position."""
    from .generation import chat_prompt

    prompts = [chat_prompt(processor, [(q, None)]) for q in questions]
    with left_padding(processor.tokenizer):
        enc = processor(images=_images(images), text=prompts, padding=True, return_tensors="pt")
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
