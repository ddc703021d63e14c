"""The fine-tuning guide's Python API, as it writes it: a thin name over :class:`vlmstudy.Inference`.

::

    from vlmstudy import MultiModalModel
    model = MultiModalModel(model_name="outputs/llava_finetuned/final_model", model_type="llava")
    model.generate_from_image("test.jpg", "Describe this image.", max_new_tokens=256)
    model.describe("test.jpg"); model.ask("test.jpg", "what colour is the circle?")

``model_name`` is anything :func:`vlmstudy.load` takes: a zoo name, a Hub id (its tiny stand-in in
tiny mode: ``llava-hf/llava-1.5-7b-hf`` -> tiny LLaVA) or a saved model folder such as a
fine-tune's ``final_model``. ``model_type`` (the guide's ``llava`` | ``blip2`` | ``instructblip``
...) is checked against the loaded model's family, so a wrong pairing fails at once.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .generation import family

__all__ = ["MultiModalModel"]


class MultiModalModel:
    """One model for describing, asking and custom prompts (every task of one
    :class:`~vlmstudy.inference.Inference`). ``generation``: default decoding settings."""

    def __init__(self, model_name: str = "llava", model_type: str | None = None, **generation):
        from .finetune.config import MODEL_TYPES
        from .inference import Inference

        if model_type is not None and model_type not in MODEL_TYPES:
            raise ConfigError(f"model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}.")
        self.model_name, self.model_type = model_name, model_type
        pair = _load(model_name)
        fam = family(pair[0])
        if model_type is not None and fam not in MODEL_TYPES[model_type]:
            raise ConfigError(f"model_type is {model_type!r} but {model_name!r} is a {fam} model: pass "
                              f"model_type={fam!r} (or leave it out).")
        self.family = fam
        self.inference = Inference(model=pair, **generation)

    def generate_from_image(self, image_path, prompt: str, max_new_tokens: int = 256, **generation) -> str:
        """What the model writes for ``prompt`` about the image (see :meth:`Inference.generate`)."""
        return self.inference.generate(image_path, prompt, max_new_tokens=max_new_tokens, **generation)

    def describe(self, image_path, prompt: str | None = None, **generation) -> str:
        return self.inference.describe(image_path, prompt=prompt, **generation)

    def ask(self, image_path, question: str, **generation) -> str:
        return self.inference.ask(image_path, question, **generation)

    def __repr__(self) -> str:
        return f"MultiModalModel({self.model_name!r}, family={self.family!r})"


def _load(name):
    """``(model, processor)``: a folder is loaded fresh (a fine-tune may have rewritten it), a name
    through the shared cache of :func:`vlmstudy.tasks.get_model`."""
    from . import tasks
    from .zoo import load

    if isinstance(name, (str, Path)) and Path(str(name)).expanduser().is_dir():
        return load(str(name))
    return tasks.get_model(name)
