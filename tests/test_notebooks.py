"""The notebooks are built from tools/notebooks/*.py, the committed ones carry no outputs, and nbval
can run them.

A learner works in ``notebooks/``: JupyterLab saves outputs, execution counts, cell metadata
(``execution``, ``scrolled``, ``collapsed``, ``jupyter``) and widget state into the files. That
must not break the README's test command, so the working files are compared with their sources
with all of that stripped (:func:`strip_jupyter_additions`), and the "no outputs" rule is checked
on what git holds (the index: the committed file, or the one staged for the next commit). A
fresh clone (CI) has the clean files, so there both checks are exact.
"""

import copy
import json
import shutil
import subprocess

import pytest

#: Cell metadata keys JupyterLab / nbclient may add when a notebook is run and saved.
JUPYTER_CELL_KEYS = ("execution", "scrolled", "collapsed", "jupyter", "editable", "deletable", "trusted")


@pytest.fixture
def builder(load_script):
    return load_script("tools/build_notebooks.py")


def strip_jupyter_additions(nb: dict) -> dict:
    """``nb`` (notebook JSON) without what running and saving it in Jupyter adds: outputs,
    execution counts, the run's cell metadata, widget state; the notebook metadata reduced to the
    keys the builder writes (JupyterLab fills in ``language_info`` and may add ``widgets``)."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        for key in JUPYTER_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    return nb


def _comparable(nb: dict) -> dict:
    """The parts of a notebook its source decides: cells (type, id, source, metadata) and the
    kernelspec."""
    nb = strip_jupyter_additions(nb)
    return {"cells": [{k: c.get(k) for k in ("cell_type", "id", "source", "metadata")} for c in nb["cells"]],
            "kernelspec": nb.get("metadata", {}).get("kernelspec")}


def check_notebooks_match_sources(repo, builder) -> list[str]:
    """Each ``notebooks/X.ipynb`` against ``tools/notebooks/X.py``: the same cells once Jupyter's
    additions are stripped; byte for byte when the file was not run (so a stale build or a
    hand-edit is caught exactly). Returns the names checked."""
    sources = sorted((repo / "tools" / "notebooks").glob("*.py"))
    assert sources
    for source in sources:
        target = repo / "notebooks" / f"{source.stem}.ipynb"
        assert target.exists(), f"run python tools/build_notebooks.py ({target.name} is missing)"
        built, text = builder.build(source), target.read_text(encoding="utf-8")
        on_disk = json.loads(text)
        assert _comparable(on_disk) == _comparable(json.loads(built)), (
            f"{target.name} differs from {source.name}: run python tools/build_notebooks.py")
        if strip_jupyter_additions(on_disk) == on_disk:  # never run: it must be exactly the build
            assert text == built, f"{target.name} differs from {source.name}: run python tools/build_notebooks.py"
    return [s.stem for s in sources]


def _git(repo, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)


def committed_notebooks(repo) -> dict[str, dict] | None:
    """``{path: notebook JSON}`` of every notebook under ``notebooks/`` as git's index holds it
    (what is committed, or staged to be); None when ``repo`` is not a git checkout."""
    if shutil.which("git") is None or _git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return None
    listed = _git(repo, "ls-files", "--", "notebooks/*.ipynb")
    assert listed.returncode == 0, listed.stderr
    out = {}
    for path in listed.stdout.split():
        shown = _git(repo, "show", f":{path}")
        assert shown.returncode == 0, shown.stderr
        out[path] = json.loads(shown.stdout)
    return out


def check_committed_notebooks_are_clean(repo) -> list[str]:
    """The committed (or staged) notebooks carry no outputs and no execution counts."""
    import nbformat

    committed = committed_notebooks(repo)
    if committed is None:
        pytest.skip("not a git checkout: the committed notebooks cannot be checked (CI checks them)")
    assert any(path.endswith("00_setup.ipynb") for path in committed), sorted(committed)
    for path, nb_json in committed.items():
        nb = nbformat.reads(json.dumps(nb_json), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path} is committed with outputs: git checkout {path} (or python tools/build_notebooks.py), "
                    f"then git add {path}")
    return sorted(committed)


def test_notebooks_match_their_sources(repo, builder):
    check_notebooks_match_sources(repo, builder)


def test_committed_notebooks_are_clean_and_valid(repo):
    check_committed_notebooks_are_clean(repo)


def _save_as_jupyterlab_does(path) -> None:
    """Write outputs, execution counts, cell metadata and widget state into ``path``, the way
    JupyterLab saves a notebook that was run (indent 1, as nbformat writes)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        count += 1
        cell["execution_count"] = count
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]},
                           {"data": {"text/plain": [f"{count}"]}, "execution_count": count, "metadata": {},
                            "output_type": "execute_result"}]
        cell["metadata"] = {"execution": {"iopub.execute_input": "2026-01-01T00:00:00Z"}, "scrolled": True}
    nb["metadata"]["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3}, "name": "python",
                                       "version": "3.11.2", "file_extension": ".py", "mimetype": "text/x-python"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                                 "version_minor": 0}}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def test_a_learner_running_and_saving_notebooks_keeps_the_tests_green(repo, builder, tmp_path):
    """A copy of the repository where a notebook was run and saved (outputs in the working file):
    the notebook checks still pass; staging that file for a commit fails the committed check."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    copy_root = tmp_path / "course"
    for part in ("tools/notebooks", "notebooks"):
        shutil.copytree(repo / part, copy_root / part)
    for cmd in (["init", "-q"], ["add", "notebooks"],
                ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "clean"]):
        assert _git(copy_root, *cmd).returncode == 0
    saved = copy_root / "notebooks" / "00_setup.ipynb"
    _save_as_jupyterlab_does(saved)
    assert any(c.get("outputs") for c in json.loads(saved.read_text())["cells"]), "the copy really has outputs now"

    assert "00_setup" in check_notebooks_match_sources(copy_root, builder)
    assert "notebooks/00_setup.ipynb" in check_committed_notebooks_are_clean(copy_root)

    # a real change of a cell's code is still caught in the working file
    nb = json.loads(saved.read_text())
    next(c for c in nb["cells"] if c["cell_type"] == "code")["source"] = ["print('edited')"]
    saved.write_text(json.dumps(nb, indent=1) + "\n")
    with pytest.raises(AssertionError, match="differs from 00_setup.py"):
        check_notebooks_match_sources(copy_root, builder)
    # and a notebook staged with outputs fails the committed check
    _save_as_jupyterlab_does(saved)
    assert _git(copy_root, "add", "notebooks/00_setup.ipynb").returncode == 0
    with pytest.raises(AssertionError, match="committed with outputs"):
        check_committed_notebooks_are_clean(copy_root)


def test_setup_notebook_has_an_objective_and_ends_with_checks(repo):
    import nbformat

    nb = nbformat.read(repo / "notebooks" / "00_setup.ipynb", as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "Objective" in nb.cells[0].source
    assert "print_environment_report()" in "".join(c.source for c in nb.cells if c.cell_type == "code")
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last_code.source
    # hub mode is shown, never executed: the notebook stays offline
    assert not any('set_mode("hub")' in c.source for c in nb.cells if c.cell_type == "code")


def test_builder_splits_cells(tmp_path, builder):
    source = tmp_path / "99_demo.py"
    source.write_text("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n\n# %%\nprint(x)\n")
    nb = json.loads(builder.build(source))
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code", "code"]
    assert nb["cells"][0]["source"] == ["# Title\n", "\n", "text"]
    assert nb["cells"][1]["source"] == ["x = 1"]
    assert len({c["id"] for c in nb["cells"]}) == 3
