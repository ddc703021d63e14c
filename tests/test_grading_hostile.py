"""Submissions that try to fake their grade (issue 21), graded by the real grader, confined.

Every trick below once scored 11/11 on the contrastive-loss exercise, when the checks ran in the
learner's own kernel. Now the checks run in the grader's process and the submission's process is
confined (bubblewrap), so each scores exactly what its honest code earns (0 for a stub), the
package, ``solutions/`` and the masters are byte-identical afterwards, and the honest solution
still scores full marks. One batch grades them all (each in its own fresh confinement).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest

from vlmstudy import cli
from vlmstudy.grading import build, grader, hidden_checks, registry, sandbox
from vlmstudy.grading.core import Env

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

EXERCISE = "04_contrastive_loss"
PART = registry.get_part(EXERCISE, "clip_loss")
SEED = 918273645          # the hidden seed of the batch; the read-the-seed trick looks for it
REPO = build.REPO_DIR
REAL_CORE = REPO / "vlmstudy" / "grading" / "core.py"
MARK = f"vlmstudy-hostile-{uuid.uuid4().hex[:12]}"   # in the command line of a process that must not outlive
IMPORTS = "import math\nimport torch\nimport torch.nn.functional as F"
STUB = "def clip_loss(image_embeds, text_embeds, logit_scale):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
CONSTANT = "def clip_loss(image_embeds, text_embeds, logit_scale):\n    return torch.zeros((), requires_grad=True)"
ONE_WAY = ("def clip_loss(image_embeds, text_embeds, logit_scale):\n"
           "    logits = logit_scale.exp() * image_embeds @ text_embeds.T\n"
           "    return F.cross_entropy(logits, torch.arange(len(logits)))")

HOSTILE = {
    # the tricks
    "patch_comparisons": [IMPORTS, """
import numpy
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
math.isclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
""", CONSTANT],
    "replace_report_part": [IMPORTS, """
import vlmstudy.grading.core as core
def fake(target, checks, seed, title, scope="visible", limit=None):
    return core.Report(title, scope, [core.Outcome(c.name, c.what, c.points, c.points, "passed") for c in checks])
core.run_checks = fake
try:
    import vlmstudy.grading.grader as grader
    grader.report_part = lambda *a, **k: print("clip_loss: 11/11")
    grader._score = lambda part, result: None
except ImportError:
    pass
""", STUB],
    "input_transformer": [IMPORTS, """
def _rewrite(lines):
    if any("report_part" in line or "vlmstudy.grading" in line for line in lines):
        return ["print('clip_loss: 11/11 points')\\n"]
    return lines
get_ipython().input_transformers_cleanup.append(_rewrite)
""", STUB],
    "overwrite_core_on_disk": [IMPORTS, f"""
import pathlib, vlmstudy.grading.core as core
FAKE = '''
def run_checks(target, checks, seed, title, scope="visible", limit=None):
    return Report(title, scope, [Outcome(c.name, c.what, c.points, c.points, "passed") for c in checks])
'''
wrote = []
for path in {{pathlib.Path(core.__file__), pathlib.Path({str(REAL_CORE)!r})}}:
    try:
        path.write_text(path.read_text() + FAKE)
        wrote.append(str(path))
    except OSError:
        pass
print("wrote", wrote)
""", STUB],
    "call_the_reference": [IMPORTS, """
try:
    from vlmstudy.grading.loss import reference as clip_loss   # the checks' own reference
except ImportError:
    from vlmstudy.contrastive import clip_loss                 # the package's
"""],
    "copy_from_solutions": [IMPORTS, f"""
import json, pathlib
source = None
bases = [pathlib.Path.cwd(), *pathlib.Path.cwd().parents, pathlib.Path({str(REPO)!r}), pathlib.Path("/opt/vlmstudy")]
for base in bases:
    for path in (base / "solutions" / "{EXERCISE}.ipynb", base / "tools" / "exercises" / "{EXERCISE}.py"):
        try:
            text = path.read_text()
        except OSError:
            continue
        cells = ["".join(c["source"]) for c in json.loads(text)["cells"]] if path.suffix == ".ipynb" else [text]
        source = next((c for c in cells if c.startswith("def clip_loss")), None)
        if source is None and path.suffix == ".py":
            start = text.index("def clip_loss")
            source = text[start:text.index("# %%", start)]
        if source:
            break
    if source:
        break
if source:
    exec(source)
else:
    def clip_loss(image_embeds, text_embeds, logit_scale):
        raise NotImplementedError()
