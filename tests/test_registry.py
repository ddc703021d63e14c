import pytest
import transformers

import vlmstudy
from vlmstudy import settings
from vlmstudy.errors import UnknownModelError, VlmStudyError
from vlmstudy.zoo.registry import CARDS, _aliases, get_card


def test_unknown_name_lists_close_matches_and_known_models():
    with pytest.raises(UnknownModelError) as info:
        get_card("clp")
    message = str(info.value)
    assert "'clp'" in message and "Did you mean" in message and "'clip'" in message
    for card in CARDS:
        assert card.name in message
    assert isinstance(info.value, VlmStudyError) and isinstance(info.value, KeyError)
    assert not message.startswith('"')  # not KeyError's quoted repr


def test_close_match_for_a_misspelt_hub_id():
    with pytest.raises(UnknownModelError, match="openai/clip-vit-base-patch32"):
        get_card("openai/clip-vit-base-patch16")


def test_unknown_name_through_load_fails_before_anything_heavy():
    with pytest.raises(UnknownModelError):
        vlmstudy.load("gpt-5-vision")


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_card_classes_exist_in_transformers(card):
    assert hasattr(transformers, card.model_class), card.model_class
    assert hasattr(transformers, card.processor_class), card.processor_class


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_aliases_find_the_card(card):
    for alias in (card.name, card.hub_id, card.hub_id.upper(), card.stand_in, card.hub_id.split("/")[-1],
                  f"  {card.name}  "):
        assert get_card(alias) is card
    assert card.stand_in_dir == settings.MODELS_DIR / card.stand_in


def test_names_and_aliases_are_unique():
    assert len({c.name for c in CARDS}) == len(CARDS)
    assert len({c.stand_in for c in CARDS}) == len(CARDS)
    seen: dict[str, str] = {}
    for card in CARDS:
        for alias in _aliases(card):
            assert seen.setdefault(alias, card.name) == card.name, f"{alias!r} names two cards"


def test_model_names_in_syllabus_order():
    assert vlmstudy.model_names() == [c.name for c in CARDS]
    assert vlmstudy.model_names()[0] == "clip"
