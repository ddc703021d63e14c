"""The fine-tuning configuration: a YAML file (or a dict), checked key by key.

::

    model: llava                  # a zoo name (tiny stand-in or Hub checkpoint by mode) or a model folder
    output_dir: runs/llava-brown
    seed: 0
    quantization: none            # none | nf4 | int8  (QLoRA: needs a CUDA GPU, see below)
    data:
      path: data/shapes/vqa.json
      format: vqa                 # caption | vqa | instruction (default: detected)
      image_root: null            # default: the data file's folder
      eval_split: 0.1             # a fraction of the records, or a number of records, or 0
      eval_path: null             # or a separate file for evaluation
      skip_invalid: false
      prompt: null                # question used for caption data (family default when null)
    lora:
      r: 8
      alpha: 16
      dropout: 0.05
      target_modules: all-linear  # or a list: [q_proj, v_proj]
      modules_to_save: []         # whole modules trained and saved with the adapter (e.g. [lm_head])
      trainable_tokens: []        # words whose embedding and output rows are trained (new words)
    training:
      learning_rate: 2.0e-4
      epochs: 3                   # or max_steps (optimizer steps; wins when set)
      max_steps: null
      batch_size: 8
      gradient_accumulation: 1
      ...

The fine-tuning guide's own layout is accepted beside this one and translated key by key
(:data:`GUIDE_KEYS`)::

    model_name: llava-hf/llava-1.5-7b-hf    # -> model
    model_type: llava                       # checked against the loaded model's family
    dataset_path: data/multimodal_train.json   # -> data.path
    output_dir: outputs/llava_finetuned
    lora: {use_lora: true, r: 16, lora_alpha: 32}          # lora_alpha -> lora.alpha
    training: {batch_size: 4, gradient_accumulation_steps: 4}   # -> training.gradient_accumulation
    advanced: {gradient_checkpointing: true}                # -> training.gradient_checkpointing
    image_processing: {resize: [224, 224]}                  # -> data.resize

``lora.use_lora: false`` trains the language model's own weights instead of adapters (full
fine-tuning of what fits: the vision tower stays frozen); the run says so when it starts.

Every problem is collected and reported together in one :class:`~vlmstudy.errors.ConfigError`
that names the key (``training.batch_size``) and what is allowed; an unknown key gets a "did you
mean" hint. Relative paths are relative to the current folder; the copy a run saves in its
output folder has them made absolute, so ``vlmstudy finetune --resume DIR`` works from anywhere.

Quantization without a CUDA GPU: QLoRA's 4-bit / 8-bit training kernels need CUDA, so on a CPU
the run **falls back to plain LoRA on the full-precision model** and says so (a warning, and
``"quantization_applied": false`` in the run's summary); the configuration stays portable.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

QUANTIZATIONS: tuple[str, ...] = ("none", "nf4", "int8")
SCHEDULERS: tuple[str, ...] = ("constant", "linear", "cosine")
OPTIMIZERS: tuple[str, ...] = ("adamw", "paged_adamw_8bit")
DATA_FORMATS: tuple[str, ...] = ("caption", "vqa", "instruction", "text", "conversations")
MIXED_PRECISIONS: tuple[str, ...] = ("no", "fp16", "bf16")
#: ``model_type`` values (the guide's) and the model families each one names.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "llava": ("llava", "llava-next"), "llava-next": ("llava-next",), "blip2": ("blip2",),
    "instructblip": ("instructblip",), "blip": ("blip-caption", "blip-vqa"), "blip-caption": ("blip-caption",),
    "blip-vqa": ("blip-vqa",),
}
#: The guide's config keys and the keys they mean here (dotted). ``advanced.fp16`` / ``advanced.bf16``
#: (true / false) set ``training.mixed_precision``.
GUIDE_KEYS: dict[str, str] = {
    "model_name": "model", "dataset_path": "data.path",
    "lora.lora_alpha": "lora.alpha", "lora.lora_dropout": "lora.dropout",
    "training.gradient_accumulation_steps": "training.gradient_accumulation",
    "training.num_epochs": "training.epochs", "training.num_train_epochs": "training.epochs",
    "advanced.gradient_checkpointing": "training.gradient_checkpointing",
    "advanced.mixed_precision": "training.mixed_precision",
    "image_processing.resize": "data.resize",
}
GUIDE_SECTIONS: tuple[str, ...] = ("advanced", "image_processing")
#: A config file larger than this, or whose YAML aliases expand to more nodes, is refused
#: (a "billion laughs" alias bomb expands a few hundred bytes into gigabytes).
MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_NODES = 100_000


@dataclass
class DataConfig:
    path: str | None = None
    format: str | None = None
    image_root: str | None = None
    eval_split: float | int = 0.1
    eval_path: str | None = None
    skip_invalid: bool = False
    max_problems: int = 10
    prompt: str | None = None
    allow_outside_root: bool = False
    resize: list[int] | None = None


@dataclass
class LoraSettings:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)
    trainable_tokens: list[str] = field(default_factory=list)
    use_lora: bool = True


@dataclass
class TrainingConfig:
    learning_rate: float = 2e-4
    epochs: float = 3
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    eval_every: int | None = None
    save_every: int | None = None
    keep_checkpoints: int | None = None
    eval_max_examples: int = 200
    max_new_tokens: int = 16
    log_every: int = 1


@dataclass
class FinetuneConfig:
    """A validated fine-tuning configuration (build it with :func:`load_config`)."""

    model: str = ""
    output_dir: str = ""
    seed: int = 0
    quantization: str = "none"
    model_type: str | None = None   # the guide's llava | blip2 | instructblip ...: checked against the model
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes) -> FinetuneConfig:
        """A copy with dotted keys changed: ``cfg.replace(**{"training.max_steps": 20})``."""
        return load_config(apply_overrides(self.to_dict(), changes))

    def absolute_paths(self) -> FinetuneConfig:
        """A copy whose file paths are absolute (what a run saves next to its checkpoints)."""
        d = self.to_dict()
        for section, key in (("data", "path"), ("data", "image_root"), ("data", "eval_path")):
            if d[section][key]:
                d[section][key] = str(Path(d[section][key]).expanduser().resolve())
        d["output_dir"] = str(Path(d["output_dir"]).expanduser().resolve())
        if _looks_like_path(d["model"]) and Path(d["model"]).expanduser().is_dir():
            d["model"] = str(Path(d["model"]).expanduser().resolve())
        return load_config(d)


SECTIONS: dict[str, type] = {"data": DataConfig, "lora": LoraSettings, "training": TrainingConfig}
TOP_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FinetuneConfig))
REQUIRED: tuple[str, ...] = ("model", "output_dir", "data.path")


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or value.startswith("~")


def all_keys() -> list[str]:
    """Every key, dotted: ``model``, ``data.path``, ``lora.r`` ..."""
    keys = [k for k in TOP_KEYS if k not in SECTIONS]
    for name, cls in SECTIONS.items():
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _unknown(key: str, allowed) -> str:
    """``unknown key 'lora.alfa'. Did you mean 'lora.alpha'? Allowed here: ...``: a key that exists in
    another section (``batch_size`` at the top) is pointed there, else the closest name nearby."""
    allowed = list(allowed)
    name = key.rsplit(".", 1)[-1]
    elsewhere = [k for k in all_keys() if k.rsplit(".", 1)[-1] == name and k != key]
    if elsewhere:
        hint = f" Did you mean {elsewhere[0]!r}?"
    else:
        section = key.rpartition(".")[0]
        guide = [k.rsplit(".", 1)[-1] for k in GUIDE_KEYS if k.rpartition(".")[0] == section]
        close = difflib.get_close_matches(name, [a.rsplit(".", 1)[-1] for a in allowed] + guide, n=1, cutoff=0.6)
        prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
        hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
    return f"unknown key {key!r}.{hint} Allowed here: {', '.join(a.rsplit('.', 1)[-1] for a in allowed)}"


def apply_overrides(raw: dict, overrides: dict) -> dict:
    """``raw`` with dotted keys set (``{"training.max_steps": 20}``); sections created as needed."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.max_steps=20"`` -> ``("training.max_steps", 20)`` (the value read as YAML)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. training.max_steps=20), got {text!r}.")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


