"""Grade a submitted exercise notebook: ``vlmstudy exercises grade SUBMISSION.ipynb [...] [--csv FILE]``.

The learner's code and the judge live in different processes:

* **the submission's process** (:mod:`vlmstudy.grading.worker`) runs the notebook's code cells,
  cell after cell, each with a time limit, in a fresh IPython shell. It is confined with
  bubblewrap (:mod:`vlmstudy.grading.sandbox`: read-only system and package copy, no network, no
  repository, its own ``/tmp``, memory and CPU limits) and gets a copy of the package without the
  checks, in which the functions the exercise asks for raise ``ReferenceOutOfReach``;
* **the grader** (this process) never runs the learner's code. It draws the hidden seed, runs
  every check of every part, hidden ones included, on :class:`~vlmstudy.grading.remote.Remote`
  stand-ins for the learner's class or function, and computes expected values, comparisons and
  points itself, from its own table of checks (:mod:`vlmstudy.grading.registry`). The two talk
  only through the channel of :mod:`vlmstudy.grading.remote` (inputs out, results back, as
  JSON and raw tensor bytes): patching anything in the submission's process (``torch.allclose``,
  the checks, an input transformer), printing a score or rewriting files changes no point, and
  the seed never leaves the grader.

What scores 0, and how the rest goes on:

* a part whose checks run past the time limit (an infinite loop), during which the submission's
  process dies (``os._exit``, a segfault, the memory limit), which sends garbage or oversized
  data, or whose code calls the package's reference (``used the reference``); the other parts
  are still graded, in a new process if needed;
* a submission cell that hangs or kills its process is skipped: the process is replaced and the
  submission runs again without that cell (its code is then missing, as if never run); a cell
  that raises is recorded and the run goes on, as it would for the learner.

Where bubblewrap cannot run, the grade still separates the judge from the learner's code but
says ``NOT CONFINED`` (table, JSON, a warning): the submission then runs with the grader's rights.
"""

from __future__ import annotations

import contextlib
import csv
import re
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import VlmStudyError
from .kernel import KERNEL_NAME, kernel_manager, notebook_client  # noqa: F401  (public names of this module)

__all__ = ["GradingError", "PartScore", "Grade", "grade", "grade_many", "write_csv", "kernel_manager",
           "notebook_client", "DEFAULT_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT"]

DEFAULT_TIMEOUT = 120          # seconds per cell, and per part's checks
DEFAULT_TOTAL_TIMEOUT = 900    # seconds for the whole grade of one submission
STARTUP_TIMEOUT = 120          # seconds for a new submission process to answer


class GradingError(VlmStudyError):
    """A submission that cannot be graded at all (not a notebook, unknown exercise, no process)."""


# ----------------------------------------------------------------------------- scores

@dataclass
class PartScore:
    """One part's score. ``status``: ``scored`` (its checks ran), ``not done`` (only stubs),
    ``timeout``, ``dead kernel`` (the submission's process died), ``missing`` (the learner's
    object is not defined), ``crashed`` (the process broke the channel), ``used the reference``
    (the code called the package's own version) or ``not run`` (the total time ran out)."""

    part: str
    title: str
    target: str
    points: int
    max_points: int
    status: str
    message: str = ""
    checks: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "scored" and self.points == self.max_points


@dataclass
class Grade:
    """The grade of one submission: its parts, in the order of the exercise."""

    path: str
    exercise: str
    title: str
    seed: int
    parts: list[PartScore]
    seconds: float
    notes: list[str] = field(default_factory=list)
    confinement: str = ""

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)

    @property
    def max_points(self) -> int:
        return sum(p.max_points for p in self.parts)

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "points": self.points, "max_points": self.max_points, "passed": self.passed}

    def table(self, verbose: bool = True) -> str:
        lines = [f"{self.path}: exercise {self.exercise} ({self.title}), seed {self.seed}"]
        if self.confinement:
            lines.append(f"  {'graded ' if self.confinement.startswith('confined') else 'WARNING: '}{self.confinement}")
        width = max(len(p.part) for p in self.parts)
        for p in self.parts:
            mark = "✓" if p.passed else "✗"
            lines.append(f"  {mark} {p.part.ljust(width)}  {p.points:>2}/{p.max_points:<2}  {p.status}"
                         + (f": {p.message}" if p.message else ""))
            if verbose and p.status != "not done":
                for c in p.checks:
                    if c["status"] != "passed":
                        lines.append(f"        {c['points']}/{c['max_points']}  {c['name']}: {c['status']}"
                                     + (f", {c['message']}" if c.get("message") else ""))
        for note in self.notes:
            lines.append(f"  note: {note}")
        percent = 100 * self.points / self.max_points if self.max_points else 0.0
        lines.append(f"  total {self.points}/{self.max_points} ({percent:.0f}%) in {self.seconds:.1f} s")
        return "\n".join(lines)

    __str__ = table


