# %% [markdown]
# # Exercise 10 · The Q-Former's queries and shapes (BLIP-2)
#
# **Objective.** Follow one batch of images through BLIP-2's bridge (notebook 06) and predict
# every shape from the configuration alone. The frozen ViT turns an image into one vector per
# patch; the Q-Former's **learned queries**, a fixed number whatever the image, read those
# vectors through cross-attention and come out as a fixed-size summary; a linear layer projects
# them to the language model's width, where they sit in front of the prompt as "soft" image
# tokens. LLaVA-1.5 hands the language model 576 image tokens; BLIP-2 hands it 32.
#
# `qformer_shapes(config, batch) -> dict`, where `config` holds the numbers of a `Blip2Config`:
#
# | key | meaning |
# |---|---|
# | `image_size`, `patch_size`, `vision_hidden` | the ViT: square images, square patches, its width |
# | `num_query_tokens`, `qformer_hidden` | the learned queries and the Q-Former's width |
# | `qformer_layers`, `cross_attention_frequency` | its depth; how often a layer cross-attends to the image |
# | `text_hidden` | the language model's width |
#
# Return `{"vision": ..., "queries": ..., "qformer": ..., "language": ..., "cross_attention_layers": ...}`:
# the shapes (tuples) of the ViT's output, of the queries expanded to the batch, of the
# Q-Former's output, of the projection's output, and how many Q-Former layers have
# cross-attention (an int).
#
# Write your code where the cell says `raise NotImplementedError()`, run it, then run the check
# cell: points, and a hint for every check that fails. Every check builds a BLIP-2 of a random
# configuration and runs it; the grade also runs new configurations and the real BLIP-2
# OPT-2.7b (on the meta device: shapes only).

# %%
import math

from vlmstudy.grading import check_qformer_shapes, load_quietly

# %% [markdown]
# ## The rules
#
# * the ViT adds a class token to its patches: `1 + (image_size // patch_size) ** 2` tokens;
# * the queries, and the Q-Former's output, are `num_query_tokens` vectors of `qformer_hidden`;
# * the projection keeps the tokens and changes the width to `text_hidden`;
# * Q-Former layer `i` (from 0) cross-attends to the image when `i % cross_attention_frequency == 0`.

# %%
def qformer_shapes(config, batch):
    ### BEGIN SOLUTION
    tokens = 1 + (config["image_size"] // config["patch_size"]) ** 2
    queries = (batch, config["num_query_tokens"], config["qformer_hidden"])
    return {"vision": (batch, tokens, config["vision_hidden"]), "queries": queries, "qformer": queries,
            "language": (batch, config["num_query_tokens"], config["text_hidden"]),
            "cross_attention_layers": math.ceil(config["qformer_layers"] / config["cross_attention_frequency"])}
    ### END SOLUTION

# %%
report = check_qformer_shapes(qformer_shapes)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(qformer_shapes, "10_qformer_shapes", "shapes")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The course's tiny BLIP-2 and the real BLIP-2 OPT-2.7b's numbers (from its config): your
# shapes beside the tiny model's forward pass.

# %%
if report.passed:
    import torch

    model, processor = load_quietly("blip2")
    c = model.config
    config = {"image_size": c.vision_config.image_size, "patch_size": c.vision_config.patch_size,
              "vision_hidden": c.vision_config.hidden_size, "num_query_tokens": c.num_query_tokens,
              "qformer_hidden": c.qformer_config.hidden_size, "qformer_layers": c.qformer_config.num_hidden_layers,
              "cross_attention_frequency": c.qformer_config.cross_attention_frequency,
              "text_hidden": c.text_config.hidden_size}
    with torch.no_grad():
        pixels = torch.zeros(2, 3, c.vision_config.image_size, c.vision_config.image_size)
        vision = model.vision_model(pixel_values=pixels).last_hidden_state
        out = model.qformer(query_embeds=model.query_tokens.expand(2, -1, -1), encoder_hidden_states=vision).last_hidden_state
    print("tiny BLIP-2, yours:   ", qformer_shapes(config, 2))
    print("tiny BLIP-2, measured: vision", tuple(vision.shape), "qformer", tuple(out.shape),
          "language", tuple(model.language_projection(out).shape))
    real = {"image_size": 224, "patch_size": 14, "vision_hidden": 1408, "num_query_tokens": 32, "qformer_hidden": 768,
            "qformer_layers": 12, "cross_attention_frequency": 2, "text_hidden": 2560}
    print("BLIP-2 OPT-2.7b, yours:", qformer_shapes(real, 1))
else:
    print("Finish qformer_shapes first: the checks above say what is missing.")
