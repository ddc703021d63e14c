"""``vlmstudy describe / ask / chat / serve``: inference from the terminal, thin layers on
:class:`vlmstudy.inference.Inference`.

::

    vlmstudy describe assets/images/shapes-1.png [more images] [--model NAME] [--prompt TEXT] [--json]
    vlmstudy ask assets/images/shapes-1.png "what colour is the triangle?" [--json]
    vlmstudy chat assets/images/shapes-1.png        # /image PATH, /clear, /history, /help, /quit
    vlmstudy serve --host 127.0.0.1 --port 8000     # HTTP API, docs at /docs

Results go to stdout (``--json``: one JSON object per line), errors to stderr as one
``error: ...`` line. Exit codes: 0 done; 1 a chat turn or command failed (the chat went on);
2 nothing could be done (bad image, unknown model, bad option); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ipaddress
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import ConfigError, VlmStudyError

EXIT_OK = 0
EXIT_TURN_FAILED = 1


CHAT_HELP = """commands:
  /image PATH   talk about another image (starts a new conversation)
  /clear        forget the conversation, keep the image
  /history      show the conversation so far
  /help         this list
  /quit         leave (Ctrl-D too)"""


def chat_history_file() -> Path:
    """Where interactive ``vlmstudy chat`` keeps its line history: under ``$XDG_STATE_HOME``
    (default ``~/.local/state``), in ``vlmstudy/chat_history``."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "vlmstudy" / "chat_history"


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("greedy", "beam", "sample"), default=None,
                        help="decoding strategy (default: greedy, deterministic)")
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="longest answer, in tokens")


def _generation(args) -> dict:
    out = {}
    if args.preset is not None:
        out["preset"] = args.preset
    if args.max_new_tokens is not None:
        out["max_new_tokens"] = args.max_new_tokens
    return out


@contextlib.contextmanager
def _quiet_loading():
    """Keep transformers' "Loading weights" progress bars and chatter off stderr, where a command's
    only output is its one-line error; restored afterwards (in-process callers, tests)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _inference(args, *task_names: str):
    """An :class:`Inference` with ``--model`` for every task (or the defaults), these tasks' models loaded."""
    from .inference import Inference

    return Inference(model=args.model).load(*task_names)


# ----------------------------------------------------------------------------- describe / ask

def _describe(args) -> int:
    from .images import load_image

    with _quiet_loading():
        images = [load_image(path) for path in args.images]  # every file checked before any model work
        infer = _inference(args, "describe")
        texts = infer.describe_batch(images, prompt=args.prompt, **_generation(args))
    model = infer.model_name("describe")
    for path, text in zip(args.images, texts):
        if args.json:
            print(json.dumps({"image": path, "model": model, "description": text}))
        else:
            print(text if len(args.images) == 1 else f"{path}: {text}")
    return EXIT_OK


def _ask(args) -> int:
    from .images import load_image

    with _quiet_loading():
        image = load_image(args.image)
        infer = _inference(args, "ask")
        answer = infer.ask(image, args.question, **_generation(args))
    if args.json:
        print(json.dumps({"image": args.image, "model": infer.model_name("ask"), "question": args.question,
                          "answer": answer}))
    else:
        print(answer)
    return EXIT_OK


# ----------------------------------------------------------------------------- chat

