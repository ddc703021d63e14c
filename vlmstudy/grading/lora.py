"""Checks for exercise 11: a LoRA configuration for a target budget (notebook 11).

A model's Linear layers travel as a dict ``{module name: (in_features, out_features)}``.

* ``lora_params(layers, r, targets) -> int``: the trainable parameters of rank-``r`` LoRA on the
  layers ``targets`` names (peft's rule: a target matches a module whose name is the target or
  ends with ``"." + target``), compared with peft itself: every check wraps a small random
  Llama in ``peft.get_peft_model`` and reads ``get_nb_trainable_parameters()``;
* ``lora_for_budget(layers, targets, budget) -> dict``: the largest power-of-two rank (1 to 256)
  whose LoRA fits ``budget`` trainable parameters, as ``{"r", "lora_alpha" (2 r), "target_modules"
  (the targets, sorted), "params"}``; a ``ValueError`` when not even ``r = 1`` fits.

The package's own counter (:func:`vlmstudy.finetune.memory.lora_parameters`) is out of reach
while graded; peft itself is not (a submission could wrap a model of its own), as the notebook says.
"""

from __future__ import annotations

from .core import Check, CheckFailed, Env

PARAMS_TARGET = "lora_params"
BUDGET_TARGET = "lora_for_budget"
RANKS = tuple(2 ** i for i in range(9))
NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_model(env: Env):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = env.rng
    heads = int(rng.choice([2, 4]))
    config = LlamaConfig(hidden_size=heads * int(rng.choice([4, 6, 8])), num_attention_heads=heads,
                         num_key_value_heads=int(rng.choice([1, heads])), intermediate_size=int(rng.integers(8, 64)),
                         num_hidden_layers=int(rng.integers(1, 4)), vocab_size=int(rng.integers(20, 90)))
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def linear_layers(model) -> dict:
    import torch

    return {name: (int(m.in_features), int(m.out_features)) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def peft_count(model, r: int, targets) -> int:
    """What peft trains: rank-``r`` LoRA on ``targets`` (a fresh copy of ``model`` each time)."""
    import copy
    import warnings

    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=r, lora_alpha=2 * r,
                                                                            target_modules=list(targets)))
    return int(wrapped.get_nb_trainable_parameters()[0])


def _targets(env: Env) -> list[str]:
    k = int(env.rng.integers(1, len(NAMES) + 1))
    return sorted(str(t) for t in env.rng.choice(NAMES + ["lm_head"], size=k, replace=False))


def _params(fn, layers, r, targets) -> int:
    got = fn(dict(layers), r, list(targets))
    if isinstance(got, bool) or not isinstance(got, int):
        raise CheckFailed(f"lora_params returned {got!r}; return the number of trainable parameters, an int")
    return got


def _expect_params(fn, model, r, targets, what: str) -> None:
    layers = linear_layers(model)
    got, want = _params(fn, layers, r, targets), peft_count(model, r, targets)
    if got != want:
        raise CheckFailed(f"{what}: rank {r} on {targets} gave {got:,}, peft trains {want:,}")


def check_one_layer(fn, env: Env) -> None:
    got = _params(fn, {"proj": (10, 6)}, 4, ["proj"])
    if got != 4 * (10 + 6):
        raise CheckFailed(f"one 10 -> 6 layer at rank 4 gave {got}; A is r x in, B is out x r: 4 * (10 + 6) = 64")


def check_attention(fn, env: Env) -> None:
    model = random_model(env)
    _expect_params(fn, model, 8, ["q_proj", "v_proj"], "q_proj and v_proj of a random Llama")


def check_matching(fn, env: Env) -> None:
    model = random_model(env)
    _expect_params(fn, model, 4, ["down_proj", "lm_head"], "the MLP's down_proj and the output layer")
    layers = {"encoder.q_proj": (8, 8), "encoder.q_proj_extra": (8, 4), "q_proj": (4, 4)}
    got = _params(fn, layers, 1, ["q_proj"])
    if got != 16 + 8:
        raise CheckFailed(f"names 'encoder.q_proj', 'encoder.q_proj_extra', 'q_proj' with target 'q_proj' gave {got}; "
                          "peft matches 'q_proj' and 'encoder.q_proj' (name == target or name ends with '.' + target): 24")


def check_random_params(fn, env: Env) -> None:
    for _ in range(3):
        model = random_model(env)
        _expect_params(fn, model, int(env.rng.choice(RANKS)), _targets(env), "a random Llama")


