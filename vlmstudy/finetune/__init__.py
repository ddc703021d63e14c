"""LoRA / QLoRA fine-tuning of the course's models on the three data formats.

=================  ==========================================================================
config             the YAML config: keys, defaults, validation (:func:`load_config`)
collate            prompts per family, label masking (prompt and image tokens -> -100), padding
model              loading the base (QLoRA on CUDA), choosing LoRA layers, save / load / merge
checkpoint         atomic checkpoints, random states
train              the loop: :func:`finetune`, :func:`resume`, :func:`evaluate`
callbacks          progress lines, the live loss curve in notebooks
concept            the notebook's "teach a new colour" dataset and its accuracy
commands           ``vlmstudy finetune`` and ``vlmstudy data``
=================  ==========================================================================

::

    from vlmstudy import finetune
    result = finetune.finetune("configs/llava_vqa.yaml")
    merged_dir = finetune.merge_adapter(result.output_dir, "runs/merged")
    model, processor = vlmstudy.load(merged_dir)
"""

from __future__ import annotations

# Loaded on first use (PEP 562): ``vlmstudy finetune --help`` and ``vlmstudy.finetune.config``
# do not pay for torch, transformers and peft (tests/test_lazy_imports.py).
_LAZY = {
    **dict.fromkeys(("LiveLossPlot", "PrintProgress", "loss_figure"), "callbacks"),
    **dict.fromkeys(("CAPTION_PROMPTS", "Collator", "EncodedDataset", "encode", "prompt_text"), "collate"),
    **dict.fromkeys(("FinetuneConfig", "all_keys", "load_config"), "config"),
    **dict.fromkeys(("apply_lora", "language_model_linears", "load_adapter", "load_base", "lora_config",
                     "merge_adapter", "parameter_counts", "resolve_target_modules", "save_adapter"), "model"),
    **dict.fromkeys(("FinetuneResult", "Trainer", "evaluate", "finetune", "prepare_examples", "resume"), "train"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "FinetuneConfig", "load_config", "all_keys",
    "encode", "prompt_text", "Collator", "EncodedDataset", "CAPTION_PROMPTS",
    "load_base", "apply_lora", "lora_config", "resolve_target_modules", "language_model_linears",
    "parameter_counts", "save_adapter", "load_adapter", "merge_adapter",
    "finetune", "resume", "evaluate", "prepare_examples", "Trainer", "FinetuneResult",
    "LiveLossPlot", "PrintProgress", "loss_figure",
]
