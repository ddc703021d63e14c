"""Environment check: ``vlmstudy doctor`` and :func:`print_environment_report`.

Every row is ``(item, value, status)``; a status starts with ``ok``, ``warn`` (works, but read the
fix), ``missing`` or ``error`` (the course cannot run until it is fixed; the fix follows ``->``).
A tiny stand-in that has not been built yet is a warning: ``vlmstudy zoo train NAME`` builds it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import platform
import re
import sys
import warnings
from collections.abc import Iterable
from typing import TextIO

from . import settings
from .errors import VlmStudyError

Row = tuple[str, str, str]

#: (row label, import name, distribution name, required). Optional ones come from an extra.
PACKAGES: tuple[tuple[str, str, str, bool], ...] = (
    ("torch", "torch", "torch", True),
    ("transformers", "transformers", "transformers", True),
    ("peft", "peft", "peft", True),
    ("bitsandbytes", "bitsandbytes", "bitsandbytes", True),
    ("accelerate", "accelerate", "accelerate", True),
    ("tokenizers", "tokenizers", "tokenizers", True),
    ("huggingface_hub", "huggingface_hub", "huggingface_hub", True),
    ("faiss", "faiss", "faiss-cpu", True),
    ("sentencepiece", "sentencepiece", "sentencepiece", True),  # SigLIP's tokenizer (spiece.model) in hub mode
    ("protobuf", "google.protobuf", "protobuf", True),  # read by transformers with SentencePiece models
    ("jupyterlab", "jupyterlab", "jupyterlab", True),
    ("nbval", "nbval", "nbval", False),  # the test extra: pip install -e ".[test]"
)

FAIL_PREFIXES = ("missing", "error")
MIN_PYTHON = (3, 10)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _tested_ranges() -> dict[str, str]:
    """Normalised distribution name -> version range, from the installed package's metadata
    (or from pyproject.toml when running from a source checkout that is not installed)."""
    requirements: list[str] = []
    try:
        requirements = [r for r in (importlib.metadata.requires("vlmstudy") or []) if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:
        pyproject = settings.REPO_DIR / "pyproject.toml"
        try:
            import tomllib

            requirements = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        except Exception:  # Python 3.10 without tomllib, or no pyproject: no ranges to compare
            requirements = []
    ranges = {}
    for line in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)", line)
        if match:
            ranges[_norm(match.group(1))] = match.group(2).strip().replace(" ", "")
    return ranges


def _in_range(version: str, spec: str) -> bool:
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(spec).contains(version, prereleases=True)
    except Exception:  # packaging missing or an odd version string: do not guess
        return True


def _import_quietly(name: str):
    """Import a module with its import-time chatter (warnings, log lines, prints) swallowed."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _version(module, dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _package_row(label: str, module_name: str, dist: str, required: bool, ranges: dict[str, str]) -> Row:
    spec = ranges.get(_norm(dist), "")
    pip_arg = f"'{dist}{spec}'" if spec else dist
    try:
        module = _import_quietly(module_name)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] != module_name.split(".")[0]:
            return (label, "broken", f"error -> {module_name} needs {err.name}: pip install --force-reinstall {pip_arg}")
        if not required:
            return (label, "not installed", f"warn: optional, only the test suite needs it -> pip install {pip_arg}")
        return (label, "not installed", f"missing -> pip install {pip_arg}")
    except Exception as err:  # installed but fails to import (version clash, broken build)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        return (label, "broken", f"error: {type(err).__name__}: {first} -> pip install --force-reinstall {pip_arg}")
    version = _version(module, dist)
    if not _in_range(version, spec):
        return (label, version, f"warn: outside the tested range {spec} -> pip install {pip_arg}")
    return (label, version, "ok")


def _python_row() -> Row:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return ("python", version, f"error -> the course needs Python {need} or newer")
    return ("python", version, "ok")


def _vlmstudy_row() -> Row:
    from . import __version__

    where = str(settings.PACKAGE_DIR.parent)
    try:
        importlib.metadata.version("vlmstudy")
    except importlib.metadata.PackageNotFoundError:
        return ("vlmstudy", f"{__version__} ({where})",
                "warn: not installed, notebooks cannot import it -> pip install -e . (in the repository)")
    return ("vlmstudy", f"{__version__} ({where})", "ok")


def _device_row() -> Row:
    try:
        device = settings.get_device()
    except VlmStudyError as err:
        return ("device", os.environ.get("VLMSTUDY_DEVICE", ""), f"error -> {err}")
    import torch

    if torch.cuda.is_available():
        cuda = f"CUDA: {torch.cuda.get_device_name(0)}"
    else:
        cuda = "CUDA: not available"
    mps_backend = getattr(torch.backends, "mps", None)
    mps = "MPS: available" if mps_backend is not None and mps_backend.is_available() else "MPS: not available"
    source = "set_device()" if settings._device else ("VLMSTUDY_DEVICE" if os.environ.get("VLMSTUDY_DEVICE") else "auto")
    note = "" if device != "cpu" else "; the tiny models run fine on a CPU"
    return ("device", device, f"ok ({source}; {cuda}, {mps}{note})")


