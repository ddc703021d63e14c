"""Where a model name loads from: :func:`resolve_source` (a saved folder, a tiny stand-in or a
Hub id), with nothing loaded. :func:`vlmstudy.zoo.loading.load` and the memory estimates of
:mod:`vlmstudy.zoo.hub_guard` both start here.
"""

from __future__ import annotations

from pathlib import Path

from .. import settings
from ..errors import ModelUnavailableError, UnknownModelError
from .registry import ModelCard, get_card

__all__ = ["resolve_source"]


def resolve_source(name: str, mode: str | None = None) -> tuple[str, ModelCard | None]:
    """Where ``name`` loads from: ``(path_or_hub_id, card)``.

    A directory on disk (for example a fine-tuned or merged model) is used as it is, with no card.
    """
    folder = Path(str(name)).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if config_file.is_file():
            _check_config_json(config_file)
            return str(folder), None
        if not _is_card_name(name):
            raise ModelUnavailableError(
                f"The folder {str(folder)!r} holds no config.json, so it is not a saved model. Point at the "
                f"folder that `save_pretrained` wrote (it has config.json and *.safetensors), or use a model "
                f"name from `vlmstudy.zoo_table()`."
            )
    card = get_card(name)
    mode = settings.check_mode(mode) if mode else settings.get_mode()
    if mode == "hub":
        return card.hub_id, card
    if not card.has_stand_in:
        raise ModelUnavailableError(
            f"{card.hub_id} has no tiny stand-in (its card says 'no stand-in'), so it loads in hub mode only: "
            f"vlmstudy.set_mode('hub') or VLMSTUDY_MODE=hub. In tiny mode use a syllabus model "
            f"(vlmstudy.zoo_table() lists them).")
    if not card.is_present():
        raise ModelUnavailableError(
            f"The tiny stand-in for {card.name!r} is missing from {card.stand_in_dir}. "
            f"Restore it with `git checkout -- assets/models/{card.stand_in}` or retrain it with "
            f"`vlmstudy zoo train {card.name}`."
        )
    return str(card.stand_in_dir), card


def _is_card_name(name: str) -> bool:
    try:
        get_card(name)
    except UnknownModelError:
        return False
    return True


def _check_config_json(config_file: Path) -> None:
    """Refuse a cut or garbled config.json with one line naming it (transformers raises JSONDecodeError)."""
    import json

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelUnavailableError(
            f"{str(config_file)!r} is not valid JSON ({str(err).splitlines()[0][:120]}): the file is cut or "
            f"damaged. Save the model again with `save_pretrained` or restore the folder from its source."
        ) from None
    if not isinstance(config, dict):
        raise ModelUnavailableError(
            f"{str(config_file)!r} holds a JSON {type(config).__name__}, not an object: it is not a model "
            f"config. Save the model again with `save_pretrained`."
        )
