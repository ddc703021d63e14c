"""``load()``: one entry point for every model in the course, tiny or real.

In ``tiny`` mode the stand-in under ``assets/models/<stand_in>`` is loaded; in ``hub`` mode the
real checkpoint. Both go through the same ``from_pretrained`` calls, so everything downstream
(processors, ``generate``, chat templates) is the same code.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoProcessor

from .. import settings
from ..errors import ModelUnavailableError, UnknownModelError
from . import hub_guard
from .registry import ModelCard, get_card


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


def resolve_source(name: str, mode: str | None = None) -> tuple[str, ModelCard | None]:
    """Where ``name`` loads from: ``(path_or_hub_id, card)``.

    A directory on disk (for example a fine-tuned or merged model) is used as it is, with no card.
    """
    folder = Path(str(name)).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if config_file.is_file():
            _check_config_json(config_file)
            return str(folder), None
        if not _is_card_name(name):
            raise ModelUnavailableError(
                f"The folder {str(folder)!r} holds no config.json, so it is not a saved model. Point at the "
                f"folder that `save_pretrained` wrote (it has config.json and *.safetensors), or use a model "
                f"name from `vlmstudy.zoo_table()`."
            )
    card = get_card(name)
    mode = settings.check_mode(mode) if mode else settings.get_mode()
    if mode == "hub":
        return card.hub_id, card
    if not card.has_stand_in:
        raise ModelUnavailableError(
            f"{card.hub_id} has no tiny stand-in (its card says 'no stand-in'), so it loads in hub mode only: "
            f"vlmstudy.set_mode('hub') or VLMSTUDY_MODE=hub. In tiny mode use a syllabus model "
            f"(vlmstudy.zoo_table() lists them).")
    if not card.is_present():
        raise ModelUnavailableError(
            f"The tiny stand-in for {card.name!r} is missing from {card.stand_in_dir}. "
            f"Restore it with `git checkout -- assets/models/{card.stand_in}` or retrain it with "
            f"`vlmstudy zoo train {card.name}`."
        )
    return str(card.stand_in_dir), card


def _is_card_name(name: str) -> bool:
    try:
        get_card(name)
    except UnknownModelError:
        return False
    return True


def _check_config_json(config_file: Path) -> None:
    """Refuse a cut or garbled config.json with one line naming it (transformers raises JSONDecodeError)."""
    import json

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelUnavailableError(
            f"{str(config_file)!r} is not valid JSON ({str(err).splitlines()[0][:120]}): the file is cut or "
            f"damaged. Save the model again with `save_pretrained` or restore the folder from its source."
        ) from None
    if not isinstance(config, dict):
        raise ModelUnavailableError(
            f"{str(config_file)!r} holds a JSON {type(config).__name__}, not an object: it is not a model "
            f"config. Save the model again with `save_pretrained`."
        )


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
    :func:`vlmstudy.quantize.load_quantized`).
    """
    if quantization is not None:
        from ..quantize import load_quantized

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


def load_processor(name: str, mode: str | None = None):
    """Only the processor of a model (tokenizer, image processor, chat template), no weights:
    enough to count image tokens or render a prompt without a second large model in memory.
    ``name`` and ``mode`` as for :func:`load`; the local Hub cache is tried first."""
    source, card = resolve_source(name, mode)
    on_hub = card is not None and source == card.hub_id
    try:
        return AutoProcessor.from_pretrained(source, trust_remote_code=False, local_files_only=on_hub)
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


def _load_from(source: str, card: ModelCard | None, device: str, dtype: torch.dtype, model_kwargs: dict):
    processor_kwargs = {k: model_kwargs[k] for k in ("trust_remote_code", "local_files_only") if k in model_kwargs}
    processor = AutoProcessor.from_pretrained(source, **processor_kwargs)
    model = _model_class(source, card, processor_kwargs).from_pretrained(source, dtype=dtype, **model_kwargs)
    if "device_map" not in model_kwargs and "quantization_config" not in model_kwargs:
        model = model.to(device)
    model.eval()
    return model, processor
