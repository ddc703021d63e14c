"""Checks for exercise 05: attention rollout (Abnar & Zuidema, 2020), written out.

``attention_rollout(attentions, residual=0.5) -> (B, S, S)`` for ``attentions`` of shape
``(layers, B, heads, S, S)``: average the heads, add the residual connection
``A' = residual * I + (1 - residual) * A``, renormalise the rows, and multiply the layers with
the newest on the left, ``R = A'_L ... A'_2 A'_1``. The reference is
:func:`vlmstudy.attention.attention_rollout`; the checks feed random row-stochastic attention
(layers that do not commute, heads that differ) and test properties (identity in, identity out;
rows sum to 1; ``residual=1`` is the identity). The hidden run adds the real CLIP's attention.
"""

from __future__ import annotations

import torch

from .core import Check, CheckFailed, Env

TARGET = "attention_rollout"


def reference(attentions, residual=0.5):
    from ..attention import attention_rollout

    return attention_rollout(attentions, residual=residual, head_fusion="mean")


def _attention(env: Env, layers: int, b: int, heads: int, s: int, sharp: float = 2.0) -> torch.Tensor:
    """Random attention: every row a probability distribution, heads and layers all different."""
    return (env.randn(layers, b, heads, s, s) * sharp).softmax(dim=-1)


def _result(value, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"attention_rollout returned {type(value).__name__}, not a torch tensor")
    if tuple(value.shape) != shape:
        raise CheckFailed(f"attention_rollout returned shape {tuple(value.shape)}, expected {shape} (batch, tokens, tokens)")
    value = value.detach().double()
    if not bool(torch.isfinite(value).all()):
        raise CheckFailed("attention_rollout returned NaN or infinite values")
    return value


def check_shape(fn, env: Env) -> None:
    _result(fn(_attention(env, 3, 2, 4, 5)), (2, 5, 5))


def check_rows(fn, env: Env) -> None:
    out = _result(fn(_attention(env, 4, 2, 2, 6)), (2, 6, 6))
    sums = out.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed(f"rows of the rollout sum to {float(sums.min()):.3f}..{float(sums.max()):.3f}, not 1: "
                          "renormalise the rows of every A' before multiplying")


def check_identity(fn, env: Env) -> None:
    eye = torch.eye(5).expand(3, 2, 2, 5, 5).clone()
    out = _result(fn(eye), (2, 5, 5))
    if not torch.allclose(out, torch.eye(5, dtype=out.dtype).expand(2, 5, 5), atol=1e-6):
        raise CheckFailed("attention that only looks at itself (the identity) should roll out to the identity")


def check_residual(fn, env: Env) -> None:
    att = _attention(env, 3, 1, 2, 4)
    out = _result(fn(att.clone(), residual=1.0), (1, 4, 4))
    if not torch.allclose(out, torch.eye(4, dtype=out.dtype)[None], atol=1e-6):
        raise CheckFailed("with residual=1.0 every A' is the identity, so the rollout must be the identity")
    out = _result(fn(att.clone(), residual=0.0), (1, 4, 4))
    if not torch.allclose(out, reference(att, 0.0).double(), atol=1e-5):
        raise CheckFailed("with residual=0.0 the rollout is the product of the head-averaged attentions; it is not")


def check_heads(fn, env: Env) -> None:
    att = _attention(env, 1, 2, 4, 5, sharp=3.0)  # one layer: only the head fusion matters
    out = _result(fn(att.clone()), (2, 5, 5))
    if not torch.allclose(out, reference(att).double(), atol=1e-5):
        raise CheckFailed("with one layer the rollout is 0.5 * I + 0.5 * (mean over heads); yours differs")


def check_layer_order(fn, env: Env) -> None:
    att = _attention(env, 2, 1, 1, 4, sharp=3.0)
    out = _result(fn(att.clone()), (1, 4, 4))
    want = reference(att).double()
    if torch.allclose(out, want, atol=1e-5):
        return
    if torch.allclose(out, reference(att.flip(0)).double(), atol=1e-5):
        raise CheckFailed("the layers are multiplied in the wrong order: you got A'_1 A'_2, the rollout is A'_2 A'_1")
    raise CheckFailed(f"two layers: your rollout differs from A'_2 A'_1 by up to {float((out - want).abs().max()):.3f}")


def check_matches(fn, env: Env) -> None:
    att = _attention(env, 4, 3, 3, 6)
    before = att.clone()
    out = _result(fn(att), (3, 6, 6))
    if not torch.equal(att, before):
        raise CheckFailed("attention_rollout changed its input in place")
    want = reference(before).double()
    if not torch.allclose(out, want, atol=1e-5):
        raise CheckFailed(f"4 layers, 3 heads: your rollout differs from the reference by up to "
                          f"{float((out - want).abs().max()):.4f}")


def check_real_clip(fn, env: Env) -> None:
    from .. import attention, shapes

    model, processor = env.model("clip")
    scenes = shapes.make_scenes("test", 2, seed=int(env.rng.integers(1 << 30)))
    att = attention.vision_attentions(model, processor, [s.render() for s in scenes])
    grid = attention.patch_grid(model)
    out = _result(fn(att.clone()), (2, grid * grid + 1, grid * grid + 1))
    if not torch.allclose(out, reference(att).double(), atol=1e-4):
        raise CheckFailed("with the real CLIP's attention, your rollout differs from vlmstudy.attention.attention_rollout")


CHECKS = [
    Check("shape", 1, "returns (batch, tokens, tokens)",
          "average over the heads (dim=2 of the input), then multiply (tokens x tokens) matrices per layer", check_shape),
    Check("rows", 1, "every row of the rollout sums to 1",
          "after adding the residual, divide each row by its sum", check_rows),
    Check("identity", 1, "identity attention rolls out to the identity",
          "start from the identity and multiply every layer's A' into it", check_identity),
    Check("residual", 1, "the residual argument is used (1.0 gives the identity)",
          "A' = residual * I + (1 - residual) * A", check_residual),
    Check("heads", 1, "heads are averaged",
          "take the mean over the heads axis (dim=2 of (layers, B, heads, S, S))", check_heads),
    Check("layer_order", 2, "later layers multiply on the left: R = A'_2 A'_1",
          "update with rollout = a @ rollout, layer by layer from the first", check_layer_order),
    Check("matches", 2, "equals the reference on a random 4-layer batch",
          "see the formula in the task; leave the input tensor unchanged", check_matches),
    Check("real_clip", 1, "with the real CLIP's attention, equal to vlmstudy.attention.attention_rollout",
          "the same formula works on any (layers, B, heads, S, S) tensor", check_real_clip, visible=False),
]
