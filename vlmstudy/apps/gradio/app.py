"""Ask an image: the "upload a picture and ask" demo of the kind people publish on Hugging Face
Spaces, as a Gradio app.

Upload an image, type a question, pick a model, press Ask: the answer comes from vlmstudy's
normal ask path (:meth:`vlmstudy.Inference.ask`, the one the CLI, the HTTP server and the widgets
use), with the time it took. Run it::

    python vlmstudy/apps/gradio/app.py              # http://127.0.0.1:7860 (or the next free port)
    python app.py                                   # the same, as Spaces runs it (next to this file)
    vlmstudy gradio --port 7861 --model llava       # from the course's command line

On Spaces, Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` variables choose the address;
``VLMSTUDY_MODE=hub`` makes the models the real checkpoints instead of the tiny stand-ins
(the Space needs ``vlmstudy`` installed, e.g. from its git repository, in ``requirements.txt``).

Uploads are untrusted. The app never writes them anywhere: it reads the bytes Gradio received
and decodes them with :func:`vlmstudy.images.load_image_bytes` (formats recognised by content,
byte, pixel and aspect-ratio limits), so a file that is not an image, or one too large, gets a
one-line message in the page instead of a traceback. (Gradio's own upload route keeps each upload
in its cache, ``GRADIO_TEMP_DIR``, in a folder named by a hash, under the file name it sanitised;
the app reads only files from there, Gradio refusing any other path, and writes nothing.) The event
runs with ``preprocess=False`` so that Gradio does not decode the image first with its own,
less careful, code.

Gradio is the ``gradio`` extra (``pip install -e ".[gradio]"``); ``import vlmstudy`` does not
import it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):   # `python app.py` inside the repository: its vlmstudy, installed or not
    _here = Path(__file__).resolve()
    if len(_here.parents) > 3 and (_here.parents[3] / "vlmstudy" / "__init__.py").is_file():
        sys.path.insert(0, str(_here.parents[3]))

import vlmstudy  # noqa: E402
from vlmstudy.errors import ConfigError, ImageError, VlmStudyError  # noqa: E402
from vlmstudy.images import UPLOAD_FORMATS, load_image_bytes  # noqa: E402

#: The models that answer a question about one image (the same list as the ask widget's).
MODELS: tuple[str, ...] = ("blip-vqa", "blip2", "instructblip", "llava", "llava-next")
DEFAULT_MODEL = "blip-vqa"
DEFAULT_QUESTION = "how many shapes are there?"
#: Uploads larger than this are refused (by Gradio before they are stored, and again here).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_QUESTION_CHARS = 500
DEFAULT_PORT = 7860

_engines: dict[str, vlmstudy.Inference] = {}
_engines_lock = threading.Lock()


def engine(model: str) -> vlmstudy.Inference:
    """The :class:`vlmstudy.Inference` answering with ``model``, made (and its model loaded) once."""
    with _engines_lock:
        if model not in _engines:
            _engines[model] = vlmstudy.Inference(models={"ask": model}).load("ask")
        return _engines[model]


def _upload_bytes(image) -> bytes:
    """The bytes of an upload: Gradio's file payload (a dict or FileData with ``path`` inside its
    upload cache), a path, or raw bytes."""
    if image is None:
        raise ImageError("No image: upload a picture first.")
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    path = image.get("path") if isinstance(image, dict) else getattr(image, "path", image)
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError(f"No image file in the upload ({type(image).__name__}).")
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise ImageError(f"The image is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
        return path.read_bytes()
    except OSError as err:
        raise ImageError(f"The upload could not be read ({err.strerror or type(err).__name__}); upload it again.") from None


def answer(image, question: str, model: str = DEFAULT_MODEL, models: tuple[str, ...] = MODELS) -> tuple[str, str]:
    """``(answer, details)`` for ``question`` about the uploaded ``image`` with ``model``.
    Raises a :class:`~vlmstudy.errors.VlmStudyError` with a one-line message on bad input."""
    if not isinstance(model, str) or model not in models:
        raise ConfigError(f"Unknown model {model!r}; choose one of {', '.join(models)}.")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("The question is empty: type a question about the picture.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ConfigError(f"The question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}.")
    picture = load_image_bytes(_upload_bytes(image), max_bytes=MAX_UPLOAD_BYTES, formats=UPLOAD_FORMATS)
    start = time.perf_counter()
    text = engine(model).ask(picture, question.strip())
    seconds = time.perf_counter() - start
    return text, (f"{model} ({vlmstudy.get_mode()} mode) answered in {seconds:.2f} s; "
                  f"the image is {picture.width} x {picture.height} px.")


def _answer_in_page(image, question, model):
    import gradio as gr

    try:
        return answer(image, question, model)
    except VlmStudyError as err:
        raise gr.Error(" ".join(str(err).split()), print_exception=False) from None


def build_demo(models: tuple[str, ...] = MODELS, default_model: str = DEFAULT_MODEL):
    """The Gradio ``Blocks`` of the app (not launched). Its API endpoint is ``/ask``:
    ``(image, question, model) -> (answer, details)``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # the course runs offline
    import gradio as gr

    if default_model not in models:
        raise ConfigError(f"Unknown model {default_model!r}; choose one of {', '.join(models)}.")
    with gr.Blocks(title="vlmstudy · ask an image") as demo:
        gr.Markdown("# Ask an image\nUpload a picture, type a question, pick a model. "
                    f"Models run in **{vlmstudy.get_mode()}** mode"
                    + (" (the course's tiny stand-ins: they know ShapesWorld's coloured shapes only)."
                       if vlmstudy.get_mode() == "tiny" else "."))
        with gr.Row():
            image = gr.Image(label="image", type="filepath", sources=["upload", "clipboard"])
            with gr.Column():
                question = gr.Textbox(label="question", value=DEFAULT_QUESTION, max_lines=2)
                model = gr.Dropdown(choices=list(models), value=default_model, label="model")
                ask = gr.Button("Ask", variant="primary")
                reply = gr.Textbox(label="answer", interactive=False)
                details = gr.Markdown()
        # preprocess=False: the function gets Gradio's file payload and decodes the image itself
        ask.click(lambda i, q, m: _answer_in_page(i, q, m), [image, question, model], [reply, details],
                  api_name="ask", preprocess=False)
        question.submit(lambda i, q, m: _answer_in_page(i, q, m), [image, question, model], [reply, details],
                        api_name=False, preprocess=False)
    return demo


def free_port(host: str, start: int = DEFAULT_PORT, tries: int = 50) -> int:
    import socket

    for port in range(start, start + tries):
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    raise ConfigError(f"No free port in {start}-{start + tries - 1} on {host}; pass --port.")


def launch(host: str | None = None, port: int | None = None, model: str = DEFAULT_MODEL, preload: bool = True) -> None:
    """Start the app and block. host / port: Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``
    when set (Spaces sets them), else 127.0.0.1 and 7860 or the next free port."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port is None:
        port = int(os.environ["GRADIO_SERVER_PORT"]) if os.environ.get("GRADIO_SERVER_PORT") else free_port(host)
    demo = build_demo(default_model=model)
    if preload:
        engine(model)   # the first visitor does not wait for the model to load
    print(f"vlmstudy ask-an-image app on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    demo.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=False,
                                                   inbrowser=False, show_error=True,
                                                   max_file_size=MAX_UPLOAD_BYTES, quiet=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="vlmstudy's ask-an-image Gradio app.")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT} or the next free one)")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS, help="the model chosen at start")
    args = parser.parse_args(argv)
    try:
        launch(args.host, args.port, args.model)
    except VlmStudyError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
