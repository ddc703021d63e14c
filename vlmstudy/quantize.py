"""Quantization: precision presets, honest footprints and real-architecture size estimates.

Three questions, one function each:

* **How do I load a model at a lower precision?** :func:`preset` turns a precision name into the
  ``from_pretrained`` keyword arguments (``dtype``, ``quantization_config``, ``device_map``);
  ``vlmstudy.load(name, quantization="nf4")`` uses it (:func:`vlmstudy.zoo.loading.load_quantized`:
  where bitsandbytes is missing or fails, it says so and falls back to PyTorch's dynamic int8,
  :func:`dynamic_int8`, labelled as such on the model, ``model.vlmstudy_precision``).
* **How many bytes does this model take?** :func:`footprint` counts parameters, buffers *and* the
  block scales bitsandbytes keeps beside its packed weights (``get_memory_footprint()`` misses
  those; it also misses PyTorch's packed dynamic-int8 weights entirely).
* **How big would the real checkpoint be at precision X?** :func:`estimate` builds the real
  architecture on the ``meta`` device (no memory, no download), decides layer by layer what
  transformers would quantize, and adds up the bytes.

The formula :func:`estimate` uses, per parameter tensor (``n`` numbers):

=============  ==================================================================================
precision      bytes
=============  ==================================================================================
fp32           ``4 n``
fp16 / bf16    ``2 n`` (modules a model lists in ``_keep_in_fp32_modules`` stay ``4 n`` in fp16)
int8           quantized Linear weight: ``n`` (int8) ``+ 4 * out_features`` (one fp32 scale per
               row, ``SCB``); everything else at the unquantized dtype
nf4            quantized Linear weight: ``n / 2`` (two 4-bit codes per byte) ``+ 4 * n / 64``
               (one fp32 absmax per block of 64) ``+ 64`` (the 16-value NF4 code book): 4.5 bits
nf4-dq         double quantization stores the absmax values themselves in 8 bits, with one fp32
               scale per 256 of them: ``n / 2 + n / 64 + 4 * n / (64 * 256) + 1024 + 64 + 4``
               (second-level code book, code book, offset): 4 + 8/64 + 32/16384 = 4.127 bits,
               i.e. 0.373 bits/parameter less than nf4 (the *remaining* overhead is 0.127 bits)
=============  ==================================================================================

"Quantized Linear" means what transformers' bitsandbytes integration replaces: modules whose type
is exactly ``nn.Linear`` (or GPT-2's ``Conv1D``), **except** tied weights, the output embedding
(``lm_head``), the module holding the model's last parameter, ``_keep_in_fp32_modules`` and any
``llm_int8_skip_modules`` (``transformers.quantizers.base.get_keys_to_not_convert``). Embeddings,
norms, convolutions (the patch embedding), position embeddings and biases stay unquantized.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Sequence

import torch

from .errors import ConfigError
from .torch_utils import model_device_dtype

#: The precisions :func:`preset` knows; ``int8`` / ``nf4`` / ``nf4-dq`` need bitsandbytes.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq")
#: PyTorch's own post-training dynamic int8 (CPU only): the fallback when bitsandbytes is unusable.
DYNAMIC_INT8 = "dynamic-int8"
#: Quantized (bitsandbytes) precisions.
BNB_PRECISIONS: tuple[str, ...] = ("int8", "nf4", "nf4-dq")
#: What a CPU can run: the list :func:`vlmstudy.precision_benchmark.compare_precisions` and the CPU benchmark use by default.
CPU_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8", "nf4", "nf4-dq", DYNAMIC_INT8)

_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: Bits per weight of a quantized Linear layer (block size 64, as bitsandbytes uses), for the table.
BITS_PER_WEIGHT = {
    "fp32": 32.0, "fp16": 16.0, "bf16": 16.0,
    "int8": 8.0,  # + 32 / in_features for the per-row scale
    "nf4": 4 + 32 / 64,
    "nf4-dq": 4 + 8 / 64 + 32 / (64 * 256),
    DYNAMIC_INT8: 8.0,
}

NF4_BLOCKSIZE = 64
DQ_BLOCKSIZE = 256


def check_precision(precision: str, allowed: Sequence[str] = PRECISIONS + (DYNAMIC_INT8,)) -> str:
    """Normalise a precision name (``"NF4"`` -> ``"nf4"``, ``"nf4_dq"`` -> ``"nf4-dq"``) or raise
    :class:`ConfigError` naming the allowed ones."""
    value = str(precision).strip().lower().replace("_", "-")
    value = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "nf4dq": "nf4-dq",
             "nf4+dq": "nf4-dq", "4bit": "nf4", "8bit": "int8", "dynamic": DYNAMIC_INT8}.get(value, value)
    if value not in allowed:
        raise ConfigError(f"precision {precision!r} is not known; use one of {', '.join(allowed)}.")
    return value


# --------------------------------------------------------------------------------------------
# presets and loading


def bitsandbytes_status() -> tuple[bool, str]:
    """``(usable, message)``: whether bitsandbytes imports here, and its version or the error."""
    try:
        with warnings.catch_warnings(), _quiet_stderr_logging():
            warnings.simplefilter("ignore")
            import bitsandbytes  # noqa: F401
        return True, f"bitsandbytes {bitsandbytes.__version__}"
    except Exception as err:  # ImportError, or a broken native library (RuntimeError, OSError ...)
        return False, f"bitsandbytes is not usable here ({type(err).__name__}: {str(err).strip()[:160]})"


@contextlib.contextmanager
def _quiet_stderr_logging():
    # bitsandbytes logs an (harmless) warning about optional CPU kernels on import
    import logging

    logger = logging.getLogger("bitsandbytes")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _device_type(device: str | torch.device | None) -> str:
    if device is None:
        from . import settings

        device = settings.get_device()
    return torch.device(device).type


def preset(precision: str, device: str | torch.device | None = None) -> dict:
    """``from_pretrained`` keyword arguments that load a model at ``precision`` on ``device``.

    * ``fp32`` / ``fp16`` / ``bf16``: ``dtype=`` only (plus ``device_map``);
    * ``int8``: ``quantization_config=BitsAndBytesConfig(load_in_8bit=True)`` (LLM.int8());
    * ``nf4`` / ``nf4-dq``: ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
      bnb_4bit_use_double_quant=False / True, bnb_4bit_compute_dtype=...)``.

    The layers that stay unquantized, and the 4-bit layers' compute, use fp16 on a GPU and fp32
    elsewhere (half-precision matmuls are slow or unsupported on many CPUs). ``device_map`` is the
    device itself (``"cpu"``, ``"cuda"``): bitsandbytes quantizes while loading, on that device.
    ``device=None`` means :func:`vlmstudy.get_device`.
    """
    precision = check_precision(precision, PRECISIONS)
    kind = _device_type(device)
    device_map = "cuda" if kind == "cuda" else kind
    if precision in _FLOAT_DTYPES:
        return {"dtype": _FLOAT_DTYPES[precision], "device_map": device_map}
    from transformers import BitsAndBytesConfig

    compute = torch.float16 if kind == "cuda" else torch.float32
    if precision == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=precision == "nf4-dq",
                                    bnb_4bit_compute_dtype=compute)
    return {"dtype": compute, "quantization_config": config, "device_map": device_map}


def preset_summary(precision: str, device: str | torch.device | None = None) -> str:
    """:func:`preset` in one readable line (only the settings that differ between precisions)."""
    kwargs = preset(precision, device)
    parts = [f"dtype={str(kwargs['dtype']).removeprefix('torch.')}", f"device_map={kwargs['device_map']!r}"]
    config = kwargs.get("quantization_config")
    if config is not None:
        if config.load_in_8bit:
            fields = "load_in_8bit=True"
        else:
            fields = (f"load_in_4bit=True, bnb_4bit_quant_type={config.bnb_4bit_quant_type!r}, "
                      f"bnb_4bit_use_double_quant={config.bnb_4bit_use_double_quant}, "
                      f"bnb_4bit_compute_dtype={str(config.bnb_4bit_compute_dtype).removeprefix('torch.')}")
        parts.append(f"quantization_config=BitsAndBytesConfig({fields})")
    return ", ".join(parts)


def _dynamic_int8_engine() -> str | None:
    engines = getattr(torch.backends.quantized, "supported_engines", [])
    for engine in ("x86", "fbgemm", "qnnpack", "onednn"):
        if engine in engines:
            return engine
    return None


def dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """PyTorch's post-training **dynamic** int8 quantization of every ``nn.Linear`` (CPU only).

    Weights become int8 with one scale per tensor; activations are quantized on the fly at each
    call. ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of ``torchao`` but still
    ships with torch 2.13; it needs no extra package, which is why it is the fallback here. Works in
    place on a CPU model and returns it, labelled ``model.vlmstudy_precision = "dynamic-int8"``.
    """
    if model_device_dtype(model)[0].type != "cpu":
        raise ConfigError("dynamic int8 quantization runs on the CPU only: move the model with model.to('cpu') first.")
    engine = _dynamic_int8_engine()
    if engine is None:
        raise ConfigError("this PyTorch build has no quantized CPU engine (torch.backends.quantized), "
                          "so dynamic int8 is unavailable: use fp32 or bf16 instead.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of torch.ao.quantization
        from torch.ao.quantization import quantize_dynamic

        torch.backends.quantized.engine = engine
        model = quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    model.vlmstudy_precision = DYNAMIC_INT8
    return model


class _DropInt8CastNote:
    """LLM.int8() casts fp32 activations to fp16 and logs it on *every* call (hundreds of lines per
    evaluation); the cast is expected and documented in :func:`preset`, so drop that one message."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def _silence_int8_cast_note() -> None:
    import logging

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNote) for f in logger.filters):
        logger.addFilter(_DropInt8CastNote())


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if progress:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------------------------
# footprints of real model instances


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def footprint_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """Bytes a model instance holds: ``parameters``, ``buffers``, ``quant_state`` and ``total``.

    ``quant_state`` is what quantized layers keep outside their parameters: bitsandbytes' 4-bit
    block scales, code books and double-quantization state (``weight.quant_state``), LLM.int8()'s
    per-row scales (``weight.SCB``), and PyTorch dynamic-int8's packed int8 weights and biases.
    Shared (tied) tensors count once.
    """
    seen: set[int] = set()

    def once(t) -> int:
        if t is None or not isinstance(t, torch.Tensor) or id(t) in seen:
            return 0
        seen.add(id(t))
        return _nbytes(t)

    params = sum(once(p) for p in model.parameters())
    buffers = sum(once(b) for b in model.buffers())
    extra = 0
    for module in model.modules():
        weight = getattr(module, "weight", None) if not callable(getattr(module, "weight", None)) else None
        state = getattr(weight, "quant_state", None)
        if state is not None:  # bitsandbytes Params4bit
            extra += once(state.absmax) + once(state.code) + once(getattr(state, "offset", None))
            nested = getattr(state, "state2", None)
            if nested is not None:
                extra += once(nested.absmax) + once(nested.code)
        scb = getattr(weight, "SCB", None)
        if isinstance(scb, torch.Tensor):  # bitsandbytes Int8Params: one fp32 scale per row
            extra += once(scb)
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):  # torch dynamic int8 Linear
            qweight, bias = packed._weight_bias()
            extra += qweight.numel() * qweight.element_size() + (_nbytes(bias) if bias is not None else 0)
            if qweight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                extra += 16  # scale (fp64) + zero point (int64)
            else:
                extra += _nbytes(qweight.q_per_channel_scales()) + _nbytes(qweight.q_per_channel_zero_points())
    return {"parameters": params, "buffers": buffers, "quant_state": extra, "total": params + buffers + extra}


