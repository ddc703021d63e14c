import random

import numpy as np
import pytest
import torch

import vlmstudy
from vlmstudy import settings
from vlmstudy.errors import ConfigError, VlmStudyError


def test_default_mode_is_tiny():
    assert vlmstudy.get_mode() == "tiny"


def test_mode_from_environment(monkeypatch):
    monkeypatch.setenv("VLMSTUDY_MODE", " HUB ")
    assert vlmstudy.get_mode() == "hub"
    monkeypatch.setenv("VLMSTUDY_MODE", "")
    assert vlmstudy.get_mode() == "tiny"


def test_set_mode_wins_over_environment_and_none_goes_back(monkeypatch):
    monkeypatch.setenv("VLMSTUDY_MODE", "hub")
    assert vlmstudy.set_mode("tiny") == "tiny"
    assert vlmstudy.get_mode() == "tiny"
    assert vlmstudy.set_mode(None) == "hub"


@pytest.mark.parametrize("bad", ["huge", "tinyy", "real"])
def test_bad_mode_is_a_config_error_naming_the_choices(bad):
    with pytest.raises(ConfigError) as info:
        vlmstudy.set_mode(bad)
    assert isinstance(info.value, VlmStudyError)
    assert bad in str(info.value) and "tiny" in str(info.value) and "hub" in str(info.value)
    assert vlmstudy.get_mode() == "tiny"  # a refused value changes nothing


def test_bad_mode_in_environment(monkeypatch):
    monkeypatch.setenv("VLMSTUDY_MODE", "gpu")
    with pytest.raises(ConfigError, match="VLMSTUDY_MODE"):
        vlmstudy.get_mode()
    assert settings.check_mode("Tiny") == "tiny"


def test_device_override_and_environment(monkeypatch):
    auto = vlmstudy.get_device()
    assert auto in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        assert auto != "cuda"
    assert vlmstudy.set_device("cpu") == "cpu"
    assert vlmstudy.get_device() == "cpu"
    assert vlmstudy.set_device(None) == auto
    monkeypatch.setenv("VLMSTUDY_DEVICE", "cpu")
    assert vlmstudy.get_device() == "cpu"
    with pytest.raises(ConfigError, match="tpu"):
        vlmstudy.set_device("tpu")


def test_default_dtype():
    assert settings.default_dtype("cpu") == torch.float32
    assert settings.default_dtype("cuda") == torch.float16


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()

    assert vlmstudy.seed_everything(123) == 123
    first = draw()
    vlmstudy.seed_everything(123)
    assert draw() == first
    vlmstudy.seed_everything(124)
    assert draw() != first
