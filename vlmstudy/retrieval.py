"""Image search: a vector index of embeddings, with exact (torch) and approximate (faiss) search.

::

    index = ImageIndex(backend="exact")            # or backend="faiss" for approximate search
    index.add(image_embeddings, metadata=paths)    # (N, D); ids default to 0, 1, 2, ...
    result = index.search(text_embedding, k=5)     # (D,) or (Q, D)
    result.scores, result.ids                      # (Q, k) each
    for hit in result[0]: print(hit.id, hit.score, hit.metadata)
    index.save("my-index"); index = ImageIndex.load("my-index")

Rules the index keeps:

* ``metric="cosine"`` (default) normalises every vector to unit length on ``add`` and every
  query on ``search``, so scores are cosine similarities in [-1, 1]. ``metric="dot"`` keeps the
  vectors as they are and scores with the raw inner product (a long vector wins more often).
* **Exact search** is a matrix product and ``torch.topk``, done in chunks of the database so the
  score matrix never holds more than about ``max_scores`` floats (1M x 512 works in bounded memory).
* **Ties** (equal scores) are ordered by insertion position: the vector added first comes first.
  That holds for the exact search. The faiss backend orders the hits it returns the same way, but
  which of several equally scored vectors make it into the top k is up to faiss.
* **faiss** (``backend="faiss"``) is an inverted-file index (``IndexIVFFlat`` on inner products):
  k-means splits the database into ``nlist`` cells and a query scans only the ``nprobe`` nearest
  cells. It is built lazily, on the first search after an ``add`` (or by :meth:`ImageIndex.build`),
  and keeps the vectors in torch too, so ``search(..., exact=True)``, :meth:`ImageIndex.recall`
  and :meth:`ImageIndex.save` work on it.
* **Files** are safe formats only: ``vectors.safetensors`` plus ``index.json`` in a folder, never
  pickle. A faiss index is rebuilt on load (same data and settings give the same index).
* Errors are :class:`RetrievalError` (a ``ValueError``), or :class:`~vlmstudy.errors.ConfigError`
  for an unknown backend or metric; every message says what to do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .errors import ConfigError, VlmStudyError

__all__ = [
    "BACKENDS", "METRICS", "Hit", "SearchResult", "ImageIndex", "RetrievalError", "EmptyIndexError",
    "DimensionMismatchError", "exact_topk", "clustered_vectors", "build_image_index", "search_text", "search_image",
    "with_backend", "caption_recall", "RetrievedAnswer", "retrieve_then_answer",
]

BACKENDS = ("exact", "faiss")
METRICS = ("cosine", "dot")
FORMAT_VERSION = 1
VECTORS_FILE = "vectors.safetensors"
META_FILE = "index.json"


class RetrievalError(VlmStudyError, ValueError):
    """Bad input to an :class:`ImageIndex` (the message says how to fix it)."""


class EmptyIndexError(RetrievalError):
    """Searching an index that holds no vectors yet."""


class DimensionMismatchError(RetrievalError):
    """Vectors or queries whose length differs from the index's dimension."""


# ----------------------------------------------------------------------------- results


class Hit(NamedTuple):
    """One search hit: the stored id, its score, its metadata and its position in the index."""

    id: Any
    score: float
    metadata: Any
    position: int


