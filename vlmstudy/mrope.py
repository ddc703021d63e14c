"""Qwen2-VL's multimodal rotary positions (M-RoPE), computed by the installed model's own code.

A LLaVA-style model numbers its tokens 0, 1, 2, ... whatever they are: the image's patches get
one long run of positions, row after row, as if the picture were a sentence. Qwen2-VL gives
every token **three** position ids, (temporal, height, width): text tokens get the same number in
all three rows (ordinary 1-D positions); an image's tokens keep the text position in the
temporal row and get their own row and column in the other two, so neighbours in the picture are
neighbours in position. The text after the image continues from the largest id used so far.

:func:`positions` builds a prompt of ``text_before`` text tokens, one image of ``grid``
(rows, cols) merged tokens and ``text_after`` text tokens, and asks
``Qwen2VLModel.get_rope_index`` (a tiny config on PyTorch's meta device: no weights, no memory)
for the ids.
"""

from __future__ import annotations

from .errors import ConfigError

IMAGE_TOKEN_ID = 151655   # <|image_pad|> in Qwen2-VL's vocabulary (config.json image_token_id)
TEXT_TOKEN_ID = 100       # any text token: only the token *types* decide the positions


def tiny_config(merge_size: int = 2):
    """A Qwen2-VL config with the real one's position rules (spatial_merge_size, M-RoPE sections)
    and a few-unit width: get_rope_index reads only the merge size."""
    from transformers import Qwen2VLConfig

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=151936,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=merge_size,
                  temporal_patch_size=2)
    return Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN_ID)


def positions(grid: tuple[int, int] = (3, 4), text_before: int = 4, text_after: int = 3, merge_size: int = 2) -> dict:
    """M-RoPE ids for ``text_before`` text tokens, an image of ``grid`` = (rows, cols) tokens
    (after the 2 x 2 merge; the vision tower sees ``rows * merge`` x ``cols * merge`` patches) and
    ``text_after`` text tokens.

    Returns ``ids`` (a ``(3, seq)`` LongTensor: temporal, height, width rows), ``kinds`` (``"text"``
    or ``"image"`` per token), ``grid_thw`` (what the processor would pass, in patches) and
    ``sequential`` (the 0..seq-1 positions a LLaVA-style model would use).
    """
    import torch
    from transformers import Qwen2VLModel

    rows, cols = (int(v) for v in grid)
    if rows < 1 or cols < 1 or text_before < 0 or text_after < 0:
        raise ConfigError(f"positions needs an image grid of at least 1 x 1 tokens and text lengths >= 0; "
                          f"got grid={grid}, text_before={text_before}, text_after={text_after}.")
    config = tiny_config(merge_size)
    with torch.device("meta"):
        model = Qwen2VLModel(config)   # shapes only: get_rope_index never touches a weight
    kinds = ["text"] * text_before + ["image"] * (rows * cols) + ["text"] * text_after
    input_ids = torch.tensor([[IMAGE_TOKEN_ID if k == "image" else TEXT_TOKEN_ID for k in kinds]])
    mm_types = torch.tensor([[1 if k == "image" else 0 for k in kinds]])
    grid_thw = torch.tensor([[1, rows * merge_size, cols * merge_size]])
    ids, _ = model.get_rope_index(input_ids, mm_types, image_grid_thw=grid_thw)
    return {"ids": ids[:, 0], "kinds": kinds, "grid_thw": grid_thw[0].tolist(),
            "sequential": torch.arange(len(kinds))}


def table(result: dict) -> str:
    """The ids as text: one column per token, the rows temporal / height / width."""
    ids, kinds = result["ids"].tolist(), result["kinds"]
    head = "token     " + " ".join(f"{'I' if k == 'image' else 'T':>3}" for k in kinds)
    lines = [head] + [f"{name:9} " + " ".join(f"{v:3d}" for v in row)
                      for name, row in zip(("temporal", "height", "width"), ids)]
    return "\n".join(lines)
