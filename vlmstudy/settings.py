"""Runtime settings: mode (tiny | hub), device, dtype, seeding.

``tiny`` (the default) loads the course's own small models from ``assets/models`` and never
touches the network. ``hub`` loads the real checkpoints (``openai/clip-vit-base-patch32``, ...).
Choose with the environment variable ``VLMSTUDY_MODE`` or :func:`set_mode`; notebooks never
branch on the mode themselves, the package does.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

# torch and numpy are imported inside the functions that use them: ``import vlmstudy`` and
# ``vlmstudy --version`` read this module without paying for them (tests/test_lazy_imports.py).

MODES = ("tiny", "hub")
DEVICES = ("auto", "cpu", "cuda", "mps")

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = Path(os.environ.get("VLMSTUDY_ASSETS", REPO_DIR / "assets"))
MODELS_DIR = ASSETS_DIR / "models"

_mode: str | None = None
_device: str | None = None


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    value = str(value).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{what} {value!r} is not known; use one of {', '.join(allowed)}.")
    return value


def check_mode(mode: str) -> str:
    """Normalise a mode name, or raise ConfigError naming the allowed ones."""
    return _check(mode, MODES, "mode")


def get_mode() -> str:
    """The active mode: set_mode() wins, then $VLMSTUDY_MODE, then ``tiny``."""
    if _mode is not None:
        return _mode
    return _check(os.environ.get("VLMSTUDY_MODE", "tiny") or "tiny", MODES, "VLMSTUDY_MODE")


def set_mode(mode: str | None) -> str:
    """Switch between ``tiny`` (shipped stand-ins, offline) and ``hub`` (real checkpoints).

    ``set_mode(None)`` goes back to the environment's choice. Returns the active mode.
    """
    global _mode
    _mode = None if mode is None else _check(mode, MODES, "mode")
    return get_mode()


def get_device() -> str:
    """The device models are put on: set_device() wins, then $VLMSTUDY_DEVICE, then auto
    (cuda if available, then mps, then cpu)."""
    choice = _device or _check(os.environ.get("VLMSTUDY_DEVICE", "auto") or "auto", DEVICES, "VLMSTUDY_DEVICE")
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def set_device(device: str | None) -> str:
    """Override the automatic device choice (``cpu``, ``cuda``, ``mps`` or ``auto``)."""
    global _device
    _device = None if device is None else _check(device, DEVICES, "device")
    return get_device()


def default_dtype(device: str | None = None) -> torch.dtype:
    """fp16 on a GPU (half the memory, tensor cores), fp32 on CPU (fp16 matmuls are slow there)."""
    import torch

    return torch.float16 if (device or get_device()) == "cuda" else torch.float32


def half_dtype(device: str | None = None) -> torch.dtype:
    """The 16-bit dtype a device runs well: fp16 on CUDA and MPS, bf16 on a CPU (fp32's range, and
    CPU kernels for it). Hub mode falls back to it when fp32 would not fit in memory."""
    import torch

    return torch.float16 if torch.device(device or get_device()).type in ("cuda", "mps") else torch.bfloat16


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a run can be repeated exactly."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed
