"""Grade a submitted exercise notebook: ``vlmstudy exercises grade SUBMISSION.ipynb``.

The submission runs in a **fresh kernel** (this Python, its own process), cell after cell, each
with a time limit, the whole with a total limit. Then one grader cell per part runs every check
of that part, hidden ones included, on data drawn from a new seed, and writes what it found to
a file of a temporary folder, tagged with a one-time token. The score comes from the grader's
own table of checks and points (:mod:`vlmstudy.grading.registry`): a notebook cannot award
itself points by printing a score, and a part whose report is missing scores 0.

* A part whose checks run past the time limit (an infinite loop), whose grader cell times out,
  or during which the kernel dies (``os._exit``, a segfault, memory) scores **0** and never
  passes; the other parts are still graded, in a new kernel if needed.
* A submission cell that hangs or kills the kernel is skipped: the kernel is replaced and the
  submission runs again without it (its code is then missing, as if never run).
* A cell that raises is recorded and the run goes on, as it would for the learner.

The grader cell re-imports the checks before it runs them, so a submission that edits the
checks in memory does not change what is graded. It is no sandbox, though: the submission runs
with the rights of whoever grades it. Grade untrusted notebooks in a container.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import VlmStudyError

__all__ = ["GradingError", "PartScore", "Grade", "grade", "report_part", "kernel_manager", "notebook_client",
           "DEFAULT_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT"]

DEFAULT_TIMEOUT = 120          # seconds per cell (the grader's cells included)
DEFAULT_TOTAL_TIMEOUT = 900    # seconds for the whole grade
KERNEL_NAME = "vlmstudy-grader"


class GradingError(VlmStudyError):
    """A submission that cannot be graded at all (not a notebook, unknown exercise, no kernel)."""


# ----------------------------------------------------------------------------- in the kernel

def report_part(exercise: str, part: str, namespace: dict, seed: int, token: str, out: str) -> None:
    """Run in the submission's kernel by the grader's cell: every check of ``part`` on the
    learner's object found in ``namespace``, written as JSON to ``out`` with ``token``."""
    import importlib

    from . import chat, core, loss, registry, rollout, search, zero_shot

    for module in (core, search, chat, zero_shot, loss, rollout, registry):  # undo edits made in memory
        importlib.reload(module)
    p = registry.get_part(exercise, part)
    result = {"token": token, "exercise": exercise, "part": part, "seed": seed}
    if p.target not in namespace:
        result.update(status="missing", message=f"{p.target} is not defined in the notebook")
    else:
        report = core.run_checks(namespace[p.target], p.checks, seed=seed, title=p.title, scope="hidden")
        result.update(status="ran", outcomes=[asdict(o) for o in report.outcomes])
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    print(f"graded part {part!r}")


def _grader_cell(exercise: str, part: str, seed: int, token: str, out: Path) -> str:
    return ("__import__('vlmstudy.grading.grader', fromlist=['report_part']).report_part("
            f"{exercise!r}, {part!r}, globals(), seed={seed}, token={token!r}, out={str(out)!r})")


# ----------------------------------------------------------------------------- the kernel

