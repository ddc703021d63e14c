"""Checks for exercise 10: the Q-Former's query count and shapes (notebook 06, BLIP-2).

``qformer_shapes(config, batch) -> dict``: from the numbers of a BLIP-2 configuration (a plain
dict: ``image_size``, ``patch_size``, ``vision_hidden``, ``num_query_tokens``, ``qformer_hidden``,
``qformer_layers``, ``cross_attention_frequency``, ``text_hidden``) predict, for ``batch``
images, the shapes a forward pass produces: ``vision`` (the ViT's output), ``queries`` (the
learned query tokens, expanded to the batch), ``qformer`` (the Q-Former's output), ``language``
(after the projection into the language model) and ``cross_attention_layers`` (how many
Q-Former layers let the queries look at the image).

The reference is a forward pass: every check builds a BLIP-2 of that configuration with
transformers (random weights, tiny sizes, all dimensions different so that no two can be
confused) and reads the shapes it produces; the hidden run adds new random configurations and
the real BLIP-2 OPT-2.7b, run on PyTorch's meta device (shapes only).

What the checks cannot tell: a submission that builds the model with transformers and measures
it. The package's meta-device builder (:func:`vlmstudy.zoo.table.build_on_meta`) is out of
reach while graded.
"""

from __future__ import annotations

from .core import Check, CheckFailed, Env

TARGET = "qformer_shapes"
KEYS = ("vision", "queries", "qformer", "language", "cross_attention_layers")


def numbers(config) -> dict:
    """The dict the learner's function takes, read from a ``Blip2Config``."""
    v, q, t = config.vision_config, config.qformer_config, config.text_config
    return {"image_size": int(v.image_size), "patch_size": int(v.patch_size), "vision_hidden": int(v.hidden_size),
            "num_query_tokens": int(config.num_query_tokens), "qformer_hidden": int(q.hidden_size),
            "qformer_layers": int(q.num_hidden_layers), "cross_attention_frequency": int(q.cross_attention_frequency),
            "text_hidden": int(t.hidden_size)}


def measure(model, batch: int) -> dict:
    """The shapes of one forward pass of ``model`` (a ``Blip2ForConditionalGeneration``) on ``batch`` images."""
    import torch

    size = model.config.vision_config.image_size
    device = model.query_tokens.device
    pixels = (torch.empty if device.type == "meta" else torch.zeros)(batch, 3, size, size, device=device)
    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixels).last_hidden_state
        queries = model.query_tokens.expand(batch, -1, -1)
        out = model.qformer(query_embeds=queries, encoder_hidden_states=vision).last_hidden_state
        language = model.language_projection(out)
    return {"vision": tuple(vision.shape), "queries": tuple(queries.shape), "qformer": tuple(out.shape),
            "language": tuple(language.shape),
            "cross_attention_layers": sum(bool(layer.has_cross_attention) for layer in model.qformer.encoder.layer)}


