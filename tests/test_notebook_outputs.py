"""Deterministic exercise builds (issue 23): a kernel may flush one print in two stream messages on
a busy machine; ``vlmstudy exercises build`` merges them (vlmstudy.notebook_outputs), so the
committed solutions are the same bytes whatever the load, and a split one fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmstudy.grading import build
from vlmstudy.notebook_outputs import coalesce_streams, split_streams

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))


def _dump(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"  # the build's layout


def _split_first_stream(data: dict) -> tuple[dict, int]:
    """``data`` with its first multi-character stream output cut in two, mid-line, as a busy kernel
    flushes it; and that cell's index."""
    data = json.loads(json.dumps(data))
    for index, cell in enumerate(data["cells"]):
        for k, output in enumerate(cell.get("outputs", [])):
            text = "".join(output["text"]) if output.get("output_type") == "stream" else ""
            if len(text) >= 2:
                cut = len(text) // 2 + 1
                halves = [dict(output, text=[text[:cut]]), dict(output, text=[text[cut:]])]
                cell["outputs"][k:k + 1] = halves
                return data, index
    raise AssertionError("no stream output to split")


def test_split_streams_are_merged_into_what_one_output_gives():
    one = {"output_type": "stream", "name": "stdout", "text": ["loss 0.5\n", "loss 0.4\n", "done"]}
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["loss 0.5\n", "lo"]},
        {"output_type": "stream", "name": "stdout", "text": "ss 0.4\ndone"},
        {"output_type": "stream", "name": "stderr", "text": ["warning\n"]},
        {"output_type": "display_data", "data": {"text/plain": ["<Figure>"]}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": ["after the figure\n"]},
    ]}, {"cell_type": "markdown", "source": ["# title"]}]}
    assert split_streams(nb) == [0]
    merged = coalesce_streams(nb)
    outputs = merged["cells"][0]["outputs"]
    assert outputs[0] == one
    # another stream name, or anything in between, keeps outputs apart
    assert [o.get("name", o["output_type"]) for o in outputs] == ["stdout", "stderr", "display_data", "stdout"]
    assert split_streams(merged) == [] and merged["cells"][1] == nb["cells"][1]
    assert len(nb["cells"][0]["outputs"]) == 5  # the argument is left alone


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_committed_solution_has_no_split_stream(path):
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert split_streams(data) == [], f"{path.name}: a stream output split in two; run: vlmstudy exercises build"
    assert _dump(coalesce_streams(data)) == text


@pytest.mark.parametrize("path", SOLUTIONS[:2], ids=[p.stem for p in SOLUTIONS[:2]])
def test_a_split_solution_is_caught_and_the_build_merge_gives_the_committed_bytes(path):
    text = path.read_text(encoding="utf-8")
    split, index = _split_first_stream(json.loads(text))
    assert _dump(split) != text
    assert split_streams(split) == [index]  # what test_committed_solution_has_no_split_stream fails on
    assert _dump(coalesce_streams(split)) == text  # byte for byte what a quiet machine wrote


def test_the_build_merges_streams_after_running_the_kernel(monkeypatch, tmp_path):
    """execute_notebook stores what the kernel sent, merged: a fake client sends one print in two."""
    import nbformat

    class SplittingClient:
        def __init__(self, nb, **kwargs):
            self.nb = nb

        def execute(self, **kwargs):
            for cell in self.nb.cells:
                if cell.cell_type == "code":
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hel"),
                                    nbformat.v4.new_output("stream", name="stdout", text="lo\nworld\n")]
                    cell.execution_count = 1

    from vlmstudy.grading import kernel

    monkeypatch.setattr(kernel, "notebook_client", SplittingClient)
    source = _dump({"cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {},
                               "outputs": [], "source": ["print('hello\\nworld')"]}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    out = json.loads(build.execute_notebook(source, cwd=tmp_path))
    assert out["cells"][0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": ["hello\n", "world\n"]}]
