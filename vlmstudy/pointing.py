"""The pointing game (notebook 09): does an attention or relevancy map's maximum land on the object
a phrase names?

* :func:`pointing_game` scores one method on ShapesWorld scenes: for every object of every scene,
  a hit when the map's maximum (bilinearly upsampled to 64 px) lies inside the object's mask
  dilated by :data:`DEFAULT_TOLERANCE` px; :func:`chance_level` is a random point's hit rate.
* The methods: maps of :mod:`vlmstudy.attention` turned into ``method(scenes, targets) -> maps``
  (:func:`clip_relevancy_method`, ..., and the model-free :func:`centre_method` and
  :func:`oracle_method`); :data:`METHODS` names the table's.
* :func:`pointing_game_table` runs them side by side, :func:`format_table` prints it, and
  ``python -m vlmstudy.pointing --n 200`` or ``python benchmarks/bench_pointing_game.py --n 200``
  (:func:`main`) writes it to ``benchmarks/results/pointing_game.json`` (:func:`stored_results`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import shapes
from .attention import (
    _answer_ids,
    _blip_cross_attentions,
    _blip_text_ids,
    _llava_batch,
    _llava_maps,
    _pixels,
    _record,
    _to_grid,
    clip_gradcam,
    clip_relevancy,
    cls_attention_map,
    llava_answer_relevancy,
    patch_grid,
    rollout_map,
    vision_attentions,
)
from .errors import ConfigError
from .torch_utils import model_device_dtype

__all__ = [
    "DEFAULT_TOLERANCE", "dilate", "PointingResult", "pointing_trials", "chance_level", "pointing_game",
    "clip_relevancy_method", "clip_gradcam_method", "clip_cls_method", "clip_rollout_method", "blip_words_method",
    "llava_question", "llava_attention_method", "llava_relevancy_method", "centre_method", "oracle_method",
    "METHODS", "pointing_scenes", "pointing_game_table", "results_path", "stored_results", "format_table", "main",
]


#: Pointing-game tolerance in pixels (at 64 px): a map's maximum within this many pixels of the
#: object's mask counts as a hit (the mask is dilated by a (2t+1) x (2t+1) square, i.e. Chebyshev
#: distance <= t). Anti-aliased edges and an 8 x 8 map's coarse peak make exact-edge hits a lottery.
DEFAULT_TOLERANCE = 2


def dilate(mask: np.ndarray, pixels: int = DEFAULT_TOLERANCE) -> np.ndarray:
    """Grow a boolean mask (..., H, W) by ``pixels`` in every direction (a square structuring
    element: Chebyshev distance <= pixels)."""
    m = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return m
    t = torch.from_numpy(m.astype(np.float32)).reshape(-1, 1, *m.shape[-2:])
    out = F.max_pool2d(t, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return out.reshape(m.shape).numpy() > 0.5


def _peak(heatmap, size: int) -> tuple[int, int]:
    """(row, col) of the map's maximum after bilinear upsampling to ``size`` x ``size``."""
    from .plotting import upsample_heatmap

    h = np.asarray(heatmap, dtype=np.float64)
    up = h if h.shape == (size, size) else upsample_heatmap(h, (size, size))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(up)), up.shape))


