# %% [markdown]
# # Exercise 11 · A LoRA configuration for a target budget
#
# **Objective.** Choose a LoRA configuration (notebook 11) from a budget of trainable
# parameters, before training: LoRA freezes a weight `W` (`out x in`) and trains `B @ A` beside
# it, `A` of `r x in` and `B` of `out x r`, so a layer costs `r * (in + out)` parameters and the
# rank `r` is the knob. Which layers peft wraps is decided by their **names**.
#
# A model's Linear layers are given as a dict `{module name: (in_features, out_features)}`
# (`linear_layers(model)` below makes it).
#
# 1. `lora_params(layers, r, targets) -> int`: the trainable parameters of rank-`r` LoRA on the
#    layers `targets` names;
# 2. `lora_for_budget(layers, targets, budget) -> dict`: the largest rank that fits.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The checks compare with **peft** itself
# (a random small Llama wrapped by `get_peft_model`); the grade also runs new random models,
# ranks, targets and budgets. Count; do not wrap a model with peft yourself.

# %%
import copy
import warnings

import torch

from vlmstudy.grading import check_lora_for_budget, check_lora_params, load_quietly


def linear_layers(model):
    """{module name: (in_features, out_features)} of every Linear layer."""
    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}

# %% [markdown]
# ## Part 1: how many parameters
#
# peft's rule for a list of `target_modules`: a target matches a module when the module's name
# **is** the target or **ends with** `"." + target` (`"q_proj"` matches
# `"model.layers.0.self_attn.q_proj"`, not `"model.layers.0.q_proj_extra"`). Every matching
# layer costs `r * (in_features + out_features)`.

# %%
def lora_params(layers, r, targets):
    ### BEGIN SOLUTION
    total = 0
    for name, (n_in, n_out) in layers.items():
        if any(name == t or name.endswith("." + t) for t in targets):
            total += r * (n_in + n_out)
    return total
    ### END SOLUTION

# %%
check_lora_params(lora_params)

# %% [markdown]
# ## Part 2: the largest rank that fits
#
# Try the ranks 256, 128, ..., 2, 1 (powers of two) and take the first whose count is at most
# `budget` (a count of 0, targets that match nothing, never fits). Return
# `{"r": r, "lora_alpha": 2 * r, "target_modules": sorted(targets), "params": count}` (alpha = 2 r
# keeps the update's scale `alpha / r` the same at every rank), or raise `ValueError` when not
# even `r = 1` fits.

# %%
def lora_for_budget(layers, targets, budget):
    ### BEGIN SOLUTION
    for r in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        params = lora_params(layers, r, targets)
        if 0 < params <= budget:
            return {"r": r, "lora_alpha": 2 * r, "target_modules": sorted(targets), "params": params}
    raise ValueError(f"not even r = 1 on {targets} fits a budget of {budget} parameters")
    ### END SOLUTION

# %%
report = check_lora_for_budget(lora_for_budget)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(lora_params, "11_lora_budget", "lora_params"))
hidden_checks(lora_for_budget, "11_lora_budget", "lora_for_budget")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The course's LLaVA: a budget of 10 % of its language model's Linear weights, on the
# attention's q and v projections, then on every projection of the language model, each checked
# with peft.

# %%
if report.passed:
    import peft

    model, processor = load_quietly("llava")
    lm = model.model.language_model
    layers = {f"model.language_model.{name}": shape for name, shape in linear_layers(lm).items()}
    budget = sum(i * o for i, o in layers.values()) // 10
    for targets in (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]):
        config = lora_for_budget(layers, targets, budget)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(
                r=config["r"], lora_alpha=config["lora_alpha"],
                target_modules=r"model\.language_model\..*\.(" + "|".join(targets) + ")"))  # a str: a regex
        print(f"budget {budget:,}: r = {config['r']:3} on {len(targets)} kinds of layer, {config['params']:,} parameters "
              f"(peft trains {wrapped.get_nb_trainable_parameters()[0]:,})")
else:
    print("Finish lora_for_budget first: the checks above say what is missing.")
