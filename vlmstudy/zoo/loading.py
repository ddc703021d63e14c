"""``load()``: one entry point for every model in the course, tiny or real.

In ``tiny`` mode the stand-in under ``assets/models/<stand_in>`` is loaded; in ``hub`` mode the
real checkpoint. Both go through the same ``from_pretrained`` calls, so everything downstream
(processors, ``generate``, chat templates) is the same code.
"""

from __future__ import annotations

import torch
import transformers
from transformers import AutoConfig, AutoProcessor

from .. import quantize, settings
from ..errors import ConfigError, ModelUnavailableError, VlmStudyError
from . import hub_guard
from .registry import ModelCard
from .sources import resolve_source


def _hub_error(card_or_id: str, err: Exception) -> ModelUnavailableError:
    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return ModelUnavailableError(
        f"Could not load {card_or_id!r} from the Hugging Face Hub: no network and no local copy "
        f"({type(err).__name__}: {reason}). Three ways out: (1) go online once so the weights are cached "
        f"(then HF_HUB_OFFLINE=1 works), (2) point HF_HOME at a folder that already holds the cache, "
        f"or (3) use the shipped tiny models: vlmstudy.set_mode('tiny') or VLMSTUDY_MODE=tiny."
    )


_PIP_NAMES = {"sentencepiece": "sentencepiece", "protobuf": "protobuf", "google": "protobuf",
              "torchvision": "torchvision", "bitsandbytes": "bitsandbytes", "accelerate": "accelerate"}


