import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import vlmstudy
from vlmstudy import cli
from vlmstudy.errors import ConfigError


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "vlmstudy", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vlmstudy {vlmstudy.__version__}"


def test_console_script_is_installed(subprocess_env, tmp_path):
    script = Path(sys.executable).parent / "vlmstudy"
    if not script.exists():
        pytest.skip("vlmstudy is not pip-installed in this environment (pip install -e .)")
    env = {k: v for k, v in subprocess_env.items() if k != "PYTHONPATH"}  # the installed package only
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"vlmstudy {vlmstudy.__version__}"


@pytest.mark.slow  # a fresh interpreter
def test_doctor_exits_0_and_reports_torch(subprocess_env, tmp_path):
    out = run_cli("doctor", env=subprocess_env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert torch.__version__ in out.stdout
    for item in ("python", "transformers", "peft", "bitsandbytes", "faiss", "jupyterlab", "device", "mode",
                 "HF_HUB_OFFLINE", "model clip"):
        assert f"\n{item} " in out.stdout, item
    assert "Failed to load" not in out.stdout + out.stderr  # import-time chatter is swallowed


def test_unknown_model_is_one_line_on_stderr_with_exit_2(subprocess_env, tmp_path):
    out = run_cli("doctor", "clp", env=subprocess_env, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: Unknown model 'clp'") and "'clip'" in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_zoo_commands_module_is_registered():
    assert "vlmstudy.doctor" in cli.COMMAND_MODULES
    assert "vlmstudy.zoo.commands" in cli.COMMAND_MODULES


# --- how feature modules plug in ------------------------------------------------------------------

def _fake_module(monkeypatch, name, func):
    module = types.ModuleType(name)

    def add_commands(subparsers):
        parser = subparsers.add_parser("fake")
        parser.add_argument("--n", type=int, default=0)
        parser.set_defaults(func=func)

    module.add_commands = add_commands
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [name, "vlmstudy.not_written_yet", "vlmstudy.nopackage.commands"])


def test_a_module_registers_a_subcommand_and_missing_modules_are_skipped(monkeypatch):
    _fake_module(monkeypatch, "vlmstudy_fake_feature", lambda args: args.n)
    assert cli.main(["fake", "--n", "3"]) == 3
    assert cli.main(["fake"]) == 0


def test_user_errors_are_one_line_with_exit_2(monkeypatch, capsys):
    def fail(args):
        raise ConfigError("first line\nsecond   line")

    _fake_module(monkeypatch, "vlmstudy_fake_feature", fail)
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == "error: first line second line\n"


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    _fake_module(monkeypatch, "vlmstudy_fake_feature", interrupted)
    assert cli.main(["fake"]) == 130


def test_programming_errors_are_not_swallowed(monkeypatch):
    def broken(args):
        raise RuntimeError("bug")

    _fake_module(monkeypatch, "vlmstudy_fake_feature", broken)
    with pytest.raises(RuntimeError):
        cli.main(["fake"])


def test_a_missing_dependency_inside_an_existing_module_surfaces(monkeypatch, tmp_path):
    (tmp_path / "vlmstudy_broken_feature.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["vlmstudy_broken_feature"])
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        cli.main(["--help"])


def test_a_module_without_add_commands_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "vlmstudy_no_hook", types.ModuleType("vlmstudy_no_hook"))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["vlmstudy_no_hook"])
    with pytest.raises(TypeError, match="add_commands"):
        cli.main([])


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "doctor" in capsys.readouterr().out
