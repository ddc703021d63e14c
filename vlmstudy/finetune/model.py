"""Base models, LoRA / QLoRA adapters, and saving, loading and merging them.

LoRA (Hu et al., 2021) freezes a weight matrix ``W`` (d_out x d_in) and learns a low-rank change
``ΔW = (alpha / r) · B A`` with ``A`` (r x d_in) and ``B`` (d_out x r), ``B`` starting at zero:
``r (d_in + d_out)`` trainable numbers instead of ``d_in · d_out``. The adapters go on the
*language model's* linear layers only (the vision tower stays frozen, as in LLaVA's own
fine-tuning); ``modules_to_save`` trains whole extra modules and ``trainable_tokens`` single rows
of the input and output embeddings (peft's ``trainable_token_indices``), which is how a word the
model has never produced can be learned without training the whole vocabulary.

QLoRA (Dettmers et al., 2023) loads the frozen base in 4-bit NF4 (double-quantized) and trains
the LoRA weights in 16/32 bits through it, after :func:`peft.prepare_model_for_kbit_training`.
bitsandbytes' training kernels need CUDA: on a CPU :func:`load_base` falls back to plain LoRA on
the full-precision model and warns (see :mod:`vlmstudy.finetune.config`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, ModelUnavailableError
from ..generation import family

#: Where the language model sits in each family (module-name prefixes).
LANGUAGE_MODEL_PREFIXES: dict[str, tuple[str, ...]] = {
    "llava": ("model.language_model",), "llava-next": ("model.language_model",),
    "blip2": ("language_model",), "instructblip": ("language_model",),
    "blip-caption": ("text_decoder",), "blip-vqa": ("text_encoder", "text_decoder"),
    "qwen2-vl": ("model.language_model",), "smolvlm": ("model.text_model",),
}
ADAPTER_INFO = "vlmstudy_adapter.json"


# ----------------------------------------------------------------------------- loading the base

def cuda_qlora_available() -> tuple[bool, str]:
    """``(ok, reason)``: QLoRA needs a CUDA GPU and a working bitsandbytes."""
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is available"
    from ..quantize import bitsandbytes_status

    ok, message = bitsandbytes_status()
    return ok, message


def bnb_config(quantization: str, compute_dtype: torch.dtype):
    """``BitsAndBytesConfig`` for QLoRA: NF4 with double quantization, or LLM.int8()."""
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def compute_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs that have it, else fp16 on CUDA; fp32 on a CPU."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def enable_checkpointing(model) -> None:
    """Gradient (activation) checkpointing, non-reentrant: keep each layer's input only and
    recompute the rest in the backward pass (transformers >= 5.2 renamed the method)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover  (older transformers 5.x)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_kbit(model, gradient_checkpointing: bool = True):
    """``peft.prepare_model_for_kbit_training``: freeze the base, cast the non-quantized weights
    (norms, embeddings, lm_head) to fp32, and (optionally) turn on non-reentrant checkpointing."""
    from peft import prepare_model_for_kbit_training

    with warnings.catch_warnings():  # peft calls the (renamed) gradient_checkpointing_enable
        warnings.filterwarnings("ignore", message=".*checkpointing.*deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})


def load_base(name: str, quantization: str = "none", device: str | None = None,
              gradient_checkpointing: bool = False, mode: str | None = None):
    """``(model, processor, info)``: the frozen base model ready for adapters.

    quantization ``nf4`` / ``int8`` with a CUDA GPU: QLoRA (bitsandbytes weights +
    ``prepare_model_for_kbit_training``); without one, plain LoRA on fp32 weights and a warning.
    info: ``{"device", "dtype", "quantization", "quantization_applied", "note"}``.
    """
    from .. import settings
    from ..zoo import load

    device = device or settings.get_device()
    info = {"quantization": quantization, "quantization_applied": False, "note": ""}
    if quantization != "none":
        ok, reason = cuda_qlora_available()
        if ok and torch.device(device).type == "cuda":
            dtype = compute_dtype("cuda")
            model, processor = load(name, mode=mode, dtype=dtype, quantization_config=bnb_config(quantization, dtype),
                                    device_map="cuda")
            model = prepare_kbit(model, gradient_checkpointing)
            info.update(quantization_applied=True, device="cuda", dtype=str(dtype).removeprefix("torch."))
            return model, processor, info
        if ok:
            reason = f"the device is {device}"
        info["note"] = (f"QLoRA ({quantization}) needs a CUDA GPU with bitsandbytes, and here {reason}: "
                        "training plain LoRA on the full-precision model instead.")
        warnings.warn(info["note"], stacklevel=2)
    dtype = compute_dtype(device)
    model, processor = load(name, mode=mode, device=device, dtype=dtype)
    if gradient_checkpointing:
        enable_checkpointing(model)
    info.update(device=str(device), dtype=str(dtype).removeprefix("torch."))
    return model, processor, info


# ----------------------------------------------------------------------------- choosing the layers

def _module_names(model) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def output_embedding_name(model) -> str | None:
    """Name of the layer that turns hidden states into vocabulary logits (``lm_head`` ...)."""
    names = _module_names(model)
    out = model.get_output_embeddings()
    if out is None:
        for child in ("text_decoder", "language_model"):
            sub = getattr(model, child, None)
            if sub is not None and hasattr(sub, "get_output_embeddings") and sub.get_output_embeddings() is not None:
                out = sub.get_output_embeddings()
                break
    return names.get(id(out)) if out is not None else None


def input_embedding_name(model) -> str | None:
    names = _module_names(model)
    emb = model.get_input_embeddings()
    if family(model) == "blip-vqa":   # the answer decoder's embedding is the one that must learn new words
        emb = model.text_decoder.get_input_embeddings()
    return names.get(id(emb))


def language_model_linears(model) -> list[str]:
    """Every ``nn.Linear`` of the language model (the output layer excluded), by full name."""
    prefixes = LANGUAGE_MODEL_PREFIXES[family(model)]
    head = output_embedding_name(model)
    linear_types = (torch.nn.Linear,)
    try:  # bitsandbytes layers are nn.Linear subclasses; peft also knows Conv1D (GPT-2 style)
        from transformers.pytorch_utils import Conv1D

        linear_types = linear_types + (Conv1D,)
    except ImportError:  # pragma: no cover
        pass
    return [n for n, m in model.named_modules()
            if isinstance(m, linear_types) and n != head and any(n.startswith(p + ".") for p in prefixes)]


def resolve_target_modules(model, target) -> list[str]:
    """Full module names for ``lora.target_modules``.

    ``"all-linear"``: every linear layer of the language model. A list may hold ``all-linear``,
    short layer names (``q_proj``: those layers inside the language model only; the vision tower
    has ``q_proj`` too, and stays frozen), and module names or dotted paths anywhere in the model
    (``multi_modal_projector``: every linear layer inside it; ``multi_modal_projector.linear_1``).
    Each entry must match at least one linear layer.
    """
    lm = language_model_linears(model)
    if target == "all-linear":
        return lm
    all_linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]

    def inside(name: str, module: str) -> bool:
        return name == module or name.endswith("." + module) or f".{module}." in f".{name}"

    chosen, missing = [], []
    for t in target:
        if t == "all-linear":
            hits = lm
        elif "." not in t:
            hits = [n for n in lm if n.rsplit(".", 1)[-1] == t] or [n for n in all_linear if inside(n, t)]
        else:
            hits = [n for n in all_linear if inside(n, t)]
        (chosen.extend(hits) if hits else missing.append(t))
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in lm})
        raise ConfigError(f"lora.target_modules: {', '.join(repr(m) for m in missing)} match no linear layer of the "
                          f"{family(model)} model. Allowed: all-linear, names among {', '.join(short)} (inside the "
                          "language model), or a module of the model such as multi_modal_projector.")
    return list(dict.fromkeys(chosen))