def _missing_package_error(source: str, err: ImportError) -> ModelUnavailableError:
    """One line for a load that needs a package that is not installed (SigLIP's SentencePiece
    tokenizer needs ``sentencepiece`` and ``protobuf``) instead of transformers' multi-line ImportError."""
    text = f"{getattr(err, 'name', '') or ''} {err}".lower()
    missing = sorted({pip for key, pip in _PIP_NAMES.items() if key in text}) or [getattr(err, "name", None) or "?"]
    return ModelUnavailableError(
        f"Loading {source!r} needs the Python package(s) {', '.join(missing)}, which are not installed. "
        f"Install them with `pip install {' '.join(missing)}` (they are in the course's dependencies: "
        f"`pip install -e .` brings them), then restart the kernel."
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    errors: list[type[BaseException]] = [OSError, HfHubHTTPError, LocalEntryNotFoundError, HFValidationError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover - httpx comes with huggingface_hub
        pass
    return tuple(errors)


def hub_reachable(timeout: float | None = None) -> bool:
    """True when the Hub endpoint answers an HTTP request within ``timeout`` seconds (default
    ``$VLMSTUDY_HUB_TIMEOUT``, 30): :func:`hub_guard.probe_hub`. An HTTP answer, not a TCP
    connect: a stalled proxy accepts connections and never answers."""
    if hub_guard.hub_offline():
        return False
    try:
        hub_guard.probe_hub(None, timeout)
        return True
    except hub_guard.HubUnreachable:
        return False


def _model_class(source: str, card: ModelCard | None, config_kwargs: dict):
    if card is not None:
        return getattr(transformers, card.model_class)
    config = AutoConfig.from_pretrained(source, **config_kwargs)
    arch = (config.architectures or [None])[0]
    if arch is None or not hasattr(transformers, arch):
        raise ModelUnavailableError(f"{source!r} has no known architecture in its config.json ({arch!r}).")
    return getattr(transformers, arch)


def load(
    name: str,
    mode: str | None = None,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    quantization: str | None = None,
    **model_kwargs,
):
    """Load a model and its processor: ``model, processor = load("openai/clip-vit-base-patch32")``.

    name: short name ("clip"), Hub id, stand-in name ("tiny-clip") or a local model directory.
    mode: "tiny" or "hub" (default: :func:`vlmstudy.get_mode`). device / dtype: defaults from
    :mod:`vlmstudy.settings` (fp16 on CUDA, fp32 elsewhere). Extra keyword arguments go to
    ``from_pretrained``. Weights load from safetensors only and remote code is never run unless
    ``trust_remote_code=True`` is passed on purpose.
    quantization: a precision ("fp16", "bf16", "int8", "nf4", "nf4-dq" or "dynamic-int8"): the
    ``from_pretrained`` arguments come from :func:`vlmstudy.quantize.preset` (see
    :func:`load_quantized`).
    """
    if quantization is not None:
        return load_quantized(name, quantization, mode=mode, device=device, dtype=dtype, **model_kwargs)
    source, card = resolve_source(name, mode)
    device = device or settings.get_device()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    on_hub = card is not None and source == card.hub_id
    if on_hub:  # estimated before anything is fetched: what cannot fit is refused, bf16 where fp32 would not fit
        config = hub_guard.checkpoint_config(source, card, model_kwargs.get("cache_dir"))
        dtype = hub_guard.check_memory(source, config, device, dtype, model_kwargs.get("quantization_config"),
                                       short_name=card.name)
    dtype = dtype or settings.default_dtype(device)
    model_kwargs.setdefault("trust_remote_code", False)
    model_kwargs.setdefault("use_safetensors", True)
    if on_hub:
        # every Hub request gets a deadline, and the endpoint must answer one within it; that probe
        # runs while the local cache is tried (no network needed when the weights were fetched before)
        probe = hub_guard.start_hub_probe(source)
        try:
            return _load_from(source, card, device, dtype, dict(model_kwargs, local_files_only=True))
        except ImportError as err:
            raise _missing_package_error(source, err) from None
        except _hub_errors() as err:
            if probe is None:  # offline
                raise _hub_error(source, err) from None
            try:
                probe.wait()
            except hub_guard.HubUnreachable as unreachable:
                raise _hub_error(source, unreachable) from None
    try:
        return _load_from(source, card, device, dtype, model_kwargs)
    except ImportError as err:
        raise _missing_package_error(source, err) from None
    except _hub_errors() as err:
        if on_hub:
            raise _hub_error(source, err) from None
        raise ModelUnavailableError(f"Could not load the model in {source!r}: {err}") from None


def load_quantized(name: str, precision: str, mode: str | None = None, device: str | None = None,
                   dtype: torch.dtype | str | None = None, **model_kwargs):
    """``(model, processor)`` at ``precision``: what ``vlmstudy.load(name, quantization=...)`` calls;
    the ``from_pretrained`` arguments come from :func:`vlmstudy.quantize.preset`.

    bitsandbytes precisions fall back to :func:`vlmstudy.quantize.dynamic_int8` on the CPU, with a printed note,
    when bitsandbytes is missing or fails on this platform; ``model.vlmstudy_precision`` says what
    was loaded (``"nf4"``, ``"dynamic-int8 (fallback for nf4: ...)"``).
    """
    precision = quantize.check_precision(precision)
    device = device or settings.get_device()
    if precision == quantize.DYNAMIC_INT8:
        model, processor = load(name, mode=mode, device="cpu", dtype=torch.float32, **model_kwargs)
        return quantize.dynamic_int8(model), processor
    kwargs = quantize.preset(precision, device)
    if dtype is not None:  # an explicit dtype wins: unquantized layers (and 4-bit compute) use it
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        kwargs["dtype"] = dtype
        if precision in ("nf4", "nf4-dq"):
            kwargs["quantization_config"].bnb_4bit_compute_dtype = dtype
    kwargs.update(model_kwargs)
    dtype = kwargs.pop("dtype")
    reason = None
    if precision in quantize.BNB_PRECISIONS:
        ok, message = quantize.bitsandbytes_status()
        if not ok:
            reason = message
    if reason is None:
        try:
            with quantize._quiet_stderr_logging(), quantize._quiet_transformers():
                model, processor = load(name, mode=mode, device=device, dtype=dtype, **kwargs)
            if precision == "int8":
                quantize._silence_int8_cast_note()
            model.vlmstudy_precision = precision
            return model, processor
        except VlmStudyError:  # a missing model or a bad setting: not bitsandbytes' fault
            raise
        except (ImportError, RuntimeError, NotImplementedError, ValueError, OSError) as err:
            if precision not in quantize.BNB_PRECISIONS:
                raise
            reason = f"bitsandbytes failed on this platform ({type(err).__name__}: {str(err).strip()[:160]})"
    if quantize._device_type(device) != "cpu" or quantize._dynamic_int8_engine() is None:
        raise ConfigError(f"cannot load {name!r} at {precision}: {reason}. Install a bitsandbytes build for this "
                          f"platform (pip install -U bitsandbytes) or use fp16 / bf16.")
    print(f"NOTE: {reason}; loading {name!r} with PyTorch dynamic int8 instead (labelled 'dynamic-int8').")
    model, processor = load(name, mode=mode, device="cpu", dtype=torch.float32)
    model = quantize.dynamic_int8(model)
    model.vlmstudy_precision = f"{quantize.DYNAMIC_INT8} (fallback for {precision}: {reason})"
    return model, processor


def load_processor(name: str, mode: str | None = None):
    """Only the processor of a model (tokenizer, image processor, chat template), no weights:
    enough to count image tokens or render a prompt without a second large model in memory.
    ``name`` and ``mode`` as for :func:`load`; the local Hub cache is tried first."""
    source, card = resolve_source(name, mode)
    on_hub = card is not None and source == card.hub_id
    try:
        return _auto_processor(source, card, trust_remote_code=False, local_files_only=on_hub)
    except ImportError as err:
        raise _missing_package_error(source, err) from None
    except _hub_errors() as err:
        if not on_hub:
            raise ModelUnavailableError(f"Could not load the processor in {source!r}: {err}") from None
        if not hub_reachable():
            raise _hub_error(source, err) from None
    try:
        return AutoProcessor.from_pretrained(source, trust_remote_code=False)
    except _hub_errors() as err:
        raise _hub_error(source, err) from None


def _auto_processor(source: str, card: ModelCard | None, **kwargs):
    """``AutoProcessor.from_pretrained``; for Qwen2-VL without torchvision (its processor holds a
    video processor that needs it, even for images) the same processor with no video part
    (:func:`vlmstudy.zoo.build_qwen2_vl.load_image_only_processor`)."""
    try:
        return AutoProcessor.from_pretrained(source, **kwargs)
    except ImportError as err:
        if "torchvision" not in str(err).lower() or (card is not None and card.processor_class != "Qwen2VLProcessor"):
            raise
        from .build_qwen2_vl import load_image_only_processor

        return load_image_only_processor(source, **kwargs)


def _load_from(source: str, card: ModelCard | None, device: str, dtype: torch.dtype, model_kwargs: dict):
    if card is None:
        from ..assemble.saving import is_assembled, load_vlm

        if is_assembled(source):  # a VLM assembled from parts with a pixel-shuffle projector (notebook 13)
            return load_vlm(source, device=device, dtype=dtype, **model_kwargs)
    processor_kwargs = {k: model_kwargs[k] for k in ("trust_remote_code", "local_files_only") if k in model_kwargs}
    processor = _auto_processor(source, card, **processor_kwargs)
    model = _model_class(source, card, processor_kwargs).from_pretrained(source, dtype=dtype, **model_kwargs)
    if "device_map" not in model_kwargs and "quantization_config" not in model_kwargs:
        model = model.to(device)
    model.eval()
    return model, processor
