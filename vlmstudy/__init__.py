"""vlmstudy: the helper package of an interactive course on Vision-Language Models.

Notebooks stay thin and call these functions; every one works on the shipped tiny models
(mode ``tiny``, offline) and on the real Hub checkpoints (mode ``hub``) alike.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    ConfigError,
    DataFormatError,
    ImageError,
    InsufficientMemoryError,
    ModelUnavailableError,
    UnknownModelError,
    VlmStudyError,
)
from .doctor import environment_report, print_environment_report
from .images import load_image, load_images
from .settings import get_device, get_mode, seed_everything, set_device, set_mode
from .zoo import CARDS, get_card, load, model_names
from .zoo.table import zoo_table
from . import contrastive, diagrams, plotting, retrieval, shapes  # noqa: E402  (modules the notebooks use by name)
from . import compare, quantize  # noqa: E402  (precision presets, footprints, estimates; which model for which task: notebook 10)
from . import attention  # noqa: E402  (cross-attention from scratch, attention maps, pointing game: notebook 09)
from . import data, finetune  # noqa: E402  (data formats and converters; LoRA / QLoRA fine-tuning: notebook 11)
from . import generation, tasks  # noqa: E402  (captioning, VQA, chat and decoding settings: notebooks 05-08)
from . import evaluation  # noqa: E402  (answer scoring, quality floors from the model cards: every notebook)
from . import photos  # noqa: E402  (real photographs with captions, labels and questions: every model notebook)
from .photos import real_photo, real_photos
from .tasks import ChatSession, answer, caption
from .inference import Inference  # noqa: E402  (describe / ask / generate / chat; the CLI and server use it)
from .multimodal import MultiModalModel  # noqa: E402  (the fine-tuning guide's name for Inference: notebook 11)
from .data import create_sample_multimodal_dataset  # noqa: E402  (the guide's sample-data function)
from .plotting import show_images, set_figsize
from .shapes import show_scenes

__all__ = [
    "__version__",
    # settings
    "get_mode", "set_mode", "get_device", "set_device", "seed_everything",
    # models
    "load", "get_card", "model_names", "CARDS", "zoo_table",
    # modules
    "shapes", "contrastive", "plotting", "retrieval", "diagrams",
    "quantize", "compare",
    "attention",
    "data", "finetune",
    "generation", "tasks", "evaluation",
    "photos",
    # real photographs
    "real_photos", "real_photo",
    # tasks
    "caption", "answer", "ChatSession",
    # inference (the CLI and HTTP server are layers on it)
    "Inference", "MultiModalModel", "create_sample_multimodal_dataset",
    # plotting
    "show_images", "set_figsize", "show_scenes",
    # images
    "load_image", "load_images",
    # environment check
    "environment_report", "print_environment_report",
    # errors
    "VlmStudyError", "UnknownModelError", "ModelUnavailableError", "InsufficientMemoryError", "ImageError",
    "DataFormatError", "ConfigError",
]