def token_ids_for_words(tokenizer, words) -> list[int]:
    """Token ids of single-token ``words`` (new words must already be in the vocabulary)."""
    out, bad = [], []
    for w in words:
        toks = tokenizer(w, add_special_tokens=False).input_ids
        unk = getattr(tokenizer, "unk_token_id", None)
        if len(toks) != 1 or (unk is not None and toks[0] == unk):
            bad.append(f"{w!r} -> {len(toks)} tokens {toks}")
        else:
            out.append(toks[0])
    if bad:
        raise ConfigError(f"lora.trainable_tokens must be words that are one token each in the model's vocabulary; "
                          f"{'; '.join(bad)}. (Adding brand-new tokens needs resize_token_embeddings, not covered here.)")
    return out


def lora_config(model, processor, r: int = 8, alpha: float = 16, dropout: float = 0.05, target_modules="all-linear",
                modules_to_save=(), trainable_tokens=()):
    """A ``peft.LoraConfig`` for ``model``, with the module names resolved and checked."""
    from peft import LoraConfig

    targets = resolve_target_modules(model, target_modules)
    names = [n for n, _ in model.named_modules()]
    save = []
    for m in modules_to_save:
        hits = [n for n in names if n == m or n.endswith("." + m)]
        if not hits:
            raise ConfigError(f"lora.modules_to_save: {m!r} is not a module of {type(model).__name__} "
                              f"(for the output layer use {output_embedding_name(model)!r}).")
        save.append(m)
    token_indices = None
    if trainable_tokens:
        ids_ = token_ids_for_words(processor.tokenizer, trainable_tokens)
        inp, out = input_embedding_name(model), output_embedding_name(model)
        token_indices = {inp: ids_}
        tied = out is not None and model.get_submodule(out).weight is model.get_submodule(inp).weight
        if out is not None and not tied and out not in save:
            token_indices[out] = ids_
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                      modules_to_save=save or None, trainable_token_indices=token_indices, bias="none")


