"""The Spaces-style Gradio app (:mod:`vlmstudy.apps.gradio.app`) and its command,
``vlmstudy gradio``. Gradio is imported only when the app is built or started."""

from __future__ import annotations

import importlib.util

from ...errors import ModelUnavailableError

INSTALL_HINT = 'pip install -e ".[gradio]"'


def require_gradio() -> None:
    """Raise a one-line error naming the fix when Gradio is not installed."""
    if importlib.util.find_spec("gradio") is None:
        raise ModelUnavailableError(f"The Gradio app needs gradio, which is not installed: {INSTALL_HINT}")


def add_commands(subparsers) -> None:
    from .app import DEFAULT_MODEL, DEFAULT_PORT, MODELS

    p = subparsers.add_parser("gradio", help="the ask-an-image Gradio app (a Hugging Face Spaces-style demo)",
                              description="Start the ask-an-image Gradio app: upload a picture, ask, pick a "
                                          "model. The same app runs on Spaces as vlmstudy/apps/gradio/app.py.")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT} or the next free one)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS, help="the model chosen at start")
    p.set_defaults(func=_gradio)


def _gradio(args) -> int:
    require_gradio()
    from .app import launch

    launch(args.host, args.port, args.model)
    return 0
