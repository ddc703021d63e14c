"""Hostile input and faults (issue 25): each case gives one clear line (a VlmStudyError; the CLI
prints ``error: ...`` and exits 2) or is handled correctly; nothing is unpickled from a run folder;
``--resume`` survives a damaged latest checkpoint; the server logs client mistakes without a
traceback. The fuzz runs at the end are bounded and derandomized (hypothesis, fixed examples).

The data-file and fine-tuning-config cases live in test_data.py / test_finetune.py.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_finetune import one_thread  # the same one-thread guard the bit-for-bit training tests use

from vlmstudy import shapes
from vlmstudy.cli import main as cli_main
from vlmstudy.errors import CheckpointError, ImageError, ModelUnavailableError, VlmStudyError

pytestmark = pytest.mark.slow  # test tier (issue 23): training runs, a server, fuzzing

REPO = Path(__file__).resolve().parent.parent


def one_line_error(capsys, argv) -> str:
    """Run the CLI in this process; assert exit 2 and exactly one ``error:`` line on stderr."""
    code = cli_main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:] and "Traceback" not in err, err
    return lines[-1]




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
        finetune(config, callbacks=[], progress=False)
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


# ----------------------------------------------------------------------------- prompts longer than the context

LONG_QUESTION = "what colour is the shape " * 4000   # 100 kB


@pytest.fixture(scope="module")
def scene():
    return shapes.render(shapes.make_scenes("train", 1, seed=0)[0])


@pytest.mark.parametrize("name", ["blip-vqa", "blip2", "instructblip", "llava", "llava-next"])
def test_a_100_kB_question_is_refused_before_the_model_runs(name, scene):
    from vlmstudy import tasks

    with pytest.raises(tasks.ContextLengthError, match=r"tokens.*context of this .* model\. Use a shorter question"):
        tasks.answer(scene, LONG_QUESTION, model=name)


@pytest.mark.parametrize("name", ["blip2", "llava", "llava-next"])
def test_the_prompt_check_counts_exactly_what_the_processor_makes(name, scene):
    """At the boundary: room for exactly the answer passes, one token more is refused (so the count,
    image tokens included, is the processor's own)."""
    from vlmstudy import tasks
    from vlmstudy.generation import context_length

    model, processor = tasks.get_model(name)
    wide = scene.resize((128, 64))   # LLaVA-NeXT's image tokens depend on the size
    prompt = tasks.format_question("what colour is the triangle on the left?", (model, processor))
    used = processor(images=[wide], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    room = context_length(model, processor) - used
    tasks.check_prompt_fits(model, processor, [wide], [prompt], room)
    with pytest.raises(tasks.ContextLengthError, match=f"needs {used} tokens plus max_new_tokens={room + 1}"):
        tasks.check_prompt_fits(model, processor, [wide], [prompt], room + 1)


def test_ask_with_a_100_kB_question_exits_2(tmp_path, capsys):
    line = one_line_error(capsys, ["ask", str(scene_png(tmp_path)), LONG_QUESTION[:100_000]])
    assert "context" in line and len(line) < 400


@pytest.mark.parametrize("name", ["blip2", "instructblip", "llava"])
def test_a_typed_image_placeholder_is_refused(name, scene):
    """'<image>' in the question would be expanded into image tokens too (BLIP-2 failed with
    'Number of elements of source < number of ones in mask')."""
    from vlmstudy import tasks

    with pytest.raises(VlmStudyError, match="contains '<image>'"):
        tasks.answer(scene, "what is <image> showing?", model=name)
    if name == "llava":
        with pytest.raises(VlmStudyError, match="contains '<image>'"):
            tasks.ChatSession(name).set_image(scene).ask("and <image>?")


# ----------------------------------------------------------------------------- extreme aspect ratios

def png_of(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_extreme_aspect_ratios_are_refused_everywhere(tmp_path, capsys, scene):
    from vlmstudy import images, tasks

    strip = png_of(300_000, 1)
    assert len(strip) < 2000   # the hostile file is tiny
    for data in (strip, png_of(1, 300_000), png_of(21 * 8, 8)):
        with pytest.raises(ImageError, match=f"{images.MAX_ASPECT_RATIO}:1"):
            images.load_image_bytes(data, formats=images.UPLOAD_FORMATS)
    assert images.load_image_bytes(png_of(20 * 8, 8)).size == (160, 8)   # 20:1 is still fine
    path = tmp_path / "strip.png"
    path.write_bytes(strip)
    with pytest.raises(ImageError, match="20:1"):
        tasks.answer(str(path), "what colour?", model="llava")   # was: out of memory in the processor
    assert "20:1" in one_line_error(capsys, ["chat", str(path)])


# ----------------------------------------------------------------------------- ImageIndex files

@pytest.fixture
def saved_index(tmp_path):
    from vlmstudy.retrieval import ImageIndex

    rng = np.random.default_rng(0)
    return ImageIndex().add(rng.normal(size=(5, 8)), metadata=[f"{i}.png" for i in range(5)]).save(tmp_path / "idx")


def _edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "index.json").read_text())
    meta.update(changes)
    (folder / "index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "cut short or not a safetensors file"),
    ("random", "cut short or not a safetensors file"),
    ("version_string", "version '2'"),
    ("version_newer", "written by a newer vlmstudy"),
    ("count_string", "count '5'"),
    ("dim_negative", "dim -1"),
    ("metric_number", "metric 5"),
    ("metadata_dict", "metadata (not a list)"),
    ("json_nested", "Could not read"),
    ("nan_vectors", "NaN or infinite"),
    ("not_unit_length", "not of unit length"),
    ("int_vectors", "not floating point"),
])
def test_a_damaged_or_tampered_index_gets_the_modules_own_error(saved_index, damage, message):
    from safetensors.torch import load_file, save_file

    from vlmstudy.retrieval import ImageIndex, RetrievalError

    vectors_file = saved_index / "vectors.safetensors"
    tensors = load_file(str(vectors_file))
    if damage == "truncate":
        vectors_file.write_bytes(vectors_file.read_bytes()[:100])
    elif damage == "random":
        vectors_file.write_bytes(np.random.default_rng(1).bytes(4096))
    elif damage == "json_nested":
        (saved_index / "index.json").write_text("[" * 100_000)
    elif damage in ("nan_vectors", "not_unit_length", "int_vectors"):
        v = tensors["vectors"]
        v = {"nan_vectors": v.index_fill(0, torch.tensor([3]), float("nan")), "not_unit_length": v * 3,
             "int_vectors": v.to(torch.int32)}[damage]
        save_file(dict(tensors, vectors=v), str(vectors_file))
    else:
        key, value = {"version_string": ("version", "2"), "version_newer": ("version", 2),
                      "count_string": ("count", "5"), "dim_negative": ("dim", -1), "metric_number": ("metric", 5),
                      "metadata_dict": ("metadata", {"a": 1})}[damage]
        _edit_meta(saved_index, **{key: value})
    with pytest.raises(RetrievalError, match=re.escape(message)) as info:
        ImageIndex.load(saved_index)
    assert "\n" not in str(info.value)


