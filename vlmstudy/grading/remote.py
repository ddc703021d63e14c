"""The narrow channel between the grader and the submission's process (``vlmstudy exercises grade``).

The grader never runs the learner's code: the submission runs in a child process
(:mod:`vlmstudy.grading.worker`, confined by :mod:`vlmstudy.grading.sandbox`) and the checks,
unchanged, run in the grader on :class:`Remote` stand-ins for the learner's class or function.
Calling a stand-in sends the arguments over a pipe, the child calls the real object and sends
back the result; a callback the checks hand to the learner's code (a probe's ``embed_text``, a
recorder ``generate``) is called back the other way. Expected values, comparisons and points stay
in the grader, where nothing the submission does can reach them.

What travels is data only: one message is an 8-byte length, then JSON; tensors and arrays go as
``{"t": "tensor", "dtype", "shape", "data": base64 of the raw bytes}`` with a fixed list of
dtypes, images as their pixels. No pickle, no code: a value the child cannot send as data (a
learner's object) becomes a numbered handle the grader can only ask about (call it, read an
attribute, list it). The grader decodes strictly and refuses a message over
:data:`MAX_MESSAGE_BYTES`.

Two behaviours of an in-process call are kept across the pipe, because checks test them:

* **gradients**: a call whose tensor arguments require grad runs as a ``torch.autograd.Function``;
  ``loss.backward()`` in the grader asks the child for the gradients its own graph gives;
* **in-place edits**: a tensor argument the learner's code changed in place comes back changed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["Channel", "Link", "Reply", "Remote", "ChannelError", "WorkerDied", "WorkerTimeout", "RemoteError", "encode", "decode",
           "MAX_MESSAGE_BYTES", "with_methods"]

#: The largest message the grader accepts from the child (a learner returning gigabytes gets 0, not an OOM).
MAX_MESSAGE_BYTES = 64 << 20
MAX_DEPTH = 32
DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
          "bool": torch.bool}
NUMPY_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "bool"}


class ChannelError(BaseException):
    """The child broke the protocol (garbage, an oversized message, an unknown handle). A
    ``BaseException``: it ends the part (scored 0), it is not an error *of a check*."""


class WorkerDied(ChannelError):
    """The child exited (``os._exit``, a crash, the memory limit) while the grader waited."""


class WorkerTimeout(ChannelError):
    """The child did not answer before the deadline (an infinite loop the check limit missed)."""


class RemoteError(Exception):
    """An exception raised by the learner's code in the child. Its class is made per type name
    (``RuntimeError``, ...), so that a check's one-line message reads as it would in-process."""


_ERROR_TYPES: dict[str, type] = {}


def _error_type(name: str) -> type:
    name = "".join(ch for ch in str(name) if ch.isalnum() or ch == "_")[:60] or "Error"
    if name not in _ERROR_TYPES:
        _ERROR_TYPES[name] = type(name, (RemoteError,), {"__module__": "submission"})
    return _ERROR_TYPES[name]


# ----------------------------------------------------------------------------- values

def _tensor_bytes(t: torch.Tensor) -> tuple[str, bytes]:
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise TypeError(f"a tensor of dtype {t.dtype} cannot be sent")
    if t.dtype == torch.bfloat16:
        return name, t.view(torch.int16).numpy().tobytes()
    return name, t.numpy().tobytes()


def _tensor_from(dtype: str, shape, data: str) -> torch.Tensor:
    if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ChannelError(f"bad tensor header {dtype!r} {shape!r:.60}")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    dt = DTYPES[dtype]
    item = torch.empty((), dtype=dt).element_size()
    if len(raw) != item * int(np.prod(shape, dtype=np.int64)):
        raise ChannelError("tensor data does not match its shape")
    if dt == torch.bfloat16:
        return torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(np.frombuffer(raw, dtype=torch.empty((), dtype=dt).numpy().dtype).copy()).reshape(shape)


