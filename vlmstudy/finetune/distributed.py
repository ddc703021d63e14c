"""Training through Hugging Face accelerate: one process, or data-parallel across N processes.

::

    vlmstudy finetune --config configs/multimodal_config.yaml                       # one process
    accelerate launch --multi_gpu --num_processes 2 -m vlmstudy finetune --config ...   # 2 GPUs (DDP);
        # on a machine without GPUs the same line runs 2 CPU processes over gloo
    accelerate launch --config_file configs/accelerate/ddp.yaml -m vlmstudy finetune --config ...

configs/accelerate/ holds DDP, FSDP and DeepSpeed ZeRO-3 launch configs, with which to pick for
7B / 13B in their comments. The loop trains with DDP only so far: an FSDP or DeepSpeed launch
stops at once with a one-line error (:func:`refuse_sharded_launch` says why).

(``accelerate launch --cpu --num_processes 2`` starts *one* process in accelerate 1.x:
``launch_command`` hands ``--cpu`` to ``simple_launcher``, one subprocess, or ``mpirun`` when
``--mpirun_hostfile`` is given. On a CPU use ``--multi_gpu``: ``multi_gpu_launcher`` runs
torchrun, which starts N workers with ``LOCAL_RANK`` / ``WORLD_SIZE`` set; in each,
``AcceleratorState._prepare_backend`` sees no CUDA and, because :func:`make_accelerator` passes
``cpu=True`` then, picks ``MULTI_CPU`` over gloo (MPI only if torch was built with it). Without
``cpu=True`` it would pick ``DistributedType.NO``: N independent one-process runs.)

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

    refuse_sharded_launch()
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


#: The environment variable ``accelerate launch`` sets for each sharding engine of a launch config.
SHARDED_ENGINES = {"ACCELERATE_USE_FSDP": ("FSDP", "configs/accelerate/fsdp.yaml"),
                   "ACCELERATE_USE_DEEPSPEED": ("DeepSpeed", "configs/accelerate/deepspeed_zero3.yaml")}


def refuse_sharded_launch(environ=None) -> None:
    """A one-line :class:`ConfigError` when ``accelerate launch`` started this run with FSDP or
    DeepSpeed. The loop prepares the optimizer and the model one by one
    (``Accelerator.prepare_optimizer`` / ``prepare_model``): DDP works that way, but FSDP2 refuses
    it and DeepSpeed builds its engine only in ``Accelerator.prepare(model, optimizer)``, so such a
    run would fail later or train unsharded. The config files ship (valid, parsed by the tests)
    for when the loop supports them."""
    environ = os.environ if environ is None else environ
    for variable, (engine, path) in SHARDED_ENGINES.items():
        if str(environ.get(variable, "")).lower() == "true":
            from ..errors import ConfigError

            raise ConfigError(f"accelerate launched this run with {engine} ({path}), which vlmstudy finetune does not "
                              "support yet (it trains with DDP only): launch with configs/accelerate/ddp.yaml, and for "
                              "a model whose weights do not fit one GPU (LLaVA-1.5-13B in bf16) use QLoRA.")


def shard(indices: list[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s contiguous slice of one global batch (the last ones may be shorter or empty)."""
    per = -(-len(indices) // world)
    return indices[rank * per:(rank + 1) * per]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of optimizer step ``step`` on process ``rank`` in a multi-process run: the
    random numbers (dropout) are then a function of the step, so a resumed run draws what an
    uninterrupted one would without storing every process's random state."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63)
