"""``import vlmstudy`` and ``vlmstudy --version`` / ``--help`` stay light (issue 23): torch,
transformers and matplotlib load only when a command or a name that needs them is used. Each check
runs in a fresh interpreter, since this one has long imported them all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "transformers", "matplotlib")

_REPORT = """
import json, sys
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after(code: str, env: dict[str, str]) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + _REPORT.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_vlmstudy_is_light(subprocess_env):
    assert _heavy_after("import vlmstudy, vlmstudy.cli, vlmstudy.settings, vlmstudy.errors", subprocess_env) == []


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["exercises", "--help"], ["zoo", "--help"],
                                  ["finetune", "--help"], ["serve", "--help"]])
def test_cli_version_and_help_are_light(subprocess_env, argv):
    code = f"""
        import contextlib, io
        from vlmstudy.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main({argv!r})
            except SystemExit as stop:
                assert stop.code == 0, stop.code
        assert "vlmstudy" in out.getvalue() or "usage" in out.getvalue(), out.getvalue()
    """
    assert _heavy_after(code, subprocess_env) == []


@pytest.mark.slow  # imports torch and everything else in a fresh interpreter
def test_the_probe_sees_a_heavy_import(subprocess_env):
    """The check above can fail: reading a name that needs torch does import it."""
    assert "torch" in _heavy_after("import vlmstudy; vlmstudy.seed_everything(0)", subprocess_env)


@pytest.mark.slow  # imports torch and everything else in a fresh interpreter
def test_every_public_name_resolves(subprocess_env):
    code = """
        import types, vlmstudy
        missing = [n for n in vlmstudy.__all__ if not hasattr(vlmstudy, n)]
        assert not missing, missing
        assert set(vlmstudy.__all__) <= set(dir(vlmstudy)), set(vlmstudy.__all__) - set(dir(vlmstudy))
        assert isinstance(vlmstudy.shapes, types.ModuleType) and vlmstudy.shapes.__name__ == "vlmstudy.shapes"
        assert vlmstudy.load is vlmstudy.zoo.loading.load and callable(vlmstudy.caption)
        assert vlmstudy.settings.get_mode() == "tiny"
        from vlmstudy import finetune, grading, zoo
        for package in (finetune, grading, zoo):
            gone = [n for n in package.__all__ if not hasattr(package, n)]
            assert not gone, (package.__name__, gone)
        try:
            vlmstudy.no_such_name
        except AttributeError as err:
            assert "no_such_name" in str(err)
        else:
            raise AssertionError("an unknown name resolved")
    """
    _heavy_after(code, subprocess_env)