def random_config(env: Env):
    """A small BLIP-2 with every width different (vision, Q-Former, language model)."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    rng = env.rng
    widths = [int(w) for w in rng.choice(range(16, 72, 8), size=3, replace=False)]
    patch = int(rng.choice([4, 8]))
    vision = Blip2VisionConfig(hidden_size=widths[0], intermediate_size=2 * widths[0], num_hidden_layers=1,
                               num_attention_heads=2, image_size=patch * int(rng.integers(2, 6)), patch_size=patch)
    qformer = Blip2QFormerConfig(hidden_size=widths[1], intermediate_size=2 * widths[1],
                                 num_hidden_layers=int(rng.integers(1, 6)), num_attention_heads=2,
                                 cross_attention_frequency=int(rng.integers(1, 4)), encoder_hidden_size=widths[0])
    text = OPTConfig(hidden_size=widths[2], ffn_dim=2 * widths[2], num_hidden_layers=1, num_attention_heads=2,
                     vocab_size=64, max_position_embeddings=64, word_embed_proj_dim=widths[2])
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=int(rng.integers(2, 12)))


def _model(config):
    import torch
    from transformers import Blip2ForConditionalGeneration

    torch.manual_seed(0)
    return Blip2ForConditionalGeneration(config).eval()


def _normal(value) -> dict:
    if not isinstance(value, dict):
        raise CheckFailed(f"qformer_shapes returned {type(value).__name__}; return a dict with the keys {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in value]
    if missing:
        raise CheckFailed(f"the dict has no {', '.join(repr(k) for k in missing)}; it needs {', '.join(KEYS)}")
    out = {}
    for key in KEYS:
        v = value[key]
        if key == "cross_attention_layers":
            if isinstance(v, bool) or not isinstance(v, int):
                raise CheckFailed(f"'cross_attention_layers' is {v!r}; it is a number of layers, an int")
            out[key] = v
        else:
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise CheckFailed(f"{key!r} is {v!r}; a shape is a tuple of ints, e.g. (batch, tokens, width)")
            out[key] = tuple(v)
    return out


def _compare(fn, config, batch: int, keys, what: str, model=None) -> None:
    want = measure(model if model is not None else _model(config), batch)
    got = _normal(fn(numbers(config), batch))
    for key in keys:
        if got[key] != want[key]:
            raise CheckFailed(f"{what}, batch {batch}: {key} is {want[key]} in a forward pass, you said {got[key]} "
                              f"(config {numbers(config)})")


def _fixed(env: Env, n: int = 2):
    return [random_config(env) for _ in range(n)]


def check_keys(fn, env: Env) -> None:
    _normal(fn(numbers(random_config(env)), 2))


def check_vision(fn, env: Env) -> None:
    for config in _fixed(env):
        _compare(fn, config, int(env.rng.integers(1, 4)), ["vision"], "the vision encoder's output")


def check_queries(fn, env: Env) -> None:
    for config in _fixed(env):
        _compare(fn, config, int(env.rng.integers(1, 4)), ["queries", "qformer"], "the queries")


def check_language(fn, env: Env) -> None:
    for config in _fixed(env):
        _compare(fn, config, int(env.rng.integers(1, 4)), ["language"], "the projection into the language model")


def check_cross_attention(fn, env: Env) -> None:
    for config in _fixed(env, 3):
        _compare(fn, config, 1, ["cross_attention_layers"], "the Q-Former's cross-attention layers")


def check_random(fn, env: Env) -> None:
    for config in _fixed(env, 4):
        _compare(fn, config, int(env.rng.integers(1, 6)), KEYS, "a new random BLIP-2")


def check_real_blip2(fn, env: Env) -> None:
    from ..zoo.table import build_on_meta

    model = build_on_meta("blip2")
    _compare(fn, model.config, int(env.rng.integers(1, 5)), KEYS, "the real BLIP-2 OPT-2.7b (meta device)", model=model)


CHECKS = [
    Check("keys", 1, "returns a dict of shapes (tuples of ints) and a layer count",
          "return {'vision': (...), 'queries': (...), 'qformer': (...), 'language': (...), 'cross_attention_layers': n}",
          check_keys),
    Check("vision", 2, "the ViT's output: one token per patch plus the class token",
          "(batch, 1 + (image_size // patch_size) ** 2, vision_hidden)", check_vision),
    Check("queries", 2, "the queries: a fixed number, whatever the image, at the Q-Former's width (in and out)",
          "(batch, num_query_tokens, qformer_hidden) for both the queries and the Q-Former's output", check_queries),
    Check("language", 1, "the projection: the same number of tokens, at the language model's width",
          "(batch, num_query_tokens, text_hidden)", check_language),
    Check("cross_attention", 2, "cross-attention in every cross_attention_frequency-th layer, from the first",
          "layer i has cross-attention when i % cross_attention_frequency == 0 (i = 0, 1, ...): "
          "ceil(layers / frequency) of them", check_cross_attention),
    Check("random", 2, "equals a forward pass of 4 new random BLIP-2 configurations",
          "every shape from the config's numbers and the batch; nothing is fixed", check_random, visible=False),
    Check("real_blip2", 1, "equals the real BLIP-2 OPT-2.7b's forward pass (meta device)",
          "the same rules at 224 pixels, 14-pixel patches, 32 queries", check_real_blip2, visible=False),
]