#: The message of a check whose learner code called a reference (see sandbox.shadow_package).
REFERENCE = re.compile(r"ReferenceOutOfReach: (vlmstudy[\w.]+) is out of reach")


def _score(part, result: dict) -> PartScore:
    """Points from the grader's own table: a check counts only when its report says passed."""
    base = dict(part=part.name, title=part.title, target=part.target, max_points=part.max_points)
    if result.get("status") == "missing":
        return PartScore(points=0, status="missing", message=result.get("message", ""), **base)
    seen = {o.get("name"): o for o in result.get("outcomes", []) if isinstance(o, dict)}
    checks, points = [], 0
    for check in part.checks:
        o = seen.get(check.name, {})
        status = o.get("status", "not run")
        got = check.points if status == "passed" else 0
        points += got
        checks.append({"name": check.name, "what": check.what, "points": got, "max_points": check.points,
                       "status": status, "message": str(o.get("message", ""))[:300]})
    if any(c["status"] == "timeout" for c in checks):
        return PartScore(points=0, status="timeout", checks=checks,
                         message="a check ran past the time limit (an infinite loop?): the part scores 0", **base)
    used = sorted({m.group(1) for c in checks for m in [REFERENCE.search(c["message"])] if m})
    if used:
        return PartScore(points=0, status="used the reference", checks=checks, **base,
                         message=f"the code called {', '.join(used)}, the package's own version of what this part asks "
                                 "for: the part scores 0. Write it yourself")
    if checks and all(c["status"] == "todo" for c in checks):
        return PartScore(points=0, status="not done", checks=checks, message="the stub still raises NotImplementedError",
                         **base)
    return PartScore(points=points, status="scored", checks=checks, **base)


def _zero(part, status: str, message: str) -> PartScore:
    return PartScore(part=part.name, title=part.title, target=part.target, points=0, max_points=part.max_points,
                     status=status, message=message)


# ----------------------------------------------------------------------------- grading

def _read(path: Path):
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise GradingError(f"{path} does not exist.") from None
    except Exception as err:  # not JSON, not a notebook
        raise GradingError(f"{path} is not a Jupyter notebook ({type(err).__name__}). Pass the .ipynb file "
                           "the learner handed in.") from None
    return nb


def _which_exercise(nb, path: Path, exercise: str | None) -> str:
    from .registry import EXERCISES

    name = exercise or (nb.metadata.get("vlmstudy") or {}).get("exercise")
    if not name:  # a renamed copy lost nothing but its name; try the file name
        name = next((n for n in EXERCISES if path.stem.startswith(n) or path.stem.startswith(n[:3])), None)
    if name not in EXERCISES:
        raise GradingError(f"cannot tell which exercise {path.name} is (found {name!r}); pass --exercise, one of: "
                           f"{', '.join(EXERCISES)}.")
    return name


@contextlib.contextmanager
def _grading_settings():
    """The grader computes its references as the submission's process runs: tiny mode, on the CPU."""
    from .. import settings

    mode, device = settings._mode, settings._device
    settings.set_mode("tiny")
    settings.set_device("cpu")
    try:
        yield
    finally:
        settings.set_mode(mode)
        settings.set_device(device)


def _course_models() -> dict:
    """id(model or processor) -> (name, 0 or 1): the grader's course models, which travel by name."""
    from .core import Env

    return {id(obj): (name, which) for (name, _), pair in Env._models.items() for which, obj in enumerate(pair)}


