"""Hub mode's two guards: a deadline on every call to the Hub, and memory checked before a load.

**Network.** huggingface_hub 2.x sends every request through one shared ``httpx2`` client built
with ``timeout=None``, and some calls pass no timeout of their own (``model_info``, which
transformers' ``resolve_revision`` makes before each ``from_pretrained``). An endpoint that
accepts the connection and never answers (a stalled proxy) then blocks a load forever: a TCP
connect succeeds, so a connect probe does not see it. Two measures, one deadline
(``$VLMSTUDY_HUB_TIMEOUT`` seconds, default 30):

* :class:`HubProbe`: before anything is fetched, one ``HEAD`` request for the model's
  ``config.json`` (what ``hf_hub_download`` asks first) must be answered, with any HTTP status,
  within the deadline, measured on the wall clock (DNS and TLS included) in a worker thread
  that starts with the load, so the wait overlaps the attempt to load from the local cache.
  Otherwise :class:`HubUnreachable` (an ``OSError``), which :func:`vlmstudy.load` turns into its
  one-line :class:`~vlmstudy.errors.ModelUnavailableError`.
* :func:`bound_hub_calls`: a request hook on that shared client caps each phase's timeout
  (connect, write, pool, and read = the wait for the *next* bytes) at the deadline, so a stall
  after the probe passed fails too. A download that keeps moving is never cut off: a 14 GB
  checkpoint takes minutes, so the cap bounds waiting, not transferring. Timeouts shorter than
  the deadline (huggingface_hub's own 10 s ones) are left as they are.

Files served through Xet (``hf-xet``, a Rust client) do not go through ``httpx2``; its own
timeouts apply there.

**Memory.** :func:`check_memory` estimates the checkpoint's footprint with
:func:`vlmstudy.quantize.estimate` (the architecture built on the ``meta`` device: nothing
downloaded), prints it for a large model, picks bf16 on a CPU when fp32 would not fit in the free
RAM, and refuses with :class:`~vlmstudy.errors.InsufficientMemoryError` when even that does not
fit. The estimate is of what is actually loaded: the ``config.json`` in the local cache when there
is one, otherwise the real architecture from the zoo card.

The network guard is :mod:`vlmstudy.zoo.hub_network` (it needs no estimate, so
:mod:`vlmstudy.quantize` can fetch a config through it); its names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import settings
from ..errors import InsufficientMemoryError

# the network guard; its names are this module's too (vlmstudy.zoo.hub_guard.probe_hub, ...)
from .hub_network import (  # noqa: F401
    DEFAULT_HUB_TIMEOUT,
    HUB_TIMEOUT_ENV,
    HubProbe,
    HubUnreachable,
    _cap_timeouts,
    bound_hub_calls,
    fetch_config,
    hub_offline,
    hub_timeout,
    probe_hub,
    start_hub_probe,
)

MEMORY_CHECK_ENV = "VLMSTUDY_MEMORY_CHECK"
#: A model whose estimated footprint is above this is "large": its size is printed before it
#: loads, and :func:`vlmstudy.tasks.get_model` keeps only one such model in hub mode. 2 GB sits in
#: the gap between the zoo's base-size models (CLIP, SigLIP, BLIP: 0.6-1.4 GB in fp32) and its
#: BLIP-2 / 7 B-class ones (7.5-32 GB).
LARGE_MODEL_BYTES = 2 * 10**9
#: Free memory a load needs, as a multiple of the weights' bytes: activations, the processor,
#: and the loader's own buffers come on top of the weights.
MEMORY_HEADROOM = 1.2

_PRECISION_OF = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


# ----------------------------------------------------------------------------- memory


def free_memory(device: str) -> int | None:
    """Bytes free for a model on ``device``, or None when this platform does not say.

    CUDA: ``torch.cuda.mem_get_info``. CPU and MPS (unified memory): the RAM the system can give
    without swapping (psutil's ``available``, else ``MemAvailable`` in /proc/meminfo), lowered to
    what a container's cgroup limit leaves. Tests replace this function to simulate a small machine.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        index = torch.device(device).index
        return int(torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0])
    free = _available_ram()
    limit = _cgroup_room()
    if limit is not None:
        free = limit if free is None else min(free, limit)
    return free


