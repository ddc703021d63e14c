"""The model zoo: registry of model cards, ``load()``, ``zoo_table()``, and the training and
evaluation code that builds the tiny stand-ins shipped under ``assets/models``."""

from .registry import CARDS, ModelCard, get_card, model_names


def __getattr__(name: str):
    # load() and resolve_source() bring torch and transformers: imported on first use, so the
    # registry (and ``vlmstudy --help``) stays light (tests/test_lazy_imports.py)
    if name in ("load", "resolve_source"):
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CARDS", "ModelCard", "get_card", "load", "model_names", "resolve_source"]
