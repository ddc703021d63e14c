"""Checks for exercise 14: SigLIP's pairwise sigmoid loss, whole and in blocks (notebook 03).

* ``siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias)``: ``(B, D)`` unit vectors,
  pair ``i`` matches pair ``i``; ``logit_scale`` the *log* of the temperature scale and
  ``logit_bias`` the learned bias (0-dim tensors, as ``SiglipModel``'s). Every (text, image) pair
  is a binary question, label +1 on the diagonal and -1 elsewhere; the loss sums
  ``-log sigmoid(label * logit)`` over a text's B images and averages over the B texts (as
  ``SiglipModel`` computes it). Checked against that formula (values and gradients), with
  properties that tell the usual mistakes apart (the bias, the sign of the labels, the sum
  against the mean, a ``log(sigmoid(.))`` that breaks at large logits) and, hidden, against the
  loss ``SiglipModel(..., return_loss=True)`` itself returns for the course's SigLIP.
* ``siglip_loss_chunked(..., chunk_size)``: the same number computed one block of
  ``chunk_size`` images at a time (the labels of a block are offset by its first image), for
  block sizes that do not divide the batch, a block of one and a block larger than the batch;
  ``ValueError`` for a size below 1.

The package's own versions (:func:`vlmstudy.contrastive.siglip_loss`, ``siglip_loss_chunked``)
are out of reach while graded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import Check, CheckFailed, Env

LOSS_TARGET = "siglip_loss"
CHUNKED_TARGET = "siglip_loss_chunked"


def reference(image_embeds, text_embeds, logit_scale, logit_bias):
    """SigLIP's loss as ``SiglipModel`` computes it (``modeling_siglip.py``)."""
    logits_per_text = text_embeds @ image_embeds.T * logit_scale.exp() + logit_bias
    labels = 2 * torch.eye(len(text_embeds)) - 1
    return -F.logsigmoid(labels * logits_per_text).sum() / len(text_embeds)


def _batch(env: Env, b: int, d: int = 16):
    return F.normalize(env.randn(b, d), dim=1), F.normalize(env.randn(b, d), dim=1)


def _params(env: Env):
    """A scale and a bias drawn per check, SigLIP's initial scale (log 10) among them; the bias is
    kept above -5, where the B² - B non-matching pairs still weigh in the loss (at SigLIP's initial
    -10 they add almost nothing, and a loss that forgot them would pass)."""
    return (torch.tensor(float(env.rng.uniform(1.0, 3.0))), torch.tensor(float(env.rng.uniform(-5.0, 2.0))))


def _scalar(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} returned {type(value).__name__}; return a torch tensor (so it can be backpropagated)")
    if value.dim() != 0:
        raise CheckFailed(f"{what} returned shape {tuple(value.shape)}; the loss is one number (a 0-dim tensor)")
    return value


def _value(fn, what, *args) -> float:
    return float(_scalar(fn(*[a.clone() for a in args]), what).detach())


def _close(got: float, want: float, tol: float = 1e-4) -> bool:
    return math.isclose(got, want, rel_tol=tol, abs_tol=tol * 0.1)


# ----------------------------------------------------------------------------- the loss

def check_scalar(fn, env: Env) -> None:
    images, texts = _batch(env, 4)
    _scalar(fn(images, texts, torch.tensor(math.log(10.0)), torch.tensor(-10.0)), "siglip_loss")


def check_matches(fn, env: Env) -> None:
    for b in (1, 5, 8):
        images, texts = _batch(env, b)
        scale, bias = _params(env)
        got, want = _value(fn, "siglip_loss", images, texts, scale, bias), float(reference(images, texts, scale, bias))
        if not _close(got, want):
            raise CheckFailed(f"batch of {b}, logit_scale {float(scale):.2f}, logit_bias {float(bias):.2f}: "
                              f"loss {got:.5f}, expected {want:.5f}")


def check_bias(fn, env: Env) -> None:
    images, texts = _batch(env, 6)
    scale = torch.tensor(2.0)
    for bias in (-10.0, 0.0, 3.0):
        got = _value(fn, "siglip_loss", images, texts, scale, torch.tensor(bias))
        want = float(reference(images, texts, scale, torch.tensor(bias)))
        if not _close(got, want):
            raise CheckFailed(f"logit_bias {bias:g}: loss {got:.4f}, expected {want:.4f}; the bias is added to every "
                              "logit after the scale")


