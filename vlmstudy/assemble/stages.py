"""LLaVA's two training stages for an assembled model, on ShapesWorld, with a short default budget.

- Stage 1, feature alignment: only the projector learns, on "describe the image." -> caption;
  the vision tower and the language model stay frozen (LLaVA-1.5: 558K image-caption pairs).
- Stage 2, visual instruction tuning: projector and language model learn on questions and
  multi-turn dialogues (LLaVA-1.5: 665K conversations); the tower stays frozen unless asked.

Both use the zoo's training loop (:func:`vlmstudy.zoo.train_loop.train_loop`: AdamW, warm-up +
cosine, tqdm progress), its padding and its scene pools; loss only on the answer tokens. Each
returns a :class:`StageResult` with the loss history and the per-kind accuracy measured after it
(:func:`per_kind_accuracy`, through :func:`vlmstudy.evaluation.accuracy_by_kind`).
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field

import torch

from .. import phrasings, shapes
from ..prompting import IGNORE, ids, sample_prompt
from ..settings import seed_everything


@dataclass
class StageConfig:
    """Budget of one stage. The defaults take seconds on a laptop CPU (a demonstration, not the
    zoo's full recipe: ``vlmstudy zoo train llava`` runs stage 1 for 600 and stage 2 for 2400 steps)."""

    steps: int = 60
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 10
    pool: int = 1200  # training scenes, rendered once
    paraphrase_share: float = 0.6  # stage 2 questions said with a training paraphrase
    varied_share: float = 0.0  # pictures drawn with training variety (shapes.render_varied)
    eval_n: int = 60  # test scenes for the per-kind accuracy after the stage (0: skip)
    seed: int = 0


@dataclass
class StageResult:
    """What a stage did: its name, loss ``history`` (``[{"step", "loss", "seconds"}]``, smoothed,
    from the zoo loop), ``seconds``, the trainable parameter count, and ``accuracy`` after it
    (``{"overall": ..., "colour": ..., ...}``, empty when ``eval_n`` is 0)."""

    stage: str
    history: list[dict]
    seconds: float
    trainable: int
    accuracy: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data

_POOLS: dict[tuple, tuple] = {}


def _pool(processor, cfg: StageConfig):
    """Training scenes and their pixels ``(n, 3, S, S)``, normalised as the image processor does
    (rendered once per process and pool settings: both stages and the ablations share them)."""
    from ..zoo.common import scene_pool, to_pixels

    ip = processor.image_processor
    size = ip.crop_size["height"]
    key = (cfg.pool, cfg.seed, size, cfg.varied_share)
    if key not in _POOLS:
        _POOLS.clear()
        _POOLS[key] = scene_pool("train", cfg.pool, cfg.seed, size, progress=False, varied_share=cfg.varied_share)
    scenes, pixels_u8 = _POOLS[key]
    pixels = to_pixels(pixels_u8, mean=ip.image_mean, std=ip.image_std)
    from PIL import Image

    check = processor.image_processor(images=[Image.fromarray(pixels_u8[0])], return_tensors="pt")["pixel_values"]
    assert torch.allclose(check[0], pixels[0], atol=1e-4), "pixel shortcut != image processor"
    return scenes, pixels


def _row(processor, turns: list[tuple[str, str | None]], answer: str, n_image_tokens: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for a chat whose last turn is answered by ``answer``: the
    ``<image>`` placeholder expanded to ``n_image_tokens``, labels only on the answer + eos."""
    from ..generation import chat_prompt

    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    prompt = []
    for t in tok(chat_prompt(processor, turns)).input_ids:
        prompt.extend([t] * n_image_tokens if t == image_id else [t])
    target = ids(tok, answer) + [tok.eos_token_id]
    return prompt + target, [IGNORE] * len(prompt) + target


def _caption_example(processor, scene, rng, n_tok):
    return _row(processor, [("describe the image.", None)], shapes.caption(scene), n_tok)


def _instruction_example(processor, scene, rng, n_tok, paraphrase_share):
    """A single-turn question, or turn ``k`` of a dialogue with the earlier turns as history."""
    if rng.random() < 0.5:
        question, answer, _ = sample_prompt(scene, rng, paraphrase="train" if rng.random() < paraphrase_share else None)
        return _row(processor, [(question, None)], answer, n_tok)
    dialogue = [(phrasings.paraphrase_question(q, rng) if rng.random() < paraphrase_share else q, a)
                for q, a in shapes.dialogue(scene, rng)]
    k = rng.randrange(len(dialogue))
    return _row(processor, dialogue[:k] + [(dialogue[k][0], None)], dialogue[k][1], n_tok)


# ----------------------------------------------------------------------------- stages

def _run(model, processor, cfg: StageConfig, trainable: list, example, desc: str, stage: str,
         progress: bool, plot) -> StageResult:
    from ..zoo.train_loop import pad_batch, train_loop

    seed_everything(cfg.seed)
    scenes, pixels = _pool(processor, cfg)
    n_tok = model.config.image_seq_length
    rng = random.Random(cfg.seed + (1 if stage.startswith("stage 1") else 2))

    def batch_fn(step):
        idx = [rng.randrange(len(scenes)) for _ in range(cfg.batch)]
        rows, labels = zip(*(example(processor, scenes[i], rng, n_tok) for i in idx))
        batch = pad_batch(list(rows), list(labels))
        batch["pixel_values"] = pixels[idx].to(model.dtype)
        return batch

    step_no = iter(range(cfg.steps))
    if plot is not None:
        plot.stage(stage)

    def loss_fn(m, b):  # the model's own loss; each step also feeds the live plot
        loss = m(**b).loss
        if plot is not None:
            plot(next(step_no), loss.item())
        return loss

    start = time.time()
    history = train_loop(model, trainable, batch_fn, cfg, desc, progress, loss_fn)
    seconds = time.time() - start
    if getattr(plot, "_display", False):
        plot.draw()  # the final state of the curve
    accuracy = per_kind_accuracy(model, processor, n=cfg.eval_n, seed=cfg.seed) if cfg.eval_n else {}
    return StageResult(stage, [dict(h, stage=stage) for h in history], round(seconds, 1),
                       sum(p.numel() for p in trainable), accuracy)


def _set_trainable(model, projector: bool, language_model: bool, tower: bool) -> list:
    inner = model.model
    for module, on in ((inner.multi_modal_projector, projector), (inner.language_model, language_model),
                       (model.lm_head, language_model), (inner.vision_tower, tower)):
        for p in module.parameters():
            p.requires_grad_(on)
    return [p for p in model.parameters() if p.requires_grad]


def train_stage1(model, processor, cfg: StageConfig | None = None, progress: bool = True, plot=None) -> StageResult:
    """Stage 1: train only ``model.model.multi_modal_projector`` on captions (tower and LM frozen).

    plot: a :class:`~vlmstudy.assemble.live_plot.LiveLossPlot` (or any ``f(step, loss)``) fed every step.
    """
    cfg = cfg or StageConfig()
    trainable = _set_trainable(model, projector=True, language_model=False, tower=False)
    return _run(model, processor, cfg, trainable, _caption_example, "stage 1: projector on captions",
                "stage 1 (projector)", progress, plot)


def train_stage2(model, processor, cfg: StageConfig | None = None, train_tower: bool = False, progress: bool = True,
                 plot=None) -> StageResult:
    """Stage 2: instruction tuning of projector + language model (+ the tower if ``train_tower``)
    on single questions and dialogues, training paraphrases for ``cfg.paraphrase_share`` of them."""
    cfg = cfg or StageConfig(steps=120)
    trainable = _set_trainable(model, projector=True, language_model=True, tower=train_tower)

    def example(processor, scene, rng, n_tok):
        return _instruction_example(processor, scene, rng, n_tok, cfg.paraphrase_share)

    return _run(model, processor, cfg, trainable, example, "stage 2: instruction tuning", "stage 2 (instructions)",
                progress, plot)


# ----------------------------------------------------------------------------- measuring

@torch.no_grad()
def per_kind_accuracy(model, processor, n: int = 60, seed: int = 0, phrasing: str | None = None,
                      renderer: str = "plain", batch_size: int = 32) -> dict[str, float]:
    """First-turn answer accuracy on ``n`` test scenes (never trained on), overall and per question
    kind, greedy decoding through :func:`vlmstudy.generation.generate_text`.

    phrasing: ``None`` (canonical wording) or ``"heldout"`` paraphrases; renderer: ``"plain"`` or
    ``"second"`` (the independent renderer used only for evaluation).
    """
    from ..evaluation import accuracy_by_kind, answer_accuracy
    from ..generation import chat_prompt, generate_text
    from ..zoo.evaluate import draw_scenes

    rng = random.Random(seed)
    scenes = shapes.make_scenes("test", n, seed=seed)
    images = draw_scenes(scenes, renderer)
    qas = [sample_prompt(s, rng, describe_share=0.0, paraphrase=phrasing) for s in scenes]
    answers = []
    for start in range(0, n, batch_size):
        part = range(start, min(n, start + batch_size))
        answers += generate_text(model, processor, [images[i] for i in part],
                                 [chat_prompt(processor, [(qas[i][0], None)]) for i in part], max_new_tokens=8)
    truths, kinds = [a for _, a, _ in qas], [k for _, _, k in qas]
    return {"overall": round(answer_accuracy(answers, truths), 3),
            **{k: round(v, 3) for k, v in accuracy_by_kind(answers, truths, kinds).items()}}


def replace(cfg: StageConfig, **changes) -> StageConfig:
    """``cfg`` with some fields changed (``dataclasses.replace``)."""
    return dataclasses.replace(cfg, **changes)