def _array_from(dtype: str, shape, data: str) -> np.ndarray:
    if dtype not in NUMPY_DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ChannelError(f"bad array header {dtype!r} {shape!r:.60}")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) != np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ChannelError("array data does not match its shape")
    return np.frombuffer(raw, dtype=dtype).copy().reshape(shape)


def encode(value: Any, handle: Callable[[Any], dict], depth: int = 0, tensors: list | None = None) -> Any:
    """``value`` as JSON-able data; anything that is not data goes through ``handle`` (which
    returns a tagged dict: a handle number, a callback, a model name). ``tensors`` collects every
    tensor met, in order (to write back in-place edits and to route gradients)."""
    if depth > MAX_DEPTH:
        raise TypeError("a value nested too deeply to send")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        if tensors is not None:
            tensors.append(value)
        dtype, raw = _tensor_bytes(value)
        return {"t": "tensor", "dtype": dtype, "shape": list(value.shape), "grad": bool(value.requires_grad),
                "data": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, np.ndarray) and value.dtype.name in NUMPY_DTYPES:
        return {"t": "ndarray", "dtype": value.dtype.name, "shape": list(value.shape),
                "data": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode("ascii")}
    if _is_image(value):
        return {"t": "image", "mode": value.mode, "pixels": encode(np.asarray(value), handle, depth + 1)}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple) or _is_plain_sequence(value):
        items = [encode(v, handle, depth + 1, tensors) for v in value]
        return items if isinstance(value, list) else {"t": "tuple", "items": items}
    if isinstance(value, dict) and type(value) is dict:
        return {"t": "dict", "items": [[encode(k, handle, depth + 1, tensors), encode(v, handle, depth + 1, tensors)]
                                       for k, v in value.items()]}
    return handle(value)


def _is_plain_sequence(value) -> bool:
    """A tuple subclass (a NamedTuple such as ``retrieval.Hit``, ``torch.Size``) travels as a tuple."""
    return isinstance(value, tuple)


def _is_image(value) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, Image.Image)


