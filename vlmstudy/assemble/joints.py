"""``shapes_at_every_joint``: follow one prompt with its picture through an assembled LLaVA.

pixels ``(B, 3, S, S)`` -> patches ``(B, N, 3 p^2)`` -> vision tower ``(B, 1 + N, C)`` ->
selected features ``(B, N, C)`` -> projected image tokens ``(B, T, D)`` (``T = N`` or
``N / r^2`` after a pixel shuffle) -> the language model's input embeddings ``(B, L, D)``,
where the ``T`` ``<image>`` placeholders of the prompt are replaced by the projected tokens.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def shapes_at_every_joint(model, processor, image, question: str = "what is in the picture?",
                          show: bool = True) -> list[dict]:
    """Run ``image`` + ``question`` through ``model`` step by step; return (and print) one row
    per joint: ``{"joint", "shape", "what"}``. Each step is the call LLaVA's own forward makes,
    and the last row is checked against ``get_image_features``."""
    from ..generation import chat_prompt

    inner = model.model
    cfg = model.config
    enc = processor(images=[image], text=chat_prompt(processor, [(question, None)]), return_tensors="pt")
    pixels = enc["pixel_values"].to(model.dtype)
    p = cfg.vision_config.patch_size
    b, ch, h, w = pixels.shape
    patches = pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, ch * p * p)
    states = inner.vision_tower(pixels, output_hidden_states=True).hidden_states
    selected = states[cfg.vision_feature_layer][:, 1:]  # the "default" strategy drops CLS
    projected = inner.multi_modal_projector(selected)
    reference = inner.get_image_features(pixel_values=pixels, vision_feature_layer=cfg.vision_feature_layer,
                                         vision_feature_select_strategy=cfg.vision_feature_select_strategy).pooler_output
    assert torch.allclose(torch.cat(list(reference)), projected.flatten(0, 1), atol=1e-4), "step-by-step != LLaVA's"
    ids = enc["input_ids"]
    n_placeholders = int((ids == cfg.image_token_id).sum())
    embeds = inner.get_input_embeddings()(ids)
    mask = (ids == cfg.image_token_id).unsqueeze(-1).expand_as(embeds)
    merged = embeds.masked_scatter(mask, projected.to(embeds.dtype))
    rows = [
        {"joint": "pixels", "shape": tuple(pixels.shape), "what": "image processor output (B, 3, S, S)"},
        {"joint": "patches", "shape": tuple(patches.shape), "what": f"{p}x{p} patches, flattened (B, N, 3*p*p)"},
        {"joint": "vision tower", "shape": tuple(states[-1].shape), "what": "CLS + one state per patch (B, 1+N, C)"},
        {"joint": "selected features", "shape": tuple(selected.shape),
         "what": f"layer {cfg.vision_feature_layer}, CLS dropped (B, N, C)"},
        {"joint": "projected tokens", "shape": tuple(projected.shape),
         "what": f"{type(inner.multi_modal_projector).__name__} (B, T, D)"},
        {"joint": "prompt ids", "shape": tuple(ids.shape), "what": f"{n_placeholders} <image> placeholders (B, L)"},
        {"joint": "LM input embeddings", "shape": tuple(merged.shape),
         "what": "placeholders replaced by projected tokens (B, L, D)"},
    ]
    if n_placeholders != projected.shape[0] * projected.shape[1]:
        raise AssertionError(f"{n_placeholders} <image> tokens in the prompt but {projected.shape[1]} projected "
                             "tokens: the processor's patch_size does not match the projector.")
    if show:
        width = max(len(r["joint"]) for r in rows)
        for r in rows:
            print(f"{r['joint']:<{width}}  {str(r['shape']):<18} {r['what']}")
    return rows