def kernel_manager():
    """A kernel manager for an IPython kernel of *this* Python (not whatever kernelspec named
    ``python3`` the machine has), as ``--nbval-current-env`` does."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class _ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="vlmstudy grader", language="python", name=KERNEL_NAME)

    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_ThisPython())


def notebook_client(nb, **options):
    """An ``nbclient.NotebookClient`` for ``nb`` that starts its kernels with :func:`kernel_manager`
    and owns them (shuts each one down when done)."""
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        def create_kernel_manager(self):
            self.km = kernel_manager()
            return self.km

    return _Client(nb, **options)


# ----------------------------------------------------------------------------- scores

@dataclass
class PartScore:
    """One part's score. ``status``: ``scored`` (its checks ran), ``not done`` (only stubs),
    ``timeout``, ``dead kernel``, ``missing`` (the learner's object is not defined), ``crashed``
    (the grader cell failed) or ``not run`` (the total time ran out)."""

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


def grade(path, exercise: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          total_timeout: float = DEFAULT_TOTAL_TIMEOUT, seed: int | None = None, log=None) -> Grade:
    """Grade the notebook at ``path`` (see the module docstring). ``timeout``: seconds per cell;
    ``total_timeout``: seconds for everything; ``seed``: the data of the hidden checks (default:
    a new one, printed with the grade so that it can be repeated); ``log``: a function that gets
    one line per event (for ``--verbose``)."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .build import kernel_env
    from .registry import get_exercise

    path = Path(path)
    nb = _read(path)
    ex = get_exercise(_which_exercise(nb, path, exercise))
    seed = secrets.randbelow(1 << 30) if seed is None else int(seed)
    token = secrets.token_hex(16)
    start = time.monotonic()
    deadline = start + float(total_timeout)
    cells = [nbformat.v4.new_code_cell(c.source) for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    check_limit = max(1.0, float(timeout) / 3)  # one check's share of a cell
    env = kernel_env({"VLMSTUDY_CHECK_TIME_LIMIT": f"{check_limit:g}"})
    notes: list[str] = []
    results: dict[str, PartScore] = {}
    skipped: set[int] = set()
    say = log or (lambda line: None)

    with tempfile.TemporaryDirectory(prefix="vlmstudy-grade-") as tmp:
        outs = {p.name: Path(tmp) / f"{p.name}.json" for p in ex.parts}
        grader_cells = {p.name: nbformat.v4.new_code_cell(_grader_cell(ex.name, p.name, seed, token, outs[p.name]))
                        for p in ex.parts}
        run_nb = nbformat.v4.new_notebook(cells=cells + list(grader_cells.values()))
        starts = 0
        while any(p.name not in results for p in ex.parts):
            left = deadline - time.monotonic()
            starts += 1
            if left <= 1 or starts > len(cells) + len(ex.parts) + 2:  # each new kernel skips a cell or scores a part
                why = (f"the total time limit ({total_timeout:g} s) ran out" if left <= 1
                       else "the kernel kept dying")
                for p in ex.parts:
                    results.setdefault(p.name, _zero(p, "not run", why))
                break
            client = notebook_client(run_nb, timeout=int(max(1, min(timeout, left))), allow_errors=True, record_timing=False,
                             shutdown_kernel="immediate", startup_timeout=int(max(10, min(120, left))))
            restart = False
            try:
                quiet = {} if log else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # kernel's own log
                with client.setup_kernel(cwd=str(path.resolve().parent), env=env, **quiet):
                    say("kernel started")
                    for i, cell in enumerate(cells):
                        if i in skipped:
                            continue
                        client.timeout = int(max(1, min(timeout, deadline - time.monotonic())))
                        try:
                            client.execute_cell(cell, i)
                        except (CellTimeoutError, DeadKernelError) as err:
                            what = "timed out" if isinstance(err, CellTimeoutError) else "killed the kernel"
                            notes.append(f"submission cell {i + 1} {what}; it was skipped in a new kernel")
                            say(notes[-1])
                            skipped.add(i)
                            restart = True
                            break
                        if any(o.get("output_type") == "error" for o in cell.outputs):
                            err = next(o for o in cell.outputs if o.get("output_type") == "error")
                            notes.append(f"submission cell {i + 1} raised {err.get('ename')}: "
                                         f"{' '.join(str(err.get('evalue', '')).split())[:120]}")
                            say(notes[-1])
                    if not restart:
                        for j, p in enumerate(ex.parts):
                            if p.name in results:
                                continue
                            left = deadline - time.monotonic()
                            if left <= 1:
                                break
                            client.timeout = int(max(1, min(timeout, left)))
                            cell = grader_cells[p.name]
                            try:
                                client.execute_cell(cell, len(cells) + j)
                            except CellTimeoutError:
                                results[p.name] = _zero(p, "timeout", f"its checks ran past {client.timeout} s: "
                                                        "the part scores 0")
                                restart = True
                            except DeadKernelError:
                                results[p.name] = _zero(p, "dead kernel", "the kernel died during its checks: the part "
                                                        "scores 0")
                                restart = True
                            else:
                                results[p.name] = _collect(p, outs[p.name], token, cell)
                            say(f"part {p.name}: {results[p.name].status}, {results[p.name].points}/{p.max_points}")
                            if restart:
                                break
            except DeadKernelError:  # died between cells, or while starting
                notes.append("the kernel died")
                restart = True
            except RuntimeError as err:
                if "kernel" not in str(err).lower():
                    raise
                raise GradingError(f"could not start a Python kernel to run the submission: {err}") from None
            if not restart:
                for p in ex.parts:  # the deadline came between two parts
                    results.setdefault(p.name, _zero(p, "not run", f"the total time limit ({total_timeout:g} s) ran out"))
    return Grade(path=str(path), exercise=ex.name, title=ex.title, seed=seed,
                 parts=[results[p.name] for p in ex.parts], seconds=time.monotonic() - start, notes=notes)


def _collect(part, out: Path, token: str, cell) -> PartScore:
    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
    try:
        result = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = None
    if not isinstance(result, dict) or result.get("token") != token or result.get("part") != part.name:
        why = (f"{errors[0].get('ename')}: {' '.join(str(errors[0].get('evalue', '')).split())[:160]}" if errors
               else "the grader cell left no report")
        return _zero(part, "crashed", why)
    return _score(part, result)