def footprint(model: torch.nn.Module) -> int:
    """Bytes of parameters + buffers + quantization state (see :func:`footprint_breakdown`).

    Equals ``model.get_memory_footprint()`` for unquantized models; for bitsandbytes models it adds
    the block scales that ``get_memory_footprint()`` does not see (parameters and buffers only).

    On a CPU with AVX512-BF16, bitsandbytes 0.50 repacks every 4-bit layer at its first inference
    call into a CPU-friendly layout: the absmax scales become bf16 and **double quantization is
    undone** (the 8-bit absmax values are dequantized), so after a forward pass nf4 and nf4-dq
    take the same memory (4.25 bits per weight). That repacking also needs ``in_features`` to be a
    multiple of 64 (otherwise the first call fails with a reshape error). Measure right after
    loading to see the stored format, as :func:`vlmstudy.precision_benchmark.measure_precision` does.
    """
    return footprint_breakdown(model)["total"]


# --------------------------------------------------------------------------------------------
# estimates for real architectures, built on the meta device


_META_CACHE: dict[tuple[str, torch.dtype], tuple[torch.nn.Module, str]] = {}


def _meta_model(name_or_config, dtype: torch.dtype):
    """``(model on meta, label)`` for a zoo name, a Hub id / local path, or a config object.

    Zoo models are cached per dtype (a meta model holds no memory; building a 7 B one takes ~0.2 s).
    """
    key = (name_or_config, dtype) if isinstance(name_or_config, str) else None
    if key is not None and key in _META_CACHE:
        return _META_CACHE[key]
    result = _build_meta_model(name_or_config, dtype)
    if key is not None:
        _META_CACHE[key] = result
    return result


