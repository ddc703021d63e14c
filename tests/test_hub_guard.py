"""Hub mode's guards (vlmstudy.zoo.hub_guard): a deadline on every Hub call, memory checked before
a load, and one large model at a time in the task cache.

The network tests talk only to a socket server on 127.0.0.1 that accepts connections and never
answers (a stalled proxy); nothing else is contacted. The memory tests read the real
architectures' sizes on the meta device (nothing downloaded) and simulate machines of various
sizes by replacing :func:`hub_guard.free_memory`.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
import torch

import vlmstudy
from vlmstudy import settings, tasks
from vlmstudy.errors import ConfigError, InsufficientMemoryError, ModelUnavailableError
from vlmstudy.zoo import hub_guard
from vlmstudy.zoo.table import real_config

pytestmark = pytest.mark.hub  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

REPO = Path(__file__).resolve().parent.parent
GB = 10**9


# ----------------------------------------------------------------------------- a stalled endpoint


class StalledServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a stalled proxy)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)  # kept open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def stalled():
    server = StalledServer()
    yield server
    server.close()


@pytest.fixture
def online_to(monkeypatch):
    """Point this process's huggingface_hub at ``url`` with offline mode off (conftest turned it on)."""
    from huggingface_hub import constants

    def point(url: str) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", url)
    return point


