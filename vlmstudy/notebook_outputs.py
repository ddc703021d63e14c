"""Stored notebook outputs that do not depend on the machine's load.

A kernel sends what a cell prints to stdout in as many messages as its output buffer was flushed:
on an idle machine one, on a busy one sometimes two or more (the flush is timed). nbclient stores
each message as its own ``stream`` output, so the same cell printing the same text gave solution
notebooks that differ byte for byte from build to build (issue 23). :func:`coalesce_streams`
merges consecutive stream outputs of the same name (``stdout``, ``stderr``) into one, laid out as
nbformat writes a single one (a list of lines), so ``vlmstudy exercises build`` writes the same
bytes whatever the load. :func:`split_streams` finds the cells where that merge is still to do.

Both work on a notebook's JSON as a ``dict`` (``json.loads`` of the file).
"""

from __future__ import annotations

__all__ = ["coalesce_streams", "split_streams"]


def _text(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _is_stream(output: dict) -> bool:
    return output.get("output_type") == "stream"


def coalesce_outputs(outputs: list[dict]) -> list[dict]:
    """``outputs`` with every run of consecutive stream outputs of one name merged into one."""
    merged: list[dict] = []
    for output in outputs:
        if (_is_stream(output) and merged and _is_stream(merged[-1])
                and merged[-1].get("name") == output.get("name")):
            merged[-1] = dict(merged[-1], text=_text(merged[-1]) + _text(output))
        else:
            merged.append(dict(output))
    for output in merged:
        if _is_stream(output):
            output["text"] = _text(output).splitlines(keepends=True)  # nbformat's layout of one output
    return merged


def coalesce_streams(notebook: dict) -> dict:
    """The notebook (a new dict; the argument is left alone) with consecutive stream outputs of
    the same name merged in every code cell. A notebook with no split stream comes back equal."""
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code" and cell.get("outputs"):
            cell = dict(cell, outputs=coalesce_outputs(cell["outputs"]))
        cells.append(cell)
    return dict(notebook, cells=cells)


def split_streams(notebook: dict) -> list[int]:
    """Indices of the code cells whose outputs hold two consecutive stream outputs of one name
    (what :func:`coalesce_streams` would merge); empty for a notebook built deterministically."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        outputs = cell.get("outputs") or []
        if any(_is_stream(a) and _is_stream(b) and a.get("name") == b.get("name")
               for a, b in zip(outputs, outputs[1:])):
            found.append(index)
    return found
