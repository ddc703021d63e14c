"""pyproject.toml and environment.yml describe the same environment."""

import re

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


@pytest.fixture
def pyproject(repo):
    return tomllib.loads((repo / "pyproject.toml").read_text())


@pytest.fixture
def conda_env(repo):
    return yaml.safe_load((repo / "environment.yml").read_text())


def _canon(requirements):
    out = {}
    for line in requirements:
        req = Requirement(line)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name not in out, f"{name} listed twice"
        out[name] = SpecifierSet(str(req.specifier))
    return out


def _pip_section(conda_env):
    sections = [d["pip"] for d in conda_env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    return sections[0]


def test_environment_yml_and_pyproject_list_the_same_dependencies(pyproject, conda_env):
    pip_lines = [line for line in _pip_section(conda_env) if not line.startswith("-")]
    assert _canon(pip_lines) == _canon(pyproject["project"]["dependencies"])


def test_environment_yml_installs_this_package_editable_with_existing_extras(pyproject, conda_env):
    editable = [line for line in _pip_section(conda_env) if line.startswith("-e ")]
    assert len(editable) == 1
    match = re.fullmatch(r"-e \.\[([a-z,]+)\]", editable[0])
    assert match, editable[0]
    extras = set(match.group(1).split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"])
    assert "test" in extras


def test_conda_python_satisfies_requires_python(pyproject, conda_env):
    pythons = [d for d in conda_env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1
    version = pythons[0].split("=", 1)[1]
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(version + ".0")
    assert conda_env["name"] == "vlmstudy"


def test_installed_versions_are_inside_the_tested_ranges(pyproject):
    from importlib.metadata import PackageNotFoundError, version

    for name, spec in _canon(pyproject["project"]["dependencies"]).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is a dependency but is not installed")
        assert spec.contains(installed, prereleases=True), f"{name} {installed} is outside {spec}"


def test_the_pinned_cpu_torch_is_admitted(pyproject):
    torch_spec = _canon(pyproject["project"]["dependencies"])["torch"]
    assert torch_spec.contains("2.13.0") and torch_spec.contains("2.13.0+cpu")


def test_extras_and_console_script(pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    assert {"test", "serve", "demo", "all"} <= set(extras)
    assert {Requirement(r).name for r in extras["test"]} >= {"pytest", "nbval", "httpx"}
    assert pyproject["project"]["scripts"]["vlmstudy"] == "vlmstudy.cli:main"
