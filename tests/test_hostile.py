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


# ----------------------------------------------------------------------------- fine-tuning checkpoints

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-step LoRA run on a random tiny LLaVA with checkpoints at steps 2 and 4 (one thread, so a
    resumed run can be compared bit for bit), and the config that made it."""
    from transformers import CLIPVisionConfig

    from vlmstudy.finetune import finetune
    from vlmstudy.zoo import build_generative as bg

    root = tmp_path_factory.mktemp("hostile-run")
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=64, patch_size=16, projection_dim=32)
    bg.llava_model(vision, width=32, layers=2).save_pretrained(root / "model")
    bg.llava_processor(patch_size=16).save_pretrained(root / "model")
    data = shapes.export_dataset(shapes.make_scenes("train", 6, seed=0), root / "data")
    config = {"model": str(root / "model"), "output_dir": str(root / "run"),
              "data": {"path": str(data["vqa"]), "eval_split": 8},
              "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
              "training": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 1,
                           "save_every": 2, "eval_max_examples": 0, "max_new_tokens": 4}}
    with one_thread():
        result = finetune(config, callbacks=[], progress=False)
    return root / "run", _adapter_weights(root / "run" / "adapter")


def _adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture
def killed_run(finished_run, tmp_path):
    """A copy of the run as if it had been killed right after its step-4 checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    for name in ("run.json", "history.json"):
        (out / name).unlink()
    shutil.rmtree(out / "adapter")
    return out


def _resume_quietly(out: Path):
    from vlmstudy.finetune import resume

    with one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = resume(out, callbacks=[], progress=False)
    return result, [str(w.message) for w in caught if "checkpoint" in str(w.message)]


def _same_adapter_as_uninterrupted(finished_run, out: Path) -> None:
    expected, got = finished_run[1], _adapter_weights(out / "adapter")
    assert expected.keys() == got.keys() and expected
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("damage, named", [
    ("truncate_state", "state.safetensors is"),
    ("delete_adapter", "adapter/adapter_model.safetensors is missing"),
    ("delete_manifest", "has no manifest.json"),
    ("flip_a_bit", "does not match its sha256"),
])
def test_resume_falls_back_to_the_newest_intact_checkpoint(finished_run, killed_run, damage, named):
    latest = killed_run / "checkpoints" / "step-000004"
    if damage == "truncate_state":
        data = (latest / "state.safetensors").read_bytes()
        (latest / "state.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "delete_adapter":
        (latest / "adapter" / "adapter_model.safetensors").unlink()
    elif damage == "delete_manifest":
        (latest / "manifest.json").unlink()
    else:   # bit rot: same size, other content
        data = bytearray((latest / "adapter" / "adapter_model.safetensors").read_bytes())
        data[-3] ^= 0x10
        (latest / "adapter" / "adapter_model.safetensors").write_bytes(bytes(data))
    result, messages = _resume_quietly(killed_run)
    assert result.steps == 4
    assert len(messages) == 1 and "step-000004" in messages[0] and named in messages[0], messages
    assert "went on from step-000002" in messages[0]
    _same_adapter_as_uninterrupted(finished_run, killed_run)   # steps 3-4 redone exactly


def test_resume_refuses_with_one_line_when_no_checkpoint_is_intact(killed_run, capsys):
    for folder in (killed_run / "checkpoints").iterdir():
        (folder / "manifest.json").unlink()
    line = one_line_error(capsys, ["finetune", "--resume", str(killed_run), "--quiet"])
    assert "no intact checkpoint" in line and "step-000004" in line and "--overwrite" in line


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_is_never_unpickled(killed_run, tmp_path, capsys, monkeypatch):
    """A shared run folder: someone drops a malicious state.pt into the checkpoints, in the old
    format (no manifest) and next to an intact new one. Resume never opens it."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"optimizer": _Payload(marker)})
    (killed_run / "checkpoints" / "step-000004" / "state.pt").write_bytes(payload)   # beside an intact checkpoint
    legacy = killed_run / "checkpoints" / "step-000006"                               # an old-format one, newest
    shutil.copytree(killed_run / "checkpoints" / "step-000002" / "adapter", legacy / "adapter")
    (legacy / "state.pt").write_bytes(payload)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    result, messages = _resume_quietly(killed_run)
    assert not marker.exists() and result.steps == 4
    assert len(messages) == 1 and "step-000006" in messages[0] and "never loaded" in messages[0], messages
    # with only old-format checkpoints left, resume stops with one line, still without unpickling
    shutil.rmtree(killed_run / "checkpoints" / "step-000002")
    shutil.rmtree(killed_run / "checkpoints" / "step-000004")
    for name in ("run.json", "history.json"):
        (killed_run / name).unlink()
    line = one_line_error(capsys, ["finetune", "--resume", str(killed_run), "--quiet"])
    assert "step-000006" in line and "pickled state.pt, which is never loaded" in line and not marker.exists()


def test_a_rewritten_manifest_does_not_let_garbage_through(killed_run):
    """Someone edits state.json and recomputes the manifest: the state is still checked."""
    from vlmstudy.finetune import checkpoint as ckpt

    latest = killed_run / "checkpoints" / "step-000004"
    for garbage in ('{"__items__": [[1]]}', '{"step": 4}', '[' * 100_000, '{"__reduce__": "os.system"}'):
        (latest / "state.json").write_text(garbage)
        ckpt.write_manifest(latest)
        with pytest.raises(CheckpointError, match="step-000004"):
            ckpt.read_checkpoint(latest)
    manifest = json.loads((latest / "manifest.json").read_text())
    manifest["files"]["../../../../etc/hostname"] = {"bytes": 1, "sha256": "0" * 64}
    (latest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        ckpt.verify_checkpoint(latest)


def test_state_round_trips_through_safetensors_and_json_exactly():
    """Optimizer (int-keyed state, tuples), RNG states (NumPy's uint32 array, Python's tuple) come back equal."""
    import random

    from vlmstudy.finetune import checkpoint as ckpt

    param = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.randn(3, 2)
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": ckpt.rng_state(), "history": [{"loss": float("nan")}],
             "__odd": 1, 2: (1.5, None, True)}
    tree, tensors = ckpt.encode_state(state)
    back = ckpt.decode_state(json.loads(json.dumps(tree)), tensors)
    assert back["rng"]["python"] == random.getstate()
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["rng"]["numpy"][1].dtype == np.uint32 and back[2] == (1.5, None, True) and back["__odd"] == 1
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    with pytest.raises(TypeError, match="cannot store"):
        ckpt.encode_state({"f": print})
