"""Checkpoints that survive a crash: written atomically, complete or absent.

A checkpoint is a folder ``OUTPUT_DIR/checkpoints/step-000040/`` holding

* ``adapter/``: the LoRA weights (safetensors) and ``adapter_config.json``;
* ``state.pt``: optimizer and scheduler state, the step, the data-order position, the random
  states of Python, NumPy and torch (CPU and CUDA), the history so far;
* ``trainer_state.json``: the same step / position / last losses, readable.

It is first written to ``checkpoints/.tmp-step-000040-<pid>/``; every file and the folder are
``fsync``-ed, then the folder is renamed into place (a rename within one file system is atomic) and
the parent folder is fsync-ed. A run killed at any moment therefore leaves either the new complete
checkpoint or none, and never touches the earlier ones: :func:`latest_checkpoint` only sees complete
folders, and leftover ``.tmp-*`` folders are removed on the next save.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")


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
    """Complete checkpoints of a run, ``[(step, path)]`` by step."""
    root = Path(output_dir) / CHECKPOINTS
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir() and (p / "state.pt").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


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


def save_checkpoint(output_dir: Path, step: int, model, state: dict, summary: dict,
                    keep: int | None = None) -> Path:
    """Write checkpoint ``step`` atomically (see the module docstring); then, if ``keep`` is set,
    delete the oldest complete checkpoints beyond the newest ``keep``."""
    clean_temporaries(output_dir)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp / "adapter"))
        torch.save(state, tmp / "state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(summary, indent=1))

    path = atomic_dir(Path(output_dir) / CHECKPOINTS / checkpoint_name(step), write)
    if keep is not None:
        for _, old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_state(checkpoint: Path) -> dict:
    # our own file: optimizer state, numpy RNG tuples and history need the full unpickler
    return torch.load(Path(checkpoint) / "state.pt", map_location="cpu", weights_only=False)