@dataclass
class PointingResult:
    """One method's pointing-game score: ``hits`` of ``trials`` (scene, object) pairs."""

    method: str
    hits: int
    trials: int
    chance: float
    seconds: float = 0.0
    per_trial: list[bool] = field(default_factory=list, repr=False)
    extra: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.hits / self.trials if self.trials else 0.0

    def as_row(self) -> dict:
        lo, hi = _wilson(self.hits, self.trials)
        return {"method": self.method, "accuracy": round(self.accuracy, 4), "hits": self.hits, "trials": self.trials,
                "ci95": [round(lo, 4), round(hi, 4)], "chance": round(self.chance, 4),
                "seconds": round(self.seconds, 2), **self.extra}


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pointing_trials(scenes: Sequence[shapes.Scene]) -> tuple[list[shapes.Scene], list[int]]:
    """Every (scene, object index) pair: each object of each scene is a target once."""
    pairs = [(s, i) for s in scenes for i in range(len(s.objects))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def chance_level(scenes: Sequence[shapes.Scene], size: int = 64, tolerance: int = DEFAULT_TOLERANCE) -> float:
    """Hit rate of a uniformly random point: mean share of the image covered by the target's
    (dilated) mask, over every (scene, object) trial."""
    shares = [dilate(shapes.masks(s, size)[i], tolerance).mean() for s, i in zip(*pointing_trials(scenes))]
    return float(np.mean(shares)) if shares else 0.0


def pointing_game(method: Callable, scenes: Sequence[shapes.Scene], size: int = 64,
                  tolerance: int = DEFAULT_TOLERANCE, name: str | None = None, batch_size: int = 32) -> PointingResult:
    """The pointing game: for every object of every scene, ask ``method`` for a map of that object
    and count a hit when the map's maximum (after bilinear upsampling to ``size`` px) lies inside
    the object's mask dilated by ``tolerance`` px (:data:`DEFAULT_TOLERANCE`).

    method: ``method(scenes, targets) -> maps``, a batch: ``targets[i]`` is the index of the
    object in ``scenes[i].objects``; maps ``(n, h, w)`` at any resolution (8 x 8 patches, or
    ``size`` x ``size``). Returns a :class:`PointingResult` with the chance level alongside.
    """
    all_scenes, all_targets = pointing_trials(scenes)
    hits: list[bool] = []
    shares: list[float] = []
    start = time.perf_counter()
    for i in range(0, len(all_scenes), batch_size):
        sc, tg = all_scenes[i:i + batch_size], all_targets[i:i + batch_size]
        maps = method(sc, tg)
        if len(maps) != len(sc):
            raise ConfigError(f"method returned {len(maps)} maps for {len(sc)} trials; return one map per trial.")
        for scene, t, m in zip(sc, tg, maps):
            target = dilate(shapes.masks(scene, size)[t], tolerance)
            r, c = _peak(m, size)
            hits.append(bool(target[r, c]))
            shares.append(float(target.mean()))
    seconds = time.perf_counter() - start
    return PointingResult(name or getattr(method, "__name__", "method"), int(sum(hits)), len(hits),
                          float(np.mean(shares)) if shares else 0.0, seconds, hits)


def _render(scenes, size: int = 64):
    return [shapes.render(s, size) for s in scenes]


def _clip_text(obj) -> str:
    return shapes.object_phrase(obj)


def clip_relevancy_method(model, processor) -> Callable:
    """Pointing-game method: :func:`clip_relevancy` with the object's phrase ("a red circle")."""
    def method(scenes, targets):
        return clip_relevancy(model, processor, _render(scenes), [_clip_text(s.objects[t]) for s, t in zip(scenes, targets)])
    return method


def clip_gradcam_method(model, processor) -> Callable:
    def method(scenes, targets):
        return clip_gradcam(model, processor, _render(scenes), [_clip_text(s.objects[t]) for s, t in zip(scenes, targets)])
    return method


def clip_cls_method(model, processor) -> Callable:
    """Phrase-independent baseline: last-layer CLS attention (the same map for every object)."""
    def method(scenes, targets):
        return cls_attention_map(vision_attentions(model, processor, _render(scenes)))
    return method


def clip_rollout_method(model, processor) -> Callable:
    """Phrase-independent baseline: attention rollout from CLS."""
    def method(scenes, targets):
        return rollout_map(vision_attentions(model, processor, _render(scenes)))
    return method


def _caption_with_spans(processor, scene) -> tuple[list[int], list[list[int]]]:
    """The scene's caption as token ids, and for each object the positions of its colour and shape words."""
    ids, spans = [], []
    for i, obj in enumerate(scene.objects):
        if i:
            ids += _blip_text_ids(processor, "and")
        start = len(ids)
        phrase = _blip_text_ids(processor, shapes.object_phrase(obj))
        ids += phrase + _blip_text_ids(processor, shapes.POSITION_PHRASES[obj.position])
        # "a red circle": the colour and shape are the phrase's last two tokens
        spans.append([start + len(phrase) - 2, start + len(phrase) - 1])
    return ids, spans


def blip_words_method(model, processor, step: str = "predict", layers=None) -> Callable:
    """Pointing-game method: BLIP decoder cross-attention for the object's colour and shape words,
    teacher-forcing the scene's caption (see :func:`blip_word_attention` for ``step``)."""
    @torch.no_grad()
    def method(scenes, targets):
        device, _ = model_device_dtype(model)
        bos = model.config.text_config.bos_token_id
        rows, spans = zip(*[_caption_with_spans(processor, s) for s in scenes])
        width = max(len(r) for r in rows) + 1
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, : len(r) + 1] = torch.tensor([bos] + r)
            mask[b, : len(r) + 1] = 1
        att = _blip_cross_attentions(model, _pixels(processor, _render(scenes), model), ids, mask)
        att = att[list(layers)] if layers is not None else att
        a = att.mean(dim=(0, 2))                                     # (B, T, 1 + grid^2)
        shift = 0 if step == "predict" else 1                        # row j predicts token j (ids shifted by BOS)
        grid = patch_grid(model)
        out = []
        for b, (span, t) in enumerate(zip(spans, targets)):
            rows_ = [p + shift for p in span[t]]
            out.append(_to_grid(a[b, rows_, 1:].mean(0), grid).cpu().numpy())
        return np.stack(out)
    return method