"""],
    "read_hidden_seed": [IMPORTS, r"""
import os, re, sys, pathlib
texts = [repr(dict(os.environ)), repr(sys.argv), repr(globals().get("In", ""))]
for pattern in ("/proc/*/cmdline", "/proc/*/environ"):
    for path in pathlib.Path("/").glob(pattern.lstrip("/")):
        try:
            texts.append(path.read_bytes().decode(errors="replace"))
        except OSError:
            pass
for path in pathlib.Path("/tmp").rglob("*"):
    try:
        if path.is_file() and path.stat().st_size < 1_000_000:
            texts.append(path.read_text(errors="replace"))
    except OSError:
        pass
found = re.findall(r"seed\W{0,3}(\d{6,})", "\n".join(texts))
# public code has seed-like numbers too (matplotlib's 19680801): this test's detector keeps only the
# hidden seed itself, recognised by its hash, so a hit anywhere readable shows up as that number
import hashlib
found = [n for n in found if hashlib.sha256(n.encode()).hexdigest() == "SEED_SHA256"]
def clip_loss(image_embeds, text_embeds, logit_scale):   # tells the grade what it found
    return torch.tensor(float(found[0]) if found else -1.0, dtype=torch.float64)
""".replace("SEED_SHA256", hashlib.sha256(str(SEED).encode()).hexdigest())],
    # more of our own
    "fork_outlives_the_part": [IMPORTS, f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time  # {MARK}\\ntime.sleep(600)"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
""", STUB],
    "write_grader_files": [IMPORTS, f"""
import glob, pathlib
targets = glob.glob("/tmp/vlmstudy-grade-*/**", recursive=True) + [
    {str(REPO / "solutions" / f"{EXERCISE}.ipynb")!r}, {str(REPO / "tools" / "exercises" / f"{EXERCISE}.py")!r},
    {str(REPO / "vlmstudy" / "grading" / "registry.py")!r}]
for target in targets:
    for path in (pathlib.Path(target), pathlib.Path(target) / "forged.json"):
        try:
            path.write_text('{{"status": "ran", "outcomes": []}}')
        except OSError:
            pass
""", STUB],
    "forge_channel_replies": [IMPORTS, """
import json, os, struct
def clip_loss(image_embeds, text_embeds, logit_scale):
    forged = json.dumps({"re": 1, "value": {"status": "ran", "points": 11}}).encode()
    for fd in range(3, 64):
        for rid in range(1, 8):
            try:
                os.write(fd, struct.pack(">Q", len(forged)) + forged.replace(b'"re": 1', b'"re": %d' % rid))
            except OSError:
                break
    raise NotImplementedError()
"""],
    "huge_output": [IMPORTS, """
print("x" * (20 << 20))
def clip_loss(image_embeds, text_embeds, logit_scale):
    print("11/11 " * 1_000_000)
    return torch.zeros(20_000_000)          # 80 MB back to the grader
"""],
}
CONTROLS = {   # honest code: what the tricks must not beat
    "honest_solution": None,                            # solutions/04_contrastive_loss.ipynb as it is
    "untouched_stub_after_the_overwrite": None,         # exercises/04_contrastive_loss.ipynb as it is
    "wrong_one_direction": [IMPORTS, ONE_WAY],
}
ORDER = [*HOSTILE, "untouched_stub_after_the_overwrite", "honest_solution", "wrong_one_direction"]
ORDER.remove("untouched_stub_after_the_overwrite")
ORDER.insert(ORDER.index("overwrite_core_on_disk") + 1, "untouched_stub_after_the_overwrite")
BASELINE = {"patch_comparisons": CONSTANT, "read_hidden_seed": None, "huge_output": None, "wrong_one_direction": ONE_WAY}


def _digest(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path.relative_to(REPO))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _notebook(folder: Path, name: str, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s.strip("\n")) for s in cells])
    nb.metadata["vlmstudy"] = {"exercise": EXERCISE}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _in_process(source: str) -> grader.PartScore:
    """The score of honest code run in this process, with the batch's seed (what the tricks must equal)."""
    ns: dict = {}
    exec(IMPORTS + "\n" + source, ns)
    report = hidden_checks(ns["clip_loss"], EXERCISE, "clip_loss", seed=SEED)
    from dataclasses import asdict

    return grader._score(PART, {"status": "ran", "outcomes": [asdict(o) for o in report.outcomes]})