class ChatLoop:
    """The ``vlmstudy chat`` conversation: lines in, answers out, slash commands in between.

    session: a :class:`~vlmstudy.tasks.ChatSession` with its image set; read_line(prompt): the
    next line, ``EOFError`` at the end; interactive: a person at a terminal (a banner, a prompt,
    answers prefixed with the model's name) rather than a pipe (answers only, one per line).
    stdout carries the conversation, stderr the status and ``error: ...`` lines.
    """

    def __init__(self, session, read_line, model_name: str, interactive: bool, out=None, err=None):
        self.session, self.read_line, self.model_name = session, read_line, model_name
        self.interactive = interactive
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.failed = False

    def _say(self, text: str, stream=None) -> None:
        print(text, file=stream or self.out, flush=True)

    def _error(self, message) -> None:
        self.failed = True
        self._say(f"error: {_one_line(message)}", self.err)

    def run(self) -> int:
        """Talk until ``/quit`` or the end of input; the exit code says whether every turn worked."""
        if self.interactive:
            self._say(f"chatting with {self.model_name}; /help for commands, /quit or Ctrl-D to leave")
        while True:
            try:
                line = self.read_line("you> " if self.interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                if not self.interactive:
                    raise
                continue  # at a terminal Ctrl-C drops the line being typed, as in a shell
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    break
                continue
            self.turn(line)
        return EXIT_TURN_FAILED if self.failed else EXIT_OK

    def turn(self, text: str) -> None:
        from .tasks import ContextTrimmedWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ContextTrimmedWarning)
            try:
                reply = self.session.ask(text)
            except VlmStudyError as err:
                self._error(err)
                return
        for warning in caught:  # a Python warning would be two lines of file:line noise
            if issubclass(warning.category, ContextTrimmedWarning):
                self._say(f"note: {_one_line(warning.message)}", self.err)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        self._say(f"{self.model_name}> {reply}" if self.interactive else reply)

    def command(self, line: str) -> bool:
        """Run one slash command; ``False`` means leave."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/image":
            path = rest[1:-1] if len(rest) > 1 and rest[0] == rest[-1] and rest[0] in "'\"" else rest
            if not path:
                self._error("/image needs a path: /image PATH")
                return True
            try:
                self.session.set_image(path)
            except VlmStudyError as err:
                self._error(err)
                return True
            self._say(f"now talking about {path} (new conversation)", self.err)
        elif name == "/clear":
            self.session.clear()
            self._say("conversation cleared", self.err)
        elif name == "/history":
            turns = self.session.history
            if not turns:
                self._say("(no turns yet)")
            for user, reply in turns:
                self._say(f"you: {user}")
                self._say(f"{self.model_name}: {reply}")
        elif name == "/help":
            self._say(CHAT_HELP)
        else:
            self._error(f"unknown command {name!r}; /help lists them")
        return True


def _pipe_reader(stream):
    def read_line(prompt: str) -> str:
        line = stream.readline()
        if not line:
            raise EOFError
        return line

    return read_line


def _terminal_reader(history_file: Path):
    """Line editing and a persistent history: prompt_toolkit, or readline when it is missing."""
    try:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history_file.touch(exist_ok=True)
        usable = True
    except OSError:  # a read-only home must not cost the chat; the history just is not kept
        usable = False
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
    except ImportError:
        return _readline_reader(history_file if usable else None)
    prompt_session = PromptSession(history=FileHistory(str(history_file)) if usable else InMemoryHistory())
    return prompt_session.prompt


def _readline_reader(history_file: Path | None):
    try:
        import atexit
        import readline  # importing it gives input() line editing
    except ImportError:  # Windows without pyreadline: plain input()
        return input
    if history_file is not None:
        def save_history():
            with contextlib.suppress(OSError):
                readline.write_history_file(history_file)

        with contextlib.suppress(OSError):
            readline.read_history_file(history_file)
        atexit.register(save_history)
    return input


def _chat(args) -> int:
    from .images import load_image

    with _quiet_loading():
        image = load_image(args.image)
        infer = _inference(args, "chat")
        session = infer.chat(image, **_generation(args))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    read_line = _terminal_reader(Path(args.history_file)) if interactive else _pipe_reader(sys.stdin)
    with _quiet_loading():
        return ChatLoop(session, read_line, infer.model_name("chat"), interactive).run()


# ----------------------------------------------------------------------------- serve

def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args) -> int:
    import socket

    if not _is_loopback(args.host) and not args.allow_remote:
        raise ConfigError(f"--host {args.host} would let other machines use this server, which has no "
                          "authentication; keep the default 127.0.0.1 (reach it through an SSH tunnel), or pass "
                          "--allow-remote if you really mean it.")
    try:
        import uvicorn

        from .server import create_app
    except ImportError as err:
        raise ConfigError(f"vlmstudy serve needs the server packages ({err.name} is missing): "
                          "pip install -e '.[serve]'.") from None
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be a positive number (got {args.max_upload_mb}).")
    with _quiet_loading():
        infer = _inference(args, "describe", "ask")  # loaded once, before the port opens
    app = create_app(infer, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    # the socket is bound here, not by uvicorn, so that a busy port is a one-line error and
    # --port 0 can pick a free port and say which
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"Cannot listen on {args.host}:{args.port} ({err.strerror}); choose another port with "
                          "--port N (0 picks a free one).") from None
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    line = (f"serving {infer.model_name('describe')} (/describe) and {infer.model_name('ask')} (/vqa) on "
            f"http://{url_host}:{port} (docs: http://{url_host}:{port}/docs); Ctrl-C stops")

    class AnnouncingServer(uvicorn.Server):
        """Prints the line once uvicorn listens (scripts wait for it, then connect at once)."""

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                print(line, flush=True)

    # the server's own logger (one line per refused request or client that hung up) beside uvicorn's
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["vlmstudy.server"] = {"handlers": ["default"], "level": args.log_level.upper(),
                                                "propagate": False}
    config = uvicorn.Config(app, log_level=args.log_level, log_config=log_config, timeout_graceful_shutdown=10)
    try:
        AnnouncingServer(config).run(sockets=[sock])
    finally:
        sock.close()
    return EXIT_OK


# ----------------------------------------------------------------------------- parsers

def add_commands(subparsers) -> None:
    """Add ``describe``, ``ask``, ``chat`` and ``serve`` (see :mod:`vlmstudy.cli`)."""
    from .task_defaults import DEFAULT_MODELS  # light: --help must not import torch

    p = subparsers.add_parser("describe", help="describe (caption) one or more images",
                              description="Describe each image; one line per image (PATH: text when several).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s)")
    p.add_argument("--model", default=None, help=f"zoo model name (default: {DEFAULT_MODELS['describe']})")
    p.add_argument("--prompt", default=None,
                   help="the caption's start for BLIP ('a picture of'), the instruction for LLaVA / InstructBLIP")
    p.add_argument("--json", action="store_true", help="one JSON object per image: image, model, description")
    _add_generation_options(p)
    p.set_defaults(func=_describe)

    p = subparsers.add_parser("ask", help="answer a question about an image",
                              description="Answer QUESTION about IMAGE.")
    p.add_argument("image", metavar="IMAGE", help="image file")
    p.add_argument("question", metavar="QUESTION", help="the question, quoted")
    p.add_argument("--model", default=None, help=f"zoo model name (default: {DEFAULT_MODELS['ask']})")
    p.add_argument("--json", action="store_true", help="a JSON object: image, model, question, answer")
    _add_generation_options(p)
    p.set_defaults(func=_ask)

    p = subparsers.add_parser("chat", help="talk about an image with a chat model, interactively",
                              description="A conversation about IMAGE. At a terminal: line editing and history; "
                                          "from a pipe: one question per line, one answer per line.\n\n" + CHAT_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image file")
    p.add_argument("--model", default=None, help=f"chat model (default: {DEFAULT_MODELS['chat']}; or llava-next)")
    p.add_argument("--history-file", default=str(chat_history_file()), metavar="PATH",
                   help="where the line history is kept (default: %(default)s)")
    _add_generation_options(p)
    p.set_defaults(func=_chat)

    p = subparsers.add_parser("serve", help="HTTP API: POST /describe, POST /vqa, GET /health, GET /models",
                              description="Serve the models over HTTP (FastAPI + uvicorn); OpenAPI docs at /docs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--model", default=None,
                   help=f"one model for both endpoints (default: {DEFAULT_MODELS['describe']} for /describe, "
                        f"{DEFAULT_MODELS['ask']} for /vqa)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MB", help="largest image upload (default: 10)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other machines can reach (the server has no authentication)")
    p.set_defaults(func=_serve)
