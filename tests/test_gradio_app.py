"""The Spaces-style Gradio app (vlmstudy/apps/gradio/app.py, issue 22): started as `python app.py`
in a subprocess on a free 127.0.0.1 port and driven headless with gradio_client; its answers must
be the model's own for each image (compared with vlmstudy's Python API on the same files), and a
bad upload must come back as a one-line message. Skipped, with the reason, without gradio."""

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vlmstudy
from vlmstudy import shapes
from vlmstudy.errors import ConfigError, ImageError, ModelUnavailableError

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "vlmstudy" / "apps" / "gradio" / "app.py"
QUESTION = "how many shapes are there?"
needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio_client") is None,
    reason='gradio / gradio_client not installed (pip install -e ".[gradio]")')


def test_import_vlmstudy_and_the_cli_do_not_import_gradio():
    code = ("import sys, vlmstudy, vlmstudy.cli, vlmstudy.apps.gradio; vlmstudy.cli.build_parser(); "
            "sys.exit('gradio' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0


def test_missing_gradio_is_a_one_line_error_with_the_fix(monkeypatch, capsys):
    from vlmstudy import cli
    from vlmstudy.apps import gradio as gradio_app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match=r"pip install -e \"\.\[gradio\]\""):
        gradio_app.require_gradio()
    assert cli.main(["gradio", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The Gradio app needs gradio") and "\n" not in err


def test_answer_refuses_bad_input_before_any_model(tmp_path):
    from vlmstudy.apps.gradio import app

    text = tmp_path / "photo.png"
    text.write_text("not a picture")
    with pytest.raises(ImageError, match="not an image"):
        app.answer({"path": str(text)}, QUESTION, "blip-vqa")
    with pytest.raises(ImageError, match="No image"):
        app.answer(None, QUESTION, "blip-vqa")
    with pytest.raises(ConfigError, match="Unknown model 'gpt-9'"):
        app.answer({"path": str(text)}, QUESTION, "gpt-9")
    with pytest.raises(ConfigError, match="question is empty"):
        app.answer({"path": str(text)}, "   ", "blip-vqa")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("gradio") / "app.log"
    env = {**os.environ, "VLMSTUDY_MODE": "tiny", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(log.parent / "cache")}
    env.pop("GRADIO_SERVER_NAME", None), env.pop("GRADIO_SERVER_PORT", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(APP), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=APP.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not listen within 180 s:\n{log.read_text()}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _scenes_with_different_answers(tmp_path, model):
    """Two ShapesWorld scenes, saved as PNG, whose answers from the Python API differ (so that an
    app answering about the wrong image, or not looking at it, fails)."""
    infer = vlmstudy.Inference(models={"ask": model})
    found = []
    for i, scene in enumerate(shapes.make_scenes("test", 12, seed=11)):
        path = tmp_path / f"scene-{model}-{i}.png"
        scene.render().save(path)
        said = infer.ask(str(path), QUESTION)
        if not found or said != found[0][1]:
            found.append((path, said))
        if len(found) == 2:
            return found
    pytest.fail(f"{model} gave one answer to all 12 scenes: {found}")


@needs_gradio
@pytest.mark.parametrize("model", ["blip-vqa", "llava"])
@pytest.mark.slow
def test_the_app_answers_what_the_python_api_answers(client, tmp_path, model):
    from gradio_client import handle_file

    for path, expected in _scenes_with_different_answers(tmp_path, model):
        said, details = client.predict(handle_file(str(path)), QUESTION, model, api_name="/ask")
        assert said == expected, (model, path.name, said, expected)
        assert details.startswith(f"{model} (tiny mode) answered in") and "64 x 64 px" in details


@needs_gradio
@pytest.mark.slow
def test_a_bad_upload_is_a_one_line_message_in_the_page(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"#!/bin/sh\necho this is no picture\n")
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(fake)), QUESTION, "blip-vqa", api_name="/ask")
    message = str(err.value)
    assert "not an image" in message and "\n" not in message.strip()
    with pytest.raises(AppError, match="question is empty"):
        client.predict(handle_file(str(fake)), " ", "blip-vqa", api_name="/ask")
    with pytest.raises(AppError, match="Unknown model"):
        client.predict(handle_file(str(fake)), QUESTION, "../../etc/passwd", api_name="/ask")


@needs_gradio
@pytest.mark.slow
def test_a_path_on_the_server_is_not_an_upload(app_url, tmp_path):
    """A caller naming a file on the server instead of uploading one (raw HTTP: gradio_client would
    upload it) is refused by Gradio before the app reads anything; an uploaded copy is answered."""
    import httpx

    secret = tmp_path / "secret.png"
    shapes.make_scenes("test", 1, seed=0)[0].render().save(secret)

    def call(file_data) -> str:
        event = httpx.post(f"{app_url}gradio_api/call/ask", json={"data": [file_data, QUESTION, "blip-vqa"]},
                           timeout=60).json()["event_id"]
        return httpx.get(f"{app_url}gradio_api/call/ask/{event}", timeout=120).text

    refused = call({"path": str(secret), "meta": {"_type": "gradio.FileData"}})
    assert "event: error" in refused and "event: complete" not in refused, refused
    with open(secret, "rb") as f:
        uploaded = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("secret.png", f, "image/png")},
                              timeout=60).json()[0]
    answered = call({"path": uploaded, "meta": {"_type": "gradio.FileData"}})
    assert "event: complete" in answered, answered