def test_nan_vectors_are_refused_at_add():
    from vlmstudy.retrieval import ImageIndex, RetrievalError

    with pytest.raises(RetrievalError, match="NaN or infinite"):
        ImageIndex().add(np.array([[1.0, 0.0], [np.inf, 1.0]]))


# ----------------------------------------------------------------------------- a real server under abuse

def _raw_request(host: str, port: int, data: bytes, hang_up: bool) -> bytes:
    import socket

    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(data)
        if hang_up:       # gone mid-upload: the server is still waiting for the rest of the body
            time.sleep(0.1)
            return b""
        return sock.recv(65536)


def test_real_server_says_serving_once_it_listens_and_logs_abuse_in_one_line_each(subprocess_env, tmp_path):
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "vlmstudy", "serve", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=dict(subprocess_env, OMP_NUM_THREADS="1"))
    try:
        line = proc.stdout.readline()
        match = re.search(r"on http://(127\.0\.0\.1):(\d+) ", line)
        assert match, (line, proc.stderr.read()[-2000:] if proc.poll() is not None else "")
        host, port = match.group(1), int(match.group(2))
        url = f"http://{host}:{port}"
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200   # at once: no retry, no wait

        image = ("x.png", (REPO / "assets" / "images" / "shapes-1.png").read_bytes(), "image/png")
        refused = [
            ({"image": image}, {"question": "what colour?", "colour": "red"}, 422, "bad_fields"),
            ({"image": image}, {}, 422, "bad_fields"),
            ({"image": image}, {"question": "what colour is the shape? " * 19}, 422, "prompt_too_long"),  # 475 chars
            ({"image": ("s.png", png_of(300_000, 1), "image/png")}, {"question": "what?"}, 422, "bad_image"),
            ({"image": ("x.png", image[1][:300], "image/png")}, {"question": "what?"}, 422, "bad_image"),   # cut
            ({"image": ("x.txt", b"hello", "text/plain")}, {"question": "what?"}, 415, "not_an_image"),
            ({"image": image}, {"question": "what?", "max_new_tokens": "1e9"}, 422, "bad_field"),
        ]
        for files, data, status, code in refused:
            r = httpx.post(f"{url}/vqa", files=files, data=data, timeout=60)
            assert (r.status_code, r.json()["error"]) == (status, code), r.text
        head = (f"POST /vqa HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                "Content-Length: 100000\r\n\r\n").encode()
        part = b'--B\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n' + image[1][:200]
        for _ in range(3):
            _raw_request(host, port, head + part, hang_up=True)
        broken = head.replace(b"100000", b"20") + b"--B\r\nnot a part at all"
        assert b" 400 " in _raw_request(host, port, broken, hang_up=False).split(b"\r\n")[0]
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
        time.sleep(0.3)   # the last hang-up is logged
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err[-3000:]
    assert err.count("the client disconnected before its request was read") == 3, err[-3000:]
    ours = [line for line in err.splitlines() if "POST /vqa: 4" in line]
    assert len(ours) == len(refused) + 1, ours   # one line per refused request (+ the broken multipart)
    assert all(any(f": {status} {code} (" in line for line in ours) for _, _, status, code in refused), ours


# ----------------------------------------------------------------------------- bounded, seeded fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: derandomized (the same examples every run, so a failure reproduces), no example database on disk
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def fuzz(examples: int):
    return settings(FUZZ, max_examples=examples)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _seed_images() -> list[bytes]:
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        shapes.render(shapes.make_scenes("train", 1, seed=1)[0], size=24).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEED_IMAGES = _seed_images()


@st.composite
def mutated_files(draw, seeds: list[bytes]):
    """A valid file with a few bytes overwritten, a cut, or bytes spliced in; sometimes pure noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@fuzz(300)
@given(data=mutated_files(SEED_IMAGES))
def test_fuzz_load_image_bytes(data):
    from vlmstudy import images

    try:
        img = images.load_image_bytes(data, max_pixels=4_000_000, formats=images.UPLOAD_FORMATS)
    except ImageError as err:
        assert str(err) and "\n" not in str(err).strip()
        return
    assert img.mode == "RGB" and min(img.size) >= 1
    assert max(img.size) <= images.MAX_ASPECT_RATIO * min(img.size) and img.width * img.height <= 4_000_000


@pytest.fixture(scope="module")
def fuzz_client():
    from fastapi.testclient import TestClient

    from vlmstudy.server import create_app

    with TestClient(create_app(), raise_server_exceptions=True) as client:
        yield client


TEXT = st.text(max_size=500) | st.sampled_from(["what colour is the triangle?", "<image>", "  ", "\x00"])
EXTRA_FIELDS = st.dictionaries(st.sampled_from(["question", "prompt", "max_new_tokens", "colour", "", "image\u00e9"]),
                               st.binary(max_size=30) | st.text(max_size=600).map(str.encode), max_size=2)


@fuzz(80)
@given(path=st.sampled_from(["/vqa", "/describe"]), text=TEXT, tokens=st.none() | st.integers(-5, 300).map(str),
       extra=st.none() | st.none() | EXTRA_FIELDS,
       image=st.sampled_from(SEED_IMAGES[:2]) | mutated_files(SEED_IMAGES[:2]) | st.none(),
       content_type=st.sampled_from(["multipart"] * 8 + ["json", "garbage"]))
def test_fuzz_the_upload_endpoints(fuzz_client, path, text, tokens, extra, image, content_type):
    """Mostly well-formed forms with odd values (so that requests reach the model), sometimes odd
    fields or bodies: every request gets a JSON answer, 200 or a 4xx {error, detail}; never a 500,
    never an exception out of the app (raise_server_exceptions=True)."""
    fields = {("question" if path == "/vqa" else "prompt"): text.encode()}
    if tokens is not None:
        fields["max_new_tokens"] = tokens.encode()
    fields.update(extra or {})
    files = {name: (None, value) for name, value in fields.items()}
    if image is not None:
        files["image"] = ("upload.png", image, "image/png")
    if content_type == "multipart":
        r = fuzz_client.post(path, files=files)
    elif content_type == "json":
        r = fuzz_client.post(path, json={k: v.decode("latin-1") for k, v in fields.items()})
    else:
        r = fuzz_client.post(path, content=b"".join(fields.values()),
                             headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    if r.status_code == 200:
        assert (body.get("answer") or body.get("description") or "") is not None
    else:
        assert set(body) == {"error", "detail"} and "\n" not in body["detail"]


@pytest.fixture(scope="module")
def index_files(tmp_path_factory):
    from vlmstudy.retrieval import ImageIndex

    folder = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(0)
    ImageIndex().add(rng.normal(size=(4, 6)), ids=["a", "b", "c", "d"], metadata=[1, 2, 3, 4]).save(folder)
    return (folder / "index.json").read_text(), (folder / "vectors.safetensors").read_bytes()


@fuzz(150)
@given(data=st.data())
def test_fuzz_image_index_load(index_files, data, tmp_path_factory):
    from vlmstudy.retrieval import ImageIndex, RetrievalError

    meta_text, vectors = index_files
    meta = json.loads(meta_text)
    mode = data.draw(st.sampled_from(["meta_value", "meta_whole", "vectors"]))
    if mode == "meta_value":
        meta[data.draw(st.sampled_from(sorted(meta)))] = data.draw(JSON_VALUES)
        meta_text = json.dumps(meta)
    elif mode == "meta_whole":
        meta_text = json.dumps(data.draw(JSON_VALUES))
    else:
        vectors = data.draw(mutated_files([vectors]))
    folder = tmp_path_factory.mktemp("fuzzed", numbered=True)
    (folder / "index.json").write_text(meta_text)
    (folder / "vectors.safetensors").write_bytes(vectors)
    try:
        index = ImageIndex.load(folder)
    except RetrievalError as err:
        assert "\n" not in str(err)
        return
    if len(index):   # what loads searches with finite scores
        assert torch.isfinite(index.search(np.ones(index.dim), k=1).scores).all()


@fuzz(300)
@given(tree=JSON_VALUES | st.fixed_dictionaries({"__items__": JSON_VALUES}) | st.fixed_dictionaries(
    {"__tensor__": JSON_VALUES}) | st.fixed_dictionaries({"__ndarray__": st.just("t0"), "dtype": JSON_VALUES}))
def test_fuzz_checkpoint_state_decoding(tree):
    """state.json is read from a run folder that may be shared: anything decodes or is a CheckpointError."""
    from vlmstudy.finetune import checkpoint as ckpt

    try:
        ckpt.decode_state(tree, {"t0": torch.arange(3)})
    except CheckpointError:
        pass
