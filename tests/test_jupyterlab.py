"""The README's course command starts JupyterLab: `./course.sh --headless` answers on /lab."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="course.sh is a bash script"),
              pytest.mark.slow]  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_course_script_headless_serves_jupyterlab(repo, tmp_path):
    assert (Path(sys.prefix) / "bin" / "jupyter").exists(), "jupyterlab is a dependency; pip install -e ."
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        VLMSTUDY_VENV=sys.prefix,  # this environment, as it is (--no-setup: no pip here)
        JUPYTER_TOKEN=token,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
    )
    log = open(tmp_path / "jupyter.log", "w+")
    proc = subprocess.Popen(["bash", str(repo / "course.sh"), "--headless", "--no-setup", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{(tmp_path / 'jupyter.log').read_text()}")
            try:
                status, body = _get(f"{base}/lab?token={token}")
            except OSError:  # not listening yet
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, (tmp_path / "jupyter.log").read_text()
        assert "JupyterLab" in body
        # the server's root is the repository: the course's notebooks are there
        status, listing = _get(f"{base}/api/contents/notebooks?token={token}")
        assert status == 200
        assert "00_setup.ipynb" in {item["name"] for item in json.loads(listing)["content"]}
        assert _get(f"{base}/api/status")[0] == 403  # and nothing without the token
        # the URL it prints (what a --headless user opens) and its default page open 00_setup, not the Launcher
        printed = (tmp_path / "jupyter.log").read_text()
        assert f"http://127.0.0.1:{port}/lab/tree/notebooks/00_setup.ipynb?token=" in printed, printed
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=10) as response:
            assert response.geturl().startswith(f"{base}/lab/tree/notebooks/00_setup.ipynb")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
