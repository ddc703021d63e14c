"""ImageIndex: exact search against brute force, ties, metrics, files, errors, faiss recall."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlmstudy.errors import ConfigError, VlmStudyError
from vlmstudy.retrieval import (
    DimensionMismatchError,
    EmptyIndexError,
    ImageIndex,
    RetrievalError,
    SearchResult,
    clustered_vectors,
    exact_topk,
)


def brute_force(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: score everything, stable argsort on -score (ties: lower position first)."""
    scores = queries @ db.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return unit(rng.standard_normal((500, 32))), unit(rng.standard_normal((7, 32)))


def test_exact_matches_brute_force(data):
    db, q = data
    index = ImageIndex().add(db)
    result = index.search(q, k=10)
    ref_scores, ref_order = brute_force(db, q, 10)
    assert isinstance(result, SearchResult)
    assert result.scores.shape == (7, 10) and result.ids.shape == (7, 10)
    np.testing.assert_array_equal(result.ids, ref_order)
    np.testing.assert_allclose(result.scores.numpy(), ref_scores, rtol=1e-5, atol=1e-6)
    assert len(index) == 500 and index.dim == 32


def test_ties_and_duplicate_vectors_lower_position_first():
    # quantised vectors make many equal scores; exact copies make equal scores too
    rng = np.random.default_rng(1)
    base = rng.integers(-1, 2, size=(60, 8)).astype(np.float32)
    base[base.sum(1) == 0, 0] = 1.0
    base[np.abs(base).sum(1) == 0] = 1.0
    db = np.concatenate([base, base[:20], base[5:6].repeat(5, axis=0)])
    q = rng.integers(-1, 2, size=(12, 8)).astype(np.float32) + 0.0
    q[np.abs(q).sum(1) == 0, 0] = 1.0
    index = ImageIndex(metric="dot").add(db)
    for k in (1, 3, 10, 40, len(db)):
        ref_scores, ref_order = brute_force(db, q, k)
        result = index.search(q, k=k)
        np.testing.assert_array_equal(result.positions.numpy(), ref_order, err_msg=f"k={k}")
        np.testing.assert_allclose(result.scores.numpy(), ref_scores)
    # copies of row 5 (positions 5, 65, 80-84) score exactly alike and come out in position order
    hits = index.search(base[5], k=len(db))[0]
    tied = [h.position for h in hits if h.score == float(base[5] @ base[5])]
    assert {5, 65, 80, 81, 82, 83, 84} <= set(tied) and tied == sorted(tied)


def test_chunked_equals_unchunked(data):
    db, q = data
    full = ImageIndex(chunk_size=len(db)).add(db).search(q, k=25)
    for chunk in (1, 7, 64, 499):
        part = ImageIndex(chunk_size=chunk).add(db).search(q, k=25)
        assert torch.equal(part.positions, full.positions), chunk
        # BLAS may sum in another order for another block shape: equal up to float rounding
        torch.testing.assert_close(part.scores, full.scores, rtol=0, atol=1e-6)
    # the functional form, with ties, a small chunk and more queries than one query block
    rng = np.random.default_rng(2)
    dbt = torch.from_numpy(rng.integers(0, 3, (300, 4)).astype(np.float32))
    qt = torch.from_numpy(rng.integers(0, 3, (1100, 4)).astype(np.float32))
    s1, p1 = exact_topk(qt, dbt, 9, chunk_size=300)
    s2, p2 = exact_topk(qt, dbt, 9, chunk_size=5)
    assert torch.equal(p1, p2) and torch.equal(s1, s2)
    ref_scores, ref_order = brute_force(dbt.numpy(), qt.numpy(), 9)
    np.testing.assert_array_equal(p1.numpy(), ref_order)