def _build_meta_model(name_or_config, dtype: torch.dtype):
    import transformers

    from .errors import UnknownModelError
    from .zoo.registry import get_card, real_config

    if isinstance(name_or_config, transformers.PretrainedConfig):
        config, label = name_or_config, getattr(name_or_config, "model_type", "config")
        cls = _class_for(config)
    else:
        label = str(name_or_config)
        try:
            card = get_card(label)
        except UnknownModelError:
            card = None
        if card is not None:
            config, cls = real_config(card.name), getattr(transformers, card.model_class)
            label = card.hub_id
        else:
            try:
                from .zoo.hub_network import fetch_config

                config = fetch_config(label)  # config.json only (a few KB), under the Hub deadline
            except (OSError, ValueError) as err:
                from .errors import ModelUnavailableError

                raise ModelUnavailableError(
                    f"{label!r} is not in the course's zoo and its config.json could not be read ({type(err).__name__}). "
                    f"Use a zoo name ({', '.join(c.name for c in _cards())}), go online once so the config is "
                    f"cached, or pass a transformers config object.") from None
            cls = _class_for(config)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype if dtype.is_floating_point else torch.float32)
    try:
        with torch.device("meta"), _quiet_transformers():
            model = cls(config)
    finally:
        torch.set_default_dtype(old)
    return model, label