def _outliving() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if MARK.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every submission in one batch; the hashes of what they attack, before and after."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap; .ci/run installs it)")
    mode = sandbox.confinement()
    assert mode.confined, mode.label   # installed but unusable: say why
    Env(0).model("clip")               # the grader's own model, loaded before any time limit
    folder = tmp_path_factory.mktemp("submissions")
    paths = {name: _notebook(folder, name, cells) for name, cells in {**HOSTILE, **CONTROLS}.items() if cells}
    paths["honest_solution"] = build.SOLUTIONS_DIR / f"{EXERCISE}.ipynb"
    paths["untouched_stub_after_the_overwrite"] = build.EXERCISES_DIR / f"{EXERCISE}.ipynb"
    # the repository is not even mounted in the sandbox; watching the grader's own files (not the
    # whole package) keeps the test deaf to edits made to other modules while it runs
    watched = (REPO / "vlmstudy" / "grading", build.SOLUTIONS_DIR, build.EXERCISES_DIR, build.MASTERS_DIR)
    before = _digest(*watched)
    grades = grader.grade_many([paths[n] for n in ORDER], seed=SEED, timeout=40, progress=False)
    after = _digest(*watched)
    return dict(zip(ORDER, grades)), before, after, _outliving()


@pytest.mark.parametrize("name", [n for n in HOSTILE if n not in BASELINE])
def test_a_trick_on_a_stub_scores_zero(graded, name):
    grades, *_ = graded
    g = grades[name]
    assert isinstance(g, grader.Grade) and g.confinement == sandbox.CONFINED, g
    assert g.points == 0 and not g.passed, g.table()


def test_patched_comparisons_score_what_the_fake_earns(graded):
    grades, *_ = graded
    honest = _in_process(CONSTANT)
    assert 0 < honest.points < PART.max_points  # the fake alone: a 0-dim tensor, inputs untouched
    assert grades["patch_comparisons"].points == honest.points, grades["patch_comparisons"].table()


def test_the_reference_is_out_of_reach(graded):
    grades, *_ = graded
    ns: dict = {}
    exec(IMPORTS + "\n" + HOSTILE["call_the_reference"][1], ns)   # in-process, the reference scores full marks
    assert hidden_checks(ns["clip_loss"], EXERCISE, "clip_loss", seed=SEED).passed
    (part,) = grades["call_the_reference"].parts
    assert part.points == 0 and part.status == "used the reference", part
    assert "vlmstudy.contrastive.clip_loss" in part.message and "Write it yourself" in part.message


def test_solutions_are_not_there_to_copy(graded):
    grades, *_ = graded
    ns: dict = {}
    cwd = os.getcwd()
    try:
        os.chdir(REPO)     # in-process, next to solutions/, the copy finds the instructor's code
        exec(IMPORTS + "\n" + HOSTILE["copy_from_solutions"][1], ns)
    finally:
        os.chdir(cwd)
    assert hidden_checks(ns["clip_loss"], EXERCISE, "clip_loss", seed=SEED).passed
    g = grades["copy_from_solutions"]
    assert g.points == 0 and g.parts[0].status == "not done", g.table()


def test_the_hidden_seed_is_nowhere_the_submission_can_read(graded):
    grades, *_ = graded
    g = grades["read_hidden_seed"]
    assert g.seed == SEED and g.points < PART.max_points
    messages = json.dumps(g.to_dict()["parts"])
    assert "loss -1.00000" in messages, messages[:600]   # the fake found no seed ...
    assert str(SEED) not in messages                    # ... and returned none


def test_the_untouched_stub_after_an_overwrite_still_scores_zero(graded):
    grades, before, after, _ = graded
    g = grades["untouched_stub_after_the_overwrite"]
    assert g.points == 0 and g.parts[0].status == "not done", g.table()


def test_nothing_on_disk_changed(graded):
    _, before, after, _ = graded
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, changed


def test_no_process_outlives_its_grade(graded):
    *_, outliving = graded
    assert outliving == []


def test_a_huge_answer_or_forged_replies_score_zero(graded):
    grades, *_ = graded
    assert grades["huge_output"].parts[0].status == "crashed" and "MiB" in grades["huge_output"].parts[0].message
    assert grades["forge_channel_replies"].points == 0


def test_honest_work_still_scores_as_before(graded):
    """Graded in the confined process, the solution scores full marks, the stub 0 and a wrong
    solution exactly what the same checks give it in-process (same seed)."""
    grades, *_ = graded
    assert grades["honest_solution"].passed and grades["honest_solution"].points == PART.max_points
    wrong, honest = grades["wrong_one_direction"], _in_process(ONE_WAY)
    assert 0 < wrong.points < PART.max_points and wrong.points == honest.points
    assert [c["status"] for c in wrong.parts[0].checks] == [c["status"] for c in honest.checks]