def llava_question(obj) -> str:
    """The question the LLaVA pointing-game methods ask about an object: its colour, by position
    (``"what colour is the shape on the left?"``); the answer is the object's colour word."""
    return f"what colour is the shape {shapes.POSITION_PHRASES[obj.position]}?"


def llava_attention_method(model, processor, layers=None, record: dict | None = None) -> Callable:
    """Pointing-game method: LLaVA's attention to the image tokens at the step that writes the
    answer to :func:`llava_question` (the target's colour word), averaged over heads and layers.
    ``record`` (a dict) collects how often that answer is the right colour."""
    @torch.no_grad()
    def method(scenes, targets):
        enc = _llava_batch(model, processor, _render(scenes), [llava_question(s.objects[t]) for s, t in zip(scenes, targets)])
        last = torch.full((len(scenes), 1), enc["input_ids"].shape[1] - 1, device=enc["input_ids"].device)
        maps, out = _llava_maps(model, enc, last, layers)
        _record(record, out.logits[:, -1], _answer_ids(processor, [s.objects[t].color for s, t in zip(scenes, targets)]))
        return maps[:, 0].cpu().numpy()
    return method


def llava_relevancy_method(model, processor, record: dict | None = None) -> Callable:
    """Pointing-game method: :func:`llava_answer_relevancy` for :func:`llava_question` and the
    target's true colour word."""
    def method(scenes, targets):
        return llava_answer_relevancy(model, processor, _render(scenes),
                                      [llava_question(s.objects[t]) for s, t in zip(scenes, targets)],
                                      [s.objects[t].color for s, t in zip(scenes, targets)], record=record)
    return method


def centre_method(scenes, targets):
    """Text-blind, model-free baseline: a map peaked at the image centre (hits whenever the target
    is the centre object). Attention maps that score like this are only looking at the middle."""
    g = np.arange(8) - 3.5
    bump = np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / 8.0)
    return np.repeat(bump[None], len(scenes), axis=0)


def oracle_method(scenes, targets):
    """The target's own mask: scores 100 % (a check of the scoring, not a model)."""
    return np.stack([shapes.masks(s)[t].astype(np.float32) for s, t in zip(scenes, targets)])


#: The pointing-game table's methods: name -> (model name, factory(model, processor) -> method, text-conditioned?);
#: a model name of None: the method needs no model (factory() returns it).
METHODS: dict[str, tuple[str, Callable, bool]] = {
    "CLIP relevancy (Chefer et al.)": ("clip", clip_relevancy_method, True),
    "CLIP Grad-CAM (penultimate tokens)": ("clip", clip_gradcam_method, True),
    "CLIP last-layer CLS attention": ("clip", clip_cls_method, False),
    "CLIP attention rollout": ("clip", clip_rollout_method, False),
    "BLIP cross-attention (colour + shape words)": ("blip-caption", blip_words_method, True),
    "LLaVA attention writing the colour word": ("llava", llava_attention_method, True),
    "LLaVA input x gradient of the colour word": ("llava", llava_relevancy_method, True),
    "image centre (fixed map, no model)": (None, lambda: centre_method, False),
}


def pointing_scenes(n: int = 200, seed: int = 0, split: str = "test", min_objects: int = 2) -> list[shapes.Scene]:
    """The first ``n`` scenes of ``split`` (drawn with ``seed``) that have at least ``min_objects`` objects."""
    out: list[shapes.Scene] = []
    batch = 2 * n + 8
    while len(out) < n:
        pool = shapes.make_scenes(split, batch, seed)
        out = [s for s in pool if len(s.objects) >= min_objects][:n]
        batch *= 2
    return out


def _training_status(name: str) -> dict:
    import json

    from .zoo import get_card

    card = get_card(name)
    path = card.stand_in_dir / "training.json"
    if not path.exists():
        return {"trained": None}
    import hashlib

    data = json.loads(path.read_text())
    weights = card.stand_in_dir / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.exists() else None
    return {"trained": True, "train_steps": (data.get("config") or {}).get("steps") or
            (data.get("config") or {}).get("train_steps"), "metrics": data.get("metrics", {}),
            "weights_sha256_16": digest}


