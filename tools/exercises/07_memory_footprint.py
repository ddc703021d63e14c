# %% [markdown]
# # Exercise 07 · A memory footprint calculator
#
# **Objective.** Count, to the byte, the memory a model's weights take at each precision of
# notebook 10, before loading it: fp32, fp16, bf16, and bitsandbytes' int8 (LLM.int8()), NF4 and
# NF4 with double quantization. A 7 B model does not fit a 16 GB GPU in fp32 (28 GB); whether it
# fits in 4 bits is arithmetic you can do on paper.
#
# `footprint_bytes(tensors, precision, dtype="fp16") -> int`: `tensors` lists a model's
# parameters as `(shape, quantized)` pairs; `quantized` is `True` for the weight of a Linear
# layer bitsandbytes would replace (`shape` is `(out_features, in_features)`), `False` for
# everything it leaves alone (embeddings, norms, biases, the output layer). `dtype` is the
# precision of what is not quantized at `int8` / `nf4` / `nf4-dq`.
#
# Write your code where the cell says `raise NotImplementedError()`, run it, then run the check
# cell: points, and a hint for every check that fails. The grade also runs hidden checks against
# `vlmstudy.quantize`'s estimator on new random architectures and on the real LLaVA-1.5-7B.

# %%
import math

import torch

from vlmstudy import quantize
from vlmstudy.grading import check_footprint
from vlmstudy.zoo.table import build_on_meta

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq")
FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def parameters(model):
    """A model's parameters as `footprint_bytes` takes them: `(shape, quantized)`, shared ones once."""
    quantized = set(quantize.quantized_linears(model))
    out = []
    for name, p in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        out.append((tuple(p.shape), module in quantized and leaf == "weight"))
    return out

# %% [markdown]
# ## The rules
#
# For a tensor of `n = prod(shape)` values:
#
# * **fp32 / fp16 / bf16**: nothing is quantized; every tensor takes 4 / 2 / 2 bytes a value
#   (`dtype` does not matter);
# * **int8**, a quantized weight: 1 byte a value, plus one fp32 scale (4 bytes) per output row
#   (`shape[0]` rows);
# * **nf4**, a quantized weight: two 4-bit codes per byte, `(n + 1) // 2` bytes, plus one fp32
#   absmax per block of 64 values (`4 * ceil(n / 64)`), plus the 16-entry fp32 code book (64 bytes);
# * **nf4-dq** (double quantization), a quantized weight: the same packed codes; the absmax values
#   themselves in 8 bits (1 byte a block), one fp32 scale per 256 blocks, a 256-entry fp32 code
#   book for them (1,024 bytes), the nf4 code book (64 bytes) and one fp32 offset (4 bytes);
# * at int8 / nf4 / nf4-dq, a tensor that is **not** quantized takes `FLOAT_BYTES[dtype]` a value.
#
# An unknown precision raises `ValueError`. Return an `int`.

# %%
def footprint_bytes(tensors, precision, dtype="fp16"):
    ### BEGIN SOLUTION
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
    total = 0
    for shape, quantized in tensors:
        n = math.prod(shape)
        if precision in FLOAT_BYTES:
            total += n * FLOAT_BYTES[precision]
        elif not quantized:
            total += n * FLOAT_BYTES[dtype]
        elif precision == "int8":
            total += n + 4 * shape[0]
        else:
            blocks = math.ceil(n / 64)
            total += (n + 1) // 2
            if precision == "nf4":
                total += 4 * blocks + 16 * 4
            else:
                total += blocks + 4 * math.ceil(blocks / 256) + 256 * 4 + 16 * 4 + 4
    return total
    ### END SOLUTION

# %%
report = check_footprint(footprint_bytes)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(footprint_bytes, "07_memory_footprint", "footprint")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The real LLaVA-1.5-7B, built on PyTorch's `meta` device (shapes, no memory, no download):
# your count at every precision beside `vlmstudy.quantize.estimate`, and the share of the
# weights bitsandbytes quantizes.

# %%
if report.passed:
    llava = build_on_meta("llava")
    tensors = parameters(llava)
    share = sum(math.prod(s) for s, q in tensors if q) / sum(math.prod(s) for s, q in tensors)
    print(f"LLaVA-1.5-7B: {len(tensors)} tensors, {share:.1%} of the weights in quantized Linear layers")
    for precision in PRECISIONS:
        mine = footprint_bytes(tensors, precision)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(precision, torch.float16)
        b = quantize.estimate_breakdown("llava", precision, dtype)
        print(f"  {precision:7} yours {mine / 1e9:6.2f} GB   vlmstudy.quantize {(b['total'] - b['buffer_bytes']) / 1e9:6.2f} GB")
else:
    print("Finish footprint_bytes first: the checks above say what is missing.")
