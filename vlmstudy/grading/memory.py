"""Checks for exercise 07: a memory footprint calculator (notebook 10's bytes per weight).

``footprint_bytes(tensors, precision, dtype="fp16") -> int``: ``tensors`` is a list of
``(shape, quantized)`` pairs, one per parameter of a model; ``quantized`` is True for the weight
of a Linear layer bitsandbytes would replace (its ``out_features`` is ``shape[0]``). The bytes
the parameters take, quantization scales and code books included, as
:func:`vlmstudy.quantize.estimate_breakdown` counts them (its ``total`` minus ``buffer_bytes``).

The visible checks test each precision's rule on lists of random shapes; the hidden run builds
new random Llama-style architectures on the meta device (hidden sizes, depth, vocabulary, tied
or not, several precisions and dtypes) and compares with the package's estimator, and one
check with the real LLaVA-1.5-7B architecture.
"""

from __future__ import annotations

import math

from .core import Check, CheckFailed, Env

TARGET = "footprint_bytes"
FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def reference(tensors, precision: str, dtype: str = "fp16") -> int:
    """The estimator's rules (vlmstudy.quantize) on a list of ``(shape, quantized)``."""
    from .. import quantize

    if precision not in quantize.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    size = FLOAT_BYTES[precision] if precision in FLOAT_BYTES else FLOAT_BYTES[dtype]
    total = 0
    for shape, quantized in tensors:
        n = math.prod(shape)
        if quantized and precision in quantize.BNB_PRECISIONS:
            total += sum(quantize._quantized_weight_bytes(n, shape[0], precision))
        else:
            total += n * size
    return total


def _tensors(env: Env, n: int = 6) -> list[tuple[tuple[int, ...], bool]]:
    rng = env.rng
    out = []
    for _ in range(n):
        if rng.random() < 0.6:  # a Linear weight (sizes that are not multiples of the block size too)
            out.append(((int(rng.integers(1, 300)), int(rng.integers(1, 300))), True))
        elif rng.random() < 0.5:
            out.append(((int(rng.integers(1, 300)),), False))           # a bias or a norm
        else:
            out.append(((int(rng.integers(2, 500)), int(rng.integers(8, 64))), False))  # an embedding
    return out


def _call(fn, tensors, precision, dtype):
    got = fn(list(tensors), precision, dtype)
    if isinstance(got, float) and got.is_integer():
        got = int(got)
    if not isinstance(got, int) or isinstance(got, bool):
        raise CheckFailed(f"footprint_bytes returned {type(got).__name__}; return a whole number of bytes (an int)")
    return got


def _compare(fn, tensors, precision, dtype, what: str) -> None:
    got, want = _call(fn, tensors, precision, dtype), reference(tensors, precision, dtype)
    if got != want:
        shown = ", ".join(f"{tuple(s)}{'*' if q else ''}" for s, q in tensors[:4]) + (", ..." if len(tensors) > 4 else "")
        raise CheckFailed(f"{what}: {precision} (dtype {dtype}) of [{shown}] (* = quantized) gave {got:,} bytes, "
                          f"expected {want:,}")


def check_floats(fn, env: Env) -> None:
    for precision in ("fp32", "fp16", "bf16"):
        _compare(fn, _tensors(env), precision, "fp32" if precision != "fp32" else "fp16", "a float precision")


def check_int8(fn, env: Env) -> None:
    _compare(fn, [((256, 128), True)], "int8", "fp16", "one int8 Linear weight")
    _compare(fn, _tensors(env), "int8", "fp16", "int8")


def check_nf4(fn, env: Env) -> None:
    _compare(fn, [((64, 64), True)], "nf4", "fp16", "one nf4 weight of 4096 values")
    _compare(fn, [((3, 7), True)], "nf4", "fp16", "an odd number of values, less than a block")
    _compare(fn, _tensors(env), "nf4", "fp16", "nf4")


def check_nf4_dq(fn, env: Env) -> None:
    _compare(fn, [((512, 128), True)], "nf4-dq", "fp16", "one double-quantized weight of 1024 blocks")
    _compare(fn, _tensors(env), "nf4-dq", "bf16", "nf4-dq")


def check_dtype(fn, env: Env) -> None:
    for precision in ("int8", "nf4"):
        for dtype in ("fp32", "bf16"):
            _compare(fn, _tensors(env), precision, dtype, "what is not quantized stays in dtype")


