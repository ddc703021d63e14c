"""vlmstudy.assemble: a VLM from its parts (issue 24, notebook 13).

Projector shapes and token counts, pixel shuffle's inverse and neighbourhoods, the joints'
shapes, stage 1 training only the projector, and the save / load round trip."""

from __future__ import annotations

import pytest
import torch

from vlmstudy import shapes
from vlmstudy.errors import ConfigError


@pytest.fixture(scope="module")
def parts():
    from transformers import CLIPModel

    from vlmstudy.zoo.train_shapes_lm import shapes_lm_model, shapes_lm_tokenizer

    clip = CLIPModel.from_pretrained("assets/models/tiny-clip", dtype=torch.float32)
    torch.manual_seed(0)
    return clip, shapes_lm_model(), shapes_lm_tokenizer


def _assemble(parts, kind, image_tokens=None):
    from vlmstudy.assemble import assemble_llava

    clip, lm, make_tok = parts
    return assemble_llava(clip, lm, make_tok(), projector=kind, image_tokens=image_tokens)


def _image():
    return shapes.make_scenes("test", 1, seed=3)[0].render(64)


def test_pixel_shuffle_groups_neighbourhoods_and_inverts():
    from vlmstudy.assemble import pixel_shuffle, pixel_unshuffle

    g, c, r = 8, 3, 2
    x = torch.randn(2, g * g, c)
    y = pixel_shuffle(x, r)
    assert y.shape == (2, g * g // r**2, c * r**2)
    grid = x.reshape(2, g, g, c)
    # output token (i, j) holds patches (2i + a, 2j + b), a outer, b inner
    for i, j in [(0, 0), (1, 2), (3, 3)]:
        expected = torch.cat([grid[:, r * i + a, r * j + b] for a in range(r) for b in range(r)], dim=-1)
        assert torch.equal(y[:, i * (g // r) + j], expected)
    assert torch.equal(pixel_unshuffle(y, r), x)
    assert pixel_shuffle(x, 4).shape == (2, 4, c * 16)
    with pytest.raises(ConfigError, match="must divide"):
        pixel_shuffle(x, 3)
    with pytest.raises(ConfigError, match="square grid"):
        pixel_shuffle(torch.randn(1, 65, 4), 2)  # CLS still attached


def test_projector_spec_token_counts_and_errors():
    from vlmstudy.assemble import projector_spec

    assert projector_spec("mlp", 64) == {"kind": "mlp", "scale": 1, "image_tokens": 64}
    assert projector_spec("pixel_shuffle", 64) == {"kind": "pixel_shuffle", "scale": 2, "image_tokens": 16}
    assert projector_spec("pixel_shuffle", 64, 4)["scale"] == 4
    assert projector_spec("pixel_shuffle", 576, 64)["scale"] == 3  # LLaVA-1.5's 24 x 24 grid
    with pytest.raises(ConfigError, match="possible token counts: \\[16, 4, 1\\]"):
        projector_spec("pixel_shuffle", 64, 32)
    with pytest.raises(ConfigError, match="pixel_shuffle"):
        projector_spec("mlp", 64, 16)
    with pytest.raises(ConfigError, match="choose one of"):
        projector_spec("qformer", 64)


@pytest.mark.parametrize("kind,tokens", [("linear", 64), ("mlp", 64), ("pixel_shuffle", 16)])
def test_assembled_shapes_at_every_joint(parts, kind, tokens):
    from transformers import LlavaForConditionalGeneration

    from vlmstudy.assemble import image_token_count, shapes_at_every_joint

    model, processor = _assemble(parts, kind)
    assert type(model) is LlavaForConditionalGeneration
    assert image_token_count(processor) == tokens == model.config.image_seq_length
    rows = {r["joint"]: r["shape"] for r in shapes_at_every_joint(model, processor, _image(), show=False)}
    assert rows["pixels"] == (1, 3, 64, 64)
    assert rows["patches"] == (1, 64, 3 * 8 * 8)
    assert rows["vision tower"] == (1, 65, 128)
    assert rows["selected features"] == (1, 64, 128)
    assert rows["projected tokens"] == (1, tokens, 128)
    assert rows["LM input embeddings"][1] == rows["prompt ids"][1]
    # the parts' weights were copied in
    clip, lm, _ = parts
    assert torch.equal(model.model.vision_tower.embeddings.patch_embedding.weight,
                       clip.vision_model.embeddings.patch_embedding.weight)
    assert torch.equal(model.lm_head.weight, lm.lm_head.weight)


def test_linear_projector_is_a_linear_map(parts):
    model, _ = _assemble(parts, "linear")
    proj = model.model.multi_modal_projector
    x, y = torch.randn(1, 4, 128), torch.randn(1, 4, 128)
    with torch.no_grad():
        assert torch.allclose(proj(x + y) - proj(y), proj(x) - proj(torch.zeros_like(x)), atol=1e-5)


@pytest.mark.slow  # a training loop (test tiers, issue 23)
def test_stage1_trains_only_the_projector(parts):
    from vlmstudy.assemble import StageConfig, train_stage1

    model, processor = _assemble(parts, "pixel_shuffle")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_stage1(model, processor, StageConfig(steps=3, batch=4, pool=16, warmup=1, eval_n=0), progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("multi_modal_projector" in k for k in changed), sorted(changed)[:5]
    assert {k for k in before if "multi_modal_projector" in k} == changed
    assert result.trainable == sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    assert result.history and result.history[0]["stage"] == "stage 1 (projector)"


@pytest.mark.slow
def test_stage2_trains_the_language_model_and_keeps_the_tower(parts):
    from vlmstudy.assemble import LiveLossPlot, StageConfig, train_stage2

    model, processor = _assemble(parts, "mlp")
    tower = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    lm = model.lm_head.weight.clone()
    plot = LiveLossPlot(display=False)
    result = train_stage2(model, processor, StageConfig(steps=3, batch=4, pool=16, warmup=1, eval_n=4),
                          progress=False, plot=plot)
    assert all(torch.equal(v, model.model.vision_tower.state_dict()[k]) for k, v in tower.items())
    assert not torch.equal(lm, model.lm_head.weight)
    assert [s for s, _ in plot.losses["stage 2 (instructions)"]] == [0, 1, 2]
    assert set(result.accuracy) >= {"overall"} and all(0 <= v <= 1 for v in result.accuracy.values())


@pytest.mark.parametrize("kind", ["mlp", "pixel_shuffle"])
def test_save_load_round_trip_same_logits(parts, kind, tmp_path):
    import vlmstudy
    from vlmstudy.assemble import save_vlm
    from vlmstudy.generation import chat_prompt

    model, processor = _assemble(parts, kind)
    with torch.no_grad():  # a non-trivial projector, so a dropped weight would show
        for p in model.model.multi_modal_projector.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_vlm(model, processor, tmp_path / kind)
    loaded, proc2 = vlmstudy.load(str(tmp_path / kind), device="cpu", dtype=torch.float32)
    assert type(loaded.model.multi_modal_projector) is type(model.model.multi_modal_projector)
    enc = processor(images=[_image()], text=chat_prompt(processor, [("what color is the circle?", None)]),
                    return_tensors="pt")
    enc2 = proc2(images=[_image()], text=chat_prompt(proc2, [("what color is the circle?", None)]), return_tensors="pt")
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, loaded(**enc2).logits, atol=1e-5)


def test_plain_transformers_refuses_a_pixel_shuffle_folder(parts, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from vlmstudy.assemble import is_assembled, save_vlm

    model, processor = _assemble(parts, "pixel_shuffle")
    save_vlm(model, processor, tmp_path / "ps")
    assert is_assembled(tmp_path / "ps")
    with pytest.raises(RuntimeError, match="size mismatch|mismatch"):
        LlavaForConditionalGeneration.from_pretrained(tmp_path / "ps")
