"""Contrastive helpers (losses against transformers' own, zero-shot, prompt ensembles, hard
negatives, batch size), and the retrieval, plotting and diagram helpers notebooks 01-04 use."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import vlmstudy  # noqa: E402
from vlmstudy import contrastive, diagrams, plotting, retrieval, shapes  # noqa: E402
from vlmstudy.zoo.evaluate import ALL_CLASSES  # noqa: E402
from vlmstudy.zoo.train_contrastive import ContrastiveConfig, build_model, build_processor  # noqa: E402


def _small(family: str):
    cfg = ContrastiveConfig(family=family, vision_layers=1, text_layers=1, vision_width=32, text_width=32,
                            heads=2, projection_dim=32)
    torch.manual_seed(0)
    processor = build_processor(cfg)
    model = build_model(cfg, len(processor.tokenizer)).eval()
    return model, processor


@pytest.fixture(scope="module")
def clip():
    return _small("clip")


@pytest.fixture(scope="module")
def siglip():
    return _small("siglip")


@pytest.fixture(scope="module")
def batch():
    scenes = shapes.make_scenes("test", 6, seed=0)
    return [s.render() for s in scenes], [s.caption for s in scenes]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- losses


def test_clip_loss_equals_clipmodel_loss(clip, batch):
    model, processor = clip
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))  # not the initial value: the scale must be used
        out = model(**contrastive.pair_inputs(model, processor, *batch), return_loss=True)
    ours = contrastive.clip_loss(out.image_embeds, out.text_embeds, model.logit_scale)
    assert torch.allclose(ours, out.loss, atol=1e-5)


def test_siglip_loss_equals_siglipmodel_loss(siglip, batch):
    model, processor = siglip
    inputs = contrastive.pair_inputs(model, processor, *batch)
    assert inputs["input_ids"].shape[1] == processor.tokenizer.model_max_length  # SigLIP pads to max_length
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    ours = contrastive.siglip_loss(out.image_embeds, out.text_embeds, model.logit_scale, model.logit_bias)
    assert torch.allclose(ours, out.loss, atol=1e-5)


def test_losses_by_hand():
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    txt = F.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=-1)
    t, b = torch.tensor(math.log(2.0)), torch.tensor(-1.0)
    sim = txt @ img.T  # [[0.8, 0.96], [0, 0.8]]
    z = 2.0 * sim
    expected_clip = (-(z.diag() - z.logsumexp(1)).mean() - (z.diag() - z.logsumexp(0)).mean()) / 2
    assert torch.allclose(contrastive.clip_loss(img, txt, t), expected_clip)
    zs = 2.0 * sim - 1.0
    expected_sig = -(torch.log(torch.sigmoid(zs[0, 0])) + torch.log(torch.sigmoid(-zs[0, 1]))
                     + torch.log(torch.sigmoid(-zs[1, 0])) + torch.log(torch.sigmoid(zs[1, 1]))) / 2
    assert torch.allclose(contrastive.siglip_loss(img, txt, t, b), expected_sig)


@pytest.mark.parametrize("chunk", [1, 3, 4, 10, 64])
def test_siglip_loss_chunked_adds_up(chunk):
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(10, 8, generator=g), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(10, 8, generator=g), dim=-1)
    t, b = torch.tensor(math.log(10.0)), torch.tensor(-3.0)
    full = contrastive.siglip_loss(img, txt, t, b)
    blocked = contrastive.siglip_loss_chunked(img, txt, t, b, chunk_size=chunk)
    assert torch.allclose(blocked, full, atol=1e-5)
    (g_full,) = torch.autograd.grad(full, img)
    (g_block,) = torch.autograd.grad(blocked, img)
    assert torch.allclose(g_full, g_block, atol=1e-6)
    with pytest.raises(ValueError, match="chunk_size"):
        contrastive.siglip_loss_chunked(img, txt, t, b, chunk_size=0)


def test_loss_by_batch_size():
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(16, 8, generator=g), dim=-1)
    txt = F.normalize(img + 0.5 * torch.randn(16, 8, generator=g), dim=-1)
    t = torch.tensor(math.log(10.0))
    clip_fn = lambda i, x: contrastive.clip_loss(i, x, t)  # noqa: E731
    curve = contrastive.loss_by_batch_size(img, txt, clip_fn, [2, 4, 8, 16])
    assert curve[-1] == pytest.approx(float(clip_fn(img, txt)))
    assert curve[1] == pytest.approx((float(clip_fn(img[:4], txt[:4])) + float(clip_fn(img[4:8], txt[4:8]))
                                      + float(clip_fn(img[8:12], txt[8:12])) + float(clip_fn(img[12:], txt[12:]))) / 4)
    # every batch is a subset of the bigger one: more negatives can only raise a softmax loss
    assert all(a < b for a, b in zip(curve, curve[1:]))
    # a batch size that does not divide N drops the tail
    assert contrastive.loss_by_batch_size(img, txt, clip_fn, [10])[0] == pytest.approx(float(clip_fn(img[:10], txt[:10])))
    with pytest.raises(ValueError, match="batch size"):
        contrastive.loss_by_batch_size(img, txt, clip_fn, [17])


# ----------------------------------------------------------------------------- zero-shot


def test_zero_shot_clip_rows_sum_to_one(clip, batch):
    model, processor = clip
    probs = contrastive.zero_shot(model, processor, batch[0], ALL_CLASSES[:10], progress=False)
    assert probs.shape == (len(batch[0]), 10)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(len(batch[0])), atol=1e-5)


def test_zero_shot_siglip_independent_sigmoids(siglip, batch):
    model, processor = siglip
    labels = ALL_CLASSES[:10]
    probs = contrastive.zero_shot(model, processor, batch[0], labels, progress=False)
    img = contrastive.embed_images(model, processor, batch[0], progress=False)
    expected = torch.sigmoid(contrastive.logits(model, img, contrastive.class_embeddings(model, processor, labels)))
    assert torch.allclose(probs, expected, atol=1e-6)
    assert not torch.allclose(probs.sum(dim=-1), torch.ones(len(batch[0])), atol=1e-3)
    # a label's probability does not depend on the other candidates
    fewer = contrastive.zero_shot(model, processor, batch[0], labels[3:5], progress=False)
    assert torch.allclose(fewer, probs[:, 3:5], atol=1e-5)


def test_class_embeddings_ensemble_is_normalised_mean(clip):
    model, processor = clip
    labels, templates = ["red circle", "blue square", "green star"], shapes.PROMPT_TEMPLATES[:3]
    ens = contrastive.class_embeddings(model, processor, labels, templates)
    per = torch.stack([contrastive.embed_texts(model, processor, [t.format(lab) for lab in labels], progress=False)
                       for t in templates])  # (T, C, D), each unit length
    assert torch.allclose(ens, F.normalize(per.mean(dim=0), dim=-1), atol=1e-5)
    assert torch.allclose(ens.norm(dim=-1), torch.ones(3), atol=1e-5)
    single = contrastive.class_embeddings(model, processor, labels, templates[:1])
    assert torch.allclose(single, per[0], atol=1e-5)


def test_embed_images_batch_size_does_not_matter(clip):
    model, processor = clip
    images = [s.render() for s in shapes.make_scenes("val", 7, seed=1)]
    a = contrastive.embed_images(model, processor, images, batch_size=2, progress=False)
    b = contrastive.embed_images(model, processor, images, batch_size=64, progress=False)
    assert a.shape == (7, 32)
    assert torch.allclose(a, b, atol=1e-5)


def test_labelled_images():
    images, truths = contrastive.labelled_images("test", n=12, seed=0)
    assert len(images) == len(truths) == 12 and all(t in ALL_CLASSES for t in truths)
    assert images[0].size == (64, 64)
    _, held = contrastive.labelled_images("heldout", n=20, seed=0)
    assert all(tuple(t.split()) in shapes.HELD_OUT_COMBOS for t in held)
    again_images, again = contrastive.labelled_images("test", n=12, seed=0)
    assert again == truths


def test_zero_shot_accuracy_and_template_accuracies(clip):
    model, processor = clip
    images, truths = contrastive.labelled_images("test", n=16, seed=0)
    labels = ALL_CLASSES
    emb = contrastive.embed_images(model, processor, images, progress=False)
    acc = contrastive.zero_shot_accuracy(model, processor, images, truths, labels)
    assert acc == contrastive.zero_shot_accuracy(model, processor, emb, truths, labels)
    preds = contrastive.zero_shot(model, processor, images, labels, progress=False).argmax(dim=1)
    expected = sum(labels[p] == t for p, t in zip(preds.tolist(), truths)) / len(truths)
    assert acc == pytest.approx(expected)
    assert contrastive.zero_shot_accuracy(model, processor, emb, [labels[p] for p in preds.tolist()], labels) == 1.0
    templates = shapes.PROMPT_TEMPLATES[:3]
    table = contrastive.template_accuracies(model, processor, emb, truths, labels, templates)
    assert list(table) == [*templates, "ensemble"]
    assert table["ensemble"] == contrastive.zero_shot_accuracy(model, processor, emb, truths, labels, templates)
    assert table[templates[0]] == acc
    with pytest.raises(ValueError, match="not candidates"):
        contrastive.zero_shot_accuracy(model, processor, emb, truths, labels[:2])
    with pytest.raises(ValueError, match="one true label per image"):
        contrastive.zero_shot_accuracy(model, processor, emb, truths[:3], labels)


def test_hard_negative_test(clip):
    model, processor = clip
    scenes = shapes.make_scenes("test", 6, seed=0, n_objects=1) + shapes.make_scenes("test", 6, seed=1, n_objects=2)
    result = contrastive.hard_negative_test(model, processor, scenes, kinds=("color", "shape", "swap"))
    assert len(result) == len(result.kinds) == len(result.images) == len(result.true_scores)
    assert result.kinds.count("swap") <= 6  # single-object scenes cannot swap
    assert all(t != f for t, f in zip(result.true_captions, result.false_captions))
    i = result.kinds.index("shape")
    img = contrastive.embed_images(model, processor, [result.images[i]], progress=False)
    txt = contrastive.embed_texts(model, processor, [result.true_captions[i], result.false_captions[i]], progress=False)
    assert torch.allclose((img @ txt.T)[0], torch.stack([result.true_scores[i], result.false_scores[i]]), atol=1e-5)
    acc = result.accuracy()
    assert set(acc) == {"color", "shape", "swap", "all"} and all(0.0 <= v <= 1.0 for v in acc.values())
    assert acc["all"] == pytest.approx(float(result.correct.float().mean()))
    again = contrastive.hard_negative_test(model, processor, scenes, kinds=("color", "shape", "swap"))
    assert again.false_captions == result.false_captions  # seeded
    with pytest.raises(ValueError, match="no hard negatives"):
        contrastive.hard_negative_test(model, processor, scenes[:2], kinds=("swap",))


# ----------------------------------------------------------------------------- retrieval helpers


def test_with_backend_keeps_vectors_and_agrees(clip):
    model, processor = clip
    images = [s.render() for s in shapes.make_scenes("test", 40, seed=2)]
    index = retrieval.build_image_index(model, processor, images, metadata=[f"m{i}" for i in range(40)],
                                        progress=False)
    approx = retrieval.with_backend(index, "faiss")
    assert approx.backend == "faiss" and approx.ids == index.ids and approx.metadata == index.metadata
    assert torch.equal(approx.vectors, index.vectors)
    queries = contrastive.embed_texts(model, processor, ["a red circle", "a blue square on the left"], progress=False)
    assert torch.equal(approx.search(queries, k=5).positions, index.search(queries, k=5).positions)
    assert retrieval.with_backend(approx, "exact").backend == "exact"
    with pytest.raises(retrieval.EmptyIndexError):
        retrieval.with_backend(retrieval.ImageIndex(), "faiss")


def test_caption_recall(clip):
    model, processor = clip
    captions = [s.caption for s in shapes.make_scenes("test", 12, seed=3)]
    # an index of the captions' own text vectors: every caption finds itself
    index = retrieval.ImageIndex().add(contrastive.embed_texts(model, processor, captions, progress=False),
                                       metadata=captions)
    assert retrieval.caption_recall(index, model, processor, k=1) == 1.0
    with pytest.raises(retrieval.RetrievalError, match="captions"):
        retrieval.caption_recall(retrieval.ImageIndex().add(torch.eye(3)), model, processor)


def test_retrieve_then_answer(clip, tmp_path):
    model, processor = clip
    scenes = shapes.make_scenes("test", 10, seed=4)
    images = [s.render() for s in scenes]
    index = retrieval.build_image_index(model, processor, images, metadata=[s.caption for s in scenes], progress=False)
    vqa = vlmstudy.load("blip-vqa")
    found = retrieval.retrieve_then_answer(index, "a red circle", "how many shapes are there?",
                                           retriever=(model, processor), generator=vqa, images=images, k=3)
    best = retrieval.search_text(index, model, processor, "a red circle", k=1)[0][0]
    assert found.hit.position == best.position and len(found.hits) == 3
    assert found.image is images[best.position]
    assert isinstance(found.answer, str) and found.prompt == "how many shapes are there?"
    assert "answer=" in repr(found)
    with pytest.raises(vlmstudy.ConfigError):  # a dual encoder is no generator
        retrieval.retrieve_then_answer(index, "a red circle", "what?", (model, processor), (model, processor),
                                       images=images)
    with pytest.raises(retrieval.RetrievalError, match="order they were indexed"):
        retrieval.retrieve_then_answer(index, "a red circle", "?", (model, processor), vqa, images=images[:3])
    with pytest.raises(retrieval.RetrievalError, match="images="):
        retrieval.retrieve_then_answer(index, "a red circle", "?", (model, processor), vqa)
    # metadata that are paths: the image is read from disk
    paths = []
    for i, im in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    by_path = retrieval.build_image_index(model, processor, paths, progress=False)
    found = retrieval.retrieve_then_answer(by_path, "a red circle", "how many shapes are there?", (model, processor), vqa)
    assert found.image.size == images[0].size


# ----------------------------------------------------------------------------- plots and diagrams


def test_probability_panels_and_temperature_bars():
    probs = {"softmax": torch.tensor([0.7, 0.2, 0.1]), "sigmoid": torch.tensor([0.9, 0.8, 0.05])}
    fig = plotting.probability_panels(probs, ["a", "b", "c"], top=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "1.000" in fig.axes[0].get_title() and "1.750" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="every panel"):
        plotting.probability_panels({"x": [0.5, 0.5], "y": [1.0]}, ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        plotting.probability_panels(probs, ["a", "b"])
    fig = plotting.temperature_bars(torch.tensor([0.3, 0.2, 0.1]), ["a", "b", "c"], scales=(1, 100))
    assert len(fig.axes) == 2
    widths = [[p.get_width() for p in ax.patches] for ax in fig.axes]
    assert max(widths[0]) < 0.4 < 0.99 < max(widths[1])  # scale 1: near uniform; scale 100: near one-hot
    with pytest.raises(ValueError, match="positive"):
        plotting.temperature_bars([0.1, 0.2], ["a", "b"], scales=(0,))


def test_curves():
    fig = plotting.curves([2, 4, 8], {"a": [1, 2, 3], "b": torch.tensor([3.0, 2.0, 1.0])}, logx=True,
                          styles={"b": {"ls": "--"}})
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="one per x"):
        plotting.curves([1, 2], {"a": [1, 2, 3]})


def test_show_hits():
    images = [shapes.make_scenes("test", 1, seed=i)[0].render() for i in range(4)]
    index = retrieval.ImageIndex().add(torch.eye(4), metadata=["zero", "one", "two", "three"])
    hits = index.search(torch.tensor([0.0, 1.0, 0.2, 0.0]), k=2)[0]
    fig = plotting.show_hits(hits, images, query="q")
    assert len(fig.axes) == 2 and "one" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="order they were indexed"):
        plotting.show_hits(hits, images[:1])


def test_diagrams():
    fig = diagrams.draw_families()
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    for diagram in diagrams.FAMILIES.values():
        keys = {b.key for b in diagram.boxes}
        assert all(a in keys and b in keys for a, b, _ in diagram.arrows)
        assert all(0 <= b.x and b.x + b.w <= diagrams.WIDTH and 0 <= b.y and b.y + b.h <= diagrams.HEIGHT
                   for b in diagram.boxes)
    fig = diagrams.draw_family("llava")
    assert "Projector" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="unknown family"):
        diagrams.draw_family("perceiver")