def _available_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1), or None if unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max" or int(raw) >= 2**60:  # v1 writes a huge number for "no limit"
                return None
            return max(0, int(raw) - int(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def checkpoint_config(hub_id: str, card=None, cache_dir=None):
    """The config of what a hub-mode load of ``hub_id`` reads: the ``config.json`` already in
    the local Hugging Face cache, else the real one rebuilt from the zoo card, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from transformers import AutoConfig

        cached = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir)
        if isinstance(cached, str):
            return AutoConfig.from_pretrained(os.path.dirname(cached))
    except Exception:  # a damaged cached config: the load itself reports it; estimate from the card
        pass
    if card is not None:
        from .registry import real_config

        return real_config(card.name)
    return None


def _precision(dtype: torch.dtype, quantization_config) -> str | None:
    if quantization_config is not None:
        if getattr(quantization_config, "load_in_8bit", False):
            return "int8"
        if getattr(quantization_config, "load_in_4bit", False):
            return "nf4-dq" if getattr(quantization_config, "bnb_4bit_use_double_quant", False) else "nf4"
        return None  # another quantization method: no estimate
    return _PRECISION_OF.get(dtype)


def estimated_bytes(config, dtype: torch.dtype, quantization_config=None) -> int | None:
    """:func:`vlmstudy.quantize.estimate` of ``config`` loaded at ``dtype`` (None if unknown)."""
    precision = _precision(dtype, quantization_config)
    if config is None or precision is None:
        return None
    from ..quantize import estimate

    try:
        return estimate(config, precision, dtype=dtype)
    except Exception:  # an architecture the estimator cannot build: no check rather than a crash
        return None


def model_bytes(name: str) -> int | None:
    """Estimated bytes of ``name`` (zoo name, Hub id or local folder) as a hub-mode load would
    hold it, at the device's default dtype; None when it cannot be estimated.
    :func:`vlmstudy.tasks.get_model` uses it to tell large models from small ones."""
    from ..errors import VlmStudyError
    from .sources import resolve_source

    try:
        source, card = resolve_source(name, "hub")
    except VlmStudyError:
        return None
    if card is None:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source)
        except Exception:
            return None
    else:
        config = checkpoint_config(source, card)
    return estimated_bytes(config, settings.default_dtype())


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_memory(hub_id: str, config, device: str, dtype: torch.dtype | None = None,
                 quantization_config=None, *, short_name: str | None = None) -> torch.dtype:
    """The dtype to load ``hub_id`` at on ``device``, once its estimate fits in free memory.

    dtype: the caller's explicit choice (kept, and refused if it does not fit), or None for the
    device's default (:func:`vlmstudy.settings.default_dtype`), which on a CPU becomes bf16
    (:func:`vlmstudy.settings.half_dtype`) when fp32 would not fit. quantization_config: a
    bitsandbytes config; the estimate is then at int8 / nf4. A large model's estimate is printed
    as one line before the load. Raises :class:`~vlmstudy.errors.InsufficientMemoryError`
    naming the estimate, the free memory and the 4-bit option. ``$VLMSTUDY_MEMORY_CHECK=0``
    turns the refusal off (the line is still printed).
    """
    default = settings.default_dtype(device)
    candidates = [dtype or default]
    half = settings.half_dtype(device)
    if dtype is None and quantization_config is None and half != default:
        candidates.append(half)
    estimates = [(d, estimated_bytes(config, d, quantization_config)) for d in candidates]
    if estimates[0][1] is None:
        return candidates[0]
    free = free_memory(device)
    enforce = os.environ.get(MEMORY_CHECK_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    chosen = None
    for d, size in estimates:
        if free is None or not enforce or size * MEMORY_HEADROOM <= free:
            chosen = (d, size)
            break
    where = "GPU memory" if torch.device(device).type == "cuda" else "RAM"
    if chosen is None:
        sizes = " / ".join(f"~{_gb(s)} in {_dtype_name(d)}" for d, s in estimates)
        nf4 = estimated_bytes(config, default, _Nf4())  # what load(..., quantization='nf4') uses
        name = short_name or hub_id
        way = (f"load it in 4 bits: vlmstudy.load({name!r}, quantization='nf4') (~{_gb(nf4)}), "
               if nf4 is not None and quantization_config is None else "")
        raise InsufficientMemoryError(
            f"{hub_id} needs {sizes} (+{MEMORY_HEADROOM - 1:.0%} to run), but only {_gb(free)} of {where} is free "
            f"on {device}. Ways out: {way}close other programs or notebooks (vlmstudy.tasks.clear_cache() frees the "
            f"models the course cached), or use the tiny stand-in: vlmstudy.set_mode('tiny'). "
            f"{MEMORY_CHECK_ENV}=0 skips this check.")
    d, size = chosen
    if size > LARGE_MODEL_BYTES:
        what = "4-bit" if _precision(d, quantization_config) in ("nf4", "nf4-dq") else (
            "8-bit" if quantization_config is not None else _dtype_name(d))
        line = f"loading {hub_id}: ~{_gb(size)} in {what}"
        if d != candidates[0]:
            line += f" ({_dtype_name(candidates[0])} would need ~{_gb(estimates[0][1])}"
            line += f", {_gb(free)} of {where} free)" if free is not None else ")"
        elif free is not None:
            line += f" ({_gb(free)} of {where} free)"
        print(line, flush=True)
    return d


class _Nf4:
    """Stands in for ``BitsAndBytesConfig(load_in_4bit=True)`` when only the estimate is wanted."""

    load_in_4bit = True
    load_in_8bit = False
    bnb_4bit_use_double_quant = False