def apply_full_finetuning(model):
    """``lora.use_lora: false``: train the language model's own weights (every parameter under
    :data:`LANGUAGE_MODEL_PREFIXES`; the vision tower, Q-Former and projector stay frozen). This is
    "full fine-tuning of what fits": the weights plus two AdamW moments per trained number must fit
    in memory, about 16 bytes per parameter in fp32. Returns ``model`` itself."""
    prefixes = LANGUAGE_MODEL_PREFIXES[family(model)]
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(prefix + ".") for prefix in prefixes))
    return model


def save_final_model(model, processor, out_dir: str | Path, adapter: str | Path | None = None,
                     quantized: bool = False) -> Path:
    """The fine-tuned model on its own in ``out_dir``, loadable by ``vlmstudy.load(out_dir)``
    (safetensors + its processor): a LoRA model with its adapter merged into a copy of the base
    (the trained model in memory keeps its adapter), a fully fine-tuned model as it is. A QLoRA
    model's 4-bit base cannot take the merge without rounding the update away, so ``adapter`` is
    merged into a freshly loaded full-precision base instead (:func:`merge_adapter`)."""
    import copy

    out = Path(out_dir)
    if quantized and adapter is not None:
        return merge_adapter(adapter, out)
    if hasattr(model, "merge_and_unload"):
        with quiet_peft():
            model = copy.deepcopy(model).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def apply_lora(model, processor, **settings):
    """Wrap ``model`` with LoRA adapters (``settings``: see :func:`lora_config`); everything
    else is frozen. Returns the ``peft.PeftModel``."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    config = lora_config(model, processor, **settings)
    with quiet_peft():
        return get_peft_model(model, config)


@contextlib.contextmanager
def quiet_peft():
    """peft 0.21 still calls transformers' renamed ``is_gradient_checkpointing`` (a FutureWarning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def parameter_counts(model) -> dict:
    """``{"trainable", "total", "percent"}`` (4-bit weights counted as the numbers they stand for)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2   # two 4-bit numbers per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total, "percent": round(100 * trainable / max(total, 1), 4)}


# ----------------------------------------------------------------------------- save / load / merge

def save_adapter(model, out_dir: str | Path, base: str, mode: str) -> Path:
    """``model.save_pretrained(out_dir)`` (adapter weights in safetensors + adapter_config.json)
    plus ``vlmstudy_adapter.json`` saying which base model to load it onto."""
    out = Path(out_dir)
    model.save_pretrained(str(out))
    (out / ADAPTER_INFO).write_text(json.dumps({"base_model": base, "mode": mode}, indent=1))
    return out


def adapter_dir(source: str | Path) -> Path:
    """The adapter folder of a run (``OUTPUT_DIR/adapter``), a checkpoint, or an adapter folder."""
    source = Path(source)
    for candidate in (source, source / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise ModelUnavailableError(f"No LoRA adapter in {source}: expected adapter_config.json there or in "
                                f"{source / 'adapter'} (a finished run's output_dir, or one of its checkpoints).")


def load_adapter(source: str | Path, device: str | None = None, is_trainable: bool = False):
    """``(peft_model, processor)``: the base model named in the adapter's folder, with the adapter.

    source: a run's output_dir, a checkpoint folder, or an adapter folder.
    """
    from peft import PeftModel

    path = adapter_dir(source)
    info_file = path / ADAPTER_INFO
    if not info_file.is_file():
        raise ModelUnavailableError(f"{path} has no {ADAPTER_INFO}: it was not saved by vlmstudy.finetune, so its base "
                                    "model is unknown. Load the base yourself and use peft.PeftModel.from_pretrained.")
    info = json.loads(info_file.read_text())
    model, processor, _ = load_base(info["base_model"], device=device, mode=info.get("mode"))
    with quiet_peft():
        model = PeftModel.from_pretrained(model, str(path), is_trainable=is_trainable)
    model.eval()
    return model, processor


def merge_adapter(source: str | Path, out_dir: str | Path, device: str = "cpu") -> Path:
    """Fold the adapter into the base weights (``merge_and_unload``: ``W + (alpha/r) B A``) and save
    a plain model (safetensors) + its processor in ``out_dir``: ``vlmstudy.load(out_dir)`` loads it,
    with no peft needed and no extra cost per token. The base is loaded in full precision (merging
    into 4-bit weights would round the update away)."""
    model, processor = load_adapter(source, device=device)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    (out / "README.md").write_text(
        f"# Merged fine-tune\n\nBase model with the LoRA adapter from `{adapter_dir(source)}` merged in "
        "(`vlmstudy.finetune.merge_adapter`). Load it with `vlmstudy.load(PATH)`.\n")
    return out