def check_labels(fn, env: Env) -> None:
    b = 4
    q, _ = torch.linalg.qr(env.randn(16, b))  # b orthonormal directions: every pair matches only itself
    pairs = q.T.contiguous()
    scale, bias = torch.tensor(math.log(20.0)), torch.tensor(-10.0)
    # matched pairs: logit 20 - 10 = +10 on the diagonal, 0 - 10 = -10 elsewhere: every term is right, the loss tiny
    got = _value(fn, "siglip_loss", pairs, pairs, scale, bias)
    want = b * math.log1p(math.exp(-10.0))
    if not _close(got, want, 1e-3):
        raise CheckFailed(f"perfectly matched pairs (logits +10 on the diagonal, -10 off it) give {got:.5f}, expected "
                          f"{want:.5f}: label +1 for a matching pair, -1 for every other one")


def check_sum_over_images(fn, env: Env) -> None:
    images, texts = _batch(env, 10)
    scale, bias = torch.tensor(0.0), torch.tensor(0.0)  # every logit is the cosine: a loss near B * log 2
    got = _value(fn, "siglip_loss", images, texts, scale, bias)
    want = float(reference(images, texts, scale, bias))
    if not _close(got, want):
        raise CheckFailed(f"10 pairs at scale 1, bias 0: loss {got:.4f}, expected {want:.4f} (about 10 log 2): sum over "
                          "a text's images, then average over the texts (not a mean over all B * B pairs)")


def check_gradients(fn, env: Env) -> None:
    images, texts = _batch(env, 5)
    scale, bias = _params(env)
    mine = [t.clone().requires_grad_(True) for t in (images, texts, scale, bias)]
    ref = [t.clone().requires_grad_(True) for t in (images, texts, scale, bias)]
    with torch.enable_grad():
        loss = _scalar(fn(*mine), "siglip_loss")
        if not loss.requires_grad:
            raise CheckFailed("the loss has no gradient: keep it a tensor computed from the inputs (no .item(), "
                              ".detach(), numpy or float())")
        loss.backward()
        reference(*ref).backward()
    for name, a, b in zip(("image_embeds", "text_embeds", "logit_scale", "logit_bias"), mine, ref):
        if a.grad is None or not torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4):
            raise CheckFailed(f"the gradient with respect to {name} is {'missing' if a.grad is None else 'wrong'}")


def check_stable(fn, env: Env) -> None:
    images, texts = _batch(env, 6)
    scale, bias = torch.tensor(math.log(1e3)), torch.tensor(0.0)  # logits up to +-1000: sigmoid rounds to 0 or 1
    got = _scalar(fn(images.clone(), texts.clone(), scale, bias), "siglip_loss").detach()
    want = reference(images, texts, scale, bias)
    if not bool(torch.isfinite(got)):
        raise CheckFailed(f"at logit_scale=log(1000) the loss is {float(got)}: log(sigmoid(x)) of a large negative x is "
                          "log(0)")
    if not _close(float(got), float(want), 1e-3):
        raise CheckFailed(f"at logit_scale=log(1000): loss {float(got):.3f}, expected {float(want):.3f}")


def check_real_siglip(fn, env: Env) -> None:
    from .. import contrastive, shapes

    model, processor = env.model("siglip")
    scenes = shapes.make_scenes("test", 8, seed=int(env.rng.integers(1 << 30)))
    inputs = contrastive.pair_inputs(model, processor, [s.render() for s in scenes], [s.caption for s in scenes])
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    got = _value(fn, "siglip_loss", out.image_embeds.float().cpu(), out.text_embeds.float().cpu(),
                 model.logit_scale.detach().float().cpu().reshape(()), model.logit_bias.detach().float().cpu().reshape(()))
    want = float(out.loss)
    if not _close(got, want):
        raise CheckFailed(f"with the course's SigLIP: loss {got:.5f}, SiglipModel(..., return_loss=True) gives {want:.5f}")


LOSS_CHECKS = [
    Check("scalar", 1, "returns one number (a 0-dim tensor)",
          "sum the per-pair terms and divide by the batch size", check_scalar),
    Check("matches", 3, "equals the reference loss (batches of 1, 5 and 8)",
          "logits = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias; labels 2 * eye(B) - 1; "
          "-logsigmoid(labels * logits).sum() / B", check_matches),
    Check("bias", 1, "adds the learned bias to every logit",
          "logit_bias is added after multiplying by logit_scale.exp()", check_bias),
    Check("labels", 1, "labels +1 on the diagonal, -1 off it",
          "2 * torch.eye(B) - 1: a matching pair should get a large logit, every other pair a small one", check_labels),
    Check("sum_over_images", 1, "sums over a text's images, averages over the texts",
          "SiglipModel divides the sum of all B * B terms by B, not by B * B", check_sum_over_images),
    Check("gradients", 2, "gradients flow to the embeddings, the scale and the bias",
          "build the loss from torch operations on the inputs only", check_gradients),
    Check("stable", 1, "finite at very large logits",
          "F.logsigmoid(x), not torch.log(torch.sigmoid(x)): it never takes the log of 0", check_stable),
    Check("real_siglip", 1, "with the course's SigLIP, equal to the loss SiglipModel returns",
          "the same formula; the model's logit_scale and logit_bias", check_real_siglip, visible=False),
]


