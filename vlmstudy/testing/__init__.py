"""Test helpers that ship with the package: :mod:`vlmstudy.testing.hubsim`, a simulated Hugging Face
Hub cache for running the course in ``hub`` mode with no network."""

from .hubsim import HUBSIM_VERSION, build_hub_cache, hub_environment

__all__ = ["HUBSIM_VERSION", "build_hub_cache", "hub_environment"]
