"""Build the exercise notebooks from their masters: ``vlmstudy exercises build``.

One master per exercise, ``tools/exercises/NN_name.py``, in the percent format of the course
notebooks (:mod:`vlmstudy.notebook_format`, whose cell splitting and notebook writer are reused),
with nbgrader-style markers in code cells::

    def search(self, query, top_k=5):
        ### BEGIN SOLUTION
        ...the instructor's code...
        ### END SOLUTION

    ### BEGIN HIDDEN TESTS
    hidden_checks(CLIPImageSearch, "01_clip_search", "search")
    ### END HIDDEN TESTS

From it come two notebooks with the same cell ids:

* ``exercises/NN_name.ipynb``, the learner's: every solution region becomes a stub,
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` at the same indentation; hidden-test
  regions are removed (a cell left empty goes); no outputs. Byte for byte what the master gives.
* ``solutions/NN_name.ipynb``, the instructor's: the master's cells as they are (markers kept, so
  the instructor sees what the learner does not), executed in a fresh kernel, outputs stored
  (``pytest --nbval`` compares them; a cell whose output may change says ``# NBVAL_IGNORE_OUTPUT``).

Both carry ``metadata.vlmstudy.exercise`` (the grader reads it to pick the checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import VlmStudyError
from ..notebook_format import notebook_json, percent_cells
from ..notebook_outputs import coalesce_streams
from ..settings import REPO_DIR

__all__ = ["MASTERS_DIR", "EXERCISES_DIR", "SOLUTIONS_DIR", "MasterError", "masters", "student_notebook",
           "solution_notebook", "execute_notebook", "strip_outputs", "build_all", "stale"]

MASTERS_DIR = REPO_DIR / "tools" / "exercises"
EXERCISES_DIR = REPO_DIR / "exercises"
SOLUTIONS_DIR = REPO_DIR / "solutions"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"

#: The environment the solutions run in, the same as the test suite's (conftest.py): offline,
#: off-screen plots, default mode and device. A stored output must not depend on the machine.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
KERNEL_ENV_UNSET = ("VLMSTUDY_MODE", "VLMSTUDY_DEVICE")


class MasterError(VlmStudyError, ValueError):
    """A master notebook whose markers do not pair up."""


def masters(directory: Path | None = None) -> list[Path]:
    """The master files, in order (``NN_name.py``)."""
    return sorted(Path(directory or MASTERS_DIR).glob("[0-9][0-9]_*.py"))


def _regions(body: str, begin: str, end: str, where: str):
    """Yield ``(start, stop, indent)`` line ranges of ``begin`` ... ``end`` regions (inclusive)."""
    lines = body.split("\n")
    start = None
    for i, line in enumerate(lines):
        text = line.strip()
        if text == begin:
            if start is not None:
                raise MasterError(f"{where}: {begin!r} inside another one (line {i + 1} of the cell)")
            start = i
        elif text == end:
            if start is None:
                raise MasterError(f"{where}: {end!r} without {begin!r} (line {i + 1} of the cell)")
            yield start, i, lines[start][:len(lines[start]) - len(lines[start].lstrip())]
            start = None
    if start is not None:
        raise MasterError(f"{where}: {begin!r} is never closed by {end!r}")


def _replace(body: str, begin: str, end: str, where: str, replacement) -> str:
    lines = body.split("\n")
    for start, stop, indent in reversed(list(_regions(body, begin, end, where))):
        lines[start:stop + 1] = replacement(indent)
    return "\n".join(lines)


def _student_cell(kind: str, body: str, where: str) -> str:
    if kind == "markdown":
        return _replace(body, BEGIN_SOLUTION, END_SOLUTION, where, lambda indent: [MARKDOWN_STUB])
    body = _replace(body, BEGIN_HIDDEN, END_HIDDEN, where, lambda indent: [])
    body = _replace(body, BEGIN_SOLUTION, END_SOLUTION, where, lambda indent: [indent + line for line in STUB])
    return body.strip("\n")


def _cells(master: Path) -> list[tuple[str, str]]:
    cells = percent_cells(master.read_text(encoding="utf-8"))
    for i, (_kind, body) in enumerate(cells):  # validate every cell, solution side too
        list(_regions(body, BEGIN_SOLUTION, END_SOLUTION, f"{master.name}, cell {i}"))
        list(_regions(body, BEGIN_HIDDEN, END_HIDDEN, f"{master.name}, cell {i}"))
    return cells


def _metadata(master: Path) -> dict:
    return {"vlmstudy": {"exercise": master.stem}}


def student_notebook(master: Path) -> str:
    """The learner's notebook JSON (stubs, no hidden tests, no outputs)."""
    cells = []
    for i, (kind, body) in enumerate(_cells(master)):
        body = _student_cell(kind, body, f"{master.name}, cell {i}")
        if body.strip():
            cells.append((kind, body, i))
    return notebook_json(master.stem, cells, metadata=_metadata(master))


