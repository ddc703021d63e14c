"""vlmstudy.image_tokens and vlmstudy.mrope against the installed transformers (notebook 14).

Every formula must equal the number of image tokens the real processor class writes into
``input_ids``, with the real checkpoint's numbers, for many picture sizes. The processors are
built here from those numbers and the tiny LLaVA's tokenizer (no download); the hub-marked test
checks that the simulated Hub's processor files hold the same numbers.
"""

from __future__ import annotations

import random

import pytest
import torch

from vlmstudy import image_tokens as it
from vlmstudy import mrope
from vlmstudy.errors import ConfigError
from vlmstudy.settings import MODELS_DIR

LLAVA, NEXT = "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"
SMOL, QWEN = "HuggingFaceTB/SmolVLM-256M-Instruct", "Qwen/Qwen2-VL-2B-Instruct"
SIZES = [(64, 64), (336, 336), (100, 700), (700, 100), (480, 640), (1000, 1100), (2000, 300), (37, 53)]


def _random_sizes(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(12, 1600), rng.randint(12, 1600)) for _ in range(n)]


def _tokenizer(*extra: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODELS_DIR / "tiny-llava")
    if extra:
        tok.add_special_tokens({"additional_special_tokens": list(extra)})
    return tok


def _llava(s):
    from transformers import CLIPImageProcessor, LlavaProcessor

    ip = CLIPImageProcessor(size={"shortest_edge": s["image_size"]},
                            crop_size={"height": s["image_size"], "width": s["image_size"]})
    return LlavaProcessor(image_processor=ip, tokenizer=_tokenizer(), patch_size=s["patch_size"],
                          vision_feature_select_strategy=s["strategy"],
                          num_additional_image_tokens=s["num_additional_image_tokens"], image_token="<image>")


def _next(s):
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    ip = LlavaNextImageProcessor(size={"shortest_edge": s["tile"]}, crop_size={"height": s["tile"], "width": s["tile"]},
                                 image_grid_pinpoints=s["pinpoints"])
    return LlavaNextProcessor(image_processor=ip, tokenizer=_tokenizer(), patch_size=s["patch_size"],
                              vision_feature_select_strategy=s["strategy"],
                              num_additional_image_tokens=s["num_additional_image_tokens"], image_token="<image>")


def _smol(s):
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    tok = _tokenizer("<global-img>", *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])
    ip = Idefics3ImageProcessorPil(size={"longest_edge": s["longest_edge"]}, max_image_size={"longest_edge": s["tile"]},
                                   do_image_splitting=s["do_image_splitting"], do_resize=s["do_resize"])
    return Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=s["image_seq_len"])


def _qwen(s, monkeypatch):
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    # without torchvision transformers cannot build Qwen2-VL's *video* processor, and the processor
    # class insists on one; the image path never uses it, so let it be None here
    check = ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class",
                        lambda self, name, arg: None if arg is None else check(self, name, arg))
    ip = Qwen2VLImageProcessorPil(min_pixels=s["min_pixels"], max_pixels=s["max_pixels"], patch_size=s["patch_size"],
                                  merge_size=s["merge_size"], temporal_patch_size=2)
    return Qwen2VLProcessor(image_processor=ip, tokenizer=_tokenizer("<|image_pad|>", "<|video_pad|>"),
                            video_processor=None)


def _build(kind: str, settings: dict, monkeypatch):
    return {"fixed": _llava, "anyres": _next, "split": _smol}[kind](settings) if kind != "dynamic" \
        else _qwen(settings, monkeypatch)


def _assert_counts(scheme, processor, sizes):
    wrong = [(h, w, it.count(scheme, h, w), it.processor_count(processor, h, w)) for h, w in sizes]
    wrong = [row for row in wrong if row[2] != row[3]]
    assert not wrong, f"{scheme.label}: (height, width, formula, processor) differ: {wrong}"


@pytest.mark.parametrize("hub_id, sizes", [
    (LLAVA, SIZES[:4]),
    (NEXT, SIZES + _random_sizes(12, 1)),
    (SMOL, [(64, 64), (100, 700), (1000, 1100), (2000, 300)]),   # each one is upscaled to 2048 px: slow
    (QWEN, SIZES + _random_sizes(12, 2)),
])
def test_formula_equals_the_real_processor(hub_id, sizes, monkeypatch):
    scheme = it.REAL_SCHEMES[hub_id]
    processor = _build(scheme.kind, scheme.settings, monkeypatch)
    assert it.scheme_from_processor(processor).settings == scheme.settings   # read back from the processor
    _assert_counts(scheme, processor, sizes)