PARAMS_CHECKS = [
    Check("one_layer", 1, "one layer: r * (in_features + out_features)",
          "LoRA adds A (r x in) and B (out x r) beside each targeted weight", check_one_layer),
    Check("attention", 2, "q_proj and v_proj of a random Llama, as peft counts",
          "sum r * (in + out) over the layers whose name matches a target", check_attention),
    Check("matching", 2, "peft's name rule: the whole name, or its last dotted parts",
          "a target matches a name when name == target or name.endswith('.' + target); not a substring",
          check_matching),
    Check("random", 2, "equals peft on new random models, ranks and targets",
          "the same rule for every target, the output layer (lm_head) included", check_random_params, visible=False),
]


# ----------------------------------------------------------------------------- the budget

def reference_budget(layers, targets, budget) -> dict:
    def count(r):
        return sum(r * (i + o) for name, (i, o) in layers.items()
                   if any(name == t or name.endswith("." + t) for t in targets))

    fitting = [r for r in RANKS if count(r) <= budget]
    if not fitting or count(1) == 0:
        raise ValueError("not even r = 1 fits")
    r = max(fitting)
    return {"r": r, "lora_alpha": 2 * r, "target_modules": sorted(targets), "params": count(r)}


def _budget(fn, layers, targets, budget) -> dict:
    got = fn(dict(layers), list(targets), budget)
    if not isinstance(got, dict) or not {"r", "lora_alpha", "target_modules", "params"} <= set(got):
        raise CheckFailed(f"lora_for_budget returned {got!r}; return a dict with r, lora_alpha, target_modules, params")
    return got


def _expect_budget(fn, model, targets, budget, what: str) -> None:
    layers = linear_layers(model)
    want = reference_budget(layers, targets, budget)
    got = _budget(fn, layers, targets, budget)
    if got["r"] != want["r"]:
        raise CheckFailed(f"{what}: a budget of {budget:,} on {targets}: r = {got['r']}, the largest power of two "
                          f"that fits is {want['r']}")
    if got["params"] != peft_count(model, want["r"], targets):
        raise CheckFailed(f"{what}: params {got['params']:,}, peft trains {peft_count(model, want['r'], targets):,} "
                          f"at r = {want['r']}")
    if got["lora_alpha"] != 2 * want["r"] or list(got["target_modules"]) != sorted(targets):
        raise CheckFailed(f"{what}: lora_alpha {got['lora_alpha']!r} and target_modules {got['target_modules']!r}; "
                          f"expected {2 * want['r']} (2 r) and {sorted(targets)} (sorted)")


def check_fits(fn, env: Env) -> None:
    model = random_model(env)
    layers = linear_layers(model)
    one = reference_budget(layers, ["q_proj", "v_proj"], 10 ** 9)["params"] // 256
    for budget in (8 * one, 8 * one + one // 2, 16 * one - 1, 3 * one):
        _expect_budget(fn, model, ["q_proj", "v_proj"], budget, "q_proj and v_proj")


def check_exact_budget(fn, env: Env) -> None:
    model = random_model(env)
    one = reference_budget(linear_layers(model), ["o_proj"], 10 ** 9)["params"] // 256
    _expect_budget(fn, model, ["o_proj"], 4 * one, "a budget met exactly (<= budget)")
    _expect_budget(fn, model, ["o_proj"], 10 ** 12, "a budget larger than r = 256 needs (the largest rank is 256)")


def check_too_small(fn, env: Env) -> None:
    model = random_model(env)
    try:
        got = fn(linear_layers(model), ["q_proj"], 3)
    except Exception as err:  # graded, the learner's error arrives by its type name only
        if isinstance(err, ValueError) or type(err).__name__ == "ValueError":
            return
        raise
    raise CheckFailed(f"a budget of 3 parameters gave {got!r}; when not even r = 1 fits, raise ValueError")


def check_random_budget(fn, env: Env) -> None:
    for _ in range(3):
        model = random_model(env)
        targets = _targets(env)
        one = reference_budget(linear_layers(model), targets, 10 ** 12)["params"] // 256
        _expect_budget(fn, model, targets, int(env.rng.integers(one, 300 * one)), "a random Llama")


BUDGET_CHECKS = [
    Check("fits", 2, "the largest power-of-two rank whose LoRA fits the budget",
          "try r = 256, 128, ..., 1 and return the first whose lora_params is <= budget", check_fits),
    Check("exact_budget", 1, "a budget met exactly fits; no rank above 256",
          "compare with <=; the ranks are 1, 2, 4, ..., 256", check_exact_budget),
    Check("too_small", 1, "a budget too small for r = 1 raises ValueError",
          "raise ValueError(...) when no rank fits", check_too_small),
    Check("random", 2, "right on new random models, targets and budgets (r, lora_alpha, targets, params)",
          "lora_alpha = 2 * r, target_modules sorted, params = lora_params(layers, r, targets)",
          check_random_budget, visible=False),
]