def _cards():
    from .zoo.registry import CARDS

    return CARDS


def _class_for(config):
    import transformers

    arch = (getattr(config, "architectures", None) or [None])[0]
    if arch and hasattr(transformers, arch):
        return getattr(transformers, arch)
    for auto in ("AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModel"):
        mapping = getattr(transformers, auto)._model_mapping
        if type(config) in mapping:
            return mapping[type(config)]
    raise ConfigError(f"no transformers model class found for config {type(config).__name__}")


def skipped_modules(model) -> list[str]:
    """Module name patterns transformers' bitsandbytes integration leaves unquantized by default
    (tied weights, the output embedding, the module of the last parameter, ``_keep_in_fp32_modules``)."""
    try:
        from transformers.quantizers.base import get_keys_to_not_convert

        keys = list(get_keys_to_not_convert(model))
    except Exception:  # pragma: no cover - the same rule, if transformers moves the helper
        tied = getattr(model, "all_tied_weights_keys", {}) or {}
        keys = set(tied) | set(tied.values()) | {list(model.named_parameters())[-1][0]}
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        keys |= {n for n, m in model.named_modules() if out is not None and m is out}
        keys = [k.removesuffix(".weight") for k in keys]
    keys += list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return sorted(set(keys))


def _should_convert(name: str, patterns: Sequence[str]) -> bool:
    try:
        from transformers.quantizers.quantizers_utils import should_convert_module

        return should_convert_module(name, list(patterns))
    except ImportError:  # pragma: no cover
        import re

        boundary = r"(?:(?<=\.)|(?=\.|$))"
        return not any(re.match(rf"(?:{k}){boundary}", name) or name.endswith(k) for k in patterns)


