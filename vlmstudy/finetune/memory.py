"""How much accelerator memory LoRA and QLoRA fine-tuning need, per model: an estimate.

``vlmstudy finetune --estimate [--config FILE]`` prints one row per trainable zoo model (the
syllabus and :data:`vlmstudy.zoo.registry.LARGER_CARDS`), for LoRA (16-bit frozen base) and QLoRA
(NF4 base with double quantization), at the config's batch size::

    total = weights + adapter + gradients + optimizer + activations

* weights: the real architecture built on the meta device (:func:`vlmstudy.quantize.estimate`),
  fp16 for LoRA, nf4-dq for QLoRA (its quantization scales included);
* adapter: ``r (d_in + d_out)`` fp32 numbers per LoRA layer (every linear layer of the language
  model: ``lora.target_modules: all-linear``), 4 bytes each; gradients the same again;
* optimizer: AdamW keeps two fp32 moments (8 bytes per trained number), paged 8-bit AdamW two
  8-bit ones (2 bytes);
* activations, in 16 bits, for ``tokens = image tokens + text tokens`` per example
  (Korthikanti et al. 2022, without the attention-score term that fused SDPA attention does not
  store): about ``34 h`` bytes per token and layer kept for the backward pass, or with gradient
  checkpointing ``2 h`` per token and layer plus one layer's ``34 h``; plus the logits,
  ``tokens x vocabulary x 6`` bytes (16-bit logits and their fp32 copy for the loss).

These are estimates, not measurements: CUDA's context (0.3-1 GB), the allocator's fragmentation
and temporary buffers come on top. ``benchmarks/bench_qlora_gpu.py`` measures the real peak on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Image tokens the language model sees per example, by family (LLaVA-NeXT: a 672 x 672 image in
#: its 2 x 2 tiling plus the overview, 5 x 576; the BLIP family's text side sees no image tokens,
#: its decoder cross-attends to the frozen vision features).
IMAGE_TOKENS = {"llava": 576, "llava-next": 2880, "blip2": 32, "instructblip": 32, "blip-caption": 0,
                "blip-vqa": 0,
                # SmolVLM: 16 tiles of 512 px + the global image, 64 tokens each (any picture is resized
                # to a 2048 px edge); Qwen2-VL: a 336 px picture, (336 / 28)^2 (vlmstudy.image_tokens)
                "smolvlm": 17 * 64, "qwen2-vl": (336 // 28) ** 2}
DEFAULT_TEXT_TOKENS = 128
GB = 1e9


def _text_dims(config) -> tuple[int, int, int]:
    """``(hidden, layers, vocab)`` of the language model (T5: encoder + decoder layers)."""
    text = getattr(config, "text_config", config)
    hidden = getattr(text, "hidden_size", None) or text.d_model
    layers = getattr(text, "num_hidden_layers", None)
    if getattr(text, "model_type", "") == "t5":
        layers = text.num_layers + (text.num_decoder_layers or text.num_layers)
    return int(hidden), int(layers), int(text.vocab_size)


def lora_parameters(model, r: int) -> int:
    """Trainable numbers of rank-``r`` LoRA on every linear layer of the language model."""
    from .model import language_model_linears

    total = 0
    for name in language_model_linears(model):
        layer = model.get_submodule(name)
        total += r * (layer.in_features + layer.out_features)
    return total


def activation_bytes(hidden: int, layers: int, vocab: int, tokens: int, batch_size: int,
                     checkpointing: bool) -> int:
    """16-bit activations kept for the backward pass (see the module docstring)."""
    per_layer = 34 * hidden * tokens * batch_size
    kept = layers * 2 * hidden * tokens * batch_size + per_layer if checkpointing else layers * per_layer
    return kept + 6 * tokens * batch_size * vocab


def estimate_model(name: str, batch_size: int = 8, text_tokens: int = DEFAULT_TEXT_TOKENS, r: int = 8,
                   gradient_checkpointing: bool | None = None, optimizer: str | None = None) -> list[dict]:
    """Two rows (LoRA, QLoRA) of byte counts for zoo model ``name``.

    gradient_checkpointing / optimizer: ``None`` means the recipes' usual choices (LoRA: off,
    AdamW; QLoRA: on, paged 8-bit AdamW)."""
    from ..generation import family
    from ..quantize import _meta_model, estimate

    model, label = _meta_model(name, torch.float16)
    fam = family(model)
    hidden, layers, vocab = _text_dims(model.config)
    tokens = IMAGE_TOKENS.get(fam, 0) + text_tokens
    n_lora = lora_parameters(model, r)
    rows = []
    for method, precision, default_ckpt, default_opt in (("LoRA", "fp16", False, "adamw"),
                                                         ("QLoRA", "nf4-dq", True, "paged_adamw_8bit")):
        ckpt = default_ckpt if gradient_checkpointing is None else gradient_checkpointing
        opt = default_opt if optimizer is None else optimizer
        row = {"model": name, "hub_id": label, "method": method, "batch_size": batch_size, "tokens": tokens,
               "lora_params": n_lora, "gradient_checkpointing": ckpt, "optimizer": opt,
               "weights": estimate(name, precision), "adapter": 4 * n_lora, "gradients": 4 * n_lora,
               "optimizer_state": (8 if opt == "adamw" else 2) * n_lora,
               "activations": activation_bytes(hidden, layers, vocab, tokens, batch_size, ckpt)}
        row["total"] = sum(row[k] for k in ("weights", "adapter", "gradients", "optimizer_state", "activations"))
        rows.append(row)
    return rows


def trainable_model_names() -> list[str]:
    """Every card (syllabus and larger ones) whose model writes text, i.e. can be fine-tuned here."""
    from ..zoo.registry import ALL_CARDS

    return [c.name for c in ALL_CARDS if c.model_class not in ("CLIPModel", "SiglipModel")]


def estimate_rows(names: Sequence[str] | None = None, config=None, text_tokens: int | None = None) -> list[dict]:
    """:func:`estimate_model` for ``names`` (default: :func:`trainable_model_names`), with the batch
    size, LoRA rank, checkpointing and optimizer of ``config`` (a FinetuneConfig) when given."""
    kwargs = {"text_tokens": text_tokens or DEFAULT_TEXT_TOKENS}
    if config is not None:
        t = config.training
        kwargs.update(batch_size=t.batch_size, r=config.lora.r, gradient_checkpointing=t.gradient_checkpointing,
                      optimizer=t.optimizer)
    rows = []
    for name in names or trainable_model_names():
        rows += estimate_model(name, **kwargs)
    return rows


def format_estimate(rows: Sequence[dict], config=None) -> str:
    """The table ``vlmstudy finetune --estimate`` prints (GB = 10^9 bytes)."""
    src = "the config's" if config is not None else "default"
    head = (f"Estimated memory for fine-tuning ({src} settings; GB = 1e9 bytes; tokens = image + text tokens per "
            "example). Estimates, not measurements: add 0.3-1 GB of CUDA context.")
    cols = ("model", "method", "batch", "tokens", "ckpt", "weights", "adapter", "grads", "optimizer", "activations",
            "total")
    body = [[r["model"], r["method"], str(r["batch_size"]), str(r["tokens"]), "yes" if r["gradient_checkpointing"]
             else "no", *(f"{r[k] / GB:.2f}" for k in ("weights", "adapter", "gradients", "optimizer_state",
                                                       "activations", "total"))] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)