def pointing_game_table(n: int = 200, seed: int = 0, methods: Sequence[str] | None = None, split: str = "test",
                        tolerance: int = DEFAULT_TOLERANCE, models: dict | None = None,
                        progress: bool = False) -> list[dict]:
    """Every method of :data:`METHODS` (or ``methods``) on the same ``n`` scenes with 2-3 objects
    (every object a target once), side by side with the chance level. Returns rows (dicts):
    method, accuracy, hits, trials, ci95 (Wilson), chance, seconds, model, text_conditioned
    (and answer_accuracy for LLaVA). ``models``: ``{"clip": (model, processor), ...}`` to reuse
    loaded models; the others are loaded with :func:`vlmstudy.load`.
    """
    from .zoo import load

    names = list(methods) if methods is not None else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
    scenes = pointing_scenes(n, seed, split)
    models = dict(models or {})
    rows = []
    for name in names:
        model_name, factory, conditioned = METHODS[name]
        record: dict = {}
        if model_name is None:
            method = factory()
        else:
            if model_name not in models:
                models[model_name] = load(model_name)
            model, processor = models[model_name]
            takes_record = factory in (llava_attention_method, llava_relevancy_method)
            method = factory(model, processor, record=record) if takes_record else factory(model, processor)
        result = pointing_game(method, scenes, tolerance=tolerance, name=name)
        row = result.as_row()
        row.update(model=model_name, text_conditioned=conditioned)
        if record.get("total"):
            row["answer_accuracy"] = round(record["correct"] / record["total"], 4)
        rows.append(row)
        if progress:
            print(f"{name:55s} {row['accuracy']:.3f}  ({row['hits']}/{row['trials']}, {row['seconds']:.1f} s)", flush=True)
    chance = chance_level(scenes, tolerance=tolerance)
    rows.append({"method": "chance (random point)", "accuracy": round(chance, 4), "hits": None,
                 "trials": rows[0]["trials"] if rows else None, "ci95": None, "chance": round(chance, 4),
                 "seconds": 0.0, "model": None, "text_conditioned": None})
    return rows


def results_path():
    """Where ``python -m vlmstudy.pointing`` writes its table by default."""
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "pointing_game.json"


def stored_results() -> dict | None:
    """The stored full-size pointing-game run (``benchmarks/results/pointing_game.json``), or None."""
    import json

    path = results_path()
    return json.loads(path.read_text()) if path.exists() else None


def format_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`pointing_game_table` as a Markdown table."""
    lines = ["| method | reads the text | pointing accuracy | hits / trials | 95% CI | chance | model's answers right |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f"{r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}" if r.get("ci95") else ""
        ht = f"{r['hits']}/{r['trials']}" if r.get("hits") is not None else ""
        reads = {True: "yes", False: "no"}.get(r.get("text_conditioned"), "")
        answers = f"{r['answer_accuracy']:.2f}" if r.get("answer_accuracy") is not None else ""
        lines.append(f"| {r['method']} | {reads} | {r['accuracy']:.3f} | {ht} | {ci} | {r['chance']:.3f} | {answers} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m vlmstudy.pointing") -> int:
    """The pointing-game table from the command line: run it, print it, write the JSON (with the
    settings, the models' training status and the machine). ``prog`` is recorded as the command."""
    import argparse
    import json
    import os
    import platform
    from pathlib import Path

    parser = argparse.ArgumentParser(prog=prog, description="Attention-map pointing game on ShapesWorld (notebook 09).")
    parser.add_argument("--n", type=int, default=200, help="test scenes with 2-3 objects (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE, help="mask dilation in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None,
                        help="JSON file (default benchmarks/results/pointing_game.json in the repository)")
    args = parser.parse_args(argv)
    import transformers

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = pointing_game_table(args.n, args.seed, tolerance=args.tolerance, progress=True)
    print()
    print(format_table(rows))
    out = Path(args.out) if args.out else results_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": "pointing_game",
        "command": f"{prog} --n {args.n} --seed {args.seed}" + (f" --tolerance {args.tolerance}"
                                                                   if args.tolerance != DEFAULT_TOLERANCE else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": {"n_scenes": args.n, "seed": args.seed, "split": "test", "objects_per_scene": "2-3",
                   "targets": "every object of every scene", "image_size": 64, "tolerance_px": args.tolerance,
                   "hit": "argmax of the map, bilinearly upsampled to 64 px, inside the target mask dilated by "
                          f"{args.tolerance} px (square structuring element)"},
        "rows": rows,
        "models": {m: _training_status(m) for m in sorted({v[0] for v in METHODS.values()} - {None})},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "load_average": list(os.getloadavg()),
                    "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
