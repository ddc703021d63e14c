"""Errors that tell a learner what went wrong and what to do next.

Every error the package raises on bad input is a :class:`VlmStudyError`; its message is one
paragraph: what was wrong, then the fix. The CLI prints it as one line on stderr.
"""

from __future__ import annotations


class VlmStudyError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class UnknownModelError(VlmStudyError, KeyError):
    """A model name that is not in the zoo registry."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class ModelUnavailableError(VlmStudyError):
    """A model that cannot be loaded here (no network, no cache, missing stand-in)."""


class InsufficientMemoryError(ModelUnavailableError):
    """A checkpoint whose estimated footprint does not fit in the free RAM / GPU memory."""


class ImageError(VlmStudyError, ValueError):
    """An image that cannot be read or converted."""


class NotAnImageError(ImageError):
    """Data that is not an image in one of the accepted formats (checked by content, not by name)."""


class ImageTooLargeError(ImageError):
    """An image over the size limit (bytes or pixels), refused before it is decoded."""


class DataFormatError(VlmStudyError, ValueError):
    """A dataset file that does not follow one of the course's JSON formats."""


class ConfigError(VlmStudyError, ValueError):
    """A configuration value that is missing or not allowed."""


class PlotError(VlmStudyError, ValueError):
    """Data a plotting function cannot draw (wrong length, shape or values); the message says which."""


class CheckpointError(VlmStudyError):
    """A fine-tuning checkpoint that is damaged, incomplete or not in the course's format."""


def check_positive_int(value, name: str, error: type[VlmStudyError] = ConfigError) -> int:
    """``value`` when it is an ``int`` of at least 1; otherwise ``error`` (a :class:`ConfigError`
    by default) saying ``"<name> must be a positive integer (got <value>)."``."""
    if not isinstance(value, int) or value < 1:
        raise error(f"{name} must be a positive integer (got {value!r}).")
    return value
