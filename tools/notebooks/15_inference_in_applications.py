# %% [markdown]
# # 15 · Inference the way an application does it: the command line, the Python API and an HTTP server
#
# **Objective.** By the end of this notebook you can run the course's models the three ways an
# application does: as a **command** a shell script calls (`vlmstudy describe`, `ask`, a custom
# prompt, and an interactive mode fed on stdin), as a **Python API** a program imports
# (`vlmstudy.Inference`, `vlmstudy.MultiModalModel`), and as an **HTTP server** other programs
# send requests to (`vlmstudy serve`, started and stopped from here). You check that all three
# give the same answer for the same image and question, see what batching buys, and know what
# the server refuses, with which status code, and why each rule exists.
#
# Until now the model lived in the notebook's own process: load it once, call it, read the
# tensors. An application rarely looks like that. A shell script calls a command and reads
# its output; a web page sends a picture to a server that may run on another machine; a batch
# job feeds thousands of images through one loaded model. The work is the same everywhere: the
# command line and the server are thin layers on one object, `vlmstudy.Inference`. What changes
# is who pays for loading the model, how the input arrives, and what must be checked before it
# reaches the model: a server reads bytes from strangers.

# %%
import atexit
import contextlib
import http.client
import io
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
from IPython import get_ipython
from PIL import Image

import vlmstudy
from vlmstudy import plotting, shapes
from vlmstudy.errors import VlmStudyError

try:
    from vlmstudy import server as server_module  # the HTTP API: FastAPI, run by uvicorn
except ImportError as err:
    raise RuntimeError(f"This notebook starts the HTTP server, which needs the serve extra ({err.name} is missing): "
                       "pip install -e '.[serve]'") from None

vlmstudy.seed_everything(0)

# every child process runs in this notebook's mode (tiny stand-ins, or the Hub's checkpoints)
ENV = dict(os.environ, VLMSTUDY_MODE=vlmstudy.get_mode())
WORK = Path(tempfile.mkdtemp(prefix="vlmstudy-15-"))        # the pictures the commands read
scenes = shapes.make_scenes("test", 8, seed=15)
paths = []
for i, scene in enumerate(scenes):
    scene.render().save(WORK / f"scene-{i}.png")
    paths.append(f"scene-{i}.png")                            # relative to WORK, the commands' folder
qa = shapes.questions(scenes[0])[0]
print(vlmstudy.get_mode(), "mode; pictures in", WORK)
print("question about scene-0:", repr(qa.question), "| truth:", qa.answer)
fig = plotting.show_images([s.render() for s in scenes[:3]], titles=[f"{p}: {s.caption}" for p, s in
                                                                      zip(paths, scenes)])

# %% [markdown]
# ## Step 1: start the HTTP server early
#
# A server keeps the model loaded and answers requests from any program that speaks HTTP, on this
# machine or (through a tunnel) another. `vlmstudy serve` is a FastAPI app run by uvicorn:
# `POST /describe` and `POST /vqa` take the picture as a `multipart/form-data` upload (the format
# of a web form with a file field), `GET /health` says whether it is up, `GET /docs` documents it.
#
# A server loads its models before it opens its port, which takes seconds, so an application
# starts it **first** and waits for it only when it needs it; this notebook starts it now,
# uses the command line and the Python API while it loads, and sends it requests from Step 6
# on. Starting a server from a program needs three things done right:
# * **a free port**: `--port 0` lets the operating system pick one and the server prints it, so two
#   notebooks never fight over port 8000;
# * **waiting until it is ready**, with a timeout and a clear error: once it listens, the server
#   prints one `serving ... on URL` line; if it dies first, or the line does not come in time,
#   `wait_until_ready` says so with the end of the server's log instead of hanging;
# * **stopping it whatever happens**: a server left running holds its memory and its port. A
#   notebook's `try`/`finally` cannot span cells, so the hook below asks IPython to stop the
#   server after any cell that fails (from here to the end); the last server cell stops it for
#   good, and `atexit` stops it if the kernel shuts down first.
#
# `--max-upload-mb 1` lowers the upload limit, so that Step 8 can show it with a small file.

