"""Save an assembled VLM in Hugging Face format and load it back.

``save_vlm`` is ``save_pretrained`` of model and processor into one folder. Linear and MLP
projectors are LLaVA's own module, so that folder loads with plain
``LlavaForConditionalGeneration.from_pretrained`` as well as with :func:`vlmstudy.load`. A
pixel-shuffle projector is not a transformers module: its ``config.json`` says so
(``"vlmstudy_projector": {"kind": "pixel_shuffle", "scale": r}``) and :func:`load_vlm`
(which :func:`vlmstudy.load` calls for such a folder) builds LLaVA, swaps the projector in and
reads its weights from the same safetensors file. Plain transformers refuses that folder with a
size-mismatch error on ``multi_modal_projector.linear_1`` instead of loading it wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelUnavailableError
from .projectors import PixelShuffleProjector

PROJECTOR_PREFIXES = ("multi_modal_projector.", "model.multi_modal_projector.")


def save_vlm(model, processor, folder: str | Path) -> Path:
    """``save_pretrained`` of ``model`` (safetensors, its own dtype) and ``processor`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def projector_of(folder: str | Path) -> dict | None:
    """The ``vlmstudy_projector`` entry of a saved model's config.json (None for LLaVA's own)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("vlmstudy_projector")
    except ValueError:
        return None


def is_assembled(folder: str | Path) -> bool:
    """True when ``folder`` holds a VLM whose projector transformers cannot build (pixel shuffle)."""
    return projector_of(folder) is not None


def _projector_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                for prefix in PROJECTOR_PREFIXES:
                    if key.startswith(prefix):
                        state[key[len(prefix):]] = f.get_tensor(key)
    return state


def load_vlm(folder: str | Path, device: str = "cpu", dtype: torch.dtype | None = None, **model_kwargs):
    """``(model, processor)`` from a :func:`save_vlm` folder, any projector kind."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    spec = projector_of(folder)
    model_kwargs.setdefault("use_safetensors", True)
    model_kwargs.setdefault("trust_remote_code", False)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=False)
    if spec is None:
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype, **model_kwargs)
        return model.to(device).eval(), processor
    if spec.get("kind") != "pixel_shuffle":
        raise ModelUnavailableError(f"{folder}/config.json names a projector {spec!r} that vlmstudy does not know; "
                                    "save it again with vlmstudy.assemble.save_vlm.")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the mismatch on linear_1 is expected: that layer is replaced below
    try:
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype, ignore_mismatched_sizes=True,
                                                              **model_kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    cfg = model.config
    projector = PixelShuffleProjector(cfg.vision_config.hidden_size, cfg.text_config.hidden_size, int(spec["scale"]),
                                      act=cfg.projector_hidden_act, bias=cfg.multimodal_projector_bias)
    projector.load_state_dict(_projector_state(folder))  # strict: every projector weight must be in the file
    model.model.multi_modal_projector = projector.to(model.dtype)
    return model.to(device).eval(), processor