@dataclass
class SearchResult:
    """What :meth:`ImageIndex.search` returns for ``Q`` queries and ``k`` hits each.

    scores: ``(Q, k)`` float32 tensor, best first. positions: ``(Q, k)`` int64 tensor of
    insertion positions. ids: ``(Q, k)`` numpy array of the stored ids (int64 when every id is
    an int, else object). metadata: ``Q`` lists of ``k`` metadata entries.
    ``result[q]`` (or ``result.hits[q]``) is query ``q``'s list of :class:`Hit` ``(id, score,
    metadata, position)``; a single ``(D,)`` query still gives ``Q = 1``: use ``result[0]``.
    """

    scores: torch.Tensor
    positions: torch.Tensor
    ids: np.ndarray
    metadata: list[list[Any]]

    @property
    def hits(self) -> list[list[Hit]]:
        return [self[q] for q in range(len(self))]

    def __len__(self) -> int:
        return self.scores.shape[0]

    def __getitem__(self, q: int) -> list[Hit]:
        ids, scores, pos = self.ids[q].tolist(), self.scores[q].tolist(), self.positions[q].tolist()
        return [Hit(i, s, m, p) for i, s, m, p in zip(ids, scores, self.metadata[q], pos)]

    def __iter__(self) -> Iterator[list[Hit]]:
        return (self[q] for q in range(len(self)))

    def __repr__(self) -> str:
        q, k = self.scores.shape
        lines = [f"SearchResult({q} quer{'y' if q == 1 else 'ies'}, k={k})"]
        for qi in range(min(q, 3)):
            hits = ", ".join(f"{h.id!r}: {h.score:.3f}" for h in self[qi][:5])
            lines.append(f"  [{qi}] {hits}{', ...' if k > 5 else ''}")
        if q > 3:
            lines.append("  ...")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- exact top-k