@pytest.mark.parametrize("kind, settings", [
    # SmolVLM without the resize: tile rounding of both sides (small numbers, fast)
    ("split", {"longest_edge": 64, "tile": 32, "image_seq_len": 4, "do_image_splitting": True, "do_resize": False}),
    ("split", {"longest_edge": 96, "tile": 32, "image_seq_len": 9, "do_image_splitting": True, "do_resize": True}),
    ("split", {"longest_edge": 64, "tile": 32, "image_seq_len": 4, "do_image_splitting": False, "do_resize": True}),
    # Qwen2-VL with a small pixel budget: the max_pixels branch for most sizes, min_pixels for tiny ones
    ("dynamic", {"patch_size": 14, "merge_size": 2, "min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 64}),
    # the tiny LLaVA-NeXT's numbers
    ("anyres", {"tile": 64, "patch_size": 8, "num_additional_image_tokens": 1, "strategy": "default",
                "pinpoints": [[64, 64], [64, 128], [128, 64], [128, 128]]}),
])
def test_formula_with_other_settings(kind, settings, monkeypatch):
    scheme = it.TokenScheme("other", "", kind, settings)
    sizes = [(20, 20), (33, 70), (70, 33), (64, 64), (65, 64), (90, 17), (140, 150)] + _random_sizes(6, 3)
    _assert_counts(scheme, _build(kind, settings, monkeypatch), [(min(h, 300), min(w, 300)) for h, w in sizes])


def test_known_numbers():
    assert it.count("llava", 64, 64) == it.count("llava", 1000, 3000) == 576
    assert it.count("llava-next", 336, 336) == 576 + 576 + 24 and it.count("llava-next", 672, 672) == 2928
    assert it.count("SmolVLM-256M", 512, 512) == 64 * 17   # upscaled to 2048: 4 x 4 tiles + the global image
    assert it.count(QWEN, 224, 224) == 64 and it.count(QWEN, 28, 28) == 4   # (224 / 14)**2 / 4; min_pixels 3136
    assert it.split_grid(300, 2000) == (1, 4)
    assert it.dynamic_resize(480, 640) == (476, 644)


def test_schemes_agree_with_the_registry_cards():
    from vlmstudy.zoo.registry import get_card

    llava = get_card("llava").real_config
    assert it.REAL_SCHEMES[LLAVA].settings["image_size"] == llava["vision_config"]["image_size"]
    assert it.REAL_SCHEMES[LLAVA].settings["patch_size"] == llava["vision_config"]["patch_size"]
    assert it.count("llava", 10, 10) == llava["image_seq_length"]
    nxt = get_card("llava-next").real_config
    assert it.REAL_SCHEMES[NEXT].settings["pinpoints"] == nxt["image_grid_pinpoints"]
    assert it.real_scheme("llava-next") is it.REAL_SCHEMES[NEXT]


def test_bad_input_gets_one_line_errors():
    with pytest.raises(ConfigError, match="at least 1 x 1"):
        it.count("llava", 0, 10)
    with pytest.raises(ConfigError, match="two whole numbers"):
        it.count("qwen2-vl-2b", "tall", 10)
    with pytest.raises(ConfigError, match="No image-token scheme.*Known"):
        it.real_scheme("gpt-4v")
    with pytest.raises(ConfigError, match="200 times"):
        it.count(QWEN, 10, 3000)
    with pytest.raises(ConfigError, match="no image-token scheme here"):
        it.scheme_from_processor(object())


def test_token_table_rows():
    rows = it.token_table([(64, 64), (672, 1344)])
    assert [r["size"] for r in rows] == ["64 x 64", "672 x 1344"]
    assert rows[1]["LLaVA-1.5"] == 576 and rows[1]["LLaVA-NeXT"] > rows[0]["LLaVA-NeXT"]
    assert rows[1]["Qwen2-VL-2B"] == it.qwen2_vl_tokens(672, 1344) == (672 // 14) * (1344 // 14) // 4


def test_mrope_positions_from_get_rope_index():
    r = mrope.positions(grid=(3, 4), text_before=4, text_after=3)
    ids, kinds = r["ids"], r["kinds"]
    assert ids.shape == (3, 4 + 12 + 3) and r["grid_thw"] == [1, 6, 8]
    text = [i for i, k in enumerate(kinds) if k == "text"]
    assert all(ids[0, i] == ids[1, i] == ids[2, i] for i in text)      # text: one position in all three rows
    assert ids[:, :4].tolist() == [[0, 1, 2, 3]] * 3
    image = ids[:, 4:16]
    assert (image[0] == 4).all()                                     # one picture: one temporal position
    assert image[1].tolist() == [4 + r for r in range(3) for _ in range(4)]   # rows
    assert image[2].tolist() == [4 + c for _ in range(3) for c in range(4)]   # columns
    assert ids[0, 16:].tolist() == [8, 9, 10]                        # text resumes after the largest id (4 + 4)
    assert r["sequential"][-1] == 18 and int(ids.max()) == 10        # fewer positions than tokens


def test_mrope_bad_grid():
    with pytest.raises(ConfigError, match="at least 1 x 1"):
        mrope.positions(grid=(0, 3))


def test_notebook_13_pixel_shuffle_is_idefics3s():
    projectors = pytest.importorskip("vlmstudy.assemble.projectors")
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

    x = torch.randn(2, 64, 3)
    for scale in (2, 4):
        assert torch.equal(projectors.pixel_shuffle(x, scale), Idefics3Connector.pixel_shuffle(None, x, scale))


@pytest.mark.hub
@pytest.mark.slow
def test_simulated_hub_processors_hold_the_real_numbers(tmp_path):
    from vlmstudy.testing.hubsim import build_hub_cache
    from vlmstudy.zoo.loading import _auto_processor  # AutoProcessor, and Qwen2-VL's without torchvision
    from vlmstudy.zoo.registry import ALL_CARDS

    cards = [c for c in ALL_CARDS if c.hub_id in it.REAL_SCHEMES]
    build_hub_cache(tmp_path, names=[c.name for c in cards])
    for card in cards:
        snapshots = list((tmp_path / "hub" / ("models--" + card.hub_id.replace("/", "--")) / "snapshots").iterdir())
        processor = _auto_processor(str(snapshots[0]), card)
        assert it.scheme_from_processor(processor).settings == it.REAL_SCHEMES[card.hub_id].settings, card.name
