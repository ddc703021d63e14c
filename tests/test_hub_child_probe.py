"""Run by tests/test_hub_mode.py in a child pytest (skipped in the normal suite): the repository's
conftest.py must leave that child in hub mode on the simulated Hub, or every "hub-mode" notebook run
would quietly run in tiny mode."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("VLMSTUDY_HUBSIM_CHILD"), reason="only inside a hub-mode child run")


def test_the_child_is_in_hub_mode_on_the_simulated_hub():
    import vlmstudy

    assert vlmstudy.get_mode() == "hub"
    assert os.environ["HF_HOME"] == os.environ["VLMSTUDY_HUBSIM_CHILD"]
    assert os.path.isdir(os.path.join(os.environ["HF_HOME"], "hub"))
