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


# -- every notebook ends with a summary, questions to check yourself, and references (issue 22) --

CLOSING_SECTIONS = ("## Summary", "## Check yourself", "## References")
ANSWER_OPEN = "<details><summary>Answer</summary>"


def closing_sections_problems(nb: dict) -> list[str]:
    """What is missing from the end of ``nb`` (notebook JSON): the last cells must be three markdown
    cells, in this order, after every code cell: ``## Summary`` (a few lines), ``## Check yourself``
    (3-5 questions ``**N. ...?**``, each followed by an answer the learner opens:
    ``<details><summary>Answer</summary> ... </details>``) and ``## References`` (at least one
    arXiv paper and one page on huggingface.co, as Markdown links). An empty list: all there."""
    import re

    cells = [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
             for c in nb["cells"]]
    problems = []
    found = {}
    for heading in CLOSING_SECTIONS:
        at = [i for i, (kind, text) in enumerate(cells)
              if kind == "markdown" and text.strip().splitlines()[:1] == [heading]]
        if len(at) != 1:
            problems.append(f"{heading!r}: {len(at)} markdown cells start with it (one expected)")
        else:
            found[heading] = at[0]
    if problems:
        return problems
    positions = [found[h] for h in CLOSING_SECTIONS]
    if positions != sorted(positions):
        problems.append(f"the closing sections are out of order: {CLOSING_SECTIONS}")
    code = [i for i, (kind, _) in enumerate(cells) if kind == "code"]
    if code and code[-1] > min(positions):
        problems.append("a code cell comes after the summary: the notebook must end with the closing sections")
    summary = cells[found["## Summary"]][1].split("\n", 1)[-1].strip()
    if len(summary) < 80:
        problems.append("the summary is (almost) empty")
    questions = cells[found["## Check yourself"]][1]
    asked = re.findall(r"^\*\*(\d+)\. .+\?\*\*$", questions, flags=re.M)
    answers = re.findall(re.escape(ANSWER_OPEN) + r"(.*?)</details>", questions, flags=re.S)
    if not 3 <= len(asked) <= 5:
        problems.append(f"{len(asked)} questions to check yourself (3-5 expected, each '**N. ...?**')")
    if asked != [str(n) for n in range(1, len(asked) + 1)]:
        problems.append(f"the questions are not numbered 1, 2, 3...: {asked}")
    if len(answers) != len(asked) or questions.count("<details>") != len(asked):
        problems.append(f"{len(asked)} questions but {len(answers)} answers in {ANSWER_OPEN!r} ... </details>")
    if any(len(a.strip()) < 20 for a in answers):
        problems.append("an answer is (almost) empty")
    references = cells[found["## References"]][1]
    if not re.search(r"\]\(https://arxiv\.org/abs/\d{4}\.\d{4,5}\)", references):
        problems.append("the references cite no paper as a link to arxiv.org/abs/ID")
    if not re.search(r"\]\(https://huggingface\.co/[^)\s]+\)", references):
        problems.append("the references link no model card or documentation page on huggingface.co")
    return problems


def test_every_notebook_ends_with_a_summary_questions_and_references(repo, builder):
    sources = sorted((repo / "tools" / "notebooks").glob("*.py"))
    assert len(sources) >= 13
    problems = {s.stem: closing_sections_problems(json.loads(builder.build(s))) for s in sources}
    assert not any(problems.values()), {name: p for name, p in problems.items() if p}


def test_the_closing_sections_check_fails_when_a_part_is_missing(repo, builder):
    nb = json.loads(builder.build(repo / "tools" / "notebooks" / "03_siglip.py"))
    assert closing_sections_problems(nb) == []

    def without(predicate):
        out = copy.deepcopy(nb)
        out["cells"] = [c for c in out["cells"] if not predicate("".join(c["source"]))]
        return closing_sections_problems(out)

    assert any("'## Summary'" in p for p in without(lambda s: s.startswith("## Summary")))
    assert any("'## References'" in p for p in without(lambda s: s.startswith("## References")))
    assert any("'## Check yourself'" in p for p in without(lambda s: s.startswith("## Check yourself")))

    def edited(index_of, change):
        out = copy.deepcopy(nb)
        i = next(i for i, c in enumerate(out["cells"]) if "".join(c["source"]).startswith(index_of))
        out["cells"][i]["source"] = change("".join(out["cells"][i]["source"]))
        return closing_sections_problems(out)

    # two questions only; an answer that is not there; references without an arXiv paper
    def keep_two(text):
        head, *blocks = text.split("\n**")
        return "\n**".join([head, *blocks[:2]])
    assert any("questions to check yourself" in p for p in edited("## Check yourself", keep_two))
    assert any("answers" in p for p in edited("## Check yourself", lambda t: t.replace(ANSWER_OPEN, "<details>", 1)))
    assert any("arxiv" in p for p in edited("## References", lambda t: t.replace("arxiv.org/abs", "example.org")))
    # a code cell appended after the references
    late = copy.deepcopy(nb)
    late["cells"].append({"cell_type": "code", "source": ["print(1)"], "metadata": {}, "outputs": [],
                          "execution_count": None})
    assert any("code cell comes after" in p for p in closing_sections_problems(late))