class _Submission:
    """The submission's process, started (again) as needed: every code cell run, minus the
    cells that hung or killed it before."""

    def __init__(self, cells: list[str], shadow: Path, home: Path, mode, timeout: float, deadline: float,
                 memory: int, say, max_starts: int):
        self.cells, self.shadow, self.home, self.mode = cells, shadow, home, mode
        self.timeout, self.deadline, self.memory, self.say = timeout, deadline, memory, say
        self.max_starts = max_starts
        self.skipped: set[int] = set()
        self.notes: list[str] = []
        self.worker = self.link = None
        self.starts = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            self.say(text)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        self.worker = self.link = None

    def ready(self):
        """A live link to a process that ran the submission, or ``None`` with the reason."""
        from . import sandbox
        from .remote import ChannelError, Link, WorkerDied, WorkerTimeout

        while self.link is None:
            left = self.deadline - time.monotonic()
            if left <= 1:
                return None, "the total time limit ran out"
            if self.starts >= self.max_starts:
                return None, "the submission's process kept dying"
            self.starts += 1
            self.worker = sandbox.start_worker(self.shadow, self.mode, self.home / f"run{self.starts}", memory=self.memory,
                                               cpu_seconds=int(left) + 30)
            link = Link(self.worker.read_fd, self.worker.write_fd, models=_course_models)
            try:
                link.deadline = time.monotonic() + min(STARTUP_TIMEOUT, left)
                link.request({"op": "hello"})
            except ChannelError:
                self.stop()
                raise GradingError("could not start a Python process to run the submission "
                                   f"({self.mode.label})") from None
            self.say(f"submission process {self.starts} started ({self.mode.label})")
            for i, source in enumerate(self.cells):
                if i in self.skipped:
                    continue
                link.deadline = time.monotonic() + max(1.0, min(self.timeout, self.deadline - time.monotonic()))
                try:
                    result = link.value({"op": "run_cell", "source": source})
                except (WorkerTimeout, WorkerDied) as err:
                    what = "timed out" if isinstance(err, WorkerTimeout) else "killed its process"
                    self.note(f"submission cell {i + 1} {what}; it was skipped in a new process")
                    self.skipped.add(i)
                    self.stop()
                    break
                except ChannelError as err:
                    self.note(f"submission cell {i + 1} broke the channel ({err}); it was skipped in a new process")
                    self.skipped.add(i)
                    self.stop()
                    break
                error = result.get("error") if isinstance(result, dict) else None
                if isinstance(error, dict):
                    self.note(f"submission cell {i + 1} raised {str(error.get('ename'))[:60]}: "
                              f"{' '.join(str(error.get('evalue', '')).split())[:120]}")
            else:
                self.link = link
        return self.link, ""


def _grade_part(sub: _Submission, part, seed: int, timeout: float) -> PartScore:
    from .core import run_checks
    from .remote import ChannelError, WorkerDied, WorkerTimeout

    link, why = sub.ready()
    if link is None:
        return _zero(part, "not run", why)
    link.deadline = time.monotonic() + max(1.0, min(timeout, sub.deadline - time.monotonic()))
    check_limit = max(1.0, float(timeout) / 3)  # one check's share of the part, as a cell's before
    try:
        found = link.value({"op": "lookup", "name": part.target})
        if not isinstance(found, dict) or not found.get("found"):
            result = {"status": "missing", "message": f"{part.target} is not defined in the notebook"}
        else:
            report = run_checks(found.get("object"), part.checks, seed=seed, title=part.title, scope="hidden", limit=check_limit)
            result = {"status": "ran", "outcomes": [asdict(o) for o in report.outcomes]}
    except WorkerTimeout:
        sub.stop()
        return _zero(part, "timeout", f"its checks ran past {timeout:g} s: the part scores 0")
    except WorkerDied:
        sub.stop()
        return _zero(part, "dead kernel", "the submission's process died during its checks: the part scores 0")
    except ChannelError as err:
        sub.stop()
        return _zero(part, "crashed", f"{err}: the part scores 0")
    score = _score(part, result)
    if link.broken or score.status == "timeout":
        sub.stop()  # a reply left unread: the next part needs a new process
    else:
        try:
            link.release()
        except ChannelError:
            sub.stop()
    return score


def _warn(text: str) -> None:
    print(f"WARNING: {text}. The submission runs with your rights: grade untrusted notebooks where bubblewrap "
          "works (apt-get install bubblewrap).", file=sys.stderr)