# ----------------------------------------------------------------------------- in blocks

def _chunked(fn, images, texts, scale, bias, chunk: int) -> float:
    return float(_scalar(fn(images.clone(), texts.clone(), scale.clone(), bias.clone(), chunk),
                         "siglip_loss_chunked").detach())


def _expect_chunked(fn, env: Env, b: int, chunks) -> None:
    images, texts = _batch(env, b)
    scale, bias = _params(env)
    want = float(reference(images, texts, scale, bias))
    for chunk in chunks:
        got = _chunked(fn, images, texts, scale, bias, chunk)
        if not _close(got, want):
            raise CheckFailed(f"a batch of {b} in blocks of {chunk}: loss {got:.5f}, the whole batch gives {want:.5f}")


def check_one_block(fn, env: Env) -> None:
    _expect_chunked(fn, env, 6, (6,))


def check_blocks(fn, env: Env) -> None:
    _expect_chunked(fn, env, 8, (2, 4))


def check_uneven_blocks(fn, env: Env) -> None:
    _expect_chunked(fn, env, 7, (3, 1, 10))


def check_chunk_gradients(fn, env: Env) -> None:
    images, texts = _batch(env, 6)
    scale, bias = _params(env)
    mine = [t.clone().requires_grad_(True) for t in (images, texts, scale, bias)]
    ref = [t.clone().requires_grad_(True) for t in (images, texts, scale, bias)]
    with torch.enable_grad():
        loss = _scalar(fn(*mine, 4), "siglip_loss_chunked")
        if not loss.requires_grad:
            raise CheckFailed("the loss has no gradient: add the blocks' tensors up (no .item() or float())")
        loss.backward()
        reference(*ref).backward()
    for name, a, b in zip(("image_embeds", "text_embeds", "logit_scale", "logit_bias"), mine, ref):
        if a.grad is None or not torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4):
            raise CheckFailed(f"in blocks of 4, the gradient with respect to {name} is "
                              f"{'missing' if a.grad is None else 'wrong'}")


def check_bad_chunk(fn, env: Env) -> None:
    images, texts = _batch(env, 4)
    for chunk in (0, -2):
        try:
            got = fn(images, texts, torch.tensor(1.0), torch.tensor(0.0), chunk)
        except Exception as err:  # graded, the learner's error arrives by its type name only
            if isinstance(err, ValueError) or type(err).__name__ == "ValueError":
                continue
            raise
        raise CheckFailed(f"chunk_size={chunk} gave {got!r}; raise ValueError for a block size below 1")


def check_random_chunked(fn, env: Env) -> None:
    for _ in range(3):
        b = int(env.rng.integers(2, 40))
        _expect_chunked(fn, env, b, (int(env.rng.integers(1, b + 1)),))


CHUNKED_CHECKS = [
    Check("one_block", 1, "one block as large as the batch: the whole loss",
          "the same formula on text_embeds @ image_embeds[start:stop].T", check_one_block),
    Check("blocks", 2, "blocks that divide the batch add up to the whole loss",
          "in the block of images start..stop, text i matches image i - start: labels +1 at (start + j, j)",
          check_blocks),
    Check("uneven_blocks", 2, "a last, shorter block; blocks of 1; a block larger than the batch",
          "range(0, B, chunk_size) and image_embeds[start:start + chunk_size]: the last block may be shorter",
          check_uneven_blocks),
    Check("gradients", 1, "gradients equal the whole loss's",
          "add the blocks' sums as tensors, divide by B once at the end", check_chunk_gradients),
    Check("bad_chunk", 1, "a block size below 1 raises ValueError",
          "raise ValueError(...) when chunk_size < 1", check_bad_chunk),
    Check("random", 2, "right on new random batches and block sizes",
          "the labels of a block are offset by its first image", check_random_chunked, visible=False),
]
