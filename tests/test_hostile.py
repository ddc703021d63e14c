"""Hostile input and faults (issue 25): each case gives one clear line (a VlmStudyError; the CLI
prints ``error: ...`` and exits 2) or is handled correctly; nothing is unpickled from a run folder;
``--resume`` survives a damaged latest checkpoint; the server logs client mistakes without a
traceback. The fuzz runs at the end are bounded and derandomized (hypothesis, fixed examples).

The data-file and fine-tuning-config cases live in test_data.py / test_finetune.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmstudy import shapes
from vlmstudy.cli import main as cli_main
from vlmstudy.errors import CheckpointError, ImageError, ModelUnavailableError, VlmStudyError

REPO = Path(__file__).resolve().parent.parent


def one_line_error(capsys, argv) -> str:
    """Run the CLI in this process; assert exit 2 and exactly one ``error:`` line on stderr."""
    code = cli_main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:] and "Traceback" not in err, err
    return lines[-1]


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scene_png(folder: Path) -> Path:
    path = folder / "scene.png"
    shapes.render(shapes.make_scenes("train", 1, seed=0)[0]).save(path)
    return path


# ----------------------------------------------------------------------------- model folders

def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_model_folder_with_a_cut_config_json_names_the_file(tmp_path, capsys):
    from vlmstudy.zoo import load

    folder = _copy_model(REPO / "assets" / "models" / "tiny-clip", tmp_path / "cut")
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelUnavailableError, match=r"config\.json.*not valid JSON.*save_pretrained"):
        load(str(folder))
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelUnavailableError, match="not a model config"):
        load(str(folder))
    (folder / "config.json").write_bytes(b"\xff\xfe{\x00")   # not UTF-8 either
    line = one_line_error(capsys, ["describe", str(scene_png(tmp_path)), "--model", str(folder)])
    assert "config.json" in line and "not valid JSON" in line


def test_empty_model_folder_says_it_holds_no_config_json(tmp_path, capsys):
    from vlmstudy.zoo import load

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="holds no config.json") as info:
        load(str(tmp_path / "empty"))
    assert "Unknown model" not in str(info.value)
    line = one_line_error(capsys, ["ask", str(scene_png(tmp_path)), "what colour?", "--model", str(tmp_path / "empty")])
    assert "holds no config.json" in line