def test_cosine_vs_dot_rank_differently():
    db = np.array([[1.0, 0.0], [10.0, 10.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([1.0, 0.1], dtype=np.float32)
    cos = ImageIndex(metric="cosine").add(db).search(q, k=3)
    dot = ImageIndex(metric="dot").add(db).search(q, k=3)
    assert cos.ids[0].tolist() == [0, 1, 2]  # direction only: [1, 0] is closest
    assert dot.ids[0].tolist() == [1, 0, 2]  # the long vector wins the raw inner product
    assert cos.scores.max() <= 1.0 + 1e-6
    assert dot.scores[0, 0].item() == pytest.approx(11.0)
    # cosine stores unit vectors; dot keeps them (and never aliases the caller's array)
    assert torch.allclose(ImageIndex().add(db).vectors.norm(dim=1), torch.ones(3))
    index = ImageIndex(metric="dot").add(db)
    db[0, 0] = 99.0
    assert index.vectors[0, 0].item() == 1.0


def test_ids_metadata_and_hits(data):
    db, q = data
    index = ImageIndex()
    index.add(db[:200], metadata=[f"img_{i}.png" for i in range(200)])
    index.add(db[200:], metadata=[f"img_{i}.png" for i in range(200, 500)])  # ids continue at 200
    assert index.ids == list(range(500))
    hits = index.search(db[321], k=3)[0]
    assert hits[0].id == 321 and hits[0].metadata == "img_321.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    named = ImageIndex().add(db[:3], ids=["cat", "dog", "car"], metadata=[{"caption": "c"}, None, 3])
    result = named.search(db[1], k=2)
    assert result.ids[0, 0] == "dog" and result[0][0].metadata is None
    assert [h.id for h in result.hits[0]] == list(result.ids[0])
    assert "dog" in repr(result)
    # torch input works the same as numpy
    assert torch.equal(ImageIndex().add(torch.from_numpy(db)).search(torch.from_numpy(q), 5).positions,
                       index.search(q, 5).positions)


def test_save_load_round_trip(tmp_path, data):
    db, q = data
    index = ImageIndex().add(db, metadata=[{"path": f"{i}.png", "n": i} for i in range(500)])
    before = index.search(q, k=10)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.json", "vectors.safetensors"]
    loaded = ImageIndex.load(tmp_path / "idx")
    after = loaded.search(q, k=10)
    assert torch.equal(before.scores, after.scores) and np.array_equal(before.ids, after.ids)
    assert before.metadata == after.metadata and loaded.metric == "cosine" and len(loaded) == 500
    # string ids and the dot metric survive too; adding after loading continues normally
    named = ImageIndex(metric="dot").add(db[:4] * 3, ids=["a", "b", "c", "d"])
    named.save(tmp_path / "named")
    again = ImageIndex.load(tmp_path / "named")
    assert again.ids == ["a", "b", "c", "d"] and again.metric == "dot"
    assert torch.equal(again.search(q, 4).scores, named.search(q, 4).scores)
    again.add(db[4:6], ids=["e", "f"])
    assert len(again) == 6


def test_save_refuses_non_json_metadata_and_load_checks(tmp_path, data):
    db, _ = data
    with pytest.raises(RetrievalError, match="JSON"):
        ImageIndex().add(db[:2], metadata=[object(), None]).save(tmp_path / "bad")
    with pytest.raises(RetrievalError, match="not a saved ImageIndex"):
        ImageIndex.load(tmp_path / "nothing-here")
    ImageIndex().add(db[:3]).save(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "index.json").read_text())
    meta["count"] = 4
    (tmp_path / "ok" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(RetrievalError, match="disagree"):
        ImageIndex.load(tmp_path / "ok")


def test_errors(data):
    db, q = data
    with pytest.raises(EmptyIndexError, match="add vectors first"):
        ImageIndex().search(q)
    index = ImageIndex().add(db[:20])
    with pytest.raises(DimensionMismatchError, match="32-dimensional"):
        index.add(np.ones((2, 16)))
    with pytest.raises(DimensionMismatchError, match="length 16"):
        index.search(np.ones(16))
    with pytest.raises(DimensionMismatchError):
        ImageIndex(dim=8).add(db[:2])
    with pytest.raises(RetrievalError, match=r"k=21 .* only 20 .* k=len\(index\)"):
        index.search(q, k=21)
    with pytest.raises(RetrievalError, match="positive integer"):
        index.search(q, k=0)
    with pytest.raises(ConfigError, match="backend"):
        ImageIndex(backend="annoy")
    with pytest.raises(ConfigError, match="metric"):
        ImageIndex(metric="l2")
    bad = db[:3].copy()
    bad[1, 4] = np.nan
    with pytest.raises(RetrievalError, match=r"NaN .*rows \[1\]"):
        ImageIndex().add(bad)
    with pytest.raises(RetrievalError, match="NaN"):
        index.search(np.full(32, np.inf, dtype=np.float32))
    with pytest.raises(RetrievalError, match="all-zero"):
        ImageIndex().add(np.zeros((1, 32)))
    with pytest.raises(RetrievalError, match="unique"):
        index.add(db[:1], ids=[3])
    with pytest.raises(RetrievalError, match="metadata"):
        index.add(db[:2], metadata=["only one"])
    with pytest.raises(RetrievalError, match="ids"):
        index.add(db[:2], ids=[100])
    # every one is a VlmStudyError and a ValueError, so learners can catch either
    for err in (RetrievalError, EmptyIndexError, DimensionMismatchError, ConfigError):
        assert issubclass(err, VlmStudyError) and issubclass(err, ValueError)
    assert len(index) == 20  # failed adds changed nothing


def test_faiss_recall_on_clustered_data():
    db, q = clustered_vectors(20000, 128, n_queries=100, seed=3)
    index = ImageIndex(backend="faiss").add(db, metadata=list(range(len(db))))
    approx = index.search(q, k=10)
    exact = index.search(q, k=10, exact=True)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.ids.tolist(), exact.ids.tolist())])
    assert recall >= 0.95
    assert index.recall(q, k=10) == pytest.approx(recall)
    assert approx.metadata[0][0] == approx.ids[0, 0]
    # scores of what faiss returns are the true scores, best first
    np.testing.assert_allclose(approx.scores.numpy(), np.sort((q @ db.T)[np.arange(100)[:, None], approx.ids], 1)[:, ::-1],
                               rtol=1e-4, atol=1e-5)
    # fewer probes: faster and worse; all probes: exact
    index.nprobe = 1
    assert index.recall(q, k=10) < recall
    index.nprobe = 10_000
    assert index.recall(q, k=10) == 1.0


