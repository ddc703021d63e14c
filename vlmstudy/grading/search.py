"""Checks for exercise 01: ``CLIPImageSearch`` (text -> image search with CLIP).

The learner's class keeps the two given methods ``embed_images(images) -> (N, D)`` and
``embed_text(text) -> (D,)`` (CLIP features, *not* normalised) and writes ``index_images`` and
``search``. Most checks swap the two given methods for known vectors (a subclass made on the fly),
so that the expected ranking is exact and independent of any model: brute-force cosine
similarity, ties to the lower index, ``top_k`` larger than the gallery, vectors of very different
lengths (where a dot product ranks differently), a gallery embedded once. The hidden run adds one
end-to-end check with the real (tiny) CLIP against :class:`vlmstudy.retrieval.ImageIndex`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Check, CheckFailed, Env
from .remote import with_methods

TARGET = "CLIPImageSearch"


def _probe(cls, table: dict, queries: dict):
    """An instance of a subclass of the learner's class whose embeddings come from ``table``
    (image id -> vector) and ``queries`` (text -> vector); ``calls`` counts the embeddings."""
    calls = {"images": 0, "texts": 0}

    def embed_images(self, images):
        calls["images"] += 1
        try:
            return torch.stack([table[i].clone() for i in images])
        except (KeyError, TypeError):
            raise CheckFailed("index_images passed something other than the gallery's images to "
                              "self.embed_images") from None

    def embed_text(self, text):
        calls["texts"] += 1
        if not isinstance(text, str) or text not in queries:
            raise CheckFailed(f"self.embed_text got {text!r}, not the query given to search")
        return queries[text].clone()

    probe = with_methods(cls, {"embed_images": embed_images, "embed_text": embed_text})
    return probe(None, None), calls


def _hits(result, expected_len: int, n: int) -> list[tuple[int, float]]:
    """The learner's search result as ``[(index, score), ...]``, or CheckFailed saying what is off."""
    if result is None or isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise CheckFailed(f"search returned {type(result).__name__}, not a list of (index, score) pairs")
    hits = []
    for item in result:
        try:
            index, score = item
            index_f, score = float(index), float(score)
        except (TypeError, ValueError):
            raise CheckFailed(f"search returned an item {item!r:.60}, not an (index, score) pair") from None
        if index_f != int(index_f) or not 0 <= index_f < n:
            raise CheckFailed(f"search returned index {index!r:.30}; indexes are positions 0..{n - 1} in the gallery")
        hits.append((int(index_f), score))
    if len(hits) != expected_len:
        raise CheckFailed(f"search returned {len(hits)} results, expected {expected_len}")
    return hits


def _cosine_order(table_rows: torch.Tensor, query: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Brute force: every image's cosine similarity (float64) and the order (best first, ties
    to the lower index, which is what a stable sort gives)."""
    sims = F.normalize(table_rows.double(), dim=1) @ F.normalize(query.double(), dim=0)
    order = sorted(range(len(sims)), key=lambda i: (-float(sims[i]), i))
    return order, sims


def _separated(env: Env, n: int, dim: int, norm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random gallery vectors and a query whose cosine similarities are at least 1e-3 apart, so
    that any correct implementation, in any float order, ranks them the same way."""
    for _ in range(100):
        rows = env.randn(n, dim)
        rows = F.normalize(rows, dim=1) * (norm if norm is not None else 1.0)
        query = env.randn(dim) * 3
        sims = sorted(float(s) for s in F.normalize(rows.double(), dim=1) @ F.normalize(query.double(), dim=0))
        if min(b - a for a, b in zip(sims, sims[1:])) > 1e-3:
            return rows, query
    raise RuntimeError("could not draw well-separated test vectors")  # pragma: no cover


def check_ranking(cls, env: Env) -> None:
    rows, query = _separated(env, 12, 8, norm=2.0)  # equal lengths: only the ranking is tested here
    engine, _ = _probe(cls, dict(enumerate(rows)), {"a query": query})
    engine.index_images(list(range(12)))
    hits = _hits(engine.search("a query", top_k=5), 5, 12)
    expected, _ = _cosine_order(rows, query)
    got = [i for i, _ in hits]
    if sorted(got) != sorted(expected[:5]):
        raise CheckFailed(f"top 5 were images {got}; brute force over all 12 gives {expected[:5]}")
    if got != expected[:5]:
        raise CheckFailed(f"the right 5 images, in the wrong order: {got} instead of {expected[:5]} (best first)")


