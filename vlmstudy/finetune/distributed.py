"""Training through Hugging Face accelerate: one process, or data-parallel across N processes.

::

    vlmstudy finetune --config configs/multimodal_config.yaml                       # one process
    accelerate launch --multi_gpu --num_processes 2 -m vlmstudy finetune --config ...   # 2 GPUs (DDP);
        # on a machine without GPUs the same line runs 2 CPU processes over gloo
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m vlmstudy finetune --config ...

(``accelerate launch --cpu --num_processes 2`` starts *one* process in accelerate 1.x: several CPU
processes need ``mpirun`` there, so on a CPU use ``--multi_gpu``, which goes through torchrun and
picks the gloo backend when no GPU is present.)

How the loop splits the work (:class:`vlmstudy.finetune.train.Trainer`): ``training.batch_size``
is the batch **per process**; the data order draws one global batch of ``batch_size x N`` examples
per micro-step (the very batch a one-process run with ``batch_size x N`` draws) and process ``r``
takes the ``r``-th contiguous slice (:func:`shard`). Each process's mean loss is weighted by its
share of the global batch's answer tokens, so after DDP averages the gradients the update is the
one-process update on the whole batch (same loss curve, up to float rounding). Only the main
process writes checkpoints, history, the adapter and the final model; the others wait for it.
"""

from __future__ import annotations

import os
import warnings

import torch


def world_size_from_env() -> int:
    """How many processes the launcher (accelerate / torchrun) started; 1 when none."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def make_accelerator(mixed_precision: str = "no", device: str | None = None):
    """``(accelerator, note)``: an ``accelerate.Accelerator`` for this run.

    mixed_precision: ``no``, ``bf16`` or ``fp16``; fp16 needs a CUDA GPU, so without one the run
    trains in fp32 and ``note`` says so (also warned). In a single process the shared accelerate
    state is reset first, so a notebook may run several fine-tunes with different settings.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    note = ""
    distributed = world_size_from_env() > 1
    on_cpu = (device is not None and torch.device(device).type == "cpu") or not torch.cuda.is_available()
    if mixed_precision == "fp16" and on_cpu:
        note = ("training.mixed_precision fp16 needs a CUDA GPU (fp16 gradients need its loss scaling kernels); "
                "training in fp32 here. bf16 runs on a CPU.")
        warnings.warn(note, stacklevel=3)
        mixed_precision = "no"
    if not distributed:
        AcceleratorState._reset_state(reset_partial_state=True)
    # cpu=True on a machine without CUDA: only then does accelerate see the launcher's processes
    # (MULTI_CPU over gloo) instead of treating each one as a lone process
    return Accelerator(mixed_precision=mixed_precision, cpu=on_cpu), note


def shard(indices: list[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s contiguous slice of one global batch (the last ones may be shorter or empty)."""
    per = -(-len(indices) // world)
    return indices[rank * per:(rank + 1) * per]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of optimizer step ``step`` on process ``rank`` in a multi-process run: the
    random numbers (dropout) are then a function of the step, so a resumed run draws what an
    uninterrupted one would without storing every process's random state."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63)
