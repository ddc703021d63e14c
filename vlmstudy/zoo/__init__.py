"""The model zoo: registry of model cards, ``load()``, ``zoo_table()``, and the training and
evaluation code that builds the tiny stand-ins shipped under ``assets/models``."""

from .loading import load, resolve_source
from .registry import CARDS, ModelCard, get_card, model_names

__all__ = ["CARDS", "ModelCard", "get_card", "load", "model_names", "resolve_source"]