def check_best_first(cls, env: Env) -> None:
    rows, query = _separated(env, 10, 6)
    rows = rows * (0.5 + torch.rand(10, 1, generator=env.gen))
    engine, _ = _probe(cls, dict(enumerate(rows)), {"q": query})
    engine.index_images(list(range(10)))
    scores = [s for _, s in _hits(engine.search("q", top_k=6), 6, 10)]
    if any(b > a + 1e-6 for a, b in zip(scores, scores[1:])):
        raise CheckFailed(f"scores are not in decreasing order: {[round(s, 3) for s in scores]}")


def check_cosine(cls, env: Env) -> None:
    dim, n = 8, 8
    query = torch.zeros(dim)
    query[0] = 1.0
    # one close direction (cos 0.95) of length 1, one farther direction (cos 0.6) of length 10:
    # the dot product prefers the long one, the cosine similarity the close one
    close = torch.zeros(dim)
    close[0], close[1] = 0.95, (1 - 0.95 ** 2) ** 0.5
    far = torch.zeros(dim)
    far[0], far[2] = 0.6 * 10, 0.8 * 10
    others = F.normalize(env.randn(n - 2, dim), dim=1) * 0.3
    others[:, 0] = -others[:, 0].abs()  # pointing away from the query: never in the top 2
    rows = torch.cat([close[None], far[None], others])
    perm = torch.randperm(n, generator=env.gen)
    rows = rows[perm]
    engine, _ = _probe(cls, dict(enumerate(rows)), {"q": query * 2.5})
    engine.index_images(list(range(n)))
    hits = _hits(engine.search("q", top_k=3), 3, n)
    order, sims = _cosine_order(rows, query)
    i_close, i_far = int((perm == 0).nonzero()), int((perm == 1).nonzero())
    got = [i for i, _ in hits]
    if got[:2] == [i_far, i_close]:
        raise CheckFailed(f"image {i_far} (length 10, cosine 0.60) was ranked above image {i_close} (length 1, cosine "
                          "0.95): that is a dot product, not a cosine similarity")
    if got != order[:3]:
        raise CheckFailed(f"top 3 were {got}; by cosine similarity they are {order[:3]}")
    for i, score in hits:
        if abs(score - float(sims[i])) > 1e-4:
            raise CheckFailed(f"image {i} got score {score:.4f}; its cosine similarity with the query is {float(sims[i]):.4f}")


def check_ties(cls, env: Env) -> None:
    dim = 6
    best = F.normalize(env.randn(dim), dim=0)
    second = F.normalize(best + 0.8 * F.normalize(env.randn(dim), dim=0), dim=0)  # close to best, not equal
    query = best * 0.9 + second * 0.35
    rows = F.normalize(env.randn(8, dim), dim=1) * 0.2 - 0.5 * F.normalize(query, dim=0)  # fillers point away
    for i in (2, 5, 6):
        rows[i] = best * 3.0       # three copies of the best image: exact ties
    for i in (1, 7):
        rows[i] = second * 3.0     # two copies of the second best
    expected = _cosine_order(rows, query)[0][:4]  # [2, 5, 6, 1] by construction
    engine, _ = _probe(cls, dict(enumerate(rows)), {"q": query})
    engine.index_images(list(range(8)))
    got = [i for i, _ in _hits(engine.search("q", top_k=4), 4, 8)]
    if got != expected:
        raise CheckFailed(f"images 2, 5, 6 tie for first and 1, 7 for fourth; expected {expected} (ties: lower index "
                          f"first), got {got}")


def check_k_larger(cls, env: Env) -> None:
    rows, query = _separated(env, 4, 5)
    engine, _ = _probe(cls, dict(enumerate(rows)), {"q": query})
    engine.index_images(list(range(4)))
    hits = _hits(engine.search("q", top_k=10), 4, 4)
    expected, _ = _cosine_order(rows, query)
    if [i for i, _ in hits] != expected:
        raise CheckFailed(f"with top_k=10 on 4 images: got {[i for i, _ in hits]}, expected all 4 as {expected}")