# ----------------------------------------------------------------------------- checks

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _choice(problems, key, value, allowed):
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{key} must be one of {', '.join(allowed)}; got {value!r}{hint}")


def _int_at_least(problems, key, value, low, none_ok=False):
    if value is None and none_ok:
        return
    if not _is_int(value) or value < low:
        problems.append(f"{key} must be an integer >= {low}{' or null' if none_ok else ''}; got {value!r}")


def _num_range(problems, key, value, low, high, low_open=False, high_open=False, none_ok=False):
    if value is None and none_ok:
        return
    ok = _is_num(value) and (value > low if low_open else value >= low) and (
        high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        problems.append(f"{key} must be a number {lo}{hi}{' or null' if none_ok else ''}; got {value!r}")


def _str_list(problems, key, value):
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        problems.append(f"{key} must be a list of names (e.g. [lm_head]); got {value!r}")


def _opt_str(problems, key, value):
    if value is not None and (not isinstance(value, str) or not value.strip()):
        problems.append(f"{key} must be a non-empty string or null; got {value!r}")


def _validate(cfg: FinetuneConfig) -> list[str]:
    p: list[str] = []
    for key in REQUIRED:
        section, _, name = key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if not isinstance(value, str) or not value.strip():
            p.append(f"{key} is required (a non-empty string); got {value!r}")
    if not _is_int(cfg.seed):
        p.append(f"seed must be an integer; got {cfg.seed!r}")
    _choice(p, "quantization", cfg.quantization, QUANTIZATIONS)
    if cfg.model_type is not None:
        _choice(p, "model_type", cfg.model_type, tuple(MODEL_TYPES))
    d = cfg.data
    if d.format is not None:
        _choice(p, "data.format", d.format, DATA_FORMATS)
    _opt_str(p, "data.image_root", d.image_root)
    _opt_str(p, "data.eval_path", d.eval_path)
    _opt_str(p, "data.prompt", d.prompt)
    if _is_int(d.eval_split):
        if d.eval_split < 0:
            p.append(f"data.eval_split must be a fraction in [0, 1) or a number of records >= 0; got {d.eval_split!r}")
    elif not _is_num(d.eval_split) or not 0 <= d.eval_split < 1:
        p.append(f"data.eval_split must be a fraction in [0, 1) or a number of records >= 0; got {d.eval_split!r}")
    if d.eval_path and d.eval_split:
        p.append("data.eval_split and data.eval_path exclude each other: set eval_split: 0 to evaluate on eval_path")
    if not isinstance(d.skip_invalid, bool):
        p.append(f"data.skip_invalid must be true or false; got {d.skip_invalid!r}")
    _int_at_least(p, "data.max_problems", d.max_problems, 1)
    if not isinstance(d.allow_outside_root, bool):
        p.append(f"data.allow_outside_root must be true or false; got {d.allow_outside_root!r}")
    if d.resize is not None and not (isinstance(d.resize, list) and len(d.resize) == 2
                                     and all(_is_int(v) and 8 <= v <= 4096 for v in d.resize)):
        p.append(f"data.resize (image_processing.resize) must be [width, height], two integers from 8 to 4096, "
                 f"or null; got {d.resize!r}")
    lo = cfg.lora
    _int_at_least(p, "lora.r", lo.r, 1)
    _num_range(p, "lora.alpha", lo.alpha, 0, None, low_open=True)
    _num_range(p, "lora.dropout", lo.dropout, 0, 1, high_open=True)
    if isinstance(lo.target_modules, str):
        if lo.target_modules != "all-linear":
            p.append(f"lora.target_modules must be 'all-linear' or a list of module names (e.g. [q_proj, v_proj]); "
                     f"got {lo.target_modules!r}")
    else:
        _str_list(p, "lora.target_modules", lo.target_modules)
        if isinstance(lo.target_modules, list) and not lo.target_modules:
            p.append("lora.target_modules must not be empty (use all-linear for every linear layer of the language "
                     "model)")
    _str_list(p, "lora.modules_to_save", lo.modules_to_save)
    _str_list(p, "lora.trainable_tokens", lo.trainable_tokens)
    if not isinstance(lo.use_lora, bool):
        p.append(f"lora.use_lora must be true or false; got {lo.use_lora!r}")
    elif not lo.use_lora and cfg.quantization != "none":
        p.append("lora.use_lora: false (full fine-tuning) cannot train quantized weights: set quantization: none, "
                 "or keep LoRA for QLoRA")
    t = cfg.training
    _num_range(p, "training.learning_rate", t.learning_rate, 0, 1, low_open=True)
    _num_range(p, "training.epochs", t.epochs, 0, None, low_open=True)
    _int_at_least(p, "training.max_steps", t.max_steps, 1, none_ok=True)
    _int_at_least(p, "training.batch_size", t.batch_size, 1)
    _int_at_least(p, "training.gradient_accumulation", t.gradient_accumulation, 1)
    _int_at_least(p, "training.warmup_steps", t.warmup_steps, 0)
    _choice(p, "training.lr_scheduler", t.lr_scheduler, SCHEDULERS)
    _num_range(p, "training.weight_decay", t.weight_decay, 0, 1)
    _num_range(p, "training.max_grad_norm", t.max_grad_norm, 0, None, low_open=True, none_ok=True)
    _choice(p, "training.optimizer", t.optimizer, OPTIMIZERS)
    if not isinstance(t.gradient_checkpointing, bool):
        p.append(f"training.gradient_checkpointing must be true or false; got {t.gradient_checkpointing!r}")
    _choice(p, "training.mixed_precision", t.mixed_precision, MIXED_PRECISIONS)
    _int_at_least(p, "training.eval_every", t.eval_every, 1, none_ok=True)
    _int_at_least(p, "training.save_every", t.save_every, 1, none_ok=True)
    _int_at_least(p, "training.keep_checkpoints", t.keep_checkpoints, 1, none_ok=True)
    _int_at_least(p, "training.eval_max_examples", t.eval_max_examples, 0)
    _int_at_least(p, "training.max_new_tokens", t.max_new_tokens, 1)
    _int_at_least(p, "training.log_every", t.log_every, 1)
    return p


def load_config(source: str | Path | dict | FinetuneConfig, **overrides) -> FinetuneConfig:
    """Read a YAML file (or take a dict), apply dotted ``overrides``, check every key and value.

    Raises one :class:`ConfigError` listing every problem: unknown keys (with a close match),
    wrong types, values outside what is allowed, missing required keys (``model``,
    ``output_dir``, ``data.path``).
    """
    if isinstance(source, FinetuneConfig):
        raw, where = source.to_dict(), "config"
    elif isinstance(source, dict):
        raw, where = copy.deepcopy(source), "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"Config file not found: {path}. The examples are in configs/*.yaml.")
        raw = read_yaml(path)
        where = str(path)
        if raw is None:
            raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys (model:, data:, lora:, training: ...), not "
                          f"{type(raw).__name__}.")
    raw, problems = translate_guide_layout(raw)
    if overrides:   # after the translation, so that an override wins over the file's guide-spelled key
        raw = apply_overrides(raw, {GUIDE_KEYS.get(k, k): v for k, v in overrides.items()})
    top = {}
    for key, value in raw.items():
        if key not in TOP_KEYS:
            problems.append(_unknown(str(key), TOP_KEYS))
        elif key in SECTIONS:
            cls = SECTIONS[key]
            names = [f.name for f in dataclasses.fields(cls)]
            if value is None:
                value = {}
            if not isinstance(value, dict):
                problems.append(f"{key} must be a mapping of keys ({', '.join(names)}); got {value!r}")
                continue
            known = {}
            for sub, v in value.items():
                if sub not in names:
                    problems.append(_unknown(f"{key}.{sub}", [f"{key}.{n}" for n in names]))
                else:
                    known[sub] = v
            top[key] = cls(**known)
        else:
            top[key] = value
    cfg = FinetuneConfig(**top)
    _coerce_numbers(cfg)
    problems += _validate(cfg)
    if problems:
        raise ConfigError(f"Invalid fine-tuning config ({where}): " + "; ".join(problems) + ".")
    return cfg


#: Number keys that YAML may hand over as strings: PyYAML reads ``2e-4`` (no dot) as text.
_FLOAT_KEYS = (("training", "learning_rate"), ("training", "weight_decay"), ("training", "max_grad_norm"),
               ("training", "epochs"), ("lora", "alpha"), ("lora", "dropout"), ("data", "eval_split"))


def _coerce_numbers(cfg: FinetuneConfig) -> None:
    for section, key in _FLOAT_KEYS:
        obj = getattr(cfg, section)
        value = getattr(obj, key)
        if isinstance(value, str):
            try:
                setattr(obj, key, float(value))
            except ValueError:
                pass


# ----------------------------------------------------------------------------- reading YAML safely

def read_yaml(path: Path):
    """A YAML file's content through PyYAML's safe loader, refusing files over
    :data:`MAX_CONFIG_BYTES`, alias graphs that expand past :data:`MAX_YAML_NODES` nodes, and
    recursive aliases, before anything is built from them."""
    import yaml

    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {size:,} bytes; a fine-tuning config is a few hundred. Refusing files over "
                          f"{MAX_CONFIG_BYTES:,} bytes.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8.") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to read; a config has two levels (section: key: value).") from None
    finally:
        loader.dispose()


def _check_expanded_size(root, path: Path) -> None:
    """Count the nodes ``root`` stands for once every alias is expanded (shared nodes counted
    once per use), without expanding anything: sizes are memoised per node."""
    import yaml

    sizes: dict[int, int] = {}
    stack: list[tuple[object, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError(f"{path}: its YAML aliases (*name) expand to more than {MAX_YAML_NODES:,} values "
                                  "(an alias bomb, 'billion laughs'). Write the config out without nested aliases.")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{path}: a YAML alias refers to itself (a recursive structure); a config cannot "
                              "hold one.")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


# ----------------------------------------------------------------------------- the guide's layout

def translate_guide_layout(raw: dict) -> tuple[dict, list[str]]:
    """``raw`` with the guide's keys (:data:`GUIDE_KEYS`) moved to the ones used here, and the
    problems found on the way (an unknown key in a guide-only section, a key given twice with two
    values). Keys of this module's own layout pass through unchanged."""
    out = copy.deepcopy(raw)
    problems: list[str] = []

    def put(dotted: str, value, origin: str) -> None:
        section, _, name = dotted.rpartition(".")
        node = out
        if section:
            if out.get(section) is None:
                out[section] = {}
            if not isinstance(out[section], dict):
                return   # reported as "must be a mapping" by load_config
            node = out[section]
        if name in node and node[name] != value:
            problems.append(f"{origin} and {dotted} are the same setting and both are given ({value!r} and "
                            f"{node[name]!r}): keep one")
        else:
            node[name] = value

    for alias, target in GUIDE_KEYS.items():
        section, _, name = alias.rpartition(".")
        if section in GUIDE_SECTIONS:
            continue
        holder = out if not section else out.get(section)
        if isinstance(holder, dict) and name in holder:
            put(target, holder.pop(name), alias)
    for section in GUIDE_SECTIONS:
        if section not in out:
            continue
        body = out.pop(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            problems.append(f"{section} must be a mapping of keys; got {body!r}")
            continue
        for name, value in body.items():
            alias = f"{section}.{name}"
            if alias in GUIDE_KEYS:
                put(GUIDE_KEYS[alias], value, alias)
            elif section == "advanced" and name in ("fp16", "bf16"):
                if not isinstance(value, bool):
                    problems.append(f"{alias} must be true or false; got {value!r}")
                elif value:
                    put("training.mixed_precision", name, alias)
            else:
                allowed = [k.split(".", 1)[1] for k in GUIDE_KEYS if k.startswith(section + ".")]
                allowed += ["fp16", "bf16"] if section == "advanced" else []
                close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
                hint = f" Did you mean {section + '.' + close[0]!r}?" if close else ""
                problems.append(f"unknown key {alias!r}.{hint} Allowed here: {', '.join(allowed)}")
    return out, problems