def test_faiss_small_index_and_rebuild(tmp_path):
    db, q = clustered_vectors(300, 16, n_queries=5, seed=4)
    index = ImageIndex(backend="faiss").add(db)
    r1 = index.search(q, k=300)  # k = len(index): faiss may miss some; the exact fallback fills in
    assert sorted(r1.positions[0].tolist()) == list(range(300))
    index.add(db[:10] * 1.0)  # duplicates of the first ten; the index is rebuilt at the next search
    assert index.search(db[3], k=2).ids[0].tolist() == [3, 303]
    index.save(tmp_path / "f")
    loaded = ImageIndex.load(tmp_path / "f")
    assert loaded.backend == "faiss"
    assert torch.equal(loaded.search(q, k=10).positions, index.search(q, k=10).positions)


def test_build_and_search_with_a_model(tmp_path):
    """The model helpers, on a randomly initialised tiny CLIP (the wiring, not the quality)."""
    from vlmstudy import shapes
    from vlmstudy.contrastive import embed_images, embed_texts
    from vlmstudy.retrieval import build_image_index, search_image, search_text
    from vlmstudy.zoo.train_contrastive import ContrastiveConfig, build_model, build_processor

    cfg = ContrastiveConfig(vision_layers=1, text_layers=1, vision_width=32, text_width=32, projection_dim=16)
    processor = build_processor(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, len(processor.tokenizer)).eval()
    scenes = shapes.make_scenes("test", 12)
    paths = []
    for i, scene in enumerate(scenes):
        paths.append(str(tmp_path / f"{i}.png"))
        scene.render().save(paths[-1])
    index = build_image_index(model, processor, paths, progress=False)
    assert len(index) == 12 and index.dim == 16 and index.metadata == paths  # paths become metadata
    hits = search_image(index, model, processor, paths[4], k=3)[0]
    assert hits[0].id == 4 and hits[0].metadata == paths[4] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    result = search_text(index, model, processor, scenes[2].caption, k=5)
    expected = index.search(embed_texts(model, processor, [scenes[2].caption], progress=False), k=5)
    assert result.ids.shape == (1, 5) and np.array_equal(result.ids, expected.ids)
    assert search_text(index, model, processor, ["a red circle", "a blue square"], k=2).ids.shape == (2, 2)
    pil = build_image_index(model, processor, [s.render() for s in scenes[:3]], metadata=["a", "b", "c"],
                            backend="faiss", progress=False)
    assert pil.backend == "faiss" and pil.metadata == ["a", "b", "c"]
    assert torch.allclose(pil.vectors, embed_images(model, processor, [s.render() for s in scenes[:3]], progress=False))
