# %% [markdown]
# # Exercise 13 · Where a ViT's parameters are
#
# **Objective.** Every model of the course starts with the same component (notebook 01): a
# **vision transformer** that cuts the image into patches and turns each into a vector. Count
# its parameters from its configuration, component by component, as the zoo table counts the
# real checkpoints: then you know what the 151 M of CLIP or the 7 B of LLaVA are made of.
#
# `vit_params(config) -> dict`, where `config` holds the numbers of a `CLIPVisionConfig`:
#
# | key | meaning |
# |---|---|
# | `image_size`, `patch_size`, `num_channels` | square images, square patches, colour channels |
# | `hidden_size` | the width: one vector of this size per patch |
# | `intermediate_size` | the width inside each layer's MLP |
# | `num_hidden_layers` | how many encoder layers |
#
# Return `{"embeddings": ..., "layer": ..., "encoder": ..., "norms": ..., "total": ...}`, ints.
#
# Write your code where the cell says `raise NotImplementedError()`, run it, then run the check
# cell: points, and a hint for every check that fails. Every check builds a `CLIPVisionModel` of
# that configuration with transformers (on the meta device: shapes, no memory) and counts it;
# the grade also runs new configurations and the real image encoders of CLIP and LLaVA-1.5.
# Count; do not build a model yourself.

# %%
from vlmstudy.grading import check_vit_params

# %% [markdown]
# ## The components (`h` = `hidden_size`, `i` = `intermediate_size`)
#
# * **embeddings**: the patch projection, a convolution with `h` filters of
#   `num_channels x patch_size x patch_size` and **no bias**; one learned **class token** (`h`);
#   one learned **position** vector (`h`) per patch and one for the class token;
# * **one layer**: the attention's four Linear layers (`q`, `k`, `v`, `out`), `h -> h` each with
#   a bias; the MLP, `h -> i -> h`, with biases; two layer norms (a weight and a bias of `h` each);
# * **encoder**: `num_hidden_layers` such layers;
# * **norms**: the layer norm before the encoder (`pre_layrnorm`) and the one after it;
# * **total**: embeddings + encoder + norms.

# %%
def vit_params(config):
    ### BEGIN SOLUTION
    h, i = config["hidden_size"], config["intermediate_size"]
    patches = (config["image_size"] // config["patch_size"]) ** 2
    embeddings = h * config["num_channels"] * config["patch_size"] ** 2 + h + (patches + 1) * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    encoder = config["num_hidden_layers"] * layer
    norms = 2 * 2 * h
    return {"embeddings": embeddings, "layer": layer, "encoder": encoder, "norms": norms,
            "total": embeddings + encoder + norms}
    ### END SOLUTION

# %%
report = check_vit_params(vit_params)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(vit_params, "13_vit_parameters", "vit")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The real image encoders of CLIP ViT-B/32 and of LLaVA-1.5 (ViT-L/14 at 336 px), from the
# numbers on the course's model cards, beside each whole model (built on the meta device, as
# the zoo table does): a dual encoder spends a good part of its parameters on the image, a
# projector + LLM model almost all of them on the language model.

# %%
if report.passed:
    import torch
    import transformers

    from vlmstudy import get_card
    from vlmstudy.zoo.registry import real_config

    for name in ("clip", "llava"):
        config = real_config(name)
        v = config.vision_config
        counts = vit_params({key: getattr(v, key) for key in ("image_size", "patch_size", "num_channels", "hidden_size",
                                                              "intermediate_size", "num_hidden_layers")})
        with torch.device("meta"):
            whole = getattr(transformers, get_card(name).model_class)(config)
        total = sum(p.numel() for p in whole.parameters())
        print(f"{name:>5}: image encoder {counts['total'] / 1e6:7.1f} M (embeddings {counts['embeddings'] / 1e6:.2f} M, "
              f"{v.num_hidden_layers} layers of {counts['layer'] / 1e6:.2f} M); whole model {total / 1e6:7.1f} M, "
              f"{counts['total'] / total:.0%} of it")
else:
    print("Finish vit_params first: the checks above say what is missing.")
