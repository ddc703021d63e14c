"""The check runner shared by the visible checks (run by the learner in the notebook) and the
hidden ones (run by ``vlmstudy exercises grade`` at the end of a submission).

A :class:`Check` tests one *behaviour* of the learner's code (a ranking against brute force, a
prompt that holds the history, a loss equal to the reference ...), never the shape of the code.
Its function ``func(target, env)`` calls the learner's class or function and raises
:class:`CheckFailed` with a one-line message when the behaviour is wrong. :func:`run_checks` runs
a list of them and never lets an exception out (Ctrl-C / a grader's interrupt aside):

* the learner's code raises ``NotImplementedError`` (the stub): status ``todo``, "not done yet";
* it raises anything else: status ``error`` with ``Type: message`` on one line, no traceback;
* :class:`CheckFailed`: status ``failed`` with what was seen; otherwise ``passed``;
* it runs longer than the time limit (an infinite loop): status ``timeout``, and the checks after
  it are ``skipped``. The limit is ``time_limit`` seconds per check (default: the environment
  variable ``VLMSTUDY_CHECK_TIME_LIMIT``, else 60), enforced with ``SIGALRM`` where there is one
  (Unix, main thread: a notebook kernel). A loop that swallows even that is the grader's business:
  it kills the kernel.

A :class:`Report` prints as a small table with the points and a hint for every check that did
not pass; it is what ``check_search(CLIPImageSearch)`` shows in the notebook.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Check", "CheckFailed", "CheckTimeout", "Outcome", "Report", "Env", "run_checks", "one_line",
           "derive_seed", "time_limit"]

STATUS_MARK = {"passed": "✓", "failed": "✗", "error": "✗", "todo": "…", "timeout": "✗", "skipped": "-"}
MAX_MESSAGE = 240
DEFAULT_TIME_LIMIT = 60.0


class CheckTimeout(BaseException):
    """Raised (by ``SIGALRM``) in the learner's code when one check runs past its time limit. A
    ``BaseException``, so that an ``except Exception`` in the learner's loop does not swallow it."""


