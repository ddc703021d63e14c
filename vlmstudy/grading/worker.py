"""The submission's process (started by ``sandbox.LAUNCH``, or ``python -m vlmstudy.grading.worker READ_FD WRITE_FD``).

Started by :mod:`vlmstudy.grading.grader` (inside the confinement of
:mod:`vlmstudy.grading.sandbox`, on a copy of the package without the grader's checks and without
the reference the exercise asks for). It runs the notebook's cells in an IPython shell, as a
kernel would, then answers the grader's requests over the channel of
:mod:`vlmstudy.grading.remote`: look up the learner's object, call it, read an attribute, make a
probe subclass, give gradients. It holds no check, no expected value, no seed and no score:
whatever the learner's code changes here, the grader's judgement is elsewhere.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from .remote import Channel, ChannelError, Reply, decode, encode


class Worker:
    def __init__(self, read_fd: int, write_fd: int):
        self.channel = Channel(read_fd, write_fd, self.serve, self.encode, None, limit=None)
        self.channel.catch = (BaseException,)  # whatever the learner's code raises is its answer, not our end
        self.objects: dict[int, object] = {}
        self.graphs: dict[int, tuple] = {}   # call id -> (output, inputs): kept for the grader's backward
        self.calls = 0
        self.shell = None

    # values
    def encode(self, value, tensors=None):
        def handle(obj):
            n = len(self.objects) + 1
            self.objects[n] = obj
            return {"t": "ref", "id": n}

        return encode(value, handle, tensors=tensors)

    def decode(self, data, received: list | None = None):
        def resolve(tagged):
            kind = tagged.get("t")
            if kind == "ref":
                return self.obj(tagged.get("id"))
            if kind == "model":
                from .core import Env

                return Env(0).model(str(tagged["name"]))[int(tagged["which"])]
            if kind == "callback":
                return self._callback(tagged["id"])
            raise ChannelError(f"unknown value {kind!r}")

        value = decode(data, resolve)
        if received is not None:
            _tensors(value, data, received)
        return value

    def obj(self, ref):
        if ref not in self.objects:
            raise ChannelError(f"no object #{ref}")
        return self.objects[ref]

    def _callback(self, fn_id):
        channel = self

        def call_back(*args, **kwargs):
            reply = channel.channel.request({"op": "callback", "fn": fn_id, "args": channel.encode(list(args)),
                                             "kwargs": channel.encode(dict(kwargs))})
            return channel.decode(reply.get("value"))

        call_back.__name__ = f"grader_callback_{fn_id}"
        return call_back

    # requests
    def serve(self, message: dict):
        op = message.get("op")
        if op == "hello":
            return {"python": sys.version.split()[0], "torch": torch.__version__}
        if op == "run_cell":
            return self.run_cell(str(message.get("source", "")))
        if op == "lookup":
            ns = self.shell.user_ns if self.shell is not None else {}
            name = str(message.get("name"))
            return {"found": name in ns, "object": ns.get(name)}
        if op == "call":
            return self.call(message)
        if op == "getattr":
            return getattr(self.obj(message.get("ref")), str(message.get("name")))
        if op == "len":
            return len(self.obj(message.get("ref")))
        if op == "list":
            return list(self.obj(message.get("ref")))
        if op == "subclass":
            base = self.obj(message.get("ref"))
            methods = {str(k): self.decode(v) for k, v in dict(message.get("methods", {})).items()}
            return type(str(message.get("name")), (base,), methods)
        if op == "backward":
            value, inputs = self.graphs.pop(message.get("call"))
            grad = self.decode(message.get("grad"))
            grads = torch.autograd.grad([value], inputs, grad_outputs=[grad], allow_unused=True)
            return [None if g is None else g.detach() for g in grads]
        if op == "release":
            self.objects.clear()
            self.graphs.clear()
            return None
        raise ChannelError(f"unknown request {op!r}")

    def run_cell(self, source: str) -> dict:
        if self.shell is None:
            from IPython.core.interactiveshell import InteractiveShell

            self.shell = InteractiveShell.instance()
        result = self.shell.run_cell(source, store_history=True)
        err = result.error_before_exec or result.error_in_exec
        if err is None:
            return {"error": None}
        return {"error": {"ename": type(err).__name__, "evalue": " ".join(str(err).split())[:300]}}

    def call(self, message: dict):
        fn = self.obj(message.get("ref"))
        received: list = []
        args = self.decode(message.get("args", []), received)
        kwargs = self.decode(message.get("kwargs", {"t": "dict", "items": []}), received)
        track = bool(message.get("track"))
        pristine = [t.detach().clone() for t, _ in received]
        tracked = []
        if track:
            for t, wants_grad in received:
                if wants_grad and t.is_floating_point():
                    t.requires_grad_(True)
                    tracked.append(t)
        with torch.enable_grad() if track else contextlib.nullcontext():
            value = fn(*args, **kwargs)
        mutated = [[i, self.encode(t.detach())] for i, ((t, _), before) in enumerate(zip(received, pristine))
                   if t.shape != before.shape or t.dtype != before.dtype or not torch.equal(t.detach(), before)]
        if track and isinstance(value, torch.Tensor) and value.requires_grad:
            self.calls += 1
            self.graphs[self.calls] = (value, tracked)
            return Reply(value, mutated=mutated, call=self.calls, differentiable=True)
        return Reply(value, mutated=mutated)


def _tensors(value, data, received: list) -> None:
    """The tensors of a decoded value with their ``grad`` flags, in the grader's order."""
    if isinstance(data, dict) and data.get("t") == "tensor":
        received.append((value, bool(data.get("grad"))))
    elif isinstance(data, list):
        for v, d in zip(value, data):
            _tensors(v, d, received)
    elif isinstance(data, dict) and data.get("t") == "tuple":
        for v, d in zip(value, data["items"]):
            _tensors(v, d, received)
    elif isinstance(data, dict) and data.get("t") == "dict":
        for (k, v), (dk, dv) in zip(value.items(), data["items"]):
            _tensors(k, dk, received)
            _tensors(v, dv, received)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    worker = Worker(int(argv[0]), int(argv[1]))
    worker.channel.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
