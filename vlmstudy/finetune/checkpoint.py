"""Checkpoints that survive a crash: written atomically, verified on resume, never unpickled.

A checkpoint is a folder ``OUTPUT_DIR/checkpoints/step-000040/`` holding

* ``adapter/``: the LoRA weights (safetensors) and ``adapter_config.json``;
* ``state.safetensors`` + ``state.json``: optimizer and scheduler state, the step, the data-order
  position, the random states of Python, NumPy and torch (CPU and CUDA), the history so far. Every
  tensor (optimizer moments, RNG states) is in the safetensors file; ``state.json`` holds the rest
  and names the tensors (see :func:`encode_state`). No pickle is written or read: a run folder may
  be shared, and unpickling a file from it would run whatever code the file names;
* ``trainer_state.json``: the same step / position / last losses, readable;
* ``manifest.json``, written last: the size and sha256 of every other file.

It is first written to ``checkpoints/.tmp-step-000040-<pid>/``; every file and the folder are
``fsync``-ed, then the folder is renamed into place (a rename within one file system is atomic) and
the parent folder is fsync-ed. A run killed at any moment therefore leaves either the new complete
checkpoint or none, and never touches the earlier ones; leftover ``.tmp-*`` folders are removed on
the next save. A checkpoint damaged later (a cut copy, a deleted file, a full disk) fails
:func:`verify_checkpoint`, and :func:`vlmstudy.finetune.resume` goes on from the newest one that
passes, with a warning naming the damaged one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"
#: files every checkpoint must hold (besides the manifest), as the manifest names them
REQUIRED_FILES = (STATE_TENSORS, STATE_JSON, ADAPTER_WEIGHTS, "adapter/adapter_config.json")
MANIFEST_FORMAT = 1
#: state.json tags (a plain JSON object has only string keys that do not start with "__")
_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"
_NDARRAY_DTYPES = ("uint8", "uint32", "int32", "int64", "float32", "float64")


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path``, then every folder (so names and contents are on disk)."""
    path = Path(path)
    dirs = [path] if path.is_dir() else []
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        elif p.is_dir():
            dirs.append(p)
    for d in dirs:
        fsync_dir(d)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover  (platforms without directory fds)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small file atomically: a temporary file, fsync, rename over the old one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Create folder ``final`` atomically: ``write(tmp)`` fills a temporary sibling, which is synced
    and renamed to ``final``. An existing ``final`` is replaced only after the new one is complete."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoint folders of a run, ``[(step, path)]`` by step. Each appeared whole (an atomic
    rename); whether it is still intact is :func:`verify_checkpoint`'s question."""
    root = Path(output_dir) / CHECKPOINTS
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir() and not p.is_symlink():
                out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that passes :func:`verify_checkpoint` (damaged newer ones are skipped)."""
    for _, path in reversed(list_checkpoints(output_dir)):
        try:
            verify_checkpoint(path)
        except CheckpointError:
            continue
        return path
    return None


def clean_temporaries(output_dir: Path) -> None:
    """Remove ``.tmp-*`` / ``.old-*`` folders a killed save left behind (never complete checkpoints)."""
    root = Path(output_dir) / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- state <-> safetensors + JSON

def encode_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split ``state`` (nested dicts / lists / tuples of numbers, strings, tensors and NumPy arrays)
    into a JSON-able tree and a flat ``{name: tensor}`` dict for safetensors.

    Tensors become ``{"__tensor__": name}``, NumPy arrays ``{"__ndarray__": name, "dtype": ...}``,
    tuples ``{"__tuple__": [...]}`` and dicts with non-string keys (an optimizer's ``state`` is keyed
    by parameter index) ``{"__items__": [[key, value], ...]}``. Anything else is a TypeError: the
    file must never need pickle to be read back.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(x):
        if isinstance(x, torch.Tensor):
            name = f"t{len(tensors)}"
            tensors[name] = x.detach().to("cpu").contiguous().clone()
            return {_TENSOR: name}
        if isinstance(x, np.ndarray):
            if x.dtype.name not in _NDARRAY_DTYPES:
                raise TypeError(f"cannot store a NumPy array of dtype {x.dtype} in a checkpoint")
            name = f"t{len(tensors)}"
            tensors[name] = torch.from_numpy(np.ascontiguousarray(x).astype(np.int64 if x.dtype.kind in "ui" else
                                                                            np.float64))
            return {_NDARRAY: name, "dtype": x.dtype.name}
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, tuple):
            return {_TUPLE: [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in x):
                return {k: enc(v) for k, v in x.items()}
            return {_ITEMS: [[enc(k), enc(v)] for k, v in x.items()]}
        raise TypeError(f"cannot store a {type(x).__name__} in a checkpoint (only numbers, strings, lists, dicts, "
                        "tensors and NumPy arrays)")

    return enc(state), tensors


def decode_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`. Raises :class:`CheckpointError` on anything it did not write."""

    def tensor(name):
        if not isinstance(name, str) or name not in tensors:
            raise CheckpointError(f"state.json names a tensor {name!r} that {STATE_TENSORS} does not hold")
        return tensors[name]

    def dec(x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):  # pragma: no cover  (json only makes the types above)
            raise CheckpointError(f"state.json holds a {type(x).__name__}")
        if _TENSOR in x and len(x) == 1:
            return tensor(x[_TENSOR])
        if _NDARRAY in x and set(x) == {_NDARRAY, "dtype"} and x["dtype"] in _NDARRAY_DTYPES:
            return tensor(x[_NDARRAY]).numpy().astype(x["dtype"])
        if _TUPLE in x and len(x) == 1 and isinstance(x[_TUPLE], list):
            return tuple(dec(v) for v in x[_TUPLE])
        if _ITEMS in x and len(x) == 1 and isinstance(x[_ITEMS], list):
            if not all(isinstance(kv, list) and len(kv) == 2 for kv in x[_ITEMS]):
                raise CheckpointError("state.json holds a malformed key/value list")
            out = {}
            for k, v in x[_ITEMS]:
                k = dec(k)
                if not isinstance(k, (int, str, float, bool, tuple)) and k is not None:
                    raise CheckpointError("state.json holds a key that is not a number or string")
                out[k] = dec(v)
            return out
        if any(k.startswith("__") for k in x):
            raise CheckpointError(f"state.json holds an unknown tag {sorted(x)[:3]}")
        return {k: dec(v) for k, v in x.items()}

    return dec(tree)


