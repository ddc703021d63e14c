"""The notebooks are built from tools/notebooks/*.py, carry no outputs, and nbval can run them."""

import json

import pytest


@pytest.fixture
def builder(load_script):
    return load_script("tools/build_notebooks.py")


def test_notebooks_match_their_sources(repo, builder):
    sources = sorted((repo / "tools" / "notebooks").glob("*.py"))
    assert sources
    for source in sources:
        target = repo / "notebooks" / f"{source.stem}.ipynb"
        assert target.exists(), f"run python tools/build_notebooks.py ({target.name} is missing)"
        assert target.read_text(encoding="utf-8") == builder.build(source), (
            f"{target.name} differs from {source.name}: run python tools/build_notebooks.py")


def test_notebooks_are_clean_and_valid(repo):
    import nbformat

    notebooks = sorted((repo / "notebooks").glob("*.ipynb"))
    assert any(nb.name == "00_setup.ipynb" for nb in notebooks)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


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
