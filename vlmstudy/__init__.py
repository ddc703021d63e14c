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

# Everything else loads on first use (PEP 562), so that ``import vlmstudy`` and
# ``vlmstudy --version`` / ``--help`` do not pay for torch, transformers and matplotlib
# (tests/test_lazy_imports.py). ``vlmstudy.load`` imports ``vlmstudy.zoo`` the first time it is
# read, then it is an ordinary module attribute. Name -> (module, attribute; None: the module).
_LAZY: dict[str, tuple[str, str | None]] = {
    # settings
    **{n: (".settings", n) for n in ("get_mode", "set_mode", "get_device", "set_device", "seed_everything")},
    # models
    **{n: (".zoo", n) for n in ("load", "get_card", "model_names", "CARDS")},
    "zoo_table": (".zoo.table", "zoo_table"),
    # modules the notebooks use by name (09: attention; 10: quantize, compare; 11: data, finetune;
    # 05-08: generation, tasks; every notebook: evaluation, photos)
    **{n: ("." + n, None) for n in (
        "shapes", "contrastive", "plotting", "retrieval", "diagrams", "quantize", "compare", "attention",
        "data", "finetune", "generation", "tasks", "evaluation", "photos",
        "image_tokens", "mrope",  # 14: image-token arithmetic, Qwen2-VL's M-RoPE positions
    )},
    # real photographs
    "real_photos": (".photos", "real_photos"), "real_photo": (".photos", "real_photo"),
    # tasks
    **{n: (".tasks", n) for n in ("caption", "answer", "ChatSession")},
    # inference: describe / ask / generate / chat (the CLI and server use it); MultiModalModel is the
    # fine-tuning guide's name for it (notebook 11)
    "Inference": (".inference", "Inference"),
    "MultiModalModel": (".multimodal", "MultiModalModel"),
    "create_sample_multimodal_dataset": (".data", "create_sample_multimodal_dataset"),
    # data quality for instruction tuning (notebook 12): corrupted copies, the checker, the runs
    "data_quality": (".finetune.data_quality", None),
    **{n: (".finetune.data_quality", n) for n in ("mislabel", "duplicate", "check_dataset", "compare_variants")},
    # plotting
    "show_images": (".plotting", "show_images"), "set_figsize": (".plotting", "set_figsize"),
    "show_scenes": (".shapes", "show_scenes"),
    # images
    "load_image": (".images", "load_image"), "load_images": (".images", "load_images"),
    # environment check
    "environment_report": (".doctor", "environment_report"),
    "print_environment_report": (".doctor", "print_environment_report"),
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name, __name__)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value  # later reads skip this function
        return value
    if not name.startswith("_"):
        # any other submodule (vlmstudy.settings, vlmstudy.zoo ...) as ``import vlmstudy`` gave it before
        import importlib.util

        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "image_tokens", "mrope",
    # real photographs
    "real_photos", "real_photo",
    # tasks
    "caption", "answer", "ChatSession",
    # inference (the CLI and HTTP server are layers on it)
    "Inference", "MultiModalModel", "create_sample_multimodal_dataset",
    # data quality
    "data_quality", "mislabel", "duplicate", "check_dataset", "compare_variants",
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