def check_bad_precision(fn, env: Env) -> None:
    for precision in ("int4", "fp8", "nf3"):
        try:
            got = fn([((4, 4), True)], precision, "fp16")
        except Exception as err:  # graded, the learner's error arrives by its type name only
            if isinstance(err, ValueError) or type(err).__name__ == "ValueError":
                continue
            raise  # anything else shows as an error: "your code raised KeyError: ..."
        raise CheckFailed(f"precision {precision!r} gave {got!r}; an unknown precision must raise ValueError")


def _architecture(env: Env):
    """A random Llama-style config: new sizes every grade."""
    from transformers import LlamaConfig

    rng = env.rng
    heads = int(rng.choice([2, 4]))
    return LlamaConfig(hidden_size=heads * int(rng.choice([8, 12, 16, 24])), num_attention_heads=heads,
                       num_key_value_heads=int(rng.choice([1, heads])), intermediate_size=int(rng.integers(20, 200)),
                       num_hidden_layers=int(rng.integers(1, 4)), vocab_size=int(rng.integers(50, 700)),
                       tie_word_embeddings=bool(rng.random() < 0.5))


def parameters(model) -> list[tuple[tuple[int, ...], bool]]:
    """A model's parameters as the learner's function takes them (each shared one once)."""
    from .. import quantize

    quantized = set(quantize.quantized_linears(model))
    out = []
    for name, p in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        out.append((tuple(int(s) for s in p.shape), module in quantized and leaf == "weight"))
    return out


def _against_estimator(fn, config, precision: str, dtype: str, label: str) -> None:
    import torch

    from .. import quantize

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        precision if precision in FLOAT_BYTES else dtype]
    model, _ = quantize._meta_model(config, torch_dtype)
    tensors = parameters(model)
    b = quantize.estimate_breakdown(config, precision, torch_dtype)
    want = b["total"] - b["buffer_bytes"]
    got = _call(fn, tensors, precision, dtype)
    if got != want:
        raise CheckFailed(f"{label} at {precision} (dtype {dtype}): {got:,} bytes, vlmstudy.quantize's estimator "
                          f"gives {want:,}")


def check_random_architectures(fn, env: Env) -> None:
    for _ in range(2):
        config = _architecture(env)
        for precision in env.rng.permutation(["fp32", "bf16", "int8", "nf4", "nf4-dq"])[:3]:
            dtype = str(env.rng.choice(["fp16", "bf16", "fp32"]))
            _against_estimator(fn, config, str(precision), dtype,
                               f"a random Llama ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
                               f"vocabulary {config.vocab_size})")


def check_llava_7b(fn, env: Env) -> None:
    from .. import quantize

    config = quantize._meta_model("llava", __import__("torch").float16)[0].config
    _against_estimator(fn, config, str(env.rng.choice(["int8", "nf4", "nf4-dq"])), "fp16", "LLaVA-1.5-7B")


CHECKS = [
    Check("floats", 2, "fp32: 4 bytes a value, fp16 / bf16: 2, every tensor",
          "at a float precision nothing is quantized: sum prod(shape) * bytes per value", check_floats),
    Check("int8", 1, "int8: 1 byte a weight + one fp32 scale (4 bytes) per output row",
          "prod(shape) + 4 * shape[0] for a quantized weight", check_int8),
    Check("nf4", 2, "nf4: half a byte a weight (rounded up) + a 4-byte absmax per 64 values + a 64-byte code book",
          "(n + 1) // 2 + 4 * ceil(n / 64) + 16 * 4 for a quantized weight of n values", check_nf4),
    Check("nf4_dq", 1, "nf4-dq: the absmax values in 8 bits, one fp32 scale per 256 blocks, two code books",
          "(n + 1) // 2 + blocks + 4 * ceil(blocks / 256) + 256 * 4 + 16 * 4 + 4, blocks = ceil(n / 64)",
          check_nf4_dq),
    Check("dtype", 1, "at int8 / nf4, what is not quantized takes dtype's bytes",
          "the unquantized tensors (quantized=False: embeddings, norms, biases, the output layer) use dtype",
          check_dtype),
    Check("bad_precision", 1, "an unknown precision raises ValueError",
          "check precision against the six you know before counting", check_bad_precision),
    Check("architectures", 2, "equals vlmstudy.quantize's estimator on new random Llama architectures",
          "the same rules, tensor by tensor; the flags say which weights are quantized", check_random_architectures,
          visible=False),
    Check("llava_7b", 1, "equals the estimator on the real LLaVA-1.5-7B architecture",
          "the same rules; the sizes are large: use Python ints, not float32", check_llava_7b, visible=False),
]