def grade(path, exercise: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          total_timeout: float = DEFAULT_TOTAL_TIMEOUT, seed: int | None = None, log=None,
          confine: bool | None = None, memory: int | None = None, warn=_warn) -> Grade:
    """Grade the notebook at ``path`` (see the module docstring). ``timeout``: seconds per cell
    and per part's checks (one check may take a third); ``total_timeout``: seconds for everything;
    ``seed``: the data of the hidden checks (default: a new one, printed with the grade so that it
    can be repeated); ``log``: a function that gets one line per event (for ``--verbose``);
    ``confine``: ``None`` confines where bubblewrap works, ``True`` insists (a
    :class:`GradingError` where it cannot), ``False`` does not; ``memory``: the address-space
    limit of the submission's process in bytes; ``warn``: gets the line saying it is not confined."""
    from . import sandbox
    from .registry import get_exercise

    path = Path(path)
    nb = _read(path)
    ex = get_exercise(_which_exercise(nb, path, exercise))
    seed = secrets.randbelow(1 << 30) if seed is None else int(seed)
    mode = (sandbox.confinement() if confine is not False
            else sandbox.Confinement(False, "NOT CONFINED: switched off by the caller"))
    if confine and not mode.confined:
        raise GradingError(f"cannot confine the submission: {mode.label.removeprefix('NOT CONFINED: ')}.")
    if not mode.confined and warn:
        warn(mode.label)
    start = time.monotonic()
    cells = [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    say = log or (lambda line: None)
    results: dict[str, PartScore] = {}
    with tempfile.TemporaryDirectory(prefix="vlmstudy-grade-") as tmp, _grading_settings():
        shadow = sandbox.shadow_package(ex.references, Path(tmp) / "package")
        sub = _Submission(cells, shadow, Path(tmp) / "home", mode, float(timeout), start + float(total_timeout),
                          int(memory or sandbox.MEMORY_LIMIT), say, max_starts=len(cells) + len(ex.parts) + 2)
        try:
            for p in ex.parts:
                results[p.name] = _grade_part(sub, p, seed, float(timeout))
                say(f"part {p.name}: {results[p.name].status}, {results[p.name].points}/{p.max_points}")
        finally:
            sub.stop()
            _make_removable(Path(tmp))
    return Grade(path=str(path), exercise=ex.name, title=ex.title, seed=seed,
                 parts=[results[p.name] for p in ex.parts], seconds=time.monotonic() - start, notes=sub.notes,
                 confinement=mode.label)


def _make_removable(folder: Path) -> None:
    """The package copy is read-only (for the submission); the grader's temporary folder must go."""
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


def grade_many(paths, progress: bool = True, **options) -> list[Grade | GradingError]:
    """Grade every notebook in ``paths``, each in its own fresh process and confinement; a
    submission that cannot be graded at all gives its :class:`GradingError` in its place. The
    warning about confinement is printed once. ``options``: those of :func:`grade`."""
    from tqdm.auto import tqdm

    warned: list[str] = []
    warn = options.pop("warn", _warn)

    def warn_once(text):
        if not warned and warn:
            warn(text)
        warned.append(text)

    out: list[Grade | GradingError] = []
    bar = tqdm(list(paths), desc="grading", unit="submission", disable=not progress, file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(Path(path).name, refresh=True)
        try:
            out.append(grade(path, warn=warn_once, **options))
        except GradingError as err:
            out.append(err)
    return out


def write_csv(path, paths, grades: list[Grade | GradingError]) -> Path:
    """One row per submission: file, exercise, total, percent, then the points of every part
    (columns ``part:NAME``), the confinement and the seed; a submission that could not be graded
    has its error in ``error``."""
    parts: list[str] = []
    for g in grades:
        if isinstance(g, Grade):
            parts += [p.part for p in g.parts if p.part not in parts]
    header = ["submission", "exercise", "points", "max_points", "percent", *[f"part:{n}" for n in parts],
              "confinement", "seed", "error"]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for source, g in zip(paths, grades):
            if isinstance(g, GradingError):
                writer.writerow([str(source), "", 0, "", "", *["" for _ in parts], "", "", str(g)])
                continue
            by_part = {p.part: p.points for p in g.parts}
            percent = f"{100 * g.points / g.max_points:.1f}" if g.max_points else ""
            writer.writerow([g.path, g.exercise, g.points, g.max_points, percent,
                             *[by_part.get(n, "") for n in parts], g.confinement, g.seed, ""])
    return path
