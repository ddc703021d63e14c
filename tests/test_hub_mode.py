"""Hub mode, run for real against the simulated Hub (``vlmstudy.testing.hubsim``).

Every notebook, the CLI (``describe``, ``ask``, ``chat`` through stdin), the HTTP server and the
widgets run with ``VLMSTUDY_MODE=hub HF_HUB_OFFLINE=1`` and ``HF_HOME`` pointing at a standard
Hugging Face cache that holds every registry checkpoint with its real configs, processors and
tokenizers, and shrunk random weights. These are **mechanics** checks: nothing may crash, shapes
and token counts are the real ones; the answers of random weights are never judged.

Each case runs in a child process, because the root ``conftest.py`` fixed this process's
``HF_HOME`` to an empty folder before huggingface_hub was imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.hub, pytest.mark.notebook, pytest.mark.slow]  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IMAGE = REPO / "assets" / "images" / "shapes-1.png"

#: Notebooks that still fail in hub mode, each with its one-line cause. Strict: an entry that
#: starts passing fails the run, so the list cannot go stale.
KNOWN_FAILURES: dict[str, str] = {
    # issue 24: assemble.course_parts() loads HuggingFaceTB/SmolLM2-135M in hub mode; hubsim has no entry for it yet
    "13_vlm_from_parts": "HuggingFaceTB/SmolLM2-135M is not in the simulated Hub yet (issue 24)",
    # found when the child runs really ran in hub mode (conftest.py kept resetting them to tiny mode before)
    "11_lora": "cell 15 onwards: NameError ('result', 'after_new'): a hub-mode branch skips a cell later ones need (issue 20)",
    "12_results_checklist": "cell 8: FailureCaseError: random weights give two failure cases the same hypothesis (issue 22)",
}


def _run(args: list[str], env: dict, timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=timeout)


def _params():
    for path in NOTEBOOKS:
        marks = []
        if path.stem in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[path.stem]))
        yield pytest.param(path, id=path.stem, marks=marks)


def test_a_child_pytest_stays_in_hub_mode(hub_env):
    # the root conftest.py resets HF_HOME and VLMSTUDY_MODE for ordinary runs; it must not for these
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hub_child_probe.py"],
               hub_env, timeout=300)
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-2000:]


@pytest.mark.parametrize("notebook", list(_params()))
def test_notebook_runs_in_hub_mode(notebook, hub_env, tmp_path):
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                "--nbval-current-env", str(notebook)], hub_env, timeout=900)
    assert out.returncode == 0, f"{notebook.name} failed in hub mode:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"


def test_cli_describe_ask_and_chat_in_hub_mode(hub_env):
    cli = [sys.executable, "-m", "vlmstudy"]
    out = _run(cli + ["describe", str(IMAGE), "--model", "blip-caption", "--json"], hub_env, 300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stdout.strip().startswith(("{", "["))
    out = _run(cli + ["describe", str(IMAGE), "--model", "siglip"], hub_env, 300)
    # SigLIP is a dual encoder: it cannot describe, and says so in one line (exit 2), no traceback
    assert out.returncode in (0, 2) and "Traceback" not in out.stderr, out.stderr[-2000:]
    out = _run(cli + ["ask", str(IMAGE), "what color is the triangle?", "--model", "llava"], hub_env, 300)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    out = _run(cli + ["chat", str(IMAGE), "--model", "llava"], hub_env, 300,
               stdin="what is in the picture?\n/history\n/clear\n/quit\n")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]


_SERVER = """
import json, sys
from fastapi.testclient import TestClient
from vlmstudy.server import create_app
png = open(sys.argv[1], "rb").read()
with TestClient(create_app(), raise_server_exceptions=False) as client:
    d = client.post("/describe", files={"image": ("x.png", png, "image/png")})
    v = client.post("/vqa", files={"image": ("x.png", png, "image/png")}, data={"question": "how many shapes?"})
    h = client.get("/health")
print(json.dumps({"describe": [d.status_code, d.json()], "vqa": [v.status_code, v.json()], "health": h.json()}))
"""


def test_server_answers_in_hub_mode(hub_env):
    import json

    out = _run([sys.executable, "-c", _SERVER, str(IMAGE)], hub_env, 300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["describe"][0] == 200 and isinstance(result["describe"][1].get("caption", result["describe"][1]), (str, dict))
    assert result["vqa"][0] == 200, result["vqa"]
    assert "hub" in json.dumps(result["health"]), result["health"]


_WIDGETS = """
import json
from vlmstudy import widgets
zs = widgets.ZeroShotPlayground(run=False)
zs.labels.value = "a red circle\\na blue square"
zs.button.click()
ask = widgets.AskImage(run=False)
ask.model.value = "llava"
ask.question.value = "how many shapes are there?"
ask.button.click()
print(json.dumps({"zero_shot": [zs.status.kind, zs.last_error, sorted(zs.probabilities)],
                  "ask": [ask.status.kind, ask.last_error, len(ask.answers)]}))
"""


def test_widgets_work_in_hub_mode(hub_env):
    import json

    out = _run([sys.executable, "-c", _WIDGETS], dict(hub_env, MPLBACKEND="Agg"), 300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["zero_shot"][0] == "ok" and result["zero_shot"][2] == ["a blue square", "a red circle"], result
    assert result["ask"][0] == "ok" and result["ask"][2] == 1, result
