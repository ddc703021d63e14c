"""The HTTP API (``vlmstudy serve``): endpoints through FastAPI's test client, untrusted uploads
(empty, not an image, truncated, huge dimensions, too many bytes, path-traversal file names, wrong
fields), and a real uvicorn process on 127.0.0.1 answering a bounded burst of concurrent requests.

The stand-ins' answers are weak and their weights get retrained, so answers are checked for
structure and consistency (non-empty, equal to the Python API's, the same under load), never text.
"""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from vlmstudy import tasks  # noqa: E402
from vlmstudy.server import create_app  # noqa: E402

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

REPO = Path(__file__).resolve().parent.parent
IMAGES = [REPO / "assets" / "images" / f"shapes-{i}.png" for i in (1, 2, 3)]
QUESTION = "what colour is the triangle?"


def png_bytes(i: int = 0) -> bytes:
    return IMAGES[i].read_bytes()


def png_with_size(width: int, height: int) -> bytes:
    """A valid PNG whose header declares width x height (its data is a small picture's): what a
    decompression bomb looks like before decoding."""
    data = bytearray(png_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def app():
    return create_app()  # default models: blip-caption for /describe, blip-vqa for /vqa


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def api(app):
    return app.state.inference


def assert_error(response, status: int, code: str | None = None, *fragments: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"] and "\n" not in body["detail"]
    if code is not None:
        assert body["error"] == code, body
    for fragment in fragments:
        assert fragment in body["detail"], body
    assert "Traceback" not in body["detail"]
    return body


# ----------------------------------------------------------------------------- endpoints

def test_health_and_models(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["mode"] == "tiny" and health["device"] == "cpu"
    assert health["models"] == {"describe": "blip-caption", "vqa": "blip-vqa"}
    models = client.get("/models").json()
    assert models["serving"] == health["models"]
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name["blip-caption"]["serves"] == ["describe"] and by_name["blip-vqa"]["serves"] == ["vqa"]
    assert by_name["blip-caption"]["available"] is True and by_name["llava"]["serves"] == []


def test_openapi_documents_the_multipart_forms(client):
    spec = client.get("/openapi.json").json()
    assert {"/describe", "/vqa", "/health", "/models"} <= set(spec["paths"])
    for path, required in (("/describe", ["image"]), ("/vqa", ["image", "question"])):
        post = spec["paths"][path]["post"]
        schema = post["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert schema["required"] == required and schema["properties"]["image"]["format"] == "binary"
        assert {"200", "413", "415", "422"} <= set(post["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_describe_answers_what_the_python_api_does(client, api):
    response = client.post("/describe", files={"image": ("shapes-1.png", png_bytes(0), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "blip-caption" and body["description"].strip()
    assert body["description"] == api.describe(IMAGES[0])
    again = client.post("/describe", files={"image": ("other-name.png", png_bytes(0), "image/png")}).json()
    assert again == body  # deterministic, and the file name plays no part


def test_describe_prompt_and_max_new_tokens(client, api):
    response = client.post("/describe", files={"image": ("x.png", png_bytes(1), "image/png")},
                           data={"prompt": "a picture of", "max_new_tokens": "3"})
    assert response.status_code == 200, response.text
    assert response.json()["description"] == api.describe(IMAGES[1], prompt="a picture of", max_new_tokens=3)


def test_vqa_answers_what_the_python_api_does(client, api):
    response = client.post("/vqa", files={"image": ("shapes-3.png", png_bytes(2), "image/png")},
                           data={"question": QUESTION})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "blip-vqa" and body["question"] == QUESTION and body["answer"].strip()
    assert body["answer"] == api.ask(IMAGES[2], QUESTION)


def test_image_recognised_by_content_not_by_name_or_declared_type(client, api):
    """A PNG sent as 'notes.txt' with type text/plain is a PNG; other formats are accepted too."""
    from PIL import Image

    response = client.post("/describe", files={"image": ("notes.txt", png_bytes(0), "text/plain")})
    assert response.status_code == 200 and response.json()["description"] == api.describe(IMAGES[0])
    buf = io.BytesIO()
    Image.open(IMAGES[0]).convert("RGB").save(buf, "JPEG", quality=95)
    response = client.post("/describe", files={"image": ("picture.png", buf.getvalue(), "image/png")})
    assert response.status_code == 200 and response.json()["description"].strip()


def test_models_are_loaded_once_when_the_app_is_built(monkeypatch, client):
    import vlmstudy.zoo

    def no_loading(*args, **kwargs):
        raise AssertionError("a request loaded a model")

    monkeypatch.setattr(tasks, "_CACHE", {})  # even with the shared cache emptied, the app keeps its models
    monkeypatch.setattr(vlmstudy.zoo, "load", no_loading)
    assert client.post("/vqa", files={"image": ("a.png", png_bytes(1))}, data={"question": QUESTION}).status_code == 200
    assert client.post("/describe", files={"image": ("a.png", png_bytes(1))}).status_code == 200


# ----------------------------------------------------------------------------- bad uploads

def _truncated_png() -> bytes:
    data = png_bytes()
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(IMAGES[0]).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()[:60]  # cut inside the headers


@pytest.mark.parametrize("data, status, code", [
    pytest.param(b"", 400, "empty_image", id="empty"),
    pytest.param(b"just some text, named like a picture\n" * 20, 415, "not_an_image", id="text"),
    pytest.param(b"%PDF-1.4\n%" + bytes(range(256)), 415, "not_an_image", id="pdf"),
    pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 415, "not_an_image", id="eps-not-allowed"),
    pytest.param(b"\x89PNG\r\n\x1a\n", 415, "not_an_image", id="png-signature-only"),
    pytest.param(_truncated_png(), 422, "bad_image", id="truncated-png"),
    pytest.param(_truncated_jpeg(), 422, "bad_image", id="truncated-jpeg"),
    pytest.param(png_with_size(5_000, 5_000), 413, "image_too_large", id="over-the-pixel-limit"),
    pytest.param(png_with_size(60_000, 60_000), 413, "image_too_large", id="decompression-bomb"),
])
def test_bad_images_get_a_4xx_json_error(client, data, status, code):
    for path, form in (("/describe", {}), ("/vqa", {"question": QUESTION})):
        response = client.post(path, files={"image": ("picture.png", data, "image/png")}, data=form)
        assert_error(response, status, code)


@pytest.mark.parametrize("filename", [
    "../../../../tmp/vlmstudy-escaped.png", "/etc/passwd", "..\\..\\windows\\evil.png", "temp_shapes.png",
    "a/b/../../c.png", "\x00.png", "ok.png\r\nX-Injected: 1",
])
def test_client_file_names_are_never_used(client, api, tmp_path, monkeypatch, filename):
    """Whatever the client calls its file, nothing is written (the seed wrote ``temp_{filename}``)
    and the answer is the same; the name is not echoed back either."""
    import builtins

    real_open, written = builtins.open, []

    def watching_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(builtins, "open", watching_open)
    response = client.post("/describe", files={"image": (filename, png_bytes(0), "image/png")})
    assert response.status_code == 200 and response.json()["description"] == api.describe(IMAGES[0])
    bad = client.post("/describe", files={"image": (filename, b"not an image", "image/png")})
    body = assert_error(bad, 415, "not_an_image")
    assert "escaped" not in body["detail"] and "passwd" not in body["detail"]
    assert written == [] and list(tmp_path.iterdir()) == []
    assert not Path("/tmp/vlmstudy-escaped.png").exists()


@pytest.mark.parametrize("path, files, data, status, code, fragment", [
    ("/describe", {"file": ("x.png", png_bytes(), "image/png")}, {}, 422, "bad_fields", "'image'"),
    ("/describe", {"image": ("x.png", png_bytes(), "image/png")}, {"question": QUESTION}, 422, "bad_fields",
     "'question'"),
    ("/vqa", {"image": ("x.png", png_bytes(), "image/png")}, {}, 422, "bad_fields", "'question'"),
    ("/vqa", {"image": ("x.png", png_bytes(), "image/png")}, {"question": "   "}, 422, "bad_field", "empty"),
    ("/vqa", {"image": ("x.png", png_bytes(), "image/png")}, {"question": "why? " * 200}, 422, "bad_field", "500"),
    ("/vqa", {"image": ("x.png", png_bytes(), "image/png")}, {"question": QUESTION, "max_new_tokens": "many"}, 422,
     "bad_field", "max_new_tokens"),
    ("/describe", {"image": ("x.png", png_bytes(), "image/png")}, {"max_new_tokens": "100000"}, 422, "bad_field",
     "max_new_tokens"),
])
def test_wrong_fields_get_422(client, path, files, data, status, code, fragment):
    assert_error(client.post(path, files=files, data=data), status, code, fragment)


def test_a_repeated_field_gets_422(client):
    files = [("image", ("a.png", png_bytes(0), "image/png")), ("image", ("b.png", png_bytes(1), "image/png"))]
    assert_error(client.post("/describe", files=files), 422, "repeated_field")


def test_malformed_requests_get_400(client):
    assert_error(client.post("/describe", json={"image": "shapes-1.png"}), 400, "not_multipart")
    assert_error(client.post("/describe", content=b"--x\r\nbroken", headers={
        "content-type": "multipart/form-data"}), 400, "bad_multipart", "boundary")
    assert_error(client.post("/describe", content=b"garbage without a boundary line", headers={
        "content-type": "multipart/form-data; boundary=XYZ"}), 400)
    assert_error(client.post("/describe", content=png_bytes(), headers={"content-type": "image/png"}), 400,
                 "not_multipart")


def test_wrong_method_and_path_are_json_errors(client):
    assert_error(client.get("/describe"), 405)
    assert_error(client.get("/no-such-endpoint"), 404)


def test_upload_byte_limit_announced_or_streamed(api):
    """A body over the limit is refused: by its Content-Length before reading, or while streaming."""
    small = TestClient(create_app(api, max_upload_bytes=2_000), raise_server_exceptions=False)
    # over max_upload_bytes but within the form's overhead allowance: refused by the image check
    assert_error(small.post("/describe", files={"image": ("x.png", png_bytes())}), 413, "image_too_large")
    big = os.urandom(200_000)
    assert_error(small.post("/describe", files={"image": ("x.png", big)}), 413, "upload_too_large")
    boundary = "vlmstudyboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n".encode()
            + big + f"\r\n--{boundary}--\r\n".encode())

    def chunks():  # no Content-Length: chunked transfer encoding
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = small.post("/describe", content=chunks(), headers={
        "content-type": f"multipart/form-data; boundary={boundary}"})
    assert_error(response, 413, "upload_too_large")
    assert_error(small.post("/describe", content=b"x", headers={
        "content-type": f"multipart/form-data; boundary={boundary}", "content-length": "abc"}), 400)


def test_bad_configuration_is_refused():
    from vlmstudy.errors import ConfigError, UnknownModelError

    with pytest.raises(ConfigError, match="max_upload_bytes"):
        create_app(max_upload_bytes=0)
    with pytest.raises(UnknownModelError):
        create_app(model="no-such-model")


# ----------------------------------------------------------------------------- a real uvicorn process

class Server:
    """``python -m vlmstudy serve --port 0`` in a child process; ``url`` once it answers."""

    def __init__(self, env, cwd):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vlmstudy", "serve", "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        line = self.proc.stdout.readline()  # printed once the models are loaded and the port bound
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no 'serving ... on URL' line: {line!r}; stderr: {self.proc.stderr.read()[-2000:]}")
        self.url = match.group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the server did not come up; stderr: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a person would: (exit code, stderr). uvicorn finishes the requests under way,
        then the CLI exits as interrupted (130, one ``interrupted`` line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode, err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_real_server_answers_a_concurrent_burst(subprocess_env, tmp_path):
    """24 requests from 12 threads at once (describe and vqa, three images, good and bad uploads):
    every one is answered, with the answer the same request gets alone; no file is written."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # one torch thread: on a busy machine (tests run in parallel) spinning OpenMP threads cost
    # far more than they bring to models this small
    server = Server(dict(subprocess_env, OMP_NUM_THREADS="1"), cwd)
    try:
        def request(job):
            kind, i = job
            files = {"image": (f"../../escape-{i}.png", png_bytes(i), "image/png")}
            with httpx.Client(base_url=server.url, timeout=120) as http:
                if kind == "describe":
                    r = http.post("/describe", files=files)
                elif kind == "vqa":
                    r = http.post("/vqa", files=files, data={"question": QUESTION})
                else:  # a bad upload in the middle of the burst
                    r = http.post("/vqa", files={"image": ("x.png", b"not an image")}, data={"question": QUESTION})
            return r.status_code, r.json()

        kinds = ("describe", "vqa", "bad")
        alone = {(kind, i): request((kind, i)) for kind in kinds for i in range(3)}
        assert all(code == 200 for (kind, _), (code, _) in alone.items() if kind != "bad")
        assert all(body["description" if kind == "describe" else "answer"].strip()
                   for (kind, _), (_, body) in alone.items() if kind != "bad")
        assert {code for (kind, _), (code, _) in alone.items() if kind == "bad"} == {415}

        jobs = [(kinds[n % 3], (n // 3) % 3) for n in range(24)]  # every (kind, image) pair, 2-3 times
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(request, jobs))
        assert len(results) == len(jobs)
        for job, result in zip(jobs, results):
            assert result == alone[job], (job, result, alone[job])
        too_big = httpx.post(f"{server.url}/describe", files={"image": ("x.png", os.urandom(11 * 1024 * 1024))},
                             timeout=60)  # over the default 10 MB: refused before the body is read
        assert_error(too_big, 413, "upload_too_large")
        assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    finally:
        code, err = server.stop()
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", (code, err[-2000:])
    assert "Traceback" not in err and "error" not in err.lower()
    assert list(cwd.iterdir()) == [] and not (tmp_path / "escape-0.png").exists()