def default_time_limit() -> float:
    """Seconds per check: ``VLMSTUDY_CHECK_TIME_LIMIT`` (the grader sets it), else 60."""
    try:
        return max(0.1, float(os.environ.get("VLMSTUDY_CHECK_TIME_LIMIT", DEFAULT_TIME_LIMIT)))
    except ValueError:
        return DEFAULT_TIME_LIMIT


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`CheckTimeout` in the body after ``seconds`` (wall clock). Does nothing where
    ``SIGALRM`` is missing (Windows) or off the main thread; the grader's kernel timeout remains."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _expired(signum, frame):
        raise CheckTimeout(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CheckFailed(Exception):
    """Raised by a check when the learner's code behaves wrongly; the message says what was seen."""


@dataclass(frozen=True)
class Check:
    """One behaviour, worth ``points``. ``what``: the behaviour, one line; ``hint``: what to do
    when it fails. ``visible``: also run by the learner's ``check_*()`` cell (the hidden run,
    the grade, runs every check, with new random data)."""

    name: str
    points: int
    what: str
    hint: str
    func: Callable[[Any, Env], None]
    visible: bool = True


@dataclass
class Outcome:
    """What one check found: ``status`` is ``passed``, ``failed``, ``error`` or ``todo``."""

    name: str
    what: str
    points: int
    max_points: int
    status: str
    message: str = ""
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def derive_seed(seed: int, name: str) -> int:
    """A seed per (run, check): two checks never share random data, and a run is repeatable."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Env:
    """What a check gets besides the learner's object: its own seeded random generators and the
    course models (loaded quietly once per process, in the active mode)."""

    _models: dict[tuple[str, str], tuple] = {}

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.gen = torch.Generator().manual_seed(self.seed)

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal float32 numbers from this check's generator."""
        return torch.randn(*shape, generator=self.gen)

    def model(self, name: str):
        """``(model, processor)`` for a course model name, without progress bars (their output
        would change from run to run in a stored notebook)."""
        from ..settings import get_mode

        key = (name, get_mode())
        if key not in self._models:
            from transformers.utils import logging as hf_logging

            from ..zoo import load

            was_enabled = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                model, processor = load(name)
            finally:
                if was_enabled:
                    hf_logging.enable_progress_bar()
            self._models[key] = (model.eval(), processor)
        return self._models[key]


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line, shortened: what a learner sees instead of a traceback."""
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _todo_message(err: NotImplementedError) -> str:
    detail = " ".join(str(err).split())
    return "not done yet" + (f" ({detail})" if detail else "") + ": replace the `raise NotImplementedError` stub"


@dataclass
class Report:
    """The outcomes of one run of checks; prints as a table (points, then a hint per problem).

    ``scope`` is ``"visible"`` (the learner's ``check_*()``) or ``"hidden"`` (the grade).
    ``unseen_points``: points of the hidden-only checks, named in a visible report's last line.
    """

    title: str
    scope: str
    outcomes: list[Outcome] = field(default_factory=list)
    unseen_points: int = 0

    @property
    def points(self) -> int:
        return sum(o.points for o in self.outcomes)

    @property
    def max_points(self) -> int:
        return sum(o.max_points for o in self.outcomes)

    @property
    def passed(self) -> bool:
        """Every check passed (full marks on this run)."""
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def timed_out(self) -> bool:
        """A check ran past its time limit (the grade scores such a part 0)."""
        return any(o.status == "timeout" for o in self.outcomes)

    @property
    def todo(self) -> bool:
        """At least one check hit a stub that still raises ``NotImplementedError``."""
        return any(o.status == "todo" for o in self.outcomes)

    def to_dict(self) -> dict:
        return {"title": self.title, "scope": self.scope, "points": self.points, "max_points": self.max_points,
                "outcomes": [asdict(o) for o in self.outcomes]}

    def __str__(self) -> str:
        kind = "visible checks" if self.scope == "visible" else "hidden checks"
        lines = [f"{self.title}: {self.points}/{self.max_points} points ({kind})"]
        if self.outcomes and all(o.status == "todo" for o in self.outcomes):
            lines.append("  not done yet: the stubs still raise NotImplementedError. Write your code in their")
            lines.append("  place, run that cell, then run this check again.")
        width = max((len(o.what) for o in self.outcomes), default=0)
        for o in self.outcomes:
            lines.append(f"  {STATUS_MARK[o.status]} {o.points}/{o.max_points}  {o.what.ljust(width)}".rstrip())
            if o.status in ("failed", "error", "timeout"):
                lines.append(f"           {o.message}")
                lines.append(f"           hint: {o.hint}")
            elif o.status == "skipped" or (o.status == "todo" and not all(x.status == "todo" for x in self.outcomes)):
                lines.append(f"           {o.message}")
        if self.passed and self.scope == "visible":
            lines.append("  all visible checks pass." + (
                f" The grade also runs hidden checks ({self.unseen_points} more points) on new data."
                if self.unseen_points else " The grade runs them again on new data."))
        elif self.unseen_points:
            lines.append(f"  (the grade also runs hidden checks worth {self.unseen_points} more points)")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython: show the table, not a dataclass repr
        printer.text(str(self))


def run_checks(target: Any, checks: Sequence[Check], seed: int, title: str, scope: str = "visible",
               limit: float | None = None) -> Report:
    """Run ``checks`` on ``target`` (the learner's class or function) and return a :class:`Report`.

    Visible runs use only the checks marked ``visible`` and a fixed seed; hidden runs all of them.
    Exceptions from the learner's code become one-line outcomes; ``KeyboardInterrupt`` (Ctrl-C,
    or the grader's interrupt) is let through so that an interrupted part is never scored. A check
    that runs past ``limit`` seconds (default :func:`default_time_limit`) is a ``timeout`` and
    the checks after it are skipped (each could loop as long).
    """
    chosen = [c for c in checks if scope == "hidden" or c.visible]
    unseen = sum(c.points for c in checks if not c.visible) if scope == "visible" else 0
    report = Report(title=title, scope=scope, unseen_points=unseen)
    limit = default_time_limit() if limit is None else limit
    for check in chosen:
        env = Env(derive_seed(seed, check.name))
        status, message = "passed", ""
        if report.timed_out:
            report.outcomes.append(Outcome(
                name=check.name, what=check.what, points=0, max_points=check.points, status="skipped",
                message="not run: an earlier check timed out", hint=check.hint))
            continue
        try:
            with torch.random.fork_rng(devices=[]):  # the learner's own random state is left alone
                torch.manual_seed(env.seed)
                with time_limit(limit):
                    check.func(target, env)
        except CheckTimeout:
            status, message = "timeout", (f"your code ran for more than {limit:g} s (an infinite loop?); the other "
                                          "checks were skipped")
        except CheckFailed as err:
            status, message = "failed", " ".join(str(err).split())[:MAX_MESSAGE]
        except NotImplementedError as err:
            status, message = "todo", _todo_message(err)
        except (Exception, SystemExit) as err:  # the learner's code crashed: one line, no traceback
            status, message = "error", f"your code raised {one_line(err)}"
        report.outcomes.append(Outcome(
            name=check.name, what=check.what, points=check.points if status == "passed" else 0,
            max_points=check.points, status=status, message=message, hint=check.hint))
    return report


def report_json(report: Report, **extra) -> str:
    """One JSON line for a report (what the hidden checks hand to the grader)."""
    return json.dumps({**extra, **report.to_dict()}, sort_keys=True)