def _hub_env(subprocess_env: dict, url: str, timeout: str = "3") -> dict:
    env = dict(subprocess_env, HF_ENDPOINT=url, VLMSTUDY_MODE="hub", VLMSTUDY_HUB_TIMEOUT=timeout,
               HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    return env


CHILD = """
import json, time, vlmstudy
import vlmstudy.zoo.loading  # torch and transformers load lazily: import them before the clock starts
start = time.monotonic()
try:
    vlmstudy.load("clip")
    result = dict(error=None)
except Exception as err:
    result = dict(error=type(err).__name__, message=str(err))
result["seconds"] = time.monotonic() - start
print(json.dumps(result))
"""


def test_stalled_endpoint_gives_the_one_line_error_within_the_deadline(stalled, subprocess_env, tmp_path):
    # a fresh process: huggingface_hub and transformers read HF_ENDPOINT / HF_HUB_OFFLINE at import
    out = subprocess.run([sys.executable, "-c", CHILD], env=_hub_env(subprocess_env, stalled.url), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == "ModelUnavailableError", result
    message = result["message"]
    assert "\n" not in message
    assert f"{stalled.url} did not answer within 3 s" in message and "VLMSTUDY_HUB_TIMEOUT" in message
    assert "HF_HOME" in message and "set_mode('tiny')" in message  # the three ways out
    assert stalled.accepted, "the probe never reached the stalled endpoint"
    # 3 s deadline; the probe runs while the (empty) local cache is tried, so little comes on top
    assert 3 <= result["seconds"] < 3 + 5, result


def test_cli_describe_against_a_stalled_endpoint_exits_2_with_one_error_line(stalled, online_to, monkeypatch,
                                                                           capsys):
    from vlmstudy import cli

    online_to(stalled.url)  # in this process: huggingface_hub pointed at the stalled socket, offline mode off
    monkeypatch.setenv("VLMSTUDY_MODE", "hub")
    monkeypatch.setenv("VLMSTUDY_HUB_TIMEOUT", "3")
    start = time.monotonic()
    code = cli.main(["describe", "--model", "clip", str(REPO / "assets/images/shapes-1.png")])
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "did not answer within 3 s" in lines[0] and "openai/clip-vit-base-patch32" in lines[0]
    assert stalled.accepted
    assert 3 <= seconds < 3 + 5


def test_a_request_sent_without_any_timeout_is_cut_off(stalled, online_to, monkeypatch):
    """The hole the stall fell through: huggingface_hub's model_info (which transformers calls before
    every load) sends ``timeout=None``. With the cap installed it fails after the deadline."""
    import httpx2
    from huggingface_hub.utils import get_session

    online_to(stalled.url)
    monkeypatch.setenv("VLMSTUDY_HUB_TIMEOUT", "1")
    hub_guard.bound_hub_calls()
    hub_guard.bound_hub_calls()  # idempotent
    assert get_session().event_hooks["request"].count(hub_guard._cap_timeouts) == 1
    start = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        get_session().get(f"{stalled.url}/api/models/openai/clip-vit-base-patch32", timeout=None)
    assert time.monotonic() - start < 1 + 2


def test_probe_has_a_wall_clock_deadline(stalled, online_to):
    online_to(stalled.url)
    start = time.monotonic()
    with pytest.raises(hub_guard.HubUnreachable, match=r"did not answer within 0.5 s"):
        hub_guard.probe_hub("openai/clip-vit-base-patch32", timeout=0.5)
    assert time.monotonic() - start < 0.5 + 1.5
    assert stalled.accepted


def test_probe_reports_a_refused_connection_at_once(online_to):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    online_to(f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(hub_guard.HubUnreachable, match="could not be reached"):
        hub_guard.probe_hub("openai/clip-vit-base-patch32", timeout=5)
    assert time.monotonic() - start < 3
    assert not vlmstudy.zoo.loading.hub_reachable(timeout=5)


def test_the_default_deadline_is_30_seconds_and_caps_every_phase(monkeypatch):
    import httpx2

    monkeypatch.delenv("VLMSTUDY_HUB_TIMEOUT", raising=False)
    assert hub_guard.hub_timeout() == hub_guard.DEFAULT_HUB_TIMEOUT == 30
    # a request as model_info builds it (timeout=None) gets 30 s per phase; shorter ones stay
    request = httpx2.Client().build_request("GET", "http://127.0.0.1:9/x", timeout=None)
    hub_guard._cap_timeouts(request)
    assert request.extensions["timeout"] == dict(connect=30, read=30, write=30, pool=30)
    request = httpx2.Client().build_request("GET", "http://127.0.0.1:9/x", timeout=httpx2.Timeout(10, connect=60))
    hub_guard._cap_timeouts(request)
    assert request.extensions["timeout"] == dict(connect=30, read=10, write=10, pool=10)
    monkeypatch.setenv("VLMSTUDY_HUB_TIMEOUT", "2.5")
    assert hub_guard.hub_timeout() == 2.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("VLMSTUDY_HUB_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="VLMSTUDY_HUB_TIMEOUT"):
            hub_guard.hub_timeout()


def test_offline_sends_nothing():
    assert hub_guard.hub_offline()  # conftest: HF_HUB_OFFLINE=1
    assert hub_guard.start_hub_probe("openai/clip-vit-base-patch32") is None
    assert not vlmstudy.zoo.loading.hub_reachable()


# ----------------------------------------------------------------------------- memory


@pytest.fixture
def free(monkeypatch):
    """``free(n)``: this machine has ``n`` bytes free for models (None: unknown)."""
    def set_free(n):
        monkeypatch.setattr(hub_guard, "free_memory", lambda device: n)
    return set_free


def test_fp32_that_does_not_fit_becomes_bf16_on_a_cpu(free, capsys):
    free(24 * GB)  # a 32 GB laptop: LLaVA-1.5-7B is 28 GB in fp32, 14 GB in bf16
    dtype = hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu")
    assert dtype == torch.bfloat16
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert line.startswith("loading llava-hf/llava-1.5-7b-hf: ~14.1 GB in bfloat16")
    assert "float32 would need ~28.3 GB" in line and "24.0 GB of RAM free" in line


def test_fp32_is_kept_where_it_fits(free, capsys):
    free(64 * GB)
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu") == torch.float32
    assert capsys.readouterr().out.startswith("loading llava-hf/llava-1.5-7b-hf: ~28.3 GB in float32")


def test_what_cannot_fit_is_refused_naming_estimate_free_memory_and_nf4(free):
    free(8 * GB)
    with pytest.raises(InsufficientMemoryError) as info:
        hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu", short_name="llava")
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ModelUnavailableError)
    assert "~28.3 GB in float32" in message and "~14.1 GB in bfloat16" in message
    assert "only 8.0 GB of RAM is free" in message
    assert "vlmstudy.load('llava', quantization='nf4')" in message
    nf4 = vlmstudy.quantize.estimate(real_config("llava"), "nf4", dtype=torch.float32)
    assert f"(~{nf4 / GB:.1f} GB)" in message
    assert "set_mode('tiny')" in message


def test_an_explicit_dtype_is_kept_and_checked(free):
    free(24 * GB)
    with pytest.raises(InsufficientMemoryError, match="~28.3 GB in float32"):
        hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu", torch.float32)
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu",
                                  torch.float16) == torch.float16


def test_on_a_gpu_fp16_is_the_default_and_its_free_memory_counts(free):
    free(10 * GB)  # a 12 GB card with 2 GB in use: 7B in fp16 (14 GB) does not fit, 4 bits would
    with pytest.raises(InsufficientMemoryError, match=r"~14\.\d GB in float16.*10\.0 GB of GPU memory") as info:
        hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cuda", short_name="llava")
    assert "bfloat16" not in str(info.value)  # no silent switch on a GPU: fp16 already is the half dtype
    free(20 * GB)
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cuda") == torch.float16


def test_a_quantized_load_is_estimated_at_its_precision(free, capsys):
    from transformers import BitsAndBytesConfig

    free(6 * GB)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu", torch.float32,
                                  config) == torch.float32
    assert "in 4-bit" in capsys.readouterr().out


def test_small_models_unknown_memory_and_the_opt_out(free, capsys, monkeypatch):
    free(1 * GB)  # CLIP is 0.6 GB in fp32: fits, small, nothing printed
    assert hub_guard.check_memory("openai/clip-vit-base-patch32", real_config("clip"), "cpu") == torch.float32
    assert capsys.readouterr().out == ""
    free(None)  # a platform that does not say: load at the default, no refusal
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu") == torch.float32
    free(1 * GB)
    monkeypatch.setenv("VLMSTUDY_MEMORY_CHECK", "0")
    assert hub_guard.check_memory("llava-hf/llava-1.5-7b-hf", real_config("llava"), "cpu") == torch.float32
    assert "~28.3 GB in float32" in capsys.readouterr().out


def test_free_memory_reads_this_machine():
    n = hub_guard.free_memory("cpu")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert n is not None and 0 < n <= total


def test_load_in_hub_mode_checks_memory_before_going_to_the_hub(free, capsys):
    free(4 * GB)  # refused before any network or cache access
    with pytest.raises(InsufficientMemoryError, match="quantization='nf4'"):
        vlmstudy.load("llava", mode="hub", device="cpu")
    free(24 * GB)  # fits in bf16: the line is printed, then the (offline, empty) cache says no
    with pytest.raises(ModelUnavailableError, match="no local copy"):
        vlmstudy.load("llava", mode="hub", device="cpu")
    assert "loading llava-hf/llava-1.5-7b-hf: ~14.1 GB in bfloat16" in capsys.readouterr().out


def test_tiny_mode_is_not_checked(free):
    free(1)  # one byte free: tiny mode does not look
    model, _ = vlmstudy.load("clip", mode="tiny")
    assert next(model.parameters()).dtype == torch.float32


def test_the_estimate_uses_the_cached_config_when_there_is_one(tmp_path):
    """A simulated (or any) checkpoint in the local cache is estimated from its own config.json,
    not from the real architecture on the card."""
    repo = "llava-hf/llava-1.5-7b-hf"
    commit = "0" * 40
    folder = tmp_path / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((REPO / "assets/models/tiny-llava/config.json").read_text())
    card = vlmstudy.zoo.get_card("llava")
    cached = hub_guard.checkpoint_config(repo, card, cache_dir=tmp_path)
    assert hub_guard.estimated_bytes(cached, torch.float32) < 0.1 * GB  # the tiny one
    real = hub_guard.checkpoint_config(repo, card, cache_dir=tmp_path / "empty")
    assert hub_guard.estimated_bytes(real, torch.float32) > 25 * GB


# ----------------------------------------------------------------------------- one large model at a time


class _FakeModel(torch.nn.Linear):
    def __init__(self, name):
        super().__init__(4, 4)
        self.name = name


@pytest.fixture
def fake_zoo(monkeypatch):
    """get_model on fake models: ``loads`` counts load() calls per name; sizes in GB by name."""
    sizes = {"clip": 0.6, "blip-vqa": 1.4, "llava": 14.1, "blip2": 7.7}
    loads: dict[str, int] = {}

    def fake_load(name, **kwargs):
        loads[name] = loads.get(name, 0) + 1
        return _FakeModel(name), f"processor of {name}"

    monkeypatch.setattr(vlmstudy.zoo, "load", fake_load)
    monkeypatch.setattr(hub_guard, "model_bytes", lambda name: int(sizes[name] * GB))
    monkeypatch.setattr(tasks, "_CACHE", {})
    monkeypatch.setattr(tasks, "_LARGE", set())
    return loads


def test_hub_mode_keeps_one_large_model_and_every_small_one(fake_zoo, capsys):
    settings.set_mode("hub")
    small = [tasks.get_model("clip"), tasks.get_model("blip-vqa")]
    llava = tasks.get_model("llava")
    assert capsys.readouterr().out == ""
    held = weakref.ref(llava[0])
    del llava
    blip2 = tasks.get_model("blip2")  # the second large one: llava goes first
    line = capsys.readouterr().out.strip()
    assert line == ("model cache: dropped 'llava' before loading 'blip2' (hub mode keeps one large model at a time; "
                    "a pair you still hold stays usable)")
    gc.collect()
    assert held() is None  # nothing held it: its memory is gone
    assert [tasks.get_model("clip"), tasks.get_model("blip-vqa")] == small  # small ones stay cached
    assert tasks.get_model("blip2") is blip2
    assert fake_zoo == {"clip": 1, "blip-vqa": 1, "llava": 1, "blip2": 1}
    tasks.get_model("llava")  # back again: loaded anew, blip2 dropped
    assert fake_zoo["llava"] == 2 and ("blip2", "hub") not in tasks._CACHE


def test_an_evicted_model_still_held_elsewhere_keeps_working(fake_zoo):
    settings.set_mode("hub")
    model, processor = tasks.get_model("llava")
    x = torch.randn(2, 4)
    before = model(x)
    tasks.get_model("blip2")
    assert ("llava", "hub") not in tasks._CACHE
    assert torch.equal(model(x), before) and processor == "processor of llava"
    assert next(model.parameters()).device.type == "cpu"


def test_tiny_mode_caches_everything_without_estimating(fake_zoo, monkeypatch):
    def no_estimate(name):
        raise AssertionError("tiny mode must not estimate sizes")

    monkeypatch.setattr(hub_guard, "model_bytes", no_estimate)
    settings.set_mode("tiny")
    llava, blip2 = tasks.get_model("llava"), tasks.get_model("blip2")
    assert tasks.get_model("llava") is llava and tasks.get_model("blip2") is blip2
    assert fake_zoo == {"llava": 1, "blip2": 1}


def test_model_bytes_tells_the_zoo_large_from_small():
    large = {name for name in ("clip", "siglip", "blip-caption", "blip-vqa", "blip2", "instructblip", "llava",
                               "llava-next") if hub_guard.model_bytes(name) > hub_guard.LARGE_MODEL_BYTES}
    assert large == {"blip2", "instructblip", "llava", "llava-next"}
    assert hub_guard.model_bytes("no-such-model") is None


def test_estimate_of_a_hub_id_against_a_stalled_endpoint_fails_in_time(stalled, online_to, monkeypatch):
    online_to(stalled.url)
    monkeypatch.setenv("VLMSTUDY_HUB_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="config.json could not be read"):
        vlmstudy.quantize.estimate("someone/not-a-zoo-model", "fp16")
    assert time.monotonic() - start < 1 + 3
    assert stalled.accepted