def solution_notebook(master: Path) -> str:
    """The instructor's notebook JSON, not executed (no outputs)."""
    cells = [(kind, body, i) for i, (kind, body) in enumerate(_cells(master))]
    return notebook_json(master.stem, cells, metadata=_metadata(master))


def kernel_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV_UNSET}
    env.update(KERNEL_ENV)
    env.update(extra or {})
    return env


def execute_notebook(text: str, cwd: Path, timeout: int = 600) -> str:
    """Run a notebook JSON in a fresh kernel of this Python (cwd ``cwd``) and return it with its
    outputs, in the writer's layout. Raises :class:`MasterError` when a cell fails."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from .kernel import notebook_client

    nb = nbformat.reads(text, as_version=4)
    client = notebook_client(nb, timeout=timeout, record_timing=False, allow_errors=False, shutdown_kernel="immediate")
    with tempfile.TemporaryDirectory(prefix="vlmstudy-build-hf-home-") as hf_home:  # as the tests: no Hub cache
        try:
            client.execute(cwd=str(cwd), env=kernel_env({"HF_HOME": hf_home}), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # the kernel's own log, not the notebook's output
        except CellExecutionError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise MasterError(f"a cell of the solution failed when run: {first}") from None
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    data = coalesce_streams(json.loads(nbformat.writes(nb)))  # same bytes whatever the load (issue 23)
    data["metadata"] = json.loads(text)["metadata"]  # no language_info version details: stable bytes
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def strip_outputs(text: str) -> str:
    """A notebook JSON without outputs or execution counts, in the writer's layout: what the
    committed solution must equal once its outputs are set aside."""
    data = json.loads(text)
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell["metadata"] = {}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def stale(root: Path | None = None) -> list[Path]:
    """Built notebooks that differ from their masters: an exercise byte for byte, a solution
    once its outputs are set aside (its outputs are compared by ``pytest --nbval``)."""
    root = Path(root or REPO_DIR)
    found = []
    sources = masters(root / "tools" / "exercises")
    for master in sources:
        exercise, solution = root / "exercises" / f"{master.stem}.ipynb", root / "solutions" / f"{master.stem}.ipynb"
        if not exercise.exists() or exercise.read_text(encoding="utf-8") != student_notebook(master):
            found.append(exercise)
        if not solution.exists() or (json.loads(strip_outputs(solution.read_text(encoding="utf-8")))
                                     != json.loads(solution_notebook(master))):
            found.append(solution)
    stems = {m.stem for m in sources}
    for folder in ("exercises", "solutions"):
        found += [p for p in sorted((root / folder).glob("*.ipynb")) if p.stem not in stems]  # orphans
    return found


def build_all(names: list[str] | None = None, execute: bool = True, root: Path | None = None, log=print) -> list[Path]:
    """Write ``exercises/`` and ``solutions/`` from the masters (``names``: only these stems or
    number prefixes); the solutions are executed unless ``execute`` is false. Returns the files
    written."""
    root = Path(root or REPO_DIR)
    chosen = masters(root / "tools" / "exercises")
    if names:
        wanted = set(names)
        chosen = [m for m in chosen if m.stem in wanted or m.stem.split("_")[0] in wanted]
        unknown = wanted - {m.stem for m in chosen} - {m.stem.split("_")[0] for m in chosen}
        if unknown:
            raise MasterError(f"no master for {', '.join(sorted(unknown))} in tools/exercises/ "
                              f"(there are: {', '.join(m.stem for m in masters(root / 'tools' / 'exercises'))})")
    written = []
    for master in chosen:
        for folder in ("exercises", "solutions"):
            (root / folder).mkdir(exist_ok=True)
        exercise = root / "exercises" / f"{master.stem}.ipynb"
        exercise.write_text(student_notebook(master), encoding="utf-8")
        written.append(exercise)
        solution = root / "solutions" / f"{master.stem}.ipynb"
        text = solution_notebook(master)
        if execute:
            text = execute_notebook(text, cwd=solution.parent)
        solution.write_text(text, encoding="utf-8")
        written.append(solution)
        if log:
            log(f"wrote {exercise.relative_to(root)} and {solution.relative_to(root)}"
                + ("" if execute else " (not executed)"))
    return written

