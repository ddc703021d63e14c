# %% [markdown]
# # Exercise 05 · Attention rollout
#
# **Objective.** Write attention rollout (Abnar & Zuidema, 2020; notebook 09): how much each
# output token of a vision transformer draws on each input patch, through **all** its layers.
#
# `attention_rollout(attentions, residual=0.5)`, for `attentions` of shape
# `(layers, B, heads, S, S)` (row `i` of a layer is what token `i` attends to; rows sum to 1):
#
# 1. per layer, average the heads: `A` is `(B, S, S)`;
# 2. add the residual connection: `A' = residual * I + (1 - residual) * A`, then divide every
#    row by its sum;
# 3. multiply the layers, the newest on the **left**: `R = A'_L ... A'_2 A'_1`.
#
# Return `R`, `(B, S, S)`. Write your code where the cell says `raise NotImplementedError()`,
# run it, then run the check cell: points, and a hint for every check that fails. The grade also
# runs hidden checks on new data and on the real (tiny) CLIP's attention.

# %%
import torch

from vlmstudy import attention, shapes
from vlmstudy.grading import check_rollout, load_quietly

# %%
def attention_rollout(attentions, residual=0.5):
    ### BEGIN SOLUTION
    size = attentions.shape[-1]
    eye = torch.eye(size, dtype=attentions.dtype, device=attentions.device)
    rollout = eye.expand(attentions.shape[1], size, size)
    for layer in attentions:
        a = residual * eye + (1 - residual) * layer.mean(dim=1)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout
    ### END SOLUTION

# %%
report = check_rollout(attention_rollout)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(attention_rollout, "05_attention_rollout", "rollout")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# Roll out the tiny CLIP's attention on one scene and read the CLS token's row: which of the
# 8 x 8 patches does the image embedding draw on the most?

# %%
if report.passed:
    clip, processor = load_quietly("clip")
    scene = shapes.make_scenes("test", 1, seed=2)[0]
    with torch.no_grad():
        att = attention.vision_attentions(clip, processor, [scene.render()])
    rollout = attention_rollout(att)
    grid = attention.patch_grid(clip)
    cls_map = rollout[0, 0, 1:].reshape(grid, grid)
    row, col = divmod(int(cls_map.argmax()), grid)
    print(scene.caption)
    print(f"{att.shape[0]} layers, {att.shape[2]} heads, {att.shape[-1]} tokens; the CLS token draws most on the "
          f"patch in row {row}, column {col}")
    print("share of each row of patches:", [round(float(x), 2) for x in cls_map.sum(dim=1) / cls_map.sum()])
else:
    print("Finish attention_rollout first: the checks above say what is missing.")
