"""environment_report(): the rows the notebook and `vlmstudy doctor` show."""

import io

import pytest

import vlmstudy
from vlmstudy import cli, doctor, settings


@pytest.fixture
def few_packages(monkeypatch):
    """Check only faiss (fast to import) and one package that does not exist."""
    monkeypatch.setattr(doctor, "PACKAGES", (
        ("faiss", "faiss", "faiss-cpu", True),
        ("nothere", "vlmstudy_not_a_package", "vlmstudy-not-a-package", True),
        ("optional", "vlmstudy_not_a_package_either", "vlmstudy-optional", False),
    ))
    monkeypatch.setattr(doctor, "_tested_ranges", lambda: {"vlmstudy-not-a-package": ">=1,<2"})


def _rows(report):
    return {item: (value, status) for item, value, status in report}


def test_missing_required_package_fails_with_the_pip_fix(few_packages):
    report = vlmstudy.environment_report(models=["clip"])
    assert all(isinstance(r, tuple) and len(r) == 3 and all(isinstance(x, str) for x in r) for r in report)
    rows = _rows(report)
    assert rows["nothere"] == ("not installed", "missing -> pip install 'vlmstudy-not-a-package>=1,<2'")
    assert rows["optional"][1].startswith("warn")
    assert rows["faiss"][1] == "ok"
    assert not doctor.report_ok(report)
    buf = io.StringIO()
    assert vlmstudy.print_environment_report(models=["clip"], file=buf) is False
    assert "missing -> pip install" in buf.getvalue()


def test_doctor_command_exits_1_when_a_required_package_is_missing(few_packages, capsys):
    assert cli.main(["doctor", "clip"]) == 1
    assert "nothere" in capsys.readouterr().out


def test_version_outside_the_tested_range_is_a_warning(monkeypatch):
    monkeypatch.setattr(doctor, "PACKAGES", (("faiss", "faiss", "faiss-cpu", True),))
    monkeypatch.setattr(doctor, "_tested_ranges", lambda: {"faiss-cpu": ">=99"})
    report = vlmstudy.environment_report(models=["clip"])
    assert _rows(report)["faiss"][1].startswith("warn: outside the tested range >=99")
    assert doctor.report_ok(report)


def test_tested_ranges_come_from_the_package_metadata():
    ranges = doctor._tested_ranges()
    assert ranges["torch"] == ">=2.4,<2.15" or set(ranges["torch"].split(",")) == {">=2.4", "<2.15"}
    assert "faiss-cpu" in ranges and "nbval" not in ranges  # extras are not requirements


def test_stand_ins_missing_are_warnings_with_both_fixes(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "PACKAGES", ())
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path)
    (tmp_path / "tiny-siglip").mkdir()
    (tmp_path / "tiny-siglip" / "model.safetensors").write_bytes(b"")
    report = vlmstudy.environment_report()
    rows = _rows(report)
    assert rows["model clip"][1] == ("warn: tiny stand-in not built yet -> vlmstudy zoo train clip "
                                     "(or git checkout -- assets/models/tiny-clip)")
    assert rows["model siglip"][1].startswith("ok")
    assert {f"model {c.name}" for c in vlmstudy.CARDS} <= set(rows)
    assert doctor.report_ok(report)


def test_mode_device_and_hub_rows(monkeypatch):
    monkeypatch.setattr(doctor, "PACKAGES", ())
    rows = _rows(vlmstudy.environment_report(models=[]))
    assert rows["mode"][0] == "tiny" and "default" in rows["mode"][1]
    assert rows["device"][0] == vlmstudy.get_device()
    assert rows["HF_HUB_OFFLINE"][0] == "1"
    vlmstudy.set_mode("hub")
    vlmstudy.set_device("cpu")
    rows = _rows(vlmstudy.environment_report(models=["clip"]))
    assert rows["mode"] == ("hub", "ok (set_mode(): real Hugging Face Hub checkpoints)")
    assert "set_device()" in rows["device"][1]
    assert "hub: not cached yet" in rows["model clip"][1]


def test_bad_mode_in_the_environment_is_an_error_row(monkeypatch):
    monkeypatch.setattr(doctor, "PACKAGES", ())
    monkeypatch.setenv("VLMSTUDY_MODE", "huge")
    report = vlmstudy.environment_report(models=["clip"])
    assert _rows(report)["mode"][1].startswith("error")
    assert not doctor.report_ok(report)


def test_unknown_model_name_raises():
    with pytest.raises(vlmstudy.UnknownModelError, match="clp"):
        vlmstudy.environment_report(models=["clp"])


def test_report_lines_fit_and_wrap_between_words():
    """A notebook's output area wraps over-long lines wherever the cell ends, mid-word: the
    report breaks its own lines, between words, within doctor.REPORT_WIDTH."""
    from vlmstudy import doctor

    long_status = "ok (auto; CUDA: not available, MPS: not available; the tiny models run fine on a CPU)"
    text = doctor.format_report([("device", "cpu", long_status), ("model x", "tiny-x <- org/" + "y" * 50, "ok (present)")])
    lines = text.splitlines()
    assert all(len(line) <= doctor.REPORT_WIDTH for line in lines), lines
    assert len(lines) > 4, "the long status continues on further lines"
    assert all(word in text.split() for word in long_status.split()), "every word whole, none broken"
