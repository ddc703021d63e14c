"""vlmstudy.attention: cross-attention from scratch equals the library's layers, attention maps,
rollout, relevancy; vlmstudy.pointing: the pointing game, its methods, table and command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vlmstudy
from vlmstudy import attention, plotting, pointing, shapes
from vlmstudy.errors import ConfigError

TOL = 1e-5


@pytest.fixture(scope="module")
def clip():
    return vlmstudy.load("clip", device="cpu")


@pytest.fixture(scope="module")
def blip():
    return vlmstudy.load("blip-caption", device="cpu")


@pytest.fixture(scope="module")
def llava():
    return vlmstudy.load("llava", device="cpu")


@pytest.fixture(scope="module")
def scenes():
    return pointing.pointing_scenes(6, seed=0)


def _capture(module):
    """Record the (args, kwargs, output) of every call of ``module``."""
    calls = []
    handle = module.register_forward_hook(lambda m, args, kwargs, out: calls.append((args, kwargs, out)),
                                          with_kwargs=True)
    return calls, handle


# ----------------------------------------------------------------------------- cross-attention == library

def test_cross_attention_equals_blip_decoder_layers(blip, scenes):
    model, processor = blip
    pixels = processor(images=[s.render() for s in scenes[:2]], return_tensors="pt")["pixel_values"]
    image_embeds = model.vision_model(pixel_values=pixels)[0]                       # (2, 65, 128)
    ids = torch.tensor([[2] + processor.tokenizer(shapes.caption(s), add_special_tokens=False).input_ids[:6]
                        for s in scenes[:2]])
    layers = model.text_decoder.bert.encoder.layer
    for layer in layers:
        block = layer.crossattention
        calls, handle = _capture(block)
        inner_calls, inner_handle = _capture(block.self)
        with torch.no_grad():
            model.text_decoder(input_ids=ids, encoder_hidden_states=image_embeds)
        handle.remove()
        inner_handle.remove()
        (args, kwargs, (ref_out, ref_weights)), = calls
        x = args[0] if args else kwargs["hidden_states"]
        ctx = kwargs["encoder_hidden_states"]
        assert ctx.shape == image_embeds.shape and x.shape == (2, ids.shape[1], 128)
        mine = attention.CrossAttention.from_blip_layer(block)
        with torch.no_grad():
            out, weights = mine(x, ctx)
        assert out.shape == ref_out.shape and weights.shape == (2, 4, ids.shape[1], 65)
        assert (out - ref_out).abs().max().item() < TOL                 # whole block: LayerNorm(x + dense(attn))
        assert (weights - ref_weights).abs().max().item() < TOL
        # the inner self-attention alone: concatenated heads, before dense / residual / LayerNorm
        ref_context = inner_calls[0][2][0]
        with torch.no_grad():
            context, _ = attention.CrossAttention.from_hf(block.self)(x, ctx)
        assert (context - ref_context).abs().max().item() < TOL
        assert not torch.allclose(context, out)  # the two levels really differ


@pytest.mark.parametrize("name", ["blip2", "instructblip"])
def test_cross_attention_equals_qformer_layers(name, scenes):
    model, processor = vlmstudy.load(name, device="cpu")
    qformer = model.qformer
    pixels = processor.image_processor(images=[s.render() for s in scenes[:2]], return_tensors="pt")["pixel_values"]
    image_embeds = model.vision_model(pixel_values=pixels)[0]
    blocks = [layer.crossattention for layer in qformer.encoder.layer if hasattr(layer, "crossattention")]
    assert blocks, "the Q-Former has no cross-attention layers"
    captured = [_capture(b) for b in blocks]
    query = model.query_tokens.expand(2, -1, -1)
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    with torch.no_grad():
        if name == "instructblip":
            text = processor.qformer_tokenizer(["what colour is the shape on the left?"] * 2, return_tensors="pt")
            qformer(input_ids=text["input_ids"], attention_mask=torch.cat(
                [torch.ones(2, query.shape[1], dtype=torch.long), text["attention_mask"]], dim=1),
                query_embeds=query, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)
        else:
            qformer(query_embeds=query, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)
    for block, (calls, handle) in zip(blocks, captured):
        handle.remove()
        (args, kwargs, ref), = calls
        ref_out = ref[0] if isinstance(ref, tuple) else ref
        x = args[0] if args else kwargs["hidden_states"]
        assert x.shape[1] == model.config.num_query_tokens  # only the query tokens cross-attend
        mine = attention.CrossAttention.from_hf(block)
        with torch.no_grad():
            out, weights = mine(x, kwargs["encoder_hidden_states"])
        assert (out - ref_out).abs().max().item() < TOL
        assert weights.shape == (2, model.config.qformer_config.num_attention_heads, x.shape[1], image_embeds.shape[1])
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_cross_attention_mask_and_errors():
    torch.manual_seed(0)
    layer = attention.CrossAttention(16, 8, heads=4, post_norm=False)
    x, ctx = torch.randn(2, 3, 16), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out, w = layer(x, ctx, context_mask=mask)
    assert out.shape == (2, 3, 16) and w.shape == (2, 4, 3, 5)
    assert w[0, ..., 3:].abs().max() == 0                              # padding gets no attention
    # masking a token is the same as leaving it out
    out_short, _ = layer(x[:1], ctx[:1, :3])
    torch.testing.assert_close(out[:1], out_short)
    with pytest.raises(ConfigError, match="multiple of heads"):
        attention.CrossAttention(10, 8, heads=4)
    with pytest.raises(ConfigError, match="not a BLIP"):
        attention.CrossAttention.from_hf(torch.nn.Linear(4, 4))


# ----------------------------------------------------------------------------- rollout

def test_rollout_of_identity_attention_is_identity():
    s = 65
    eye = torch.eye(s).expand(4, 2, 3, s, s)                            # layers, B, heads, S, S
    r = attention.attention_rollout(eye)
    torch.testing.assert_close(r, torch.eye(s).expand(2, s, s))
    # identity attention: CLS attends only to itself, so no patch stands out
    m = attention.rollout_map(eye, normalize=None)
    assert m.shape == (2, 8, 8) and np.allclose(m, 0)


def test_rollout_rows_sum_to_one_and_uniform_without_residual():
    torch.manual_seed(0)
    a = torch.rand(3, 2, 4, 10, 10).softmax(-1)
    r = attention.attention_rollout(a)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 10))
    uniform = torch.full((3, 1, 2, 10, 10), 0.1)
    torch.testing.assert_close(attention.attention_rollout(uniform, residual=0.0), torch.full((1, 10, 10), 0.1))
    with pytest.raises(ConfigError):
        attention.attention_rollout(a[0])
    with pytest.raises(ConfigError):
        attention.attention_rollout(a, head_fusion="median")


# ----------------------------------------------------------------------------- maps from the stand-ins

def _check_maps(maps, n, grid=8):
    assert isinstance(maps, np.ndarray) and maps.shape == (n, grid, grid)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.reshape(n, -1).max(-1), 1.0)               # min-max normalised per map


def test_clip_maps_shapes_and_normalisation(clip, scenes):
    model, processor = clip
    images = [s.render() for s in scenes[:3]]
    att = attention.vision_attentions(model, processor, images)
    assert att.shape == (4, 3, 4, 65, 65)
    torch.testing.assert_close(att.sum(-1), torch.ones(att.shape[:-1]))
    _check_maps(attention.cls_attention_map(att), 3)
    _check_maps(attention.rollout_map(att), 3)
    texts = [shapes.object_phrase(s.objects[0]) for s in scenes[:3]]
    rel, scores = attention.clip_relevancy(model, processor, images, texts, return_scores=True)
    _check_maps(rel, 3)
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1.0 + 1e-6)
    _check_maps(attention.clip_gradcam(model, processor, images, texts), 3)
    raw = attention.clip_relevancy(model, processor, images, texts, normalize=None)
    assert raw.min() >= 0.0 and not np.allclose(raw, raw.max())
    # relevancy reads the text: another object's phrase gives another map
    other = [shapes.object_phrase(s.objects[1]) for s in scenes[:3]]
    assert not np.allclose(rel, attention.clip_relevancy(model, processor, images, other))
    with pytest.raises(ConfigError, match="one text per image"):
        attention.clip_relevancy(model, processor, images, texts[:2])


def test_blip_word_attention(blip, scenes):
    model, processor = blip
    text = shapes.caption(scenes[0])
    maps = attention.blip_word_attention(model, processor, scenes[0].render(), text=text)
    assert maps.tokens == text.split() and maps.text == text
    _check_maps(maps.maps, len(text.split()))
    assert maps[scenes[0].objects[0].shape].shape == (8, 8)
    read = attention.blip_word_attention(model, processor, scenes[0].render(), text=text, step="read")
    assert read.maps.shape == maps.maps.shape and not np.allclose(read.maps, maps.maps)
    generated = attention.blip_word_attention(model, processor, scenes[0].render())
    assert generated.maps.shape == (len(generated.tokens), 8, 8) and generated.text
    with pytest.raises(ConfigError):
        attention.blip_word_attention(model, processor, scenes[0].render(), text=text, step="sideways")


def test_llava_token_attention(llava, scenes):
    model, processor = llava
    maps = attention.llava_token_attention(model, processor, scenes[0].render(), "what shape is on the left?",
                                           max_new_tokens=4)
    assert 1 <= len(maps.tokens) <= 4 and maps.maps.shape == (len(maps.tokens), 8, 8)
    assert np.isfinite(maps.maps).all() and maps.maps.min() >= 0 and maps.maps.max() <= 1
    raw = attention.llava_token_attention(model, processor, scenes[0].render(), "what shape is on the left?",
                                          max_new_tokens=2, normalize=None)
    # the attention to the 64 image tokens is a part of a probability distribution
    assert 0.0 < raw.maps.reshape(len(raw.tokens), -1).sum(-1).max() <= 1.0 + 1e-5


def test_llava_answer_relevancy(llava, scenes):
    model, processor = llava
    images = [s.render() for s in scenes[:2]]
    questions = [pointing.llava_question(s.objects[0]) for s in scenes[:2]]
    record = {}
    maps = attention.llava_answer_relevancy(model, processor, images, questions,
                                            [s.objects[0].color for s in scenes[:2]], record=record)
    _check_maps(maps, 2)
    assert record["total"] == 2
    own = attention.llava_answer_relevancy(model, processor, images, questions)   # the model's own answer
    assert own.shape == (2, 8, 8)
    other = attention.llava_answer_relevancy(model, processor, images, questions, ["purple", "green"])
    assert not np.allclose(maps, other)                            # the answer word changes the map
    assert all(not p.requires_grad for p in model.parameters()) or all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- pointing game

def test_dilate_and_chance(scenes):
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert pointing.dilate(m, 2).sum() == 25 and pointing.dilate(m, 0).sum() == 1
    masks = shapes.masks(scenes[0])
    assert pointing.dilate(masks, 1).shape == masks.shape
    trials = sum(len(s.objects) for s in scenes)
    expected = np.mean([pointing.dilate(shapes.masks(s)[i], 2).mean() for s in scenes for i in range(len(s.objects))])
    assert pointing.chance_level(scenes) == pytest.approx(expected)
    assert 0 < expected < 0.2 and trials >= 2 * len(scenes)


def test_pointing_scenes_have_two_or_three_objects():
    sc = pointing.pointing_scenes(30, seed=1)
    assert len(sc) == 30 and all(2 <= len(s.objects) <= 3 for s in sc)
    assert [s.to_dict() for s in sc] == [s.to_dict() for s in pointing.pointing_scenes(30, seed=1)]


def test_pointing_game_oracle_scores_100_and_wrong_object_0(scenes):
    oracle = pointing.pointing_game(pointing.oracle_method, scenes, name="oracle")
    assert oracle.accuracy == 1.0 and oracle.trials == sum(len(s.objects) for s in scenes)
    assert 0 < oracle.chance < 0.2

    def other_object(sc, targets):  # peaked on the centre of a different object of the scene
        maps = np.zeros((len(sc), 64, 64))
        for m, s, t in zip(maps, sc, targets):
            other = s.objects[(t + 1) % len(s.objects)]
            m[int(other.y * 64), int(other.x * 64)] = 1.0
        return maps

    def corner(sc, targets):        # peaked in the background corner, at patch resolution
        m = np.zeros((len(sc), 8, 8))
        m[:, 0, 0] = 1.0
        return m

    assert pointing.pointing_game(other_object, scenes).accuracy == 0.0
    # the fixed centre map hits exactly the centre objects
    centre = pointing.pointing_game(pointing.centre_method, scenes)
    assert centre.hits == sum(o.position == "centre" for s in scenes for o in s.objects)
    assert pointing.pointing_game(corner, scenes).accuracy == 0.0
    row = oracle.as_row()
    assert row["hits"] == row["trials"] and row["ci95"][1] == 1.0
    with pytest.raises(ConfigError, match="one map per trial"):
        pointing.pointing_game(lambda sc, t: np.zeros((1, 8, 8)), scenes, batch_size=4)


@pytest.mark.trained  # test tier (issue 23)
def test_clip_relevancy_beats_chance_and_text_blind_baselines(clip):
    model, processor = clip
    sc = pointing.pointing_scenes(20, seed=3)
    rel = pointing.pointing_game(pointing.clip_relevancy_method(model, processor), sc)
    rollout = pointing.pointing_game(pointing.clip_rollout_method(model, processor), sc)
    assert rel.trials == rollout.trials >= 40
    assert rel.accuracy > 3 * rel.chance and rel.accuracy >= 0.6, rel
    assert rel.accuracy > rollout.accuracy


@pytest.mark.slow  # the benchmark script (issue 23 tiers)
def test_pointing_game_table_and_cli(tmp_path, clip, blip, llava, load_script, restore_threads):
    rows = pointing.pointing_game_table(n=3, seed=0, models={"clip": clip, "blip-caption": blip, "llava": llava})
    assert [r["method"] for r in rows[:-1]] == list(pointing.METHODS) and rows[-1]["method"].startswith("chance")
    assert all(r["trials"] == rows[0]["trials"] for r in rows)
    llava_rows = [r for r in rows if r.get("model") == "llava"]
    assert len(llava_rows) == 2 and all(0 <= r["answer_accuracy"] <= 1 for r in llava_rows)
    assert "| chance" in pointing.format_table(rows)
    fig = plotting.pointing_bars(rows, title="pointing game")
    assert len(fig.axes[0].patches) == len(rows) - 1
    with pytest.raises(ConfigError, match="unknown method"):
        pointing.pointing_game_table(n=2, methods=["telepathy"])
    # the benchmark script (same as python -m vlmstudy.pointing)
    bench = load_script("benchmarks/bench_pointing_game.py")
    out = tmp_path / "pg.json"
    assert bench.main(["--n", "2", "--out", str(out), "--threads", "1"]) == 0
    data = json.loads(out.read_text())
    assert data["config"]["n_scenes"] == 2 and data["config"]["tolerance_px"] == 2
    assert data["command"] == "python benchmarks/bench_pointing_game.py --n 2 --seed 0"
    assert len(data["rows"]) == len(pointing.METHODS) + 1 and set(data["models"]) == {"clip", "blip-caption", "llava"}


def test_heatmap_grid(scenes):
    maps = np.random.default_rng(0).random((3, 8, 8))
    fig = plotting.heatmap_grid(scenes[0].render(), maps, titles=["a", "b", "c"], show_image=True)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    with pytest.raises(ValueError, match="titles"):
        plotting.heatmap_grid(scenes[0].render(), maps, titles=["a"])
    with pytest.raises(ValueError, match="images"):
        plotting.heatmap_grid([scenes[0].render()] * 2, maps)