def _sorted_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores`` ``(Q, C)``, ordered by score (descending), then by
    column (ascending). Exact under ties: among equal scores the lower columns are chosen."""
    if k >= scores.shape[1]:
        vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
        return vals, idx
    # one extra: if the (k+1)-th value equals the k-th, topk picked an arbitrary subset of the
    # tied values at the boundary; redo those rows with a stable sort (lower columns first)
    vals, idx = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
    tied = vals[:, k] == vals[:, k - 1]
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        v, i = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = v[:, :k], i[:, :k]
    # order the k chosen ones by (score desc, column asc)
    idx, perm = torch.sort(idx, dim=1)
    vals = vals.gather(1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, idx.gather(1, perm)


def exact_topk(queries: torch.Tensor, database: torch.Tensor, k: int, chunk_size: int | None = None,
               max_scores: int = 1 << 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` inner products: ``(scores, positions)``, each ``(Q, k)``.

    The database ``(N, D)`` is scanned in chunks of ``chunk_size`` rows (default: as many as keep
    the ``(Q, chunk)`` score block under ``max_scores`` floats, 128 MB); each chunk's top-k is
    merged into the running top-k. Ties go to the lower position, so the ranking does not depend
    on the chunk size (the scores may differ in the last bit: BLAS sums in another order for
    another block shape).
    """
    n = database.shape[0]
    out_vals, out_idx = [], []
    q_block = max(1, min(len(queries), 1024))
    for qs in range(0, len(queries), q_block):
        q = queries[qs:qs + q_block]
        rows = chunk_size or max(k, max_scores // len(q))
        best_vals = best_idx = None
        for start in range(0, n, rows):
            block = q @ database[start:start + rows].T
            vals, idx = _sorted_topk(block, min(k, block.shape[1]))
            idx = idx + start
            if best_vals is None:
                best_vals, best_idx = vals, idx
                continue
            # the running hits all have lower positions than this chunk's: a stable sort of
            # [running, chunk] keeps (score desc, position asc)
            vals = torch.cat([best_vals, vals], dim=1)
            idx = torch.cat([best_idx, idx], dim=1)
            vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
            best_vals, best_idx = vals[:, :k], idx.gather(1, perm[:, :k])
        out_vals.append(best_vals)
        out_idx.append(best_idx)
    return torch.cat(out_vals), torch.cat(out_idx)


# ----------------------------------------------------------------------------- the index


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ConfigError(f"Unknown {what} {value!r}: use one of {', '.join(map(repr, allowed))}.")
    return value.strip().lower()


def _import_faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise RetrievalError(
            "backend='faiss' needs the faiss package: `pip install faiss-cpu` (or `conda install -c "
            "pytorch faiss-cpu`), or use backend='exact'."
        ) from None
    return faiss


class ImageIndex:
    """A vector index of embeddings with ids and metadata; see the module docstring.

    dim: the vector length (``None``: taken from the first ``add``). backend: ``"exact"`` (torch
    matmul + top-k) or ``"faiss"`` (approximate, IVF-Flat). metric: ``"cosine"`` (vectors and
    queries normalised to unit length) or ``"dot"`` (raw inner product). chunk_size: database rows
    per block in exact search (``None``: automatic, bounded memory). nlist / nprobe: faiss cells
    and cells scanned per query (``None``: about ``sqrt(N)`` cells, ``max(8, nlist / 16)`` probed).
    """

    def __init__(self, dim: int | None = None, backend: str = "exact", metric: str = "cosine",
                 chunk_size: int | None = None, nlist: int | None = None, nprobe: int | None = None):
        self.backend = _check_choice(backend, BACKENDS, "backend")
        self.metric = _check_choice(metric, METRICS, "metric")
        if dim is not None and (not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1):
            raise RetrievalError(f"dim must be a positive integer (or None to take it from the first add), not {dim!r}.")
        for name, value in (("chunk_size", chunk_size), ("nlist", nlist), ("nprobe", nprobe)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise RetrievalError(f"{name} must be a positive integer or None (automatic), not {value!r}.")
        if self.backend == "faiss":
            _import_faiss()
        self.dim = None if dim is None else int(dim)
        self.chunk_size = chunk_size
        self.nlist = nlist
        self._nprobe = nprobe
        self._blocks: list[torch.Tensor] = []
        self._vectors: torch.Tensor | None = None
        self._ids: list[Any] = []
        self._id_set: set = set()
        self._metadata: list[Any] = []
        self._faiss = None  # built lazily, dropped on add

    # -- contents ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        extra = ""
        if self.backend == "faiss" and self._faiss is not None:
            extra = f", nlist={self._faiss.nlist}, nprobe={self._faiss.nprobe}"
        return f"ImageIndex({len(self)} vectors, dim={self.dim}, backend={self.backend!r}, metric={self.metric!r}{extra})"

    @property
    def vectors(self) -> torch.Tensor:
        """All stored vectors ``(N, D)`` float32 (unit length for ``metric="cosine"``)."""
        if self._blocks:
            parts = ([self._vectors] if self._vectors is not None else []) + self._blocks
            self._vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
            self._blocks = []
        if self._vectors is None:
            return torch.empty(0, self.dim or 0)
        return self._vectors

    @property
    def ids(self) -> list[Any]:
        return list(self._ids)

    @property
    def metadata(self) -> list[Any]:
        return list(self._metadata)

    def _as_matrix(self, x, what: str) -> torch.Tensor:
        """Validate and convert to a float32 CPU tensor ``(n, D)`` (normalised for cosine)."""
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu", torch.float32)
        else:
            try:
                arr = np.asarray(x, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise RetrievalError(f"{what} must be a tensor or array of numbers (n, D): {err}") from None
            t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        single = t.ndim == 1
        if single:
            t = t.unsqueeze(0)
        if t.ndim != 2:
            raise RetrievalError(f"{what} must have shape (n, D) or (D,), not {tuple(t.shape)}.")
        if self.dim is not None and t.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"{what} have length {t.shape[1]} but this index holds {self.dim}-dimensional vectors: "
                f"embed them with the same model as the index (or start a new ImageIndex(dim={t.shape[1]}))."
            )
        row_ok = torch.isfinite(t.sum(dim=1))  # a NaN or inf anywhere in a row makes its sum non-finite
        if t.shape[0] and not bool(row_ok.all()):
            bad = (~row_ok).nonzero().squeeze(1)[:5].tolist()
            raise RetrievalError(
                f"{what} contain NaN or infinite values (rows {bad}{'...' if len(bad) == 5 else ''}); "
                f"check the model's output (an fp16 overflow?) and drop or recompute those rows."
            )
        if self.metric == "cosine" and t.shape[0]:
            norms = t.norm(dim=1, keepdim=True)
            if bool((norms == 0).any()):
                bad = (norms.squeeze(1) == 0).nonzero().squeeze(1)[:5].tolist()
                raise RetrievalError(
                    f"{what} include all-zero vectors (rows {bad}), which have no direction for cosine "
                    f"similarity; drop them or use metric='dot'."
                )
            t = t / norms
        return t.contiguous()

    def add(self, vectors, ids: Sequence | None = None, metadata: Sequence | None = None) -> ImageIndex:
        """Add ``(N, D)`` vectors (tensor or array). ids: unique ints or strings (default: the
        running integers ``len(index), len(index)+1, ...``). metadata: one entry per vector (a file
        path, a caption, a dict ...; JSON-serialisable if you want to save). Returns ``self``."""
        vecs = self._as_matrix(vectors, "vectors")
        if self.metric == "dot":  # cosine made a new tensor already; never keep the caller's memory
            vecs = vecs.clone()
        n = vecs.shape[0]
        if n == 0:
            raise RetrievalError("add() got no vectors (shape (0, D)); pass at least one row.")
        if ids is None:
            start = len(self._ids)
            ids = list(range(start, start + n))
        else:
            ids = ids.tolist() if isinstance(ids, (np.ndarray, torch.Tensor)) else list(ids)
            if len(ids) != n:
                raise RetrievalError(f"add() got {n} vectors but {len(ids)} ids; pass one id per vector (or none).")
            bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, (int, str))]
            if bad:
                raise RetrievalError(f"ids must be ints or strings, not {type(bad[0]).__name__} ({bad[0]!r}).")
        dup = self._id_set.intersection(ids)
        if dup or len(set(ids)) != n:
            example = next(iter(dup)) if dup else next(i for i in ids if ids.count(i) > 1)
            raise RetrievalError(f"ids must be unique: {example!r} appears twice; pass distinct ids (or none for 0, 1, 2 ...).")
        if metadata is None:
            metadata = [None] * n
        else:
            if isinstance(metadata, (str, bytes, dict)):
                raise RetrievalError("metadata must be a sequence with one entry per vector (for example a list of paths).")
            metadata = list(metadata)
            if len(metadata) != n:
                raise RetrievalError(f"add() got {n} vectors but {len(metadata)} metadata entries; pass one per vector.")
        if self.dim is None:
            self.dim = int(vecs.shape[1])
        self._blocks.append(vecs)
        self._ids.extend(ids)
        self._id_set.update(ids)
        self._metadata.extend(metadata)
        self._faiss = None
        return self

    # -- search -----------------------------------------------------------------------------

    def _check_k(self, k) -> int:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise RetrievalError(f"k must be a positive integer, not {k!r}.")
        if k > len(self):
            raise RetrievalError(
                f"k={k} but the index holds only {len(self)} vector{'s' if len(self) != 1 else ''}; "
                f"ask for at most k=len(index) (= {len(self)}) or add more vectors."
            )
        return int(k)

    def search(self, queries, k: int = 5, exact: bool | None = None) -> SearchResult:
        """The ``k`` best vectors for each query ``(Q, D)`` or ``(D,)``, best first.

        exact: force the exact torch search on a faiss index (``None``: the index's backend).
        Raises :class:`EmptyIndexError` on an empty index, :class:`DimensionMismatchError` on a
        wrong query length and :class:`RetrievalError` when ``k > len(index)``.
        """
        if len(self) == 0:
            raise EmptyIndexError("The index is empty: add vectors first with index.add(embeddings) before searching.")
        q = self._as_matrix(queries, "queries")
        if q.shape[0] == 0:
            raise RetrievalError("search() got no queries (shape (0, D)); pass at least one.")
        k = self._check_k(k)
        if self.backend == "faiss" and not exact:
            scores, pos = self._faiss_search(q, k)
        else:
            scores, pos = exact_topk(q, self.vectors, k, self.chunk_size)
        return self._result(scores, pos)

    def _result(self, scores: torch.Tensor, pos: torch.Tensor) -> SearchResult:
        flat = pos.reshape(-1).tolist()
        ids = [self._ids[p] for p in flat]
        if all(isinstance(i, int) for i in ids):
            id_arr = np.asarray(ids, dtype=np.int64).reshape(pos.shape)
        else:
            id_arr = np.empty(len(ids), dtype=object)
            id_arr[:] = ids
            id_arr = id_arr.reshape(pos.shape)
        meta = [[self._metadata[p] for p in row] for row in pos.tolist()]
        return SearchResult(scores.float(), pos.long(), id_arr, meta)

    def recall(self, queries, k: int = 10) -> float:
        """Mean recall@k of this index's search against the exact search: the fraction of the
        exact top-k that the approximate top-k found (1.0 for ``backend="exact"``)."""
        approx = self.search(queries, k).positions
        exact = self.search(queries, k, exact=True).positions
        found = [len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())]
        return float(np.mean(found))

    # -- faiss ------------------------------------------------------------------------------

    @property
    def nprobe(self) -> int | None:
        """Cells a faiss query scans (more: slower, better recall). Settable."""
        if self._faiss is not None:
            return int(self._faiss.nprobe)
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise RetrievalError(f"nprobe must be a positive integer or None (automatic), not {value!r}.")
        self._nprobe = value
        if self._faiss is not None:
            self._faiss.nprobe = self._auto_nprobe(self._faiss.nlist)

    def _auto_nlist(self, n: int) -> int:
        # about sqrt(N) cells, and at least 39 training points per cell (faiss's own minimum)
        nlist = self.nlist or max(1, min(round(math.sqrt(n)), n // 39))
        return max(1, min(nlist, n))

    def _auto_nprobe(self, nlist: int) -> int:
        return min(nlist, self._nprobe or max(8, math.ceil(nlist / 16)))

    def build(self) -> ImageIndex:
        """Build the faiss index now (otherwise the first search does). No-op for ``exact``."""
        if self.backend != "faiss" or self._faiss is not None:
            return self
        if len(self) == 0:
            raise EmptyIndexError("The index is empty: add vectors first with index.add(embeddings), then build.")
        faiss = _import_faiss()
        data = self.vectors.numpy()
        nlist = self._auto_nlist(len(data))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10                    # k-means iterations (faiss default 25: slow on a laptop)
        index.cp.max_points_per_centroid = 64  # train on at most 64 * nlist vectors
        index.cp.seed = 1234
        index.train(data)
        index.add(data)
        index.nprobe = self._auto_nprobe(nlist)
        self._faiss, self._faiss_quantizer = index, quantizer  # the index needs its quantizer alive
        return self

    def _faiss_search(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.build()
        scores, pos = self._faiss.search(np.ascontiguousarray(q.numpy()), k)
        scores, pos = torch.from_numpy(scores), torch.from_numpy(pos)
        missing = (pos < 0).any(dim=1)
        if bool(missing.any()):  # the probed cells held fewer than k vectors: answer exactly
            rows = missing.nonzero().squeeze(1)
            s, p = exact_topk(q[rows], self.vectors, k, self.chunk_size)
            scores[rows], pos[rows] = s, p
        # same tie order as the exact search: (score desc, position asc)
        pos, perm = torch.sort(pos, dim=1)
        scores = scores.gather(1, perm)
        scores, perm = torch.sort(scores, dim=1, descending=True, stable=True)
        return scores, pos.gather(1, perm)

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the index to the folder ``path`` (created): ``vectors.safetensors`` (vectors, and
        integer ids) and ``index.json`` (settings, string ids, metadata). No pickle. Returns the folder."""
        from safetensors.torch import save_file

        path = Path(path)
        ids_are_ints = all(isinstance(i, int) for i in self._ids)
        meta = {
            "format": "vlmstudy.ImageIndex", "version": FORMAT_VERSION, "count": len(self),
            "dim": self.dim, "backend": self.backend, "metric": self.metric,
            "chunk_size": self.chunk_size, "nlist": self.nlist, "nprobe": self._nprobe,
            "ids": None if ids_are_ints else self._ids,
            "metadata": self._metadata,
        }
        try:
            text = json.dumps(meta, ensure_ascii=False)
        except (TypeError, ValueError) as err:
            raise RetrievalError(
                f"Cannot save: the metadata is not JSON-serialisable ({err}). Store plain strings, "
                f"numbers, lists or dicts (for example str(path) instead of a Path)."
            ) from None
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"vectors": self.vectors.contiguous()}
        if ids_are_ints:
            tensors["ids"] = torch.tensor(self._ids, dtype=torch.int64)
        save_file(tensors, str(path / VECTORS_FILE), metadata={"format": "vlmstudy.ImageIndex"})
        (path / META_FILE).write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ImageIndex:
        """Read an index written by :meth:`save` (a faiss index is rebuilt at its first search).

        Both files are checked, not trusted: a cut or foreign ``vectors.safetensors``, an
        ``index.json`` with wrong types or an unknown version, vectors with NaN / inf (or, for
        cosine, not of unit length) raise :class:`RetrievalError` saying which file is wrong.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / META_FILE).is_file() or not (path / VECTORS_FILE).is_file():
            raise RetrievalError(
                f"{path} is not a saved ImageIndex: it needs {META_FILE} and {VECTORS_FILE} "
                f"(write one with index.save({str(path)!r}))."
            )
        again = "save the index again with index.save()"
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise RetrievalError(f"Could not read {path / META_FILE} ({type(err).__name__}: "
                                 f"{str(err)[:120]}); {again}.") from None
        try:
            tensors = load_file(str(path / VECTORS_FILE))
        except (OSError, ValueError, SafetensorError) as err:
            raise RetrievalError(f"{path / VECTORS_FILE} is cut short or not a safetensors file "
                                 f"({str(err)[:120]}); {again}.") from None
        settings = _checked_meta(meta, path / META_FILE, again)
        count = settings.pop("count")
        vectors = tensors.get("vectors")
        ids = meta.get("ids")
        if "ids" in tensors:
            raw = tensors["ids"]
            if raw.ndim != 1 or raw.dtype != torch.int64:
                raise RetrievalError(f"{path / VECTORS_FILE} holds ids of shape {tuple(raw.shape)} and type {raw.dtype}, "
                                     f"not a 1-D int64 list; {again}.")
            ids = raw.tolist()
        if vectors is None or vectors.ndim != 2 or vectors.shape[0] != count or ids is None or len(ids) != count \
                or len(meta["metadata"]) != count:
            raise RetrievalError(f"The files in {path} disagree on the number of vectors; {again}.")
        if not vectors.is_floating_point():
            raise RetrievalError(f"{path / VECTORS_FILE} holds {vectors.dtype} vectors, not floating point; {again}.")
        if count and settings["dim"] != vectors.shape[1]:
            raise RetrievalError(f"{path / META_FILE} says dim {settings['dim']} but the vectors have "
                                 f"{vectors.shape[1]} values each; {again}.")
        if len(set(ids)) != len(ids) or any(isinstance(i, bool) or not isinstance(i, (int, str)) for i in ids):
            raise RetrievalError(f"The ids in {path} are not unique ints or strings; {again}.")
        vectors = vectors.float().contiguous()
        row_ok = torch.isfinite(vectors).all(dim=1)
        if count and not bool(row_ok.all()):
            bad = (~row_ok).nonzero().squeeze(1)[:5].tolist()
            raise RetrievalError(f"{path / VECTORS_FILE} holds NaN or infinite values (rows {bad}): every score "
                                 f"against them would be NaN. Recompute those embeddings and {again}.")
        if count and settings["metric"] == "cosine":
            off = (vectors.norm(dim=1) - 1).abs() > 1e-3
            if bool(off.any()):
                raise RetrievalError(f"{path / VECTORS_FILE} holds vectors that are not of unit length (rows "
                                     f"{off.nonzero().squeeze(1)[:5].tolist()}), which a cosine index never "
                                     f"saves; {again}.")
        try:
            index = cls(**settings)
        except ConfigError as err:
            raise RetrievalError(f"{path / META_FILE}: {err}") from None
        if count:
            # the stored vectors are already normalised; add them as they are
            index.dim = int(vectors.shape[1])
            index._vectors = vectors
            index._ids = list(ids)
            index._id_set = set(index._ids)
            index._metadata = list(meta["metadata"])
        return index


def _checked_meta(meta, where: Path, again: str) -> dict:
    """The constructor settings and ``count`` from a saved ``index.json``, every type checked."""
    if not isinstance(meta, dict) or meta.get("format") != "vlmstudy.ImageIndex":
        raise RetrievalError(f"{where} is not an ImageIndex description; {again}.")
    version = meta.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise RetrievalError(f"{where.parent} was written by a newer vlmstudy (format {version}); update vlmstudy.")
    problems = []
    if version != FORMAT_VERSION or isinstance(version, bool):
        problems.append(f"version {version!r} (expected {FORMAT_VERSION})")

    def whole(name, minimum, optional):
        value = meta.get(name)
        if (value is None and optional) or (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            return value
        problems.append(f"{name} {value!r}")
        return None

    count = whole("count", 0, False)
    settings = {"dim": whole("dim", 1, True), "chunk_size": whole("chunk_size", 1, True),
                "nlist": whole("nlist", 1, True), "nprobe": whole("nprobe", 1, True)}
    for name, allowed in (("backend", BACKENDS), ("metric", METRICS)):
        settings[name] = meta.get(name)
        if settings[name] not in allowed:
            problems.append(f"{name} {settings[name]!r}")
    if not isinstance(meta.get("metadata"), list):
        problems.append("metadata (not a list)")
    if meta.get("ids") is not None and not isinstance(meta.get("ids"), list):
        problems.append("ids (not a list)")
    if problems:
        raise RetrievalError(f"{where} has been altered or damaged: {', '.join(problems)[:200]}; {again}.")
    settings["count"] = count
    return settings


# ----------------------------------------------------------------------------- test data


def clustered_vectors(n: int, dim: int = 512, n_clusters: int | None = None, n_queries: int = 0,
                      seed: int = 0, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic embeddings with structure, for tests, benchmarks and the approximate-search demo.

    Real embeddings are clustered (similar images lie close); uniform random vectors are not, and
    on them nearest neighbours are barely nearer than anything else, so approximate search looks
    worse than it is in practice. Here: ``n_clusters`` Gaussian clusters (default ``n // 500``,
    at least 8) whose centres come in families (about 20 clusters per family, sibling centres at
    cosine ~0.5), each cluster with its own spread (a point's cosine to its centre is 0.55-0.9).
    Returns ``(database (n, dim), queries (n_queries, dim))``, unit-length float32, seeded;
    the queries are fresh points from the same clusters, not copies of database rows.
    """
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(8, n // 500)
    n_families = max(1, n_clusters // 20)

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    families = unit(rng.standard_normal((n_families, dim), dtype=np.float32))
    centres = unit(families[rng.integers(0, n_families, n_clusters)]
                   + unit(rng.standard_normal((n_clusters, dim), dtype=np.float32)))
    spread = rng.uniform(0.5, 1.5, n_clusters).astype(np.float32)

    def points(count):
        out = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, chunk):
            m = min(chunk, count - start)
            c = rng.integers(0, n_clusters, m)
            noise = rng.standard_normal((m, dim), dtype=np.float32) * (spread[c] / math.sqrt(dim))[:, None]
            noise += centres[c]
            out[start:start + m] = unit(noise)
        return out

    return points(n), points(n_queries)


# ----------------------------------------------------------------------------- with a model


def build_image_index(model, processor, images: Sequence, metadata: Sequence | None = None,
                      backend: str = "exact", ids: Sequence | None = None, batch_size: int = 64,
                      progress: bool = True) -> ImageIndex:
    """Embed ``images`` (paths, PIL images, arrays) with a CLIP/SigLIP model and index them.

    metadata: one entry per image (default: the image itself when it is a path, else ``None``).
    """
    from .contrastive import embed_images

    images = list(images)
    if not images:
        raise RetrievalError("build_image_index() got no images; pass at least one.")
    if metadata is None:
        metadata = [str(im) if isinstance(im, (str, Path)) else None for im in images]
    emb = embed_images(model, processor, images, batch_size=batch_size, progress=progress)
    return ImageIndex(dim=emb.shape[1], backend=backend).add(emb, ids=ids, metadata=metadata)


def search_text(index: ImageIndex, model, processor, query: str | Sequence[str], k: int = 5) -> SearchResult:
    """Search ``index`` with a text query (or a list of them) embedded by the same model."""
    from .contrastive import embed_texts

    texts = [query] if isinstance(query, str) else list(query)
    return index.search(embed_texts(model, processor, texts, progress=False), k)


def search_image(index: ImageIndex, model, processor, image, k: int = 5) -> SearchResult:
    """Search ``index`` with a query image (path, PIL image or array; a list for several)."""
    from .contrastive import embed_images

    images = list(image) if isinstance(image, (list, tuple)) else [image]
    return index.search(embed_images(model, processor, images, progress=False), k)


def with_backend(index: ImageIndex, backend: str, nlist: int | None = None, nprobe: int | None = None) -> ImageIndex:
    """A new index holding the same vectors, ids and metadata as ``index``, searched with another
    ``backend`` (``"exact"`` or ``"faiss"``; for faiss, ``nlist`` cells of which ``nprobe`` are
    scanned, automatic when None). Nothing is embedded again."""
    if len(index) == 0:
        raise EmptyIndexError("The index is empty: add vectors first with index.add(embeddings).")
    out = ImageIndex(dim=index.dim, backend=backend, metric=index.metric, chunk_size=index.chunk_size,
                     nlist=nlist, nprobe=nprobe)
    return out.add(index.vectors, ids=index.ids, metadata=index.metadata)


def caption_recall(index: ImageIndex, model, processor, k: int = 1) -> float:
    """Text -> image recall@k of an index whose metadata are the images' captions: each stored
    caption is a query, and it counts as found when one of its top ``k`` hits has that caption
    (two images with the same caption cannot be told apart by text, so either is right)."""
    captions = index.metadata
    if not captions or not all(isinstance(c, str) for c in captions):
        raise RetrievalError("caption_recall needs an index whose metadata are the images' captions (strings).")
    result = search_text(index, model, processor, captions, k=k)
    return sum(c in row for c, row in zip(captions, result.metadata)) / len(captions)


# ----------------------------------------------------------------------------- retrieve, then answer


@dataclass
class RetrievedAnswer:
    """What :func:`retrieve_then_answer` found: the ``hits`` for ``query`` (best first), the
    best ``image``, the ``prompt`` the generator got (the question in its family's format) and
    its ``answer``."""

    query: str
    question: str
    hits: list[Hit]
    image: Any
    prompt: str
    answer: str

    @property
    def hit(self) -> Hit:
        return self.hits[0]

    def __repr__(self) -> str:
        return (f"RetrievedAnswer(query={self.query!r}, best image #{self.hit.position} "
                f"(score {self.hit.score:.3f}), question={self.question!r}, answer={self.answer!r})")


def retrieve_then_answer(index: ImageIndex, query: str, question: str, retriever: tuple, generator="blip-vqa",
                         images: Sequence | None = None, k: int = 3, **generation) -> RetrievedAnswer:
    """Retrieval-augmented answering in two steps: search ``index`` for the image that best
    matches the text ``query`` (with ``retriever = (model, processor)``, the dual encoder that
    built the index), then ask ``question`` about that image with ``generator``: a
    ``(model, processor)`` pair or a name, of a model that answers questions (BLIP-VQA, BLIP-2,
    InstructBLIP, LLaVA; see :func:`vlmstudy.tasks.answer`, which does this step).

    images: the indexed images in index order (default: each hit's metadata, read as a path).
    k: how many hits to keep in the result (only the best one is answered about).
    generation: decoding settings for :func:`vlmstudy.tasks.answer` (``preset=`` ...).
    """
    from . import tasks
    from .images import load_image

    result = search_text(index, *retriever, query, k=k)
    hits = result[0]
    best = hits[0]
    if images is not None:
        if len(images) != len(index):
            raise RetrievalError(f"images has {len(images)} entries but the index holds {len(index)}; "
                                 f"pass the images in the order they were indexed.")
        image = images[best.position]
    elif isinstance(best.metadata, (str, Path)) and Path(best.metadata).is_file():
        image = load_image(best.metadata)
    else:
        raise RetrievalError(f"The best hit's metadata ({best.metadata!r}) is not an image file: pass "
                             f"images=[...] with the indexed images in index order.")
    prompt = tasks.format_question(question, generator)
    answer = tasks.answer(image, question, model=generator, **generation)
    return RetrievedAnswer(query=query, question=question, hits=hits, image=image, prompt=prompt, answer=answer)