def decode(data: Any, resolve: Callable[[dict], Any], depth: int = 0) -> Any:
    """The value ``data`` encodes; tags other than data go to ``resolve`` (which refuses any it
    does not expect)."""
    if depth > MAX_DEPTH + 2:
        raise ChannelError("a value nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, resolve, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise ChannelError(f"unexpected {type(data).__name__} in a message")
    tag = data.get("t")
    try:
        if tag == "tensor":
            return _tensor_from(data["dtype"], data["shape"], data["data"])
        if tag == "ndarray":
            return _array_from(data["dtype"], data["shape"], data["data"])
        if tag == "image":
            from PIL import Image

            pixels = decode(data["pixels"], resolve, depth + 1)
            if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or data["mode"] not in ("RGB", "RGBA", "L"):
                raise ChannelError("bad image")
            return Image.fromarray(pixels, mode=data["mode"])
        if tag == "tuple":
            return tuple(decode(v, resolve, depth + 1) for v in data["items"])
        if tag == "dict":
            return {_key(decode(k, resolve, depth + 1)): decode(v, resolve, depth + 1) for k, v in data["items"]}
    except (KeyError, TypeError, ValueError) as err:
        raise ChannelError(f"malformed {tag} value ({type(err).__name__})") from None
    return resolve(data)


def _key(key):
    if isinstance(key, (list, dict)) or isinstance(key, torch.Tensor):
        raise ChannelError("an unhashable dict key")
    return key


# ----------------------------------------------------------------------------- the pipe

class Reply:
    """A served request's value with extra reply fields (a call's in-place edits, its graph id)."""

    def __init__(self, value, **extra):
        self.value, self.extra = value, extra


class Channel:
    """Requests and replies over two file descriptors, nested both ways: while one side waits
    for its reply it serves the other side's requests (a callback inside a call, an attribute
    read inside the callback ...). ``serve(message)`` answers one request (returns a value to
    encode, or raises)."""

    def __init__(self, read_fd: int, write_fd: int, serve: Callable[[dict], Any], encode_value, decode_value,
                 limit: int | None = MAX_MESSAGE_BYTES):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.serve, self.encode_value, self.decode_value = serve, encode_value, decode_value
        self.limit = limit
        self.deadline: float | None = None   # the grader's: no answer by then is a WorkerTimeout
        self.broken: str | None = None       # set once a reply went missing: the stream is out of step
        self._next = 0
        #: what a served request may raise and still be answered (the rest, such as the grader's
        #: own time limit, ends the wait): everything in the child, ``Exception`` in the grader
        self.catch: tuple[type, ...] = (Exception,)

    # framing
    def send(self, message: dict) -> None:
        data = json.dumps(message, allow_nan=True).encode("utf-8")
        buf = struct.pack(">Q", len(data)) + data
        while buf:
            buf = buf[os.write(self.write_fd, buf):]

    def _read_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    self.broken = "timeout"
                    raise WorkerTimeout("the submission's process did not answer in time")
            chunk = os.read(self.read_fd, min(n - got, 1 << 20))
            if not chunk:
                self.broken = "closed"
                raise WorkerDied("the submission's process exited")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def recv(self) -> dict:
        (n,) = struct.unpack(">Q", self._read_exact(8))
        if self.limit is not None and n > self.limit:
            self.broken = "oversized"
            raise ChannelError(f"the submission sent a message of {n / 2 ** 20:.0f} MiB (the limit is "
                               f"{self.limit / 2 ** 20:.0f} MiB)")
        try:
            message = json.loads(self._read_exact(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.broken = "garbage"
            raise ChannelError("the submission's process sent something that is not a message") from None
        if not isinstance(message, dict):
            self.broken = "garbage"
            raise ChannelError("the submission's process sent something that is not a message")
        return message

    # requests
    def request(self, message: dict) -> dict:
        """Send a request and return its reply; serve the other side's requests meanwhile."""
        if self.broken:
            raise ChannelError(f"the channel to the submission is unusable ({self.broken})")
        self._next += 1
        rid = self._next
        self.send({**message, "id": rid})
        try:
            while True:
                reply = self.recv()
                if "op" in reply:
                    self._answer(reply)
                    continue
                if reply.get("re") != rid:
                    self.broken = "out of step"
                    raise ChannelError("the submission's process answered a request that was not asked")
                if "error" in reply:
                    error = self._exception(reply["error"])
                    error.__dict__["_clean"] = True
                    raise error
                return reply
        except BaseException as err:
            if not getattr(err, "_clean", False) and not self.broken:
                self.broken = "interrupted"  # a time limit or Ctrl-C left a reply unread: out of step from here
            raise

    def _answer(self, message: dict) -> None:
        rid = message.get("id")
        try:
            value = self.serve(message)
            if isinstance(value, Reply):
                reply = {**value.extra, "re": rid, "value": self.encode_value(value.value)}
            else:
                reply = {"re": rid, "value": self.encode_value(value)}
        except ChannelError:
            raise
        except self.catch as err:  # the learner's error (child side) or a check's own (grader side)
            reply = {"re": rid, "error": {"type": type(err).__name__, "message": " ".join(str(err).split())[:2000],
                                          "notimpl": isinstance(err, NotImplementedError),
                                          "attribute": isinstance(err, AttributeError)}}
            self.on_error(err)
        self.send(reply)

    def on_error(self, err: BaseException) -> None:
        """A request this side served raised ``err`` (the grader keeps it: see :class:`Link`)."""

    @staticmethod
    def _exception(error) -> BaseException:
        if not isinstance(error, dict):
            raise ChannelError("a malformed error reply")
        message = str(error.get("message", ""))[:2000]
        if error.get("notimpl"):
            return NotImplementedError(message)
        if error.get("attribute"):
            return AttributeError(message)
        return _error_type(str(error.get("type", "Error")))(message)

    def serve_forever(self) -> None:
        """The child's main loop: answer requests until the pipe closes."""
        while True:
            try:
                message = self.recv()
            except WorkerDied:
                return
            if "op" not in message:
                raise ChannelError("a reply with no request")
            self._answer(message)


# ----------------------------------------------------------------------------- the grader's side

class Remote:
    """The grader's stand-in for one of the learner's objects in the child (a class, a
    function, an instance). Calling it, reading an attribute, ``len()`` or iterating it asks
    the child; nothing of the learner's runs here."""

    __slots__ = ("_link", "_ref")

    def __init__(self, link: Link, ref: int):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)

    def __call__(self, *args, **kwargs):
        return self._link.call(self._ref, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__") and name not in ("__name__", "__qualname__", "__doc__"):
            raise AttributeError(name)
        return self._link.value({"op": "getattr", "ref": self._ref, "name": name})

    def __setattr__(self, name, value):
        raise AttributeError("the learner's objects are read-only to the grader")

    def __len__(self) -> int:
        n = self._link.value({"op": "len", "ref": self._ref})
        if not isinstance(n, int) or n < 0:
            raise ChannelError("len() of a learner's object gave no number")
        return n

    def __iter__(self):
        items = self._link.value({"op": "list", "ref": self._ref})
        if not isinstance(items, list):
            raise ChannelError("iterating a learner's object gave no list")
        return iter(items)

    def __repr__(self) -> str:
        return f"<the submission's object #{self._ref}>"

    def subclass(self, name: str, methods: dict[str, Callable]) -> Remote:
        """A subclass of this (remote) class, made in the child, whose ``methods`` call back here."""
        return self._link.value({"op": "subclass", "ref": self._ref, "name": str(name),
                                 "methods": {k: self._link.callback(f) for k, f in methods.items()}})


def with_methods(cls, methods: dict[str, Callable]):
    """A subclass of the learner's class ``cls`` with ``methods`` replaced (a check's probe:
    known embeddings, a recording ``generate``). In-process a plain ``type()``; for a class in
    the submission's process the subclass is made there and its methods call back to the grader."""
    if isinstance(cls, Remote):
        return cls.subclass(cls.__name__, methods)
    return type(cls.__name__, (cls,), dict(methods))


class _RemoteCall(torch.autograd.Function):
    """A learner's call whose inputs need gradients: the forward runs in the child (which keeps
    its graph), the backward asks the child for ``d output / d inputs`` from that graph."""

    @staticmethod
    def forward(ctx, link, ref, encoded, *needs):
        ctx.link, ctx.needs = link, needs
        value, ctx.call_id, differentiable = link.send_call(ref, encoded, track=True)
        if not isinstance(value, torch.Tensor):
            raise RemoteError(f"returned {type(value).__name__}, not a tensor, from inputs that need gradients")
        if not differentiable:
            ctx.mark_non_differentiable(value)
        return value

    @staticmethod
    def backward(ctx, grad):
        grads = ctx.link.value({"op": "backward", "call": ctx.call_id, "grad": ctx.link.encode(grad)})
        if not isinstance(grads, list) or len(grads) != len(ctx.needs):
            raise ChannelError("the submission's process sent no gradients")
        out = []
        for g, t in zip(grads, ctx.needs):
            if g is not None and (not isinstance(g, torch.Tensor) or g.shape != t.shape):
                raise ChannelError("a gradient of the wrong shape")
            out.append(None if g is None else g.to(t.dtype))
        return (None, None, None, *out)


class Link(Channel):
    """The grader's end of the channel: requests to the child, callbacks it may call, handles."""

    def __init__(self, read_fd: int, write_fd: int, models: Callable[[], dict] | None = None):
        super().__init__(read_fd, write_fd, self._serve_callback, self.encode, self.decode)
        self.callbacks: dict[int, Callable] = {}
        self.callback_errors: list[BaseException] = []
        self.models = models or (lambda: {})

    # values
    def encode(self, value, tensors: list | None = None):
        models = self.models()

        def handle(obj):
            if isinstance(obj, Remote):
                if obj._link is not self:
                    raise TypeError("a handle of another submission")
                return {"t": "ref", "id": obj._ref}
            if id(obj) in models:
                name, which = models[id(obj)]
                return {"t": "model", "name": name, "which": which}
            if callable(obj):
                return self.callback(obj)
            raise TypeError(f"the grader cannot send a {type(obj).__name__}")

        return encode(value, handle, tensors=tensors)

    def callback(self, fn: Callable) -> dict:
        n = len(self.callbacks) + 1
        self.callbacks[n] = fn
        return {"t": "callback", "id": n}

    def decode(self, data):
        def resolve(tagged):
            if tagged.get("t") == "ref" and isinstance(tagged.get("id"), int):
                return Remote(self, tagged["id"])
            raise ChannelError(f"the submission sent an unknown kind of value {str(tagged.get('t'))[:30]!r}")

        return decode(data, resolve)

    def value(self, message: dict):
        return self.decode(self.request(message).get("value"))

    # serving the child's callbacks
    def _serve_callback(self, message: dict):
        if message.get("op") != "callback" or message.get("id") is None:
            raise ChannelError("the submission's process asked for something other than a callback")
        fn = self.callbacks.get(message.get("fn"))
        if fn is None:
            raise ChannelError("the submission's process called back a function it was never given")
        args = self.decode(message.get("args", []))
        kwargs = self.decode(message.get("kwargs", {"t": "dict", "items": []}))
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ChannelError("malformed callback arguments")
        return fn(*args, **kwargs)

    def on_error(self, err: BaseException) -> None:
        self.callback_errors.append(err)  # a probe's CheckFailed: re-raised when the call comes back failed

    # calls
    def call(self, ref: int, args: tuple, kwargs: dict):
        """Call the learner's object ``ref`` in the child with ``args``: the result, decoded."""
        tensors: list = []
        encoded = (self.encode(list(args), tensors=tensors), self.encode(dict(kwargs), tensors=tensors))
        needs = [t for t in tensors if t.requires_grad]
        if torch.is_grad_enabled() and needs:
            value = _RemoteCall.apply(self, ref, encoded, *needs)
        else:
            value = self.send_call(ref, encoded, track=False)[0]
        self._write_back(tensors)
        return value

    def send_call(self, ref: int, encoded, track: bool):
        """``(value, call id, differentiable)``; ``track``: the child keeps the graph for a backward."""
        before = len(self.callback_errors)
        try:
            reply = self.request({"op": "call", "ref": ref, "args": encoded[0], "kwargs": encoded[1], "track": track})
        except RemoteError:
            if len(self.callback_errors) > before:  # the learner's code let a check's own failure through
                raise self.callback_errors[-1] from None
            raise
        self._mutated_reply = reply.get("mutated") or []
        return self.decode(reply.get("value")), reply.get("call"), bool(reply.get("differentiable"))

    def _write_back(self, tensors: list) -> None:
        """Tensor arguments the learner's code changed in place come back changed, as in-process."""
        for item in getattr(self, "_mutated_reply", []) or []:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and 0 <= item[0] < len(tensors)):
                raise ChannelError("a malformed in-place edit")
            new = self.decode(item[1])
            if not isinstance(new, torch.Tensor):
                raise ChannelError("a malformed in-place edit")
            target = tensors[item[0]]
            with torch.no_grad():
                if new.shape == target.shape:
                    target.copy_(new.to(target.dtype))
                else:
                    target.data = new.to(target.dtype)
        self._mutated_reply = []

    def release(self) -> None:
        """Forget the handles and callbacks of a part (the child drops its side too)."""
        if not self.broken:
            self.request({"op": "release"})
        self.callbacks.clear()
        self.callback_errors.clear()