# %%
class ServerProcess:
    """``vlmstudy serve`` in a child process on a free port of 127.0.0.1; ``url`` once it is ready."""

    def __init__(self, *options):
        self.log = tempfile.TemporaryFile(mode="w+")      # stderr to a file: a full pipe would block it
        self.proc = subprocess.Popen([sys.executable, "-m", "vlmstudy", "serve", "--host", "127.0.0.1", "--port", "0",
                                      *map(str, options)], stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=ENV, cwd=WORK)
        atexit.register(self.stop)
        self.started, self.url, self.lines = time.perf_counter(), None, queue.Queue()

        def read_stdout():                                # a thread, so that waiting can time out
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)                          # stdout closed: the process ended

        threading.Thread(target=read_stdout, daemon=True).start()

    def wait_until_ready(self, timeout=180):
        """Block until the server announces its URL; a clear error (and no server) if it does not."""
        if self.url is None:
            try:
                line = self.lines.get(timeout=max(0.0, self.started + timeout - time.perf_counter()))
            except queue.Empty:
                line = None
            match = re.search(r" on (http://\S+) \(docs", line or "")
            if match is None:
                self.stop()
                raise RuntimeError(f"vlmstudy serve was not ready within {timeout} s (exit code "
                                   f"{self.proc.returncode}); the end of its log: {self.log_tail()}")
            self.url, self.announced = match.group(1), line.strip()
            self.ready_after = time.perf_counter() - self.started
        return self

    def log_tail(self, lines=12):
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def stop(self):
        """Ctrl-C, as a person would (kill after 30 s); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT) if os.name == "posix" else self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


server = ServerProcess("--max-upload-mb", 1, "--log-level", "info")   # returns at once; loading goes on


def stop_server_if_the_cell_failed(result):
    if not result.success:
        print("this cell failed: stopping the server, exit code", server.stop())


if get_ipython() is not None:                            # None outside IPython: then atexit alone
    get_ipython().events.register("post_run_cell", stop_server_if_the_cell_failed)
print("server process", server.proc.pid, "started")

# %% [markdown]
# ## Step 2: the command line
#
# A command is the simplest way in: any language, any script, any scheduler can run it. The cost
# is that every run starts a new Python, imports torch and loads the model before it answers.
# The helper below runs `vlmstudy ...` exactly as a shell would (`sys.executable -m vlmstudy`
# is the same program as the `vlmstudy` script, with this notebook's Python), in the folder
# with the pictures, and prints what came back: stdout, stderr, the exit code and the time.

# %%
def vlmstudy_cli(*args, stdin=None):
    """Run ``vlmstudy ARGS`` as a child process: (the finished process, seconds it took)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vlmstudy", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=ENV, cwd=WORK, timeout=300)
    seconds = time.perf_counter() - start
    print("$ vlmstudy", shlex.join(map(str, args)), f"    # exit code {done.returncode}, {seconds:.1f} s")
    print(done.stdout, end="")
    if done.stderr:
        print("[stderr]", done.stderr, end="")
    return done, seconds


done, _ = vlmstudy_cli("describe", *paths[:3], "--json")
assert done.returncode == 0, done.stderr
cli_descriptions = [json.loads(line) for line in done.stdout.splitlines()]

# %% [markdown]
# `describe` takes several images and describes them in one batch: one model load for all of
# them. With `--json` every line is one JSON object, which a program can parse without guessing
# where the file name ends and the description begins. Without it the output is plain text,
# for people.
#
# `ask` answers one question. Results go to stdout, everything else to stderr, and the exit code
# says what happened: 0 done, 2 nothing could be done. A script must check the exit code; the
# second call below hands the command a text file named like a picture:

# %%
done, cli_ask_seconds = vlmstudy_cli("ask", paths[0], qa.question, "--json")
assert done.returncode == 0, done.stderr
cli_answer = json.loads(done.stdout)["answer"]

(WORK / "notes.png").write_text("not a picture, whatever its name says\n")
bad, _ = vlmstudy_cli("ask", "notes.png", qa.question)
assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.startswith("error: ")
assert len(bad.stderr.strip().splitlines()) == 1, "a user's mistake is one line, not a traceback"