# ----------------------------------------------------------------------------- the manifest

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record size and sha256 of every file under ``folder`` in ``folder/manifest.json`` (atomically)."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            files[p.relative_to(folder).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    atomic_write_text(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Check ``folder`` against its manifest: every required file listed, present, of the recorded
    size and sha256. Raises :class:`CheckpointError` saying what is wrong; returns ``None`` if intact."""
    folder = Path(folder)
    where = f"checkpoint {folder}"
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        legacy = " (an older vlmstudy wrote it with a pickled state.pt, which is never loaded)" \
            if (folder / "state.pt").exists() else ""
        raise CheckpointError(f"{where} has no {MANIFEST}: it is incomplete or not a vlmstudy checkpoint{legacy}")
    try:
        if manifest_file.stat().st_size > 1 << 20:
            raise ValueError("over 1 MB")
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {manifest.get('format')!r}")
        entries = [(name, int(e["bytes"]), str(e["sha256"])) for name, e in files.items()]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise CheckpointError(f"{where}: {MANIFEST} is damaged ({type(err).__name__}: {str(err)[:80]})") from None
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise CheckpointError(f"{where}: {MANIFEST} does not list {', '.join(missing)}")
    for name, size, sha in entries:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or name == MANIFEST:
            raise CheckpointError(f"{where}: {MANIFEST} names a path outside the checkpoint: {name!r}")
        path = folder.joinpath(*rel.parts)
        if path.is_symlink() or not path.is_file():
            raise CheckpointError(f"{where}: {name} is missing" + (" (a symbolic link)" if path.is_symlink() else ""))
        actual = path.stat().st_size
        if actual != size:
            raise CheckpointError(f"{where}: {name} is {actual} bytes, the manifest says {size} (cut short?)"
                                  if actual < size else f"{where}: {name} is {actual} bytes, the manifest says {size}")
        if _sha256(path) != sha:
            raise CheckpointError(f"{where}: {name} does not match its sha256 in {MANIFEST} (the file changed)")


# ----------------------------------------------------------------------------- save / read

def save_checkpoint(output_dir: Path, step: int, model, state: dict, summary: dict,
                    keep: int | None = None) -> Path:
    """Write checkpoint ``step`` atomically (see the module docstring); then, if ``keep`` is set,
    delete the oldest checkpoints beyond the newest ``keep``."""
    from safetensors.torch import save_file

    clean_temporaries(output_dir)
    tree, tensors = encode_state(state)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp / "adapter"))
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(tree))
        (tmp / "trainer_state.json").write_text(json.dumps(summary, indent=1))
        write_manifest(tmp)  # last: a folder with a valid manifest is complete

    path = atomic_dir(Path(output_dir) / CHECKPOINTS / checkpoint_name(step), write)
    if keep is not None:
        for _, old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


#: keys (and their types) that :meth:`vlmstudy.finetune.Trainer.state_dict` writes
STATE_KEYS = {"step": int, "micro_batch": int, "epoch": int, "batch_in_epoch": int, "optimizer": dict,
              "scheduler": dict, "rng": dict, "history": list, "seconds": (int, float), "total_steps": int}


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Verify ``folder`` and read it: ``(state, adapter_weights)``, nothing applied yet.

    Raises :class:`CheckpointError` (one line) for a damaged, incomplete or foreign checkpoint.
    Only safetensors and JSON are read; a ``state.pt`` (pickle) is never opened.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    verify_checkpoint(folder)
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
        weights = load_file(str(folder / ADAPTER_WEIGHTS))
        tree = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        state = decode_state(tree, tensors)
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {folder}: {err}") from None
    except (SafetensorError, ValueError, OSError, RecursionError) as err:
        raise CheckpointError(f"checkpoint {folder} cannot be read ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:100] if str(err) else ''})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {folder}: {STATE_JSON} does not hold a training state")
    wrong = [k for k, kind in STATE_KEYS.items()
             if not isinstance(state.get(k), kind) or isinstance(state.get(k), bool)]
    rng = state.get("rng")
    if wrong or not (isinstance(rng, dict) and {"python", "numpy", "torch"} <= set(rng)):
        raise CheckpointError(f"checkpoint {folder}: {STATE_JSON} lacks or garbles {', '.join(wrong) or 'rng'}")
    return state, weights


def load_state(checkpoint: Path) -> dict:
    """The training state of a verified checkpoint (see :func:`read_checkpoint`)."""
    return read_checkpoint(checkpoint)[0]
