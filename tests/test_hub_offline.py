"""Hub mode on a machine with no network and no cache fails fast, with one actionable message."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vlmstudy
from vlmstudy.errors import ModelUnavailableError

pytestmark = pytest.mark.hub  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

HUB_ID = "openai/clip-vit-base-patch32"


def _assert_helpful(message: str) -> None:
    assert HUB_ID in message
    assert "HF_HOME" in message
    assert "tiny" in message and "set_mode" in message


def test_hub_mode_offline_with_empty_cache_raises_fast():
    from huggingface_hub import constants

    # conftest.py gave this session an empty HF_HOME before huggingface_hub was imported
    assert constants.HF_HUB_OFFLINE
    assert Path(constants.HF_HOME) == Path(os.environ["HF_HOME"])
    assert not any(Path(constants.HF_HUB_CACHE).glob("models--*"))
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        vlmstudy.load(HUB_ID, mode="hub")
    assert time.monotonic() - start < 5
    _assert_helpful(str(info.value))


def test_set_mode_hub_routes_load_to_the_hub():
    vlmstudy.set_mode("hub")
    with pytest.raises(ModelUnavailableError) as info:
        vlmstudy.load("clip")  # short name, hub mode: the real checkpoint is asked for
    _assert_helpful(str(info.value))


CHILD = """
import json, time, vlmstudy
import vlmstudy.zoo.loading  # torch and transformers load lazily: import them before the clock starts
start = time.monotonic()
try:
    vlmstudy.load("clip")
    result = dict(error=None)
except Exception as err:
    result = dict(error=type(err).__name__, message=str(err), mode=vlmstudy.get_mode())
result["seconds"] = time.monotonic() - start
print(json.dumps(result))
"""


def test_hub_mode_from_environment_variable_in_a_fresh_process(subprocess_env, tmp_path):
    env = dict(subprocess_env, VLMSTUDY_MODE="hub")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mode"] == "hub"
    assert result["error"] == "ModelUnavailableError", result
    _assert_helpful(result["message"])
    assert result["seconds"] < 5