# %% [markdown]
# The bad picture fails before any model is loaded (the image is read first), with one line that
# says what was wrong. A traceback would be noise for a person and unreadable for a script.
#
# ## Step 3: the interactive mode, driven through stdin
#
# Paying the load on every call is wasteful when a program has many requests. `vlmstudy infer`
# (the fine-tuning guide's command) has an interactive mode: without `--image` it loads the model
# once and reads one request per line from stdin, `describe PATH`, `ask PATH QUESTION` or
# `prompt PATH TEXT` (a custom prompt; for LLaVA the chat template wraps it), and answers each
# on one line of stdout. A person types the lines at a terminal; another program writes them into
# a pipe, which is what this cell does. One request is wrong on purpose: it gets one `error:` line
# on stderr, the loop goes on, and the exit code at the end (1) says that something failed.
#
# `--max-new-tokens` is part of the request: the same question with another answer length can
# give another answer, so every comparison below uses the same decoding settings. (`vlmstudy infer
# --image PATH --question TEXT` is the one-shot form; `vlmstudy chat PATH` is a multi-turn
# conversation driven the same way, see notebook 07 for what a conversation needs.)

# %%
PROMPT = "list the shapes in the picture."
TOKENS = 24
requests_in = "\n".join([f"describe {paths[0]}", f"ask {paths[0]} {qa.question}", f"prompt {paths[0]} {PROMPT}",
                         "ask scene-99.png what is this?",           # no such file: an error line, then go on
                         f"ask {paths[1]} {qa.question}", "quit"]) + "\n"
done, _ = vlmstudy_cli("infer", "--model", "llava", "--max-new-tokens", TOKENS, stdin=requests_in)
infer_lines = done.stdout.splitlines()
assert done.returncode == 1 and len(infer_lines) == 4, (done.returncode, done.stdout, done.stderr)
assert done.stderr.count("error: ") == 1 and "scene-99.png" in done.stderr

# %% [markdown]
# ## Step 4: the Python API, and the same answers
#
# Inside a Python program there is no process to start: `vlmstudy.Inference` holds the models
# (loaded once, on first use or with `.load()`), the decoding settings, and one method per job:
# `describe`, `ask`, `generate` (a custom prompt), their `*_batch` forms, and `chat`. The
# commands of Steps 2 and 3 are a few lines around it, so the answers must be **the same**, word
# for word, for the same picture, question and settings. `MultiModalModel` is the guide's name for
# one model used for every job (what `vlmstudy infer` runs).

# %%
api = vlmstudy.Inference().load("describe", "ask")     # describe: blip-caption, ask: blip-vqa
print(api)
api_descriptions = api.describe_batch([WORK / p for p in paths[:3]])
start = time.perf_counter()
api_answer = api.ask(WORK / paths[0], qa.question)
api_ask_seconds = time.perf_counter() - start
for row, text in zip(cli_descriptions, api_descriptions):
    print(f"{row['image']}: CLI {row['description']!r} | API {text!r}")
print(f"ask: CLI {cli_answer!r} | API {api_answer!r} | truth {qa.answer!r}")
assert [row["description"] for row in cli_descriptions] == api_descriptions
assert cli_answer == api_answer

# %%
guide = vlmstudy.MultiModalModel("llava", max_new_tokens=TOKENS)
image = WORK / paths[0]
api_infer = [guide.describe(image), guide.ask(image, qa.question),
             guide.generate_from_image(image, PROMPT, max_new_tokens=TOKENS), guide.ask(WORK / paths[1], qa.question)]
for kind, cli_line, api_line in zip(("describe", "ask", "prompt", "ask"), infer_lines, api_infer):
    print(f"{kind:8} CLI {cli_line!r:40} API {api_line!r}")
assert infer_lines == api_infer

# %% [markdown]
# (In hub mode the answers are the random weights' gibberish; they must still be the *same*
# gibberish everywhere, which is what these checks test.)
#
# ## Step 5: batching
#
# A model spends most of a call on matrix products, and a batch of images is one set of larger
# products instead of one small set per image: fewer Python round trips, better use of the cores (or the
# GPU). `ask_batch` pads the questions to one length and masks the padding, so every answer must
# be what the image gets alone. The timings below are **measured on this run**, on whatever
# else this machine is doing: an illustration, not a benchmark.

