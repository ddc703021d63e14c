"""The demo app: ``vlmstudy demo`` serves the five widget demos (:mod:`vlmstudy.widgets`) as a
Voila page, a notebook shown as an app with its code hidden.

::

    vlmstudy demo                 # starts Voila on 127.0.0.1 and opens the page in a browser
    vlmstudy demo --headless      # no browser: prints the URL (with its token) to open yourself,
                                  # e.g. through an SSH tunnel: ssh -L 8866:127.0.0.1:8866 server
    vlmstudy demo --port 8899     # a fixed port (default: 8866 or the next free one)

The page is ``vlmstudy/apps/demo.ipynb``; every visitor gets a fresh kernel that runs it. Voila
listens on 127.0.0.1 only and asks for a random token (passed to it in ``JUPYTER_TOKEN``, so it
never shows in the process list): only the person who started it can open the page. The page
uses the ``vlmstudy`` Voila template (``jupyter/voila/templates/vlmstudy/`` here: Voila's lab
template without its links to a CDN), so it loads nothing from outside 127.0.0.1 and works
offline. Ctrl-C or ``kill`` (SIGTERM, SIGHUP) of ``vlmstudy demo`` stops Voila too. Voila is the
``demo`` extra (``pip install -e ".[demo]"``; ``./course.sh`` installs it).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ConfigError, VlmStudyError

DEMO_NOTEBOOK = Path(__file__).resolve().with_name("demo.ipynb")
#: A Jupyter data folder holding the ``vlmstudy`` Voila template (put first on ``JUPYTER_PATH``).
JUPYTER_DATA = Path(__file__).resolve().with_name("jupyter")
TEMPLATE = "vlmstudy"
DEFAULT_PORT = 8866
HOST = "127.0.0.1"


def free_port(start: int = DEFAULT_PORT, tries: int = 50) -> int:
    """The first port from ``start`` on that nothing listens on at 127.0.0.1."""
    for port in range(start, start + tries):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise VlmStudyError(f"No free port between {start} and {start + tries - 1}; choose one with --port N.")


def voila_command(notebook: Path | str = DEMO_NOTEBOOK, port: int = DEFAULT_PORT) -> list[str]:
    """The command that serves ``notebook`` with Voila on ``127.0.0.1:port``: no browser (the
    caller opens it, with the token), exactly this port (no silent retry on another one), and a
    token required (taken from ``JUPYTER_TOKEN``)."""
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={int(port)}",
            "--Voila.port_retries=0", f"--Voila.ip={HOST}", "--Voila.auto_token=True",
            f"--template={TEMPLATE}", "--theme=light", "--show_tracebacks=True"]


def voila_environment(token: str, base: dict | None = None) -> dict[str, str]:
    """The environment Voila runs in: the token, and this package's template folder first on
    ``JUPYTER_PATH`` (where Voila looks for ``--template=vlmstudy``)."""
    env = dict(os.environ if base is None else base, JUPYTER_TOKEN=token)
    env["JUPYTER_PATH"] = os.pathsep.join([str(JUPYTER_DATA)] + ([env["JUPYTER_PATH"]] if env.get("JUPYTER_PATH") else []))
    return env


def wait_until_serving(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> bool:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` seconds pass; ``False``
    also when ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (a login redirect or 403 still means it is up)
        except OSError:
            time.sleep(0.5)
    return False


def launch_demo(port: int | None = None, headless: bool = False, notebook: Path | str = DEMO_NOTEBOOK,
                token: str | None = None) -> int:
    """Serve the demo notebook with Voila until Ctrl-C; returns Voila's exit code.

    port: None picks 8866 or the next free port. headless: print the URL instead of opening a
    browser. token: the access token (default: ``$VLMSTUDY_DEMO_TOKEN`` or a random one).
    """
    if importlib.util.find_spec("voila") is None:
        raise VlmStudyError('Voila is not installed in this environment: pip install -e ".[demo]" '
                            "(./course.sh installs it).")
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ConfigError(f"No demo notebook at {str(notebook)!r}.")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535 (got {port}).")
    port = free_port() if port is None else int(port)
    token = token or os.environ.get("VLMSTUDY_DEMO_TOKEN") or secrets.token_urlsafe(24)
    url = f"http://{HOST}:{port}/?token={token}"
    process = subprocess.Popen(voila_command(notebook, port), env=voila_environment(token))

    def stop(signum, frame):  # kill / a closed terminal: Voila (and its kernels) must not outlive us
        raise SystemExit(128 + signum)

    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers: main thread only
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)} if main_thread else {}
    try:
        if wait_until_serving(f"http://{HOST}:{port}/", timeout=120, process=process):
            print(f"\nvlmstudy demo: open {url}\n(each visit runs the demo notebook in a fresh kernel; "
                  "the first page takes a few seconds. Ctrl-C stops the server.)\n", flush=True)
            if not headless:
                import webbrowser

                webbrowser.open(url)
        return process.wait()
    finally:  # normal exit, Ctrl-C (KeyboardInterrupt) or SIGTERM / SIGHUP (SystemExit from stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.terminate()  # Voila shuts its kernels down on SIGTERM
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _demo(args) -> int:
    return launch_demo(port=args.port, headless=args.headless)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="open the interactive demos (zero-shot, search, ask, chat, attention) as a Voila app",
        description="Serve the widget demos as a Voila app on 127.0.0.1 (a token is required; the URL "
                    "printed carries it).")
    p.add_argument("--headless", action="store_true",
                   help="do not open a browser; print the URL to open yourself (servers, SSH tunnels)")
    p.add_argument("--port", type=int, default=None, help=f"port to listen on (default: {DEFAULT_PORT} or the next free one)")
    p.set_defaults(func=_demo)