def test_batch_command_writes_one_csv_row_per_submission_and_no_fake_table(tmp_path, capsys):
    fake_table = _notebook(tmp_path, "fake_table", [IMPORTS, "print('clip_loss  11/11  scored\\n  total 11/11 (100%) "
                                                              "FAKE-TABLE')", STUB])
    wrong = _notebook(tmp_path, "wrong", [IMPORTS, ONE_WAY])
    out = tmp_path / "grades.csv"
    code = cli.main(["exercises", "grade", str(fake_table), str(wrong), "--csv", str(out), "--seed", "3",
                     "--timeout", "40"])
    captured = capsys.readouterr()
    assert code == 0 and "FAKE-TABLE" not in captured.out + captured.err
    assert "total 0/11" in captured.out and "grading" in captured.err   # the progress bar
    import csv

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [Path(r["submission"]).name for r in rows] == ["fake_table.ipynb", "wrong.ipynb"]
    assert rows[0]["part:clip_loss"] == "0" and 0 < int(rows[1]["part:clip_loss"]) < 11
    assert all(r["confinement"] == sandbox.CONFINED and r["max_points"] == "11" for r in rows)


def test_without_confinement_the_grade_says_so_and_still_judges(tmp_path):
    """The fallback (no bubblewrap): a loud warning, ``NOT CONFINED`` in the table and JSON,
    and the judge still apart: patching the comparisons earns nothing."""
    warnings: list[str] = []
    path = _notebook(tmp_path, "patched", HOSTILE["patch_comparisons"][:2] + [STUB])
    g = grader.grade(path, seed=4, timeout=40, confine=False, warn=warnings.append)
    assert g.points == 0 and g.confinement.startswith("NOT CONFINED")
    assert warnings and warnings[0].startswith("NOT CONFINED")
    assert "WARNING: NOT CONFINED" in g.table() and g.to_dict()["confinement"].startswith("NOT CONFINED")


def test_insisting_on_confinement_where_there_is_none_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "confinement", lambda: sandbox.Confinement(False, "NOT CONFINED: no bwrap here"))
    path = _notebook(tmp_path, "any", [IMPORTS, STUB])
    with pytest.raises(grader.GradingError, match="cannot confine the submission: no bwrap here"):
        grader.grade(path, confine=True)


# ----------------------------------------------------------------------------- the pieces, fast

def test_the_submissions_copy_of_the_package_has_no_checks_and_no_references(tmp_path):
    for name, ex in registry.EXERCISES.items():  # every reference the registry names exists
        assert ex.references, name
        sandbox.shadow_package(ex.references, tmp_path / name)
    root = tmp_path / EXERCISE
    assert sorted(p.name for p in (root / "vlmstudy" / "grading").iterdir()) == [
        "__init__.py", "core.py", "remote.py", "worker.py"]
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    contrastive = (root / "vlmstudy" / "contrastive.py").read_text()
    stub = contrastive[contrastive.index("def clip_loss"):contrastive.index("def siglip_loss")]
    assert "ReferenceOutOfReach" in stub and "cross_entropy" not in stub
    assert contrastive.count("is out of reach") == 1 and "def siglip_loss" in contrastive  # the rest stays
    assert all(not os.access(p, os.W_OK) or os.geteuid() == 0 for p in root.rglob("*.py"))
    assert all(p.stat().st_mode & 0o222 == 0 for p in root.rglob("*.py"))
    grader._make_removable(tmp_path)


def test_the_channel_takes_data_only(tmp_path):
    from vlmstudy.grading import remote

    r, w = os.pipe()
    link = remote.Link(r, w)
    import torch

    value = {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3), "pair": (1, "a"), "n": None}
    assert torch.equal(link.decode(link.encode(value))["x"], value["x"])
    assert link.decode(link.encode(value))["pair"] == (1, "a")
    for hostile in ({"t": "pickle", "data": "gASV"}, {"t": "tensor", "dtype": "object", "shape": [1], "data": ""},
                    {"t": "tensor", "dtype": "float32", "shape": [4], "data": "AAAA"}):
        with pytest.raises(remote.ChannelError):
            link.decode(hostile)
    os.write(w, (remote.MAX_MESSAGE_BYTES + 1).to_bytes(8, "big"))
    with pytest.raises(remote.ChannelError, match="MiB"):
        link.recv()
    os.close(r)
    os.close(w)
