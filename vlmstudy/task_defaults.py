"""Which zoo model each task of :class:`vlmstudy.inference.Inference` uses when none is named.

A module of its own, importing nothing: the CLI's ``--help`` shows these names without loading
torch (tests/test_lazy_imports.py). :mod:`vlmstudy.inference` re-exports both names.
"""

from __future__ import annotations

#: The model each task uses when ``Inference(model=None)``: tiny stand-ins in tiny mode, the real
#: checkpoints in hub mode.
DEFAULT_MODELS: dict[str, str] = {"describe": "blip-caption", "ask": "blip-vqa", "generate": "llava", "chat": "llava"}
#: The tasks, in that order.
TASKS: tuple[str, ...] = tuple(DEFAULT_MODELS)