def _mode_row() -> Row:
    try:
        mode = settings.get_mode()
    except VlmStudyError as err:
        return ("mode", os.environ.get("VLMSTUDY_MODE", ""), f"error -> {err}")
    if settings._mode is not None:
        source = "set_mode()"
    elif os.environ.get("VLMSTUDY_MODE"):
        source = "VLMSTUDY_MODE"
    else:
        source = "default"
    what = "shipped tiny stand-ins, offline" if mode == "tiny" else "real Hugging Face Hub checkpoints"
    return ("mode", mode, f"ok ({source}: {what})")


def _hub_rows(mode: str) -> list[Row]:
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    is_offline = offline.strip().lower() in ("1", "true", "yes", "on")
    if mode == "tiny":
        note = "ok (tiny mode never uses the network)"
    elif is_offline:
        note = "ok (hub mode loads only checkpoints already in the cache)"
    else:
        note = "ok (hub mode downloads each checkpoint on first use)"
    rows = [("HF_HUB_OFFLINE", offline or "unset", note)]
    try:
        from huggingface_hub import constants

        rows.append(("HF_HOME", str(constants.HF_HOME), f"ok (Hub cache: {constants.HF_HUB_CACHE})"))
    except ImportError:
        pass
    return rows


def _model_rows(mode: str, names: Iterable[str] | None) -> list[Row]:
    from .zoo.registry import CARDS, get_card

    cards = [get_card(n) for n in names] if names else list(CARDS)
    rows = []
    for card in cards:
        item = f"model {card.name}"
        if card.is_present():
            status = "ok (tiny stand-in present)"
        else:
            status = (f"warn: tiny stand-in not built yet -> vlmstudy zoo train {card.name} "
                      f"(or git checkout -- assets/models/{card.stand_in})")
        if mode == "hub":
            status += "; " + _hub_cache_status(card.hub_id)
        rows.append((item, f"{card.stand_in} <- {card.hub_id}", status))
    return rows


def _hub_cache_status(hub_id: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, "config.json")
    except Exception:
        cached = None
    return "hub: cached" if isinstance(cached, str) else "hub: not cached yet (downloaded on first load)"


def environment_report(models: Iterable[str] | None = None) -> list[Row]:
    """Check the environment: ``[(item, value, status), ...]``.

    models: names of zoo models to check (default: all of them); an unknown name raises
    :class:`vlmstudy.UnknownModelError`. The status of a row starts with ``ok``, ``warn``,
    ``missing`` or ``error``; the last two are problems the course cannot run with, and the text
    after ``->`` is the fix.
    """
    names = list(models) if models is not None else None
    if names:
        from .zoo.registry import get_card

        for name in names:  # unknown names fail first, before the slow imports
            get_card(name)
    ranges = _tested_ranges()
    rows = [_python_row(), _vlmstudy_row()]
    rows += [_package_row(label, mod, dist, req, ranges) for label, mod, dist, req in PACKAGES]
    rows.append(_device_row())
    mode_row = _mode_row()
    rows.append(mode_row)
    rows += _hub_rows(mode_row[1])
    rows += _model_rows(mode_row[1], names)
    return rows


def report_ok(report: Iterable[Row]) -> bool:
    """True when no row is ``missing`` or ``error``: every required package imports."""
    return not any(status.startswith(FAIL_PREFIXES) for _, _, status in report)


#: Lines of the printed report are at most this long: a status that would run past it continues
#: on the next line, broken between words (a notebook's output area would otherwise wrap the
#: long lines wherever the cell ends, mid-word).
REPORT_WIDTH = 100


def format_report(report: Iterable[Row], width: int = REPORT_WIDTH) -> str:
    import textwrap

    rows = [("item", "value", "status")] + [tuple(map(str, r)) for r in report]
    w0 = max(len(r[0]) for r in rows)
    w1 = min(max(len(r[1]) for r in rows), 48)
    lines = []
    for a, b, c in rows:
        head = f"{a:<{w0}}  {b:<{w1}}  "
        status = textwrap.wrap(c, max(24, width - len(head)), break_long_words=False, break_on_hyphens=False) or [""]
        lines.append((head + status[0]).rstrip())
        lines += [" " * (w0 + w1 + 4) + more for more in status[1:]]
    lines.insert(1, "-" * min(len(max(lines, key=len)), width))
    return "\n".join(lines)


def print_environment_report(models: Iterable[str] | None = None, file: TextIO | None = None) -> bool:
    """Print :func:`environment_report` as a table; return True when the course can run."""
    report = environment_report(models)
    ok = report_ok(report)
    print(format_report(report), file=file)
    summary = ("All required packages are importable." if ok else
               "Some required packages are missing or broken: follow the fixes after '->' above.")
    print(f"\n{summary}", file=file)
    return ok


# --- command line -------------------------------------------------------------------------------

def _run(args) -> int:
    if args.mode:
        settings.set_mode(args.mode)
    return 0 if print_environment_report(args.models or None) else 1


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the environment: packages, device, mode, tiny models",
        description="Check packages, device, mode and the tiny stand-ins; exit 1 when a required "
                    "package is missing (a stand-in that is not built yet is only a warning).",
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="only check these zoo models (default: all)")
    parser.add_argument("--mode", choices=settings.MODES, help="report as if this mode were active")
    parser.set_defaults(func=_run)