def check_reindex(cls, env: Env) -> None:
    first, query = _separated(env, 6, 5)
    second = F.normalize(env.randn(3, 5), dim=1)
    table = {**{i: first[i] for i in range(6)}, **{100 + i: second[i] for i in range(3)}}
    engine, _ = _probe(cls, table, {"q": query})
    engine.index_images(list(range(6)))
    engine.index_images([100, 101, 102])
    hits = _hits(engine.search("q", top_k=5), 3, 3)
    expected, _ = _cosine_order(second, query)
    if [i for i, _ in hits] != expected:
        raise CheckFailed(f"after index_images(new gallery of 3) the search gave {[i for i, _ in hits]}; expected "
                          f"{expected}, positions in the new gallery")


def check_embed_once(cls, env: Env) -> None:
    rows, query = _separated(env, 5, 4)
    engine, calls = _probe(cls, dict(enumerate(rows)), {"q": query, "r": -query})
    engine.index_images(list(range(5)))
    after_index = calls["images"]
    for text in ("q", "r", "q"):
        engine.search(text, top_k=2)
    if after_index != 1:
        raise CheckFailed(f"index_images called self.embed_images {after_index} times; once is enough")
    if calls["images"] != 1:
        raise CheckFailed(f"3 searches embedded the gallery {calls['images'] - 1} more times: do it once, in index_images")
    if calls["texts"] != 3:
        raise CheckFailed(f"3 searches called self.embed_text {calls['texts']} times; expected once per search")


def check_real_clip(cls, env: Env) -> None:
    from .. import contrastive, retrieval, shapes

    model, processor = env.model("clip")
    scenes = shapes.make_scenes("test", 24, seed=int(env.rng.integers(1 << 30)))
    images = [s.render() for s in scenes]
    engine = cls(model, processor)
    engine.index_images(images)
    index = retrieval.ImageIndex().add(contrastive.embed_images(model, processor, images, progress=False))
    for query in (scenes[0].caption, scenes[5].caption, "a red circle"):
        expected = index.search(contrastive.embed_texts(model, processor, [query], progress=False), k=5)[0]
        hits = _hits(engine.search(query, top_k=5), 5, 24)
        got = [i for i, _ in hits]
        want = [h.position for h in expected]
        if got != want:
            raise CheckFailed(f"with the real CLIP, {query!r} gave images {got}; ImageIndex gives {want}")
        if max(abs(s - h.score) for (_, s), h in zip(hits, expected)) > 1e-3:
            raise CheckFailed(f"with the real CLIP, the scores for {query!r} are not the cosine similarities")


CHECKS = [
    Check("ranking", 2, "the top_k images are the brute-force best, best first",
          "score every image against the query, then sort by score, highest first, and keep top_k", check_ranking),
    Check("best_first", 1, "scores come in decreasing order",
          "return the results sorted by score, highest first (torch.sort(..., descending=True))", check_best_first),
    Check("cosine", 2, "scores are cosine similarities, not dot products",
          "divide the image and query embeddings by their lengths (F.normalize) before the dot product", check_cosine),
    Check("ties", 1, "equal scores: the lower index comes first",
          "use a stable sort (torch.sort(scores, descending=True, stable=True)); torch.topk does not promise an order "
          "for ties", check_ties),
    Check("k_larger", 1, "top_k larger than the gallery returns every image",
          "use min(top_k, number of images)", check_k_larger),
    Check("reindex", 1, "index_images again replaces the gallery",
          "index_images should overwrite what it stored before, not add to it", check_reindex),
    Check("embed_once", 1, "the gallery is embedded once, the query once per search",
          "call self.embed_images only in index_images and keep the result; search embeds only the query",
          check_embed_once),
    Check("real_clip", 1, "with the real CLIP, the same hits as vlmstudy.retrieval.ImageIndex",
          "use self.embed_images / self.embed_text (the given methods) and cosine similarity", check_real_clip,
          visible=False),
]
