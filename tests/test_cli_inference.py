"""``vlmstudy describe / ask / chat / serve`` on the shipped sample images: output, --json, exit
codes, one-line errors, and the interactive chat driven through a pipe and through a pseudo-terminal.

Most commands run in this process through ``cli.main`` (what the console script calls); three run
as real processes: ``describe`` (nothing but results on stdout, nothing on stderr) and ``chat``
through a pipe and a pty. Answers must equal the Python API's (``vlmstudy.Inference``).
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlmstudy import cli
from vlmstudy.inference import Inference
from vlmstudy.inference_commands import chat_history_file

pytestmark = pytest.mark.slow  # test tier (issue 23): processes, a terminal, a server

REPO = Path(__file__).resolve().parent.parent
IMAGES = [str(REPO / "assets" / "images" / f"shapes-{i}.png") for i in (1, 2, 3)]
QUESTION = "what colour is the triangle?"


@pytest.fixture(scope="module")
def api():
    return Inference().load("describe", "ask", "chat")


def run_main(capsys, *argv):
    """``vlmstudy ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    for fragment in fragments:
        assert fragment in lines[0]


def test_commands_are_registered():
    assert "vlmstudy.inference_commands" in cli.COMMAND_MODULES
    help_text = cli.build_parser().format_help()
    for command in ("describe", "ask", "chat", "serve"):
        assert command in help_text


# ----------------------------------------------------------------------------- describe / ask

def test_describe_one_image_prints_the_api_description(capsys, api):
    code, out, err = run_main(capsys, "describe", IMAGES[0])
    assert (code, err) == (0, "")
    assert out == api.describe(IMAGES[0]) + "\n" and out.strip()


def test_describe_several_images_json_lines(capsys, api):
    code, out, err = run_main(capsys, "describe", *IMAGES, "--json")
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == IMAGES
    assert [r["description"] for r in rows] == [api.describe(p) for p in IMAGES]
    assert {r["model"] for r in rows} == {"blip-caption"}


def test_describe_prompt_model_and_settings(capsys, api):
    code, out, _ = run_main(capsys, "describe", IMAGES[1], "--prompt", "a picture of", "--max-new-tokens", "3")
    assert code == 0 and out.strip() == api.describe(IMAGES[1], prompt="a picture of", max_new_tokens=3)
    code, out, _ = run_main(capsys, "describe", IMAGES[1], "--model", "llava", "--json")
    row = json.loads(out)
    assert code == 0 and row["model"] == "llava"
    assert row["description"] == Inference(model="llava").describe(IMAGES[1])


def test_ask_prints_the_api_answer(capsys, api):
    code, out, err = run_main(capsys, "ask", IMAGES[2], QUESTION)
    assert (code, err) == (0, "") and out == api.ask(IMAGES[2], QUESTION) + "\n" and out.strip()
    code, out, _ = run_main(capsys, "ask", IMAGES[2], QUESTION, "--json")
    assert json.loads(out) == {"image": IMAGES[2], "model": "blip-vqa", "question": QUESTION,
                               "answer": api.ask(IMAGES[2], QUESTION)}


@pytest.mark.parametrize("argv, fragments", [
    (["describe", "no/such/picture.png"], ["No image file", "picture.png"]),
    (["describe", IMAGES[0], "README.md"], ["README.md", "not an image"]),
    (["ask", "README.md", QUESTION], ["not an image"]),
    (["ask", IMAGES[0], "   "], ["question must be a non-empty string"]),
    (["describe", IMAGES[0], "--model", "blip-vqqa"], ["Unknown model 'blip-vqqa'"]),
    (["describe", IMAGES[0], "--model", "blip-vqa"], ["blip-vqa cannot write captions"]),
    (["describe", IMAGES[0], "--max-new-tokens", "0"], ["max_new_tokens"]),
    (["chat", IMAGES[0], "--model", "blip-caption"], ["ChatSession needs a chat model"]),
    (["serve", "--host", "0.0.0.0"], ["--allow-remote"]),
])
def test_user_errors_exit_2_with_one_line_on_stderr(capsys, argv, fragments):
    assert_one_line_error(*run_main(capsys, *argv), *fragments)


def test_usage_errors_exit_2(capsys):
    code, out, err = run_main(capsys, "ask", IMAGES[0])  # no question
    assert code == 2 and "QUESTION" in err and out == ""


def test_serve_on_a_busy_port_is_a_one_line_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(*run_main(capsys, "serve", "--port", str(port)), f"127.0.0.1:{port}", "--port")