# %%
images = [WORK / p for p in paths]
start = time.perf_counter()
one_by_one = [api.ask(img, qa.question) for img in images]
loop_seconds = time.perf_counter() - start
start = time.perf_counter()
batched = api.ask_batch(images, qa.question, batch_size=len(images))
batch_seconds = time.perf_counter() - start
print(f"{len(images)} questions one by one: {loop_seconds:.2f} s; in one batch: {batch_seconds:.2f} s "
      f"(measured on this run)")
print(batched)
assert batched == one_by_one, "a batch must answer what each image gets alone"

# %% [markdown]
# ## Step 6: requests to the server
#
# Now the notebook needs the server, so it waits for it (it has been loading since Step 1):

# %%
server.wait_until_ready()
print(f"ready {server.ready_after:.1f} s after it was started (measured on this run):", server.announced)

# %% [markdown]
# The client side needs nothing but the standard library. A `multipart/form-data` body is a list
# of parts between boundary lines, each with a `Content-Disposition` header naming its field; a
# file part also carries a file name (which this server never reads: names lie, and a name like
# `../../etc/passwd` is an attack). `form_body` builds that body by hand so that you can see it;
# `request` sends it with `http.client` (the standard library's HTTP client, the one `urllib`
# uses) and returns the status, the JSON answer and the time. An error status
# (4xx) still has a JSON body: `{"error": CODE, "detail": MESSAGE}`.

