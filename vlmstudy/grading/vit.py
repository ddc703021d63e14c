"""Checks for exercise 13: where a ViT's parameters are, counted from its configuration (notebook 01).

``vit_params(config) -> dict``: from the numbers of a ``CLIPVisionConfig`` (a plain dict:
``image_size``, ``patch_size``, ``num_channels``, ``hidden_size``, ``intermediate_size``,
``num_hidden_layers``) the parameters of the image encoder every model of the course starts
with, per component: ``embeddings`` (the patch projection, a convolution without bias; the
class token; one position per patch and one for the class token), ``layer`` (one encoder layer:
four attention projections, the MLP, two layer norms), ``encoder`` (all layers), ``norms`` (the
layer norms before and after the encoder) and ``total``.

The reference is transformers itself: every check builds a ``CLIPVisionModel`` of that
configuration on PyTorch's meta device (shapes, no memory) and counts its parameters by name;
the hidden run adds new random configurations and the real towers of CLIP ViT-B/32 and of
LLaVA-1.5 (ViT-L/14 at 336 px), built from the course's cards. What the checks cannot tell: a
submission that builds the model with transformers and counts it. The package's meta-device
builder (:func:`vlmstudy.zoo.table.build_on_meta`, ``real_parameter_count``) is out of reach while graded.
"""

from __future__ import annotations

from .core import Check, CheckFailed, Env

TARGET = "vit_params"
KEYS = ("embeddings", "layer", "encoder", "norms", "total")


def numbers(config) -> dict:
    """The dict the learner's function takes, read from a ``CLIPVisionConfig``."""
    return {key: int(getattr(config, key)) for key in
            ("image_size", "patch_size", "num_channels", "hidden_size", "intermediate_size", "num_hidden_layers")}


def measure(config: dict) -> dict:
    """The counts of a ``CLIPVisionModel`` built from ``config`` on the meta device, by parameter name."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    with torch.device("meta"):
        model = CLIPVisionModel(CLIPVisionConfig(num_attention_heads=1, **config))
    counts = dict.fromkeys(KEYS, 0)
    for name, p in model.named_parameters():
        name, n = name.removeprefix("vision_model."), p.numel()
        counts["total"] += n
        if name.startswith("embeddings."):
            counts["embeddings"] += n
        elif name.startswith("encoder."):
            counts["encoder"] += n
            counts["layer"] += n if name.startswith("encoder.layers.0.") else 0
        else:  # pre_layrnorm, post_layernorm
            counts["norms"] += n
    return counts


def random_config(env: Env, channels: int = 3) -> dict:
    rng = env.rng
    patch = int(rng.choice([2, 4, 7, 8]))
    return {"image_size": patch * int(rng.integers(2, 9)), "patch_size": patch, "num_channels": channels,
            "hidden_size": int(rng.choice(range(8, 96, 8))), "intermediate_size": int(rng.integers(10, 200)),
            "num_hidden_layers": int(rng.integers(1, 5))}


def _counts(fn, config: dict) -> dict:
    got = fn(dict(config))
    if not isinstance(got, dict) or not set(KEYS) <= set(got):
        raise CheckFailed(f"vit_params returned {got!r:.80}; return a dict with the keys {', '.join(KEYS)}")
    for key in KEYS:
        if isinstance(got[key], bool) or not isinstance(got[key], int):
            raise CheckFailed(f"{key} is {got[key]!r:.40}; every count is an int")
    return got


def _expect(fn, config: dict, keys, what: str) -> None:
    got, want = _counts(fn, config), measure(config)
    for key in keys:
        if got[key] != want[key]:
            shown = ", ".join(f"{k}={v}" for k, v in config.items())
            raise CheckFailed(f"{what} ({shown}): {key} = {got[key]:,}, transformers' CLIPVisionModel has {want[key]:,}")


def check_embeddings(fn, env: Env) -> None:
    _expect(fn, {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 16, "intermediate_size": 40,
                 "num_hidden_layers": 2}, ("embeddings",), "a 32 px ViT with 8 px patches")
    _expect(fn, random_config(env), ("embeddings",), "a random ViT")


def check_layer(fn, env: Env) -> None:
    _expect(fn, {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 16, "intermediate_size": 40,
                 "num_hidden_layers": 2}, ("layer",), "hidden 16, MLP 40")
    _expect(fn, random_config(env), ("layer",), "a random ViT")


def check_whole(fn, env: Env) -> None:
    _expect(fn, random_config(env), ("encoder", "norms", "total"), "a random ViT")


def check_channels(fn, env: Env) -> None:
    for channels in (1, 4):
        _expect(fn, random_config(env, channels), ("embeddings", "total"), f"{channels} input channels")


def check_random(fn, env: Env) -> None:
    for _ in range(3):
        _expect(fn, random_config(env, int(env.rng.choice([1, 3]))), KEYS, "a random ViT")


def check_real(fn, env: Env) -> None:
    from ..zoo.registry import real_config

    for name in ("clip", "llava"):
        _expect(fn, numbers(real_config(name).vision_config), KEYS, f"the real {name} image encoder")


CHECKS = [
    Check("embeddings", 2, "the embeddings: patch projection, class token, positions",
          "a conv of hidden x channels x patch x patch without bias; one class token; 1 + (image_size // patch_size)² "
          "positions", check_embeddings),
    Check("layer", 2, "one encoder layer: attention, MLP, two layer norms",
          "q, k, v, out: hidden² + hidden each; fc1 and fc2 with their biases; a layer norm has a weight and a bias",
          check_layer),
    Check("whole", 2, "all layers, the two outer layer norms, the total",
          "encoder = num_hidden_layers * layer; norms: pre_layrnorm and post_layernorm; total = the sum of the parts",
          check_whole),
    Check("channels", 1, "images with 1 or 4 channels",
          "the patch projection reads num_channels input channels", check_channels),
    Check("random", 2, "equals transformers on new random configurations",
          "the same count for every size", check_random, visible=False),
    Check("real", 1, "the real CLIP ViT-B/32 and LLaVA-1.5's ViT-L/14-336",
          "the same count at full size", check_real, visible=False),
]