def test_describe_as_a_real_process_prints_only_results(subprocess_env, tmp_path, api):
    """No loading progress bars, warnings or logs: stdout has the results, stderr nothing."""
    out = subprocess.run([sys.executable, "-m", "vlmstudy", "describe", *IMAGES], capture_output=True, text=True,
                         env=subprocess_env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [f"{p}: {api.describe(p)}" for p in IMAGES]


# ----------------------------------------------------------------------------- chat

def test_chat_in_process_from_a_pipe(capsys, monkeypatch, api):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\n\n/history\n"))  # ends with EOF
    code, out, err = run_main(capsys, "chat", IMAGES[0])
    reply = api.chat(IMAGES[0]).ask(QUESTION)
    assert (code, err) == (0, "")
    assert out.splitlines() == [reply, f"you: {QUESTION}", f"llava: {reply}"]


def test_chat_through_a_pipe(subprocess_env, tmp_path, api):
    """A scripted conversation: answers one per line on stdout; /image switches (and restarts the
    conversation); a failed command is one error line and the chat goes on; exit 1 because of it."""
    script = "\n".join([
        QUESTION, "and what shape is on the right?", "/history", "/image does-not-exist.png", "/nonsense",
        f"/image {IMAGES[1]}", "/history", "what shape is at the top?", "/clear", "/history", "/quit",
        "this line is never read",
    ]) + "\n"
    out = subprocess.run([sys.executable, "-m", "vlmstudy", "chat", IMAGES[0]], input=script, capture_output=True,
                         text=True, env=subprocess_env, cwd=tmp_path, timeout=120)
    first = api.chat(IMAGES[0])
    a1, a2 = first.ask(QUESTION), first.ask("and what shape is on the right?")
    a3 = api.chat(IMAGES[1]).ask("what shape is at the top?")
    assert out.stdout.splitlines() == [
        a1, a2, f"you: {QUESTION}", f"llava: {a1}", "you: and what shape is on the right?", f"llava: {a2}",
        "(no turns yet)", a3, "(no turns yet)"]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "does-not-exist.png" in errors[0] and "/nonsense" in errors[1]
    assert "Traceback" not in out.stderr and f"now talking about {IMAGES[1]}" in out.stderr
    assert out.returncode == 1


class Terminal:
    """A child process on a pseudo-terminal: what a person at a terminal would type and see."""

    def __init__(self, argv, env, cwd):
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     close_fds=True)
        os.close(slave)
        self.screen = b""
        self.seen = 0  # how much of the screen earlier expect() calls have matched

    def expect(self, text: str, timeout: float = 60) -> None:
        """Read until ``text`` appears after what was matched before, or fail after ``timeout`` s."""
        target, deadline = text.encode(), time.monotonic() + timeout
        while target not in self.screen[self.seen:] and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                self.screen += chunk
        found = self.screen.find(target, self.seen)
        assert found >= 0, f"{text!r} did not appear; output so far: {self.screen[-2000:]!r}"
        self.seen = found + len(target)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_chat_at_a_terminal_has_line_editing_and_a_kept_history(subprocess_env, tmp_path, api):
    state = tmp_path / "state"
    env = dict(subprocess_env, XDG_STATE_HOME=str(state), TERM="xterm",
               PROMPT_TOOLKIT_NO_CPR="1")  # a real terminal answers cursor-position requests; a bare pty does not
    old_question = "how many shapes are there?"
    history = state / "vlmstudy" / "chat_history"
    history.parent.mkdir(parents=True)
    history.write_text(f"\n# an earlier session\n+{old_question}\n")  # prompt_toolkit's FileHistory format
    term = Terminal([sys.executable, "-m", "vlmstudy", "chat", IMAGES[0]], env, tmp_path)
    try:
        term.expect("/help for commands")
        term.expect("you>")
        term.type("what colour\x7f\x7f\x7f\x7f\x7f\x7fshape is on the left?\r")  # 6 backspaces edit the line
        reply = api.chat(IMAGES[0]).ask("what shape is on the left?")
        term.expect(f"llava> {reply}")
        term.type("\x1b[A\x1b[A\r")  # arrow up twice: the question from the earlier session
        chat = api.chat(IMAGES[0])
        chat.ask("what shape is on the left?")
        term.expect(f"llava> {chat.ask(old_question)}")
        term.type("/quit\r")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    kept = [line[1:] for line in history.read_text().splitlines() if line.startswith("+")]
    assert kept == [old_question, "what shape is on the left?", old_question, "/quit"]


def test_chat_history_lives_under_the_user_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert chat_history_file() == tmp_path / "vlmstudy" / "chat_history"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert chat_history_file() == Path.home() / ".local" / "state" / "vlmstudy" / "chat_history"
