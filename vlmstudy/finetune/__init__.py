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

from .callbacks import LiveLossPlot, PrintProgress, loss_figure
from .collate import CAPTION_PROMPTS, Collator, EncodedDataset, encode, prompt_text
from .config import FinetuneConfig, all_keys, load_config
from .model import (apply_lora, language_model_linears, load_adapter, load_base, lora_config, merge_adapter,
                    parameter_counts, resolve_target_modules, save_adapter)
from .train import FinetuneResult, Trainer, evaluate, finetune, prepare_examples, resume

__all__ = [
    "FinetuneConfig", "load_config", "all_keys",
    "encode", "prompt_text", "Collator", "EncodedDataset", "CAPTION_PROMPTS",
    "load_base", "apply_lora", "lora_config", "resolve_target_modules", "language_model_linears",
    "parameter_counts", "save_adapter", "load_adapter", "merge_adapter",
    "finetune", "resume", "evaluate", "prepare_examples", "Trainer", "FinetuneResult",
    "LiveLossPlot", "PrintProgress", "loss_figure",
]
