"""Checks for exercise 04: CLIP's symmetric contrastive (InfoNCE) loss, written out.

``clip_loss(image_embeds, text_embeds, logit_scale)``: ``(B, D)`` unit vectors, pair ``i``
matches pair ``i``, ``logit_scale`` the *log* of the temperature scale (a 0-dim tensor, as
``CLIPModel.logit_scale``). The checks compare values and gradients with a reference built on
``F.cross_entropy`` and test properties: symmetric in images and texts, near 0 for perfect pairs
at a large scale, finite at very large scales (a hand-written softmax overflows), inputs left
unchanged. The hidden run adds one check with the real CLIP's embeddings and scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import Check, CheckFailed, Env

TARGET = "clip_loss"


def reference(image_embeds, text_embeds, logit_scale):
    """The loss as CLIP defines it: mean of the row-wise and column-wise cross-entropies."""
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    target = torch.arange(len(image_embeds))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _batch(env: Env, b: int, d: int = 16):
    return F.normalize(env.randn(b, d), dim=1), F.normalize(env.randn(b, d), dim=1)


def _scalar(value, what: str = "clip_loss") -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} returned {type(value).__name__}; return a torch tensor (so it can be backpropagated)")
    if value.dim() != 0:
        raise CheckFailed(f"{what} returned shape {tuple(value.shape)}; the loss is one number (a 0-dim tensor): "
                          "average over the batch")
    return value


def check_scalar(fn, env: Env) -> None:
    images, texts = _batch(env, 4)
    _scalar(fn(images, texts, torch.tensor(math.log(10.0))))


def check_matches(fn, env: Env) -> None:
    for b in (1, 5, 8):
        images, texts = _batch(env, b)
        scale = torch.tensor(float(env.rng.uniform(0.5, 3.0)))
        got = float(_scalar(fn(images.clone(), texts.clone(), scale.clone())).detach())
        want = float(reference(images, texts, scale))
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
            raise CheckFailed(f"batch of {b}, logit_scale {float(scale):.2f}: loss {got:.5f}, expected {want:.5f}")


def check_symmetric(fn, env: Env) -> None:
    images, texts = _batch(env, 6)
    scale = torch.tensor(2.0)
    a = float(_scalar(fn(images.clone(), texts.clone(), scale.clone())).detach())
    b = float(_scalar(fn(texts.clone(), images.clone(), scale.clone())).detach())
    if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5):
        raise CheckFailed(f"swapping images and texts changed the loss ({a:.4f} vs {b:.4f}): only one direction is counted")


def check_perfect_pairs(fn, env: Env) -> None:
    b = 5
    q, _ = torch.linalg.qr(env.randn(16, b))  # b orthonormal directions: every pair matches only itself
    pairs = q.T.contiguous()
    high = float(_scalar(fn(pairs.clone(), pairs.clone(), torch.tensor(math.log(100.0)))).detach())
    low = float(_scalar(fn(pairs.clone(), pairs.clone(), torch.tensor(0.0))).detach())
    want_low = math.log(1 + (b - 1) * math.exp(-1))
    if not high < 1e-3:
        raise CheckFailed(f"perfectly matched pairs at logit_scale=log(100) give loss {high:.4f}; expected about 0 "
                          "(is the scale exp(logit_scale)?)")
    if not math.isclose(low, want_low, rel_tol=1e-4):
        raise CheckFailed(f"perfect pairs at logit_scale=0 (scale 1) give {low:.4f}, expected log(1 + {b - 1}/e) = "
                          f"{want_low:.4f}")


def check_gradients(fn, env: Env) -> None:
    images, texts = _batch(env, 4)
    scale = torch.tensor(1.5)
    mine = [t.clone().requires_grad_(True) for t in (images, texts, scale)]
    ref = [t.clone().requires_grad_(True) for t in (images, texts, scale)]
    with torch.enable_grad():
        loss = _scalar(fn(*mine))
        if not loss.requires_grad:
            raise CheckFailed("the loss has no gradient: keep it a tensor computed from the inputs (no .item(), .detach(), "
                              "numpy or float())")
        loss.backward()
        reference(*ref).backward()
    for name, a, b in zip(("image_embeds", "text_embeds", "logit_scale"), mine, ref):
        if a.grad is None or not torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4):
            raise CheckFailed(f"the gradient with respect to {name} is {'missing' if a.grad is None else 'wrong'}")


def check_stable(fn, env: Env) -> None:
    images, texts = _batch(env, 6)
    scale = torch.tensor(math.log(5e4))  # logits up to 5e4: exp() of them overflows float32
    got = _scalar(fn(images.clone(), texts.clone(), scale)).detach()
    want = reference(images, texts, scale)
    if not bool(torch.isfinite(got)):
        raise CheckFailed(f"at logit_scale=log(5e4) the loss is {float(got)}: exp() of large logits overflows")
    if not math.isclose(float(got), float(want), rel_tol=1e-3, abs_tol=1e-3):
        raise CheckFailed(f"at logit_scale=log(5e4): loss {float(got):.3f}, expected {float(want):.3f}")


def check_inputs_unchanged(fn, env: Env) -> None:
    images, texts = _batch(env, 4)
    scale = torch.tensor(1.0)
    copies = [images.clone(), texts.clone(), scale.clone()]
    fn(images, texts, scale)
    for name, before, after in zip(("image_embeds", "text_embeds", "logit_scale"), copies, (images, texts, scale)):
        if not torch.equal(before, after):
            raise CheckFailed(f"clip_loss changed its input {name} in place")


def check_real_clip(fn, env: Env) -> None:
    from .. import contrastive, shapes

    model, processor = env.model("clip")
    scenes = shapes.make_scenes("test", 8, seed=int(env.rng.integers(1 << 30)))
    images = contrastive.embed_images(model, processor, [s.render() for s in scenes], progress=False)
    texts = contrastive.embed_texts(model, processor, [s.caption for s in scenes], progress=False)
    scale = model.logit_scale.detach().float().cpu()
    got = float(_scalar(fn(images, texts, scale)).detach())
    want = float(contrastive.clip_loss(images, texts, scale))
    if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
        raise CheckFailed(f"with the real CLIP: loss {got:.5f}, vlmstudy.contrastive.clip_loss gives {want:.5f}")


CHECKS = [
    Check("scalar", 1, "returns one number (a 0-dim tensor)",
          "average the per-example losses: F.cross_entropy does it for you", check_scalar),
    Check("matches", 3, "equals the reference loss (batches of 1, 5 and 8)",
          "logits = logit_scale.exp() * image_embeds @ text_embeds.T; targets 0..B-1; cross-entropy over rows and over "
          "columns; the mean of the two", check_matches),
    Check("symmetric", 1, "counts both directions (image->text and text->image)",
          "add the cross-entropy of the transposed logits and divide by 2", check_symmetric),
    Check("perfect_pairs", 1, "uses exp(logit_scale): perfect pairs cost ~0 at a high scale",
          "logit_scale is a logarithm: multiply the similarities by logit_scale.exp()", check_perfect_pairs),
    Check("gradients", 2, "gradients flow to the embeddings and to logit_scale",
          "build the loss from torch operations on the inputs only", check_gradients),
    Check("stable", 1, "finite at very large scales",
          "use F.cross_entropy (or log_softmax), not exp() then log(): they subtract the row maximum first", check_stable),
    Check("inputs_unchanged", 1, "leaves its inputs unchanged",
          "avoid in-place operations on the arguments (x /= ..., x.mul_(...))", check_inputs_unchanged),
    Check("real_clip", 1, "with the real CLIP, equal to vlmstudy.contrastive.clip_loss",
          "the same formula; nothing model-specific is needed", check_real_clip, visible=False),
]