def quantized_linears(model) -> list[str]:
    """Names of the modules bitsandbytes would replace (exact ``nn.Linear`` / ``Conv1D``, not skipped)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()
    skip = skipped_modules(model)
    return [n for n, m in model.named_modules()
            if (type(m) is torch.nn.Linear or (Conv1D and isinstance(m, Conv1D))) and _should_convert(n, skip)]


def _quantized_weight_bytes(numel: int, out_features: int, precision: str) -> tuple[int, int]:
    """``(packed weight bytes, scale bytes)`` of one quantized Linear weight."""
    if precision == "int8":
        return numel, 4 * out_features
    blocks = math.ceil(numel / NF4_BLOCKSIZE)
    packed = (numel + 1) // 2
    if precision == "nf4":
        return packed, 4 * blocks + 16 * 4
    # nf4-dq: 8-bit absmax, fp32 scale per 256 blocks, 256-entry code book, nf4 code book, offset
    return packed, blocks + 4 * math.ceil(blocks / DQ_BLOCKSIZE) + 256 * 4 + 16 * 4 + 4


def _keep_fp32_patterns(model, dtype: torch.dtype) -> list[str]:
    keep = []
    if dtype == torch.float16:
        keep += list(getattr(model, "_keep_in_fp32_modules", None) or [])
    if dtype in (torch.float16, torch.bfloat16):
        keep += list(getattr(model, "_keep_in_fp32_modules_strict", None) or [])
    return keep


def estimate_breakdown(name_or_config, precision: str, dtype: torch.dtype | str | None = None) -> dict:
    """Bytes the architecture would take at ``precision``, computed on the meta device.

    name_or_config: a zoo name (``"llava"``: its real architecture, from the card), a Hub id or
    local path (its ``config.json`` is read; nothing else is downloaded), or a config object.
    dtype: the dtype of everything that is not quantized (and of 4-bit compute): default fp32 for
    ``fp32``, bf16 for ``bf16``, fp16 otherwise (as on a GPU; pass ``torch.float32`` to compare
    with a CPU load from :func:`preset`).

    Returns ``params``, ``quantized_params`` (weights in quantized Linear layers), ``layers``
    (how many), ``weight_bytes`` (packed quantized weights), ``scale_bytes`` (their block / row
    scales and code books), ``other_bytes`` (every other parameter), ``buffer_bytes``, ``total``
    and ``memory_footprint`` (what ``get_memory_footprint()`` would report: total minus scales).
    """
    precision = check_precision(precision, PRECISIONS)
    if dtype is None:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(precision, torch.float16)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model, label = _meta_model(name_or_config, dtype)
    keep32 = _keep_fp32_patterns(model, dtype)
    quantized = set(quantized_linears(model)) if precision in BNB_PRECISIONS else set()
    seen: set[int] = set()
    out = {"params": 0, "quantized_params": 0, "layers": len(quantized), "weight_bytes": 0, "scale_bytes": 0,
           "other_bytes": 0, "buffer_bytes": 0}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            n = p.numel()
            out["params"] += n
            if mod_name in quantized and p_name == "weight":
                out_features = module.nf if type(module) is not torch.nn.Linear else module.out_features  # Conv1D: nf
                w, s = _quantized_weight_bytes(n, out_features, precision)
                out["quantized_params"] += n
                out["weight_bytes"] += w
                out["scale_bytes"] += s
            else:
                fp32 = keep32 and not _should_convert(f"{mod_name}.{p_name}".lstrip("."), keep32)
                size = 4 if fp32 else torch.empty((), dtype=dtype).element_size()
                out["other_bytes"] += n * size
        for b in module.buffers(recurse=False):
            if id(b) not in seen:
                seen.add(id(b))
                out["buffer_bytes"] += _nbytes(b)
    out["total"] = out["weight_bytes"] + out["scale_bytes"] + out["other_bytes"] + out["buffer_bytes"]
    out["memory_footprint"] = out["total"] - out["scale_bytes"]
    out.update(model=label, precision=precision, dtype=str(dtype).removeprefix("torch."))
    return out


def estimate(name_or_config, precision: str, dtype: torch.dtype | str | None = None, quant_state: bool = True) -> int:
    """Bytes of the real architecture at ``precision`` (see :func:`estimate_breakdown`).

    quant_state=False leaves out the quantization scales, giving what ``get_memory_footprint()``
    reports for a bitsandbytes model (the convention of most published "NF4 footprint" figures).
    """
    b = estimate_breakdown(name_or_config, precision, dtype)
    return b["total"] if quant_state else b["memory_footprint"]


def estimate_table(names: Iterable[str] | None = None,
                   precisions: Sequence[str] = ("fp32", "fp16", "int8", "nf4", "nf4-dq")) -> list[dict]:
    """One row per zoo model: parameters and the estimated GB at each precision (with scales)."""
    from .zoo.registry import CARDS

    names = list(names) if names is not None else [c.name for c in CARDS]
    rows = []
    for name in names:
        row = {"model": name}
        for precision in precisions:
            b = estimate_breakdown(name, precision)
            row.setdefault("hub_id", b["model"])
            row.setdefault("params", b["params"])
            if precision in BNB_PRECISIONS:
                row.setdefault("quantized_share", b["quantized_params"] / b["params"])
            row[precision] = b["total"] / 1e9
        rows.append(row)
    return rows


def bytes_per_parameter_table() -> list[dict]:
    """Storage per weight of a quantized Linear layer, by precision (block size 64)."""
    notes = {
        "fp32": "IEEE single: 1 sign, 8 exponent, 23 mantissa bits",
        "fp16": "IEEE half: 5 exponent bits, range +-65504",
        "bf16": "bfloat16: fp32's 8 exponent bits, 7 mantissa bits",
        "int8": "LLM.int8(): int8 + one fp32 scale per row (+ 32/in_features bits); outliers in fp16 at run time",
        "nf4": "4-bit NormalFloat codes + one fp32 absmax per 64 weights",
        "nf4-dq": "nf4 with the absmax values quantized to 8 bits (one fp32 scale per 256 blocks)",
        DYNAMIC_INT8: "PyTorch dynamic int8: one scale per tensor, activations quantized per call (CPU)",
    }
    return [{"precision": p, "bits": BITS_PER_WEIGHT[p], "bytes": BITS_PER_WEIGHT[p] / 8,
             "vs_fp16": BITS_PER_WEIGHT[p] / 16, "note": notes[p]} for p in PRECISIONS + (DYNAMIC_INT8,)]