# %%
def form_body(parts):
    """``[(field, text or (file name, bytes)), ...]`` -> (body bytes, Content-Type header)."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in parts:
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
            head += "Content-Type: application/octet-stream\r\n"
            data = value[1]
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n', str(value).encode()
        chunks.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(path, parts=None, body=None, content_type=None, method="POST", headers_only=False):
    """One HTTP request to the server: (status, JSON answer, seconds). headers_only: announce the
    body (``Expect: 100-continue``) without sending it, for a request refused on its headers."""
    if parts is not None:
        body, content_type = form_body(parts)
    headers = {} if body is None else {"Content-Type": content_type, "Content-Length": str(len(body))}
    if headers_only:
        headers["Expect"] = "100-continue"
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    start = time.perf_counter()
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(None if headers_only else body)
        response = connection.getresponse()              # a 4xx answer is JSON too
        status, payload = response.status, response.read()
    finally:
        connection.close()
    return status, json.loads(payload), time.perf_counter() - start


picture = (WORK / paths[0]).read_bytes()
body, content_type = form_body([("image", (paths[0], picture)), ("question", qa.question)])
print(content_type)
print(body[:220].decode("latin-1"), "...")

# %%
status, health, _ = request("/health", method="GET")
print(status, health)
status, described, _ = request("/describe", [("image", (paths[0], picture))])
print(status, described)
status, answered, http_ask_seconds = request("/vqa", [("image", (paths[0], picture)), ("question", qa.question)])
print(status, answered)
assert status == 200 and health["mode"] == vlmstudy.get_mode()
assert described["description"] == api.describe(WORK / paths[0]) == cli_descriptions[0]["description"]
assert answered["answer"] == api_answer == cli_answer
print("CLI, Python API and HTTP server give the same answer:", repr(answered["answer"]))

# %% [markdown]
# ## Step 7: many clients at once
#
# This server has **no batch endpoint**: one request, one picture. That is a choice. A batch
# request would multiply what one request may hold in memory (the upload limit is per request),
# and one slow client's batch would hold up everyone else's single picture. What the server does
# with requests that arrive together: it reads and decodes their pictures in parallel, then they
# **take turns** on the model (`Inference` holds a lock around generation, because a model and
# its tokenizer are not safe to run from two threads at once). Servers built for heavy traffic
# go further and merge the requests that are waiting into one batch on the fly (*dynamic* or
# *continuous batching*, as in Hugging Face's Text Generation Inference or vLLM); batching in this
# course is the Python API's `*_batch` (Step 5).
#
# Below, the same questions as in Step 5, sent one after the other and then all at once, one
# thread per request. Every answer must be what the picture gets alone.

# %%
def ask_server(path):
    return request("/vqa", [("image", (path.name, path.read_bytes())), ("question", qa.question)])


start = time.perf_counter()
sequential = [ask_server(img) for img in images]
sequential_seconds = time.perf_counter() - start
start = time.perf_counter()
with ThreadPoolExecutor(max_workers=len(images)) as pool:
    concurrent = list(pool.map(ask_server, images))
concurrent_seconds = time.perf_counter() - start
assert all(status == 200 for status, _, _ in sequential + concurrent)
assert [body["answer"] for _, body, _ in concurrent] == [body["answer"] for _, body, _ in sequential] == one_by_one
print(f"{len(images)} requests one after the other: {sequential_seconds:.2f} s; "
      f"all at once: {concurrent_seconds:.2f} s (measured on this run)")

# %% [markdown]
# One answer by each route, and the batch of Step 5 by each way of grouping it, as measured in this run.
# The command pays for a new Python and the model load on every call; the API and the server
# paid for the load once, before the clock started.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
routes = {"CLI process\n(vlmstudy ask)": cli_ask_seconds, "Python API\n(api.ask)": api_ask_seconds,
          "HTTP request\n(POST /vqa)": http_ask_seconds}
groups = {"API, one by one": loop_seconds, "API, ask_batch": batch_seconds,
          "server, sequential": sequential_seconds, "server, all at once": concurrent_seconds}
for ax, values, title in ((left, routes, "one answer"), (right, groups, f"{len(images)} answers")):
    bars = ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.2f s", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    ax.set_title(f"{title}: measured on this run", fontsize=10)
    ax.tick_params(axis="x", labelsize=7)
fig.tight_layout()

# %% [markdown]
# ## Step 8: what the server refuses, and why
#
# A notebook trusts its input; a server must not. Every request below is wrong in one way, and
# each one gets a 4xx status, a short machine-readable code and a one-line message that says
# what to do, never a traceback and never a crash. The status classes tell the client whose
# fault it is: 400 the request is malformed, 413 it is too large, 415 it is not a picture, 422
# it is well formed but a field is missing or unusable (4xx: the client's; 5xx: the server's).
#
# Why each rule exists:
# * **multipart only, fields by name, no unknown or repeated field**: a field with a typo
#   (`qestion`) must not be silently ignored, and a repeated `image` must not leave the client
#   guessing which one was answered;
# * **upload limit, checked on the declared length before reading**: the body is held in memory,
#   so without a limit one client could exhaust it. The server answers 413 on the headers and
#   closes the connection; a client still sending its body then sees a broken pipe instead of
#   the answer. So a client with a large upload sends `Expect: 100-continue` and waits for the
#   go-ahead before the body (curl does this for large uploads), as the request below does;
# * **a pixel limit, checked on the declared size before decoding**: a few kilobytes of PNG can
#   declare an image that needs gigabytes once decoded (a *decompression bomb*); the file below
#   is a real, tiny PNG of a blank picture over the limit;
# * **pictures recognised by their content**, in a short list of formats: the file name and the
#   declared type are the client's claim, not a fact;
# * **text length and `max_new_tokens` bounds**: generation time grows with both, so an unbounded
#   request is a way to occupy the model for everyone.

# %%
print(f"upload limit (--max-upload-mb 1): {1024 * 1024:,} bytes | pixel limit: {server_module.MAX_UPLOAD_PIXELS:,} | "
      f"longest text: {server_module.MAX_TEXT_CHARS} characters | max_new_tokens: at most {server_module.MAX_NEW_TOKENS}")


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


side = int(server_module.MAX_UPLOAD_PIXELS ** 0.5) + 1
bomb = png(Image.new("L", (side, side)))                  # blank, so it compresses to almost nothing
noise = png(Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)))  # random pixels do not compress
print(f"the bomb: {side} x {side} = {side * side:,} pixels in {len(bomb):,} bytes; "
      f"the noise picture: 700 x 700 in {len(noise):,} bytes")

# %%
image_part = ("image", (paths[0], picture))
question = ("question", qa.question)
long_question = ("is it blue? " * 50).strip()
bad_requests = [  # (what is wrong, request arguments, expected status, expected code)
    ("a JSON body instead of a form", dict(path="/vqa", body=b'{"question": "?"}', content_type="application/json"),
     400, "not_multipart"),
    ("an empty image field", dict(path="/vqa", parts=[("image", ("x.png", b"")), question]), 400, "empty_image"),
    ("more bytes than --max-upload-mb", dict(path="/vqa", parts=[("image", ("x.png", noise)), question],
                                             headers_only=True), 413, "upload_too_large"),
    ("a small PNG of too many pixels", dict(path="/vqa", parts=[("image", ("x.png", bomb)), question]), 413,
     "image_too_large"),
    ("a text file named .png", dict(path="/vqa", parts=[("image", ("notes.png", b"not a picture\n")), question]), 415,
     "not_an_image"),
    ("a PNG cut in half", dict(path="/vqa", parts=[("image", ("x.png", picture[:len(picture) // 2])), question]), 422,
     "bad_image"),
    ("no question", dict(path="/vqa", parts=[image_part]), 422, "bad_fields"),
    ("a misspelt field", dict(path="/vqa", parts=[image_part, ("qestion", qa.question)]), 422, "bad_fields"),
    ("the image twice", dict(path="/vqa", parts=[image_part, image_part, question]), 422, "repeated_field"),
    (f"a question of {len(long_question)} characters", dict(path="/vqa", parts=[image_part, ("question", long_question)]),
     422, "bad_field"),
    ("max_new_tokens=100000", dict(path="/describe", parts=[image_part, ("max_new_tokens", 100_000)]), 422,
     "bad_field"),
    ("GET on /vqa", dict(path="/vqa", method="GET"), 405, "http_405"),
    ("a path that does not exist", dict(path="/caption", method="GET"), 404, "http_404"),
]
refused = []
for what, arguments, _, _ in bad_requests:
    got_status, answer, _ = request(**arguments)
    refused.append((what, got_status, answer["error"], answer["detail"]))
    print(f"{what:32} -> {got_status} {answer['error']:17} {answer['detail'][:90]}")
assert [(s, c) for _, s, c, _ in refused] == [(s, c) for _, _, s, c in bad_requests]

# %% [markdown]
# The server wrote one line per refusal in its log (logger `vlmstudy.server`, level INFO): enough
# to see who sent what, and no traceback, because a client's mistake is not the server's failure.
# It is still up:

# %%
status, health, _ = request("/health", method="GET")
log = server.log_tail(200)
refusal_lines = [line for line in log.splitlines() if re.search(r"(GET|POST) /\S*: 4\d\d", line)]
print("\n".join(line[:120] for line in refusal_lines))
assert status == 200 and "Traceback" not in log
assert len(refusal_lines) == len(bad_requests), "one log line per refused request"

# %% [markdown]
# Two more refusals happen before the server serves anything. An **unknown model** fails when the
# app is built, which `vlmstudy serve` does before it opens the port: better no server than one
# that fails on its first request. And a **host other machines can reach** is refused: this server
# has no authentication, so anyone who can reach the port could use the model (and the machine's
# time); the default `127.0.0.1` is this machine only, and an SSH tunnel reaches it safely.

# %%
try:
    server_module.create_app(model="no-such-model")
except VlmStudyError as err:
    print(type(err).__name__ + ":", str(err)[:160])
else:
    raise AssertionError("an unknown model must be refused")
done, _ = vlmstudy_cli("serve", "--host", "0.0.0.0", "--port", "0")
assert done.returncode == 2 and "--allow-remote" in done.stderr

# %% [markdown]
# ## Stopping the server
#
# Ctrl-C (SIGINT) lets uvicorn finish the requests under way, then the command exits as
# interrupted, code 130. The port is free again.

# %%
code = server.stop()
print("exit code", code, "| last log line:", server.log_tail(1).strip())
assert os.name != "posix" or code == 130, code
with contextlib.suppress(OSError):                       # connection refused: nobody listens any more
    request("/health", method="GET")
    raise AssertionError("the server still answers after stop()")

# %% [markdown]
# ## Summary
#
# * The command line, the Python API and the HTTP server are three doors to one object,
#   `vlmstudy.Inference`; for the same picture, question and decoding settings they gave the same
#   answer, checked in Steps 4 and 6.
# * A command pays for a new process and the model load on every call; its interactive mode
#   (`vlmstudy infer` fed on stdin) and the server load once. Results go to stdout, errors to
#   stderr in one line, and the exit code says which happened.
# * Batching (`ask_batch`) answers what each image gets alone, in fewer, larger forward passes.
#   This server has no batch endpoint: concurrent requests decode in parallel and take turns on
#   the model.
# * A program that starts a server picks a free port, waits for it with a timeout and a clear
#   error, and stops it whatever happens.
# * The server refuses what it cannot trust with a status that says whose fault it is and a
#   message that says what to do: malformed (400), too large (413), not a picture (415), a
#   missing or unusable field (422); an unknown model or a public host stops it before it starts.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. A script runs `vlmstudy ask` once per image, for 1,000 images: what does it pay each time, and what is better?**
#
# <details><summary>Answer</summary>
#
# A new Python process, the imports (torch, transformers) and the model load, every time; the
# answer itself is the small part. Use a mode that loads once: `vlmstudy infer` fed one request
# per line on stdin, the Python API with `ask_batch`, or a running server.
#
# </details>
#
# **2. Why do the comparisons use the same `max_new_tokens`, and why must the answers match word for word?**
#
# <details><summary>Answer</summary>
#
# The decoding settings are part of the request: a shorter limit can cut an answer, so different
# settings may legitimately give different text. With the same settings the three routes run the
# same code on the same pixels with greedy decoding, so any difference would be a bug in one of
# the layers (a different prompt, a different image conversion), which is what the checks catch.
#
# </details>
#
# **3. Why does a program that starts a server read its "serving ... on URL" line with a timeout, and use `--port 0`?**
#
# <details><summary>Answer</summary>
#
# The server loads its models before it opens the port, which takes seconds; connecting too early
# fails, and waiting without a limit hangs forever if the server died. A timeout with the end of
# the server's log turns that into a clear error. `--port 0` lets the operating system choose a
# free port (the server prints which), so two servers never collide on a fixed one.
#
# </details>
#
# **4. A client uploads a 20 KB PNG and gets 413. How can a file that small be "too large"?**
#
# <details><summary>Answer</summary>
#
# The limit that fired is the pixel limit, not the byte limit: a PNG of one colour compresses to
# almost nothing but can declare millions of pixels, which need megabytes to gigabytes once
# decoded (a decompression bomb). The server reads the declared size from the header and refuses
# before decoding.
#
# </details>
#
# **5. Why is a misspelt field (`qestion`) refused with 422 rather than ignored?**
#
# <details><summary>Answer</summary>
#
# Ignoring it would answer a different request than the client meant (here: no question at all,
# or a default), and the client would never learn about its typo. 422 says the request was
# well formed HTTP but its content is unusable, and the message names the unknown field and
# the fields the endpoint takes.
#
# </details>

# %% [markdown]
# ## References
#
# * Li et al., *BLIP: Bootstrapping Language-Image Pre-training* (the default describe and ask
#   models, 2022): [arXiv:2201.12086](https://arxiv.org/abs/2201.12086); Liu et al., *Visual
#   Instruction Tuning* (LLaVA, what `vlmstudy infer` runs, 2023): [arXiv:2304.08485](https://arxiv.org/abs/2304.08485).
# * Kwon et al., *Efficient Memory Management for Large Language Model Serving with
#   PagedAttention* (vLLM, continuous batching, 2023): [arXiv:2309.06180](https://arxiv.org/abs/2309.06180).
# * Hugging Face docs: [pipeline batching](https://huggingface.co/docs/transformers/main_classes/pipelines#pipeline-batching),
#   [Text Generation Inference](https://huggingface.co/docs/text-generation-inference/index).
# * [FastAPI: request files](https://fastapi.tiangolo.com/tutorial/request-files/), [uvicorn](https://www.uvicorn.org/),
#   [RFC 7578: multipart/form-data](https://www.rfc-editor.org/rfc/rfc7578),
#   [RFC 9110: HTTP status codes](https://www.rfc-editor.org/rfc/rfc9110#name-status-codes),
#   [OWASP file upload cheat sheet](https://cheatsheetseries.owasp.org/cheatsheets/File_Upload_Cheat_Sheet.html).
