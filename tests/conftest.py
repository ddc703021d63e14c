"""Fixtures for tests/. The environment itself (offline Hub, empty HF_HOME, MPLBACKEND=Agg,
VLMSTUDY_MODE unset so mode is ``tiny``) is set in the repository's top conftest.py, so that the
notebooks nbval runs get it too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vlmstudy import settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Every test starts and ends with no set_mode() / set_device() override."""
    settings.set_mode(None)
    settings.set_device(None)
    yield
    settings.set_mode(None)
    settings.set_device(None)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def load_script():
    """Import a repository script (``benchmarks/bench_search.py``, ``tools/...``) as a module, so a
    test can call its ``main`` in this process instead of paying for a fresh interpreter."""
    import importlib.util

    def load(relative_path: str):
        path = REPO / relative_path
        spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def restore_threads():
    """Scripts set torch's (and faiss's) thread counts; put them back afterwards."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def subprocess_env(tmp_path) -> dict[str, str]:
    """Environment for a child Python: offline, its own empty HF_HOME, this repository importable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("VLMSTUDY_MODE", None)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def hubsim_home(tmp_path_factory) -> Path:
    """A simulated Hugging Face Hub (every registry checkpoint, real configs and processors, shrunk
    random weights: :mod:`vlmstudy.testing.hubsim`), built once per session. ``VLMSTUDY_HUBSIM_HOME``
    names a folder to build into and reuse across runs (the build skips when its stamp is current)."""
    from vlmstudy.testing.hubsim import build_hub_cache

    home = Path(os.environ.get("VLMSTUDY_HUBSIM_HOME") or tmp_path_factory.mktemp("hubsim-home"))
    build_hub_cache(home)
    return home


@pytest.fixture(scope="session")
def hub_env(hubsim_home) -> dict[str, str]:
    """Environment for a child process in hub mode against the simulated Hub: VLMSTUDY_MODE=hub,
    HF_HOME=the simulated cache, HF_HUB_OFFLINE=1, this repository importable."""
    from vlmstudy.testing.hubsim import hub_environment

    env = hub_environment(hubsim_home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("VLMSTUDY_DEVICE", None)
    return env
