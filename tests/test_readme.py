"""README.md, course.sh and .ci/run tell the same story."""

import re
import subprocess

import pytest

from vlmstudy.zoo.registry import CARDS


@pytest.fixture
def readme(repo):
    return (repo / "README.md").read_text()


def _blocks(text):
    return re.findall(r"```(?:bash|python)?\n(.*?)```", text, flags=re.S)


def _commands(block):
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_quickstart_is_two_commands(readme):
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert _commands(_blocks(quickstart)[0]) == ["./course.sh", "./course.sh test"]


def test_ci_runs_the_readme_test_command(repo, readme):
    marked = re.findall(r"<!-- test-command -->\n(.*?)<!-- /test-command -->", readme, flags=re.S)
    assert len(marked) == 1
    commands = _commands("".join(_blocks(marked[0])))
    assert commands == ["./course.sh test"]
    ci = (repo / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and 'eval "$test_command"' in ci and "pytest" not in ci.split("set -euo")[1]
    # the extraction .ci/run does, run for real
    awk = re.search(r"test_command=\"\$\((awk .*? README\.md)\)\"", ci).group(1)
    out = subprocess.run(["bash", "-c", awk], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == commands[0]


def test_readme_shows_what_course_test_runs(repo, readme):
    script = (repo / "course.sh").read_text()
    pytest_args = re.search(r'^PYTEST_ARGS="(.*)"$', script, flags=re.M).group(1)
    assert f"\n.venv/bin/python {pytest_args}\n" in readme
    assert "tests notebooks" in pytest_args and "--nbval-lax" in pytest_args


def test_readme_documents_the_course_script_options(repo, readme):
    script = (repo / "course.sh").read_text()
    for option in ("--headless", "--port", "--setup-only"):
        assert option in script and option in readme
    assert "--no-browser --ip 127.0.0.1" in script
    assert "pip install torch==2.13.0" in readme and "torch==2.13.0" in script


def test_readme_routes_and_modes(readme):
    assert "conda env create -f environment.yml && conda activate vlmstudy && jupyter lab" in readme
    assert "VLMSTUDY_MODE=hub" in readme and 'vlmstudy.set_mode("hub")' in readme


def test_syllabus_names_every_hub_model(readme):
    syllabus = readme.split("## Syllabus", 1)[1].split("\n## ", 1)[0]
    for card in CARDS:
        assert f"`{card.hub_id}`" in syllabus, card.hub_id
    for number in range(13):
        assert f"\n| {number:02d} " in syllabus


def test_assets_readme_names_every_stand_in(repo):
    text = (repo / "assets" / "README.md").read_text()
    for card in CARDS:
        assert f"`{card.stand_in}`" in text, card.stand_in


def test_the_fine_tuning_guides_commands_parse_as_written(repo, readme):
    """Issue 20: every command of the README's guide section is one the CLI accepts (they run for
    real, on the tiny models, in tests/test_finetune_guide.py and notebook 11)."""
    import shlex

    from vlmstudy.cli import build_parser

    section = readme.split("### The fine-tuning guide's workflow", 1)[1].split("\n## ", 1)[0]
    lines = [c for block in _blocks(section) for c in _commands(block) if c.startswith("vlmstudy ")]
    assert {shlex.split(c)[1] for c in lines} == {"data", "finetune", "infer"}
    parser = build_parser(["vlmstudy.finetune.commands", "vlmstudy.infer_command"])
    for line in lines:
        assert callable(parser.parse_args(shlex.split(line)[1:]).func), line
    assert (repo / "configs" / "multimodal_config.yaml").is_file()
    assert "MultiModalModel(model_name=" in section and "create_sample_multimodal_dataset(" in section
