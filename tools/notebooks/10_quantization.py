# %% [markdown]
# # 10 · Quantization: fp16, int8 and NF4, measured
#
# **Objective.** By the end of this notebook you can load any model of the course at a lower
# precision with one argument (`quantization="nf4"`), count how many bytes it really takes,
# predict the size of a real 7 B checkpoint at each precision *without downloading it*, and say
# what quantization costs in speed and accuracy, from measurements rather than slogans.
#
# You will: (1) see why memory is the problem, (2) look at the presets, (3) measure the tiny CLIP
# at six precisions on your CPU, (4) open up a 4-bit layer, (5) estimate every real model in the
# zoo, (6) read the GPU figures for LLaVA-1.5-7B, (7) choose a model for a task from one table
# and one chart.

# %%
import vlmstudy
from vlmstudy import plotting, precision_benchmark, quantize

vlmstudy.seed_everything(0)
print("mode:", vlmstudy.get_mode(), "| device:", vlmstudy.get_device())
print(quantize.bitsandbytes_status()[1])

# %% [markdown]
# ## Why quantize?
#
# A model's weights are numbers, and each number costs bytes. LLaVA-1.5-7B has about 7.06 billion
# parameters; at 16 bits (2 bytes) each that is **14.1 GB** before a single image is processed.
# That does not fit on most laptop GPUs (8 GB) and leaves little room for activations and the
# KV cache on a 16-24 GB card.
#
# Memory is also **speed**: when a chatbot writes one token at a time (batch size 1), every
# weight is read from GPU memory once per token, so the time per token is roughly
# *bytes of weights / memory bandwidth*. Fewer bytes per weight can mean more tokens per second,
# *if* the kernels that unpack the small numbers are fast enough (we will see that they are not
# always).
#
# Quantization stores weights in fewer bits: **int8** (8 bits) or **NF4** (4-bit "NormalFloat",
# from the QLoRA paper), with a few scale numbers that map the small integers back to real values.
# How the matrix multiplications run differs: NF4 weights are unpacked to fp16 (or fp32 on a CPU)
# on the fly and multiplied there, while LLM.int8() runs the multiplication itself in int8 and
# only the few outlier feature columns in fp16 (more on both below).

# %% [markdown]
# ## The presets
#
# `quantize.preset(precision, device)` returns the keyword arguments for `from_pretrained`. Read
# them: this is *all* that changes between a full-precision and a 4-bit model in transformers 5.

# %%
print(quantize.PRECISIONS)
for precision in quantize.PRECISIONS:
    print(f"{precision:7}", quantize.preset_summary(precision, "cuda"))
print("on a CPU:", quantize.preset_summary("nf4", "cpu"))
kwargs = quantize.preset("nf4-dq", "cuda")   # the dict itself: pass it on as from_pretrained(hub_id, **kwargs)
type(kwargs["quantization_config"]).__name__

# %% [markdown]
# On a GPU the layers that stay unquantized and the 4-bit matmuls use fp16; on a CPU, fp32.
# The course's loader takes the precision directly:
#
# ```python
# model, processor = vlmstudy.load("llava", quantization="nf4")      # hub mode, GPU: ~4 GB instead of 14
# ```
#
# A name that is not a precision is refused with a message that lists the ones that are:

# %%
try:
    quantize.preset("int3")
except vlmstudy.ConfigError as err:
    print(err)

# %% [markdown]
# ## Bytes per parameter
#
# | precision | what is stored per weight |
# |---|---|
# | fp32 | 32 bits |
# | fp16 / bf16 | 16 bits (bf16 keeps fp32's range, with less precision) |
# | int8 (LLM.int8()) | 8 bits + one fp32 scale per *row* of the weight matrix |
# | nf4 | 4 bits + one fp32 `absmax` per *block of 64* weights: 4 + 32/64 = **4.5 bits** |
# | nf4-dq | double quantization: the absmax values themselves stored in 8 bits, one fp32 scale per 256 of them: 4 + 8/64 + 32/(64·256) = **4.127 bits** |
#
# Double quantization saves 0.373 bits per weight, about 0.33 GB on a 7 B model. Only the big
# `nn.Linear` layers are quantized: embeddings, norms, biases, the patch-embedding convolution and
# the output layer (`lm_head`) stay in 16 bits, so a real model never shrinks by the full 4x.

# %%
for row in quantize.bytes_per_parameter_table():
    print(f"{row['precision']:13} {row['bits']:6.3f} bits  {row['bytes']:5.3f} bytes  {row['vs_fp16']:5.3f} x fp16   {row['note']}")

# %% [markdown]
# ## The tiny CLIP at six precisions, measured now on your CPU
#
# `precision_benchmark.compare_precisions` loads the stand-in at each precision, one after the
# other in this process, and measures:
#
# * **footprint**: parameters + buffers + quantization scales, right after loading (`quantize.footprint`);
# * **latency**: the median time of one batch of 32 image embeddings;
# * **accuracy**: zero-shot colour x shape accuracy on test scenes (`evaluate_contrastive`).
#
# `dynamic-int8` is PyTorch's own CPU quantization (`torch.ao.quantization.quantize_dynamic`), the
# fallback when bitsandbytes cannot run. The measurement uses one CPU thread, so that the precisions
# compare fairly even when other programs are busy; the timings still depend on your CPU. (About
# half a minute.)

# %%
rows = precision_benchmark.compare_precisions("clip", n=100, batch_size=32, repeats=3, threads=1, progress=False)
print(precision_benchmark.format_rows(rows))
plotting.precision_bars(rows, title="tiny CLIP, measured on this CPU (ratios vs fp32)");

# %% [markdown]
# What to notice:
#
# * The size falls as the table above predicts, but not by the full factor: the token and position
#   embeddings, the norms and the last projection stay in full precision, and they are a large share
#   of a *tiny* model.
# * On a CPU, bitsandbytes is usually **slower** than fp32: its CPU kernels unpack the weights at
#   every call. PyTorch's dynamic int8 uses real int8 matrix kernels and is often the fastest.
#   Quantization on a CPU is about memory; on a GPU it can also be about speed (below).
# * Accuracy barely moves: a weight's 4-bit value is close enough to its fp32 value for a
#   classifier whose classes are far apart.
#
# The repository's benchmark (`python benchmarks/bench_quantization.py`) measures the same for the
# tiny CLIP (with more test scenes) **and** the tiny LLaVA answering questions; its stored result:

# %%
stored = precision_benchmark.cpu_results()
if stored is None:
    print("no stored run yet: python benchmarks/bench_quantization.py writes benchmarks/results/quantization_cpu.json")
else:
    print(f"measured {stored['date']} on {stored['machine'].get('cpu_model')}, {stored['config']['threads']} threads, "
          f"load average before {stored['machine']['load_average_before'][0]:.1f}")
    for name, model_rows in stored["results"].items():
        print(precision_benchmark.format_rows(model_rows))
        plotting.precision_bars(model_rows, title=f"tiny {name} (benchmarks/results/quantization_cpu.json)")

# %% [markdown]
# ## Inside a 4-bit layer
#
# Load the tiny CLIP in NF4 and look at one of its linear layers. The weight is now a flat
# `uint8` tensor, two 4-bit codes per byte, and its `quant_state` holds the block scales.
# `get_memory_footprint()` counts parameters and buffers only, so it does not see the scales;
# `quantize.footprint` does.

# %%
nf4_model, _ = vlmstudy.load("clip", quantization="nf4", device="cpu")
layer = nf4_model.vision_model.encoder.layers[0].mlp.fc1
state = layer.weight.quant_state
print(type(layer).__name__, "| stored weight:", layer.weight.dtype, tuple(layer.weight.shape),
      "| logical shape:", tuple(state.shape))
print(f"absmax: {state.absmax.numel()} {state.absmax.dtype} values, one per {state.blocksize} weights")
print(f"get_memory_footprint(): {nf4_model.get_memory_footprint() / 1e6:.3f} MB")
print(f"quantize.footprint():    {quantize.footprint(nf4_model) / 1e6:.3f} MB (with the scales)")
print("left unquantized by default:", quantize.skipped_modules(nf4_model))

# %% [markdown]
# The last line is transformers' rule for what bitsandbytes leaves alone: tied weights, the output
# embedding and the module holding the model's last parameter (here CLIP's `text_projection`), plus
# any `llm_int8_skip_modules` you pass.
#
# One CPU detail: on processors with AVX512-BF16, bitsandbytes repacks each 4-bit layer at its
# first call into a layout its CPU kernel prefers, with bf16 scales, and undoes double
# quantization on the way. That is why `compare_precisions` measures the footprint right after
# loading, and why nf4 and nf4-dq end up the same size on such a CPU once they have run.

# %% [markdown]
# ## The real models, estimated without downloading them
#
# `quantize.estimate(name, precision)` builds the real architecture on PyTorch's `meta` device
# (shapes, no memory), applies transformers' rule for which layers get quantized, and adds up the
# bytes with the formulas above. For a small model built for real and quantized on a CPU the
# estimate matches `quantize.footprint` to the byte (the test suite checks it).

# %%
table = quantize.estimate_table(precisions=("fp32", "fp16", "int8", "nf4", "nf4-dq"))
print(f"{'model':13} {'params':>8} {'fp32 GB':>8} {'fp16 GB':>8} {'int8 GB':>8} {'nf4 GB':>8} {'nf4-dq GB':>9} {'quantized':>9}")
for r in table:
    print(f"{r['model']:13} {r['params'] / 1e9:7.2f}B {r['fp32']:8.2f} {r['fp16']:8.2f} {r['int8']:8.2f} {r['nf4']:8.2f} "
          f"{r['nf4-dq']:9.2f} {r['quantized_share']:9.1%}")
plotting.estimate_bars(table, precisions=("fp16", "int8", "nf4-dq"),
                       title="real checkpoints, estimated (meta device, weights + scales)");

# %% [markdown]
# "quantized" is the share of parameters in layers bitsandbytes would quantize; the rest stays in
# 16 bits. BLIP-2 at fp16 is a little more than 2 bytes x 3.74 B because transformers keeps its
# Q-Former in fp32 (`_keep_in_fp32_modules`). Every 7 B model fits an 8 GB GPU only in 4 bits.

# %%
fp16 = quantize.estimate("llava", "fp16")
nf4_dq = quantize.estimate("llava", "nf4-dq")
nf4_dq_hf = quantize.estimate("llava", "nf4-dq", quant_state=False)  # what get_memory_footprint() reports
print(f"LLaVA-1.5-7B fp16:   {fp16 / 1e9:.2f} GB")
print(f"LLaVA-1.5-7B nf4-dq: {nf4_dq / 1e9:.2f} GB with the scales ({nf4_dq / fp16:.3f} x fp16), "
      f"{nf4_dq_hf / 1e9:.2f} GB as get_memory_footprint() counts it ({nf4_dq_hf / fp16:.3f} x fp16)")

# %% [markdown]
# ## On a GPU: LLaVA-1.5-7B at fp16, int8 and NF4
#
# `benchmarks/bench_llava_gpu.py` builds the real LLaVA-1.5-7B architecture with random weights on a
# GPU (nothing downloaded), quantizes it through `from_pretrained`, and times `generate` at batch
# size 1 (a 608-token prompt with the 576 image tokens, 64 new tokens). `precision_benchmark.gpu_results()`
# returns that run's table when this repository has one, and otherwise the **reference figures**;
# its `source` says which, and it is printed with every number.

# %%
gpu = precision_benchmark.gpu_results()
print("source:", gpu["source"])
print("device:", gpu["device"])
print(f"{'precision':9} {'footprint GB':>12} {'x fp16':>7} {'tokens/s':>9}")
for r in gpu["rows"]:
    if "skipped" not in r:
        print(f"{r['precision']:9} {r['memory_footprint_gb']:12.2f} {r['ratio_vs_fp16']:7.3f} {r['tokens_per_s']:9.1f}")
plotting.gpu_bars(gpu);

# %% [markdown]
# Reading the GPU table (the reference figures; check whether a measured table agrees):
#
# * The footprints agree with the estimates above in the `get_memory_footprint()` convention
#   (14.13, 7.33 and 3.93 GB): the size of a quantized model can be computed on paper.
# * NF4 decodes **faster** than fp16 at batch size 1 in the reference run: decoding reads every
#   weight once per token, and 4-bit weights are about a quarter of the bytes. int8 (LLM.int8())
#   is **slower** than fp16: it splits every matmul into an int8 part and an fp16 part for outlier
#   features, which costs more than the bytes it saves. int8 is for fitting a model, not for speed.
# * All of these are far from the physical limit (~14 GB read per token at ~3 TB/s is ~200 tokens/s
#   for fp16): at batch size 1, Python and kernel-launch overhead dominate. A static KV cache with
#   `torch.compile` (`generate(..., cache_implementation="static")`, which the benchmark also times
#   when run on a GPU) is the usual fix.
#
# **Try it** (in `hub` mode on a GPU, not run here): `vlmstudy.load("llava", quantization="nf4")`,
# then compare `quantize.footprint(model)` with `quantize.estimate("llava", "nf4")`.

# %% [markdown]
# ## Which model for which task?
#
# Memory decides what you *can* run; the task decides what you *should*. `compare.model_comparison()`
# puts both in one table: for each stand-in its size, its CPU latency for one answer (measured now,
# on your machine: a zero-shot label for CLIP / SigLIP, a caption or an answer for the generative
# models) and its headline accuracy on test scenes (from its model card); for the real checkpoint
# its parameters and the memory it needs at fp16, int8 and NF4 (estimated as above). The stand-ins
# are all a few MB and answer in well under a second on a CPU: their latencies say how much work
# each *design* does per answer (BLIP-VQA runs a text encoder and a decoder; LLaVA only a decoder),
# not what the real models cost.

# %%
from vlmstudy import compare

comparison = compare.model_comparison(repeats=3)
print(compare.format_comparison(comparison))

# %% [markdown]
# The selection chart reads the same rows: tasks down, models across from the smallest real
# checkpoint to the largest, a ring on the smallest model that does each task. Start there; move
# right only when the task needs it (instructions, several turns, several images) and the
# memory is there. The 7 B models fit an 8 GB GPU only in 4 bits.

# %%
picks = compare.smallest_for_each_task(comparison)
plotting.task_model_chart(comparison);
for task, name in picks.items():
    print(f"{task:26} -> {name}")

# %% [markdown]
# ## Checks
#
# These use the numbers measured and computed above; each can fail.

# %%
by_precision = {r["precision"]: r for r in rows if "error" not in r}
assert by_precision["nf4"]["footprint_bytes"] < by_precision["int8"]["footprint_bytes"] < by_precision["fp32"]["footprint_bytes"], \
    "on the tiny CLIP, nf4 should be smaller than int8, and int8 smaller than fp32"
assert abs(by_precision["nf4"]["accuracy_delta"]) <= 0.05, "NF4 should cost the tiny CLIP at most 5 points of accuracy"
assert quantize.footprint(nf4_model) > nf4_model.get_memory_footprint(), "footprint() counts the block scales too"
gpu_fp16_gb = next(r["memory_footprint_gb"] for r in gpu["rows"] if r["precision"] == "fp16")
assert abs(fp16 / (gpu_fp16_gb * 1e9) - 1) < 0.01, \
    f"the fp16 estimate of LLaVA-1.5-7B should match the GPU table's {gpu_fp16_gb} GB ({gpu['source']})"
assert nf4_dq_hf / fp16 <= 0.28, "NF4 + double quant should be at most 0.28 x the fp16 footprint (get_memory_footprint)"
assert nf4_dq / fp16 < quantize.estimate("llava", "nf4") / fp16 < 0.31, "double quant should save memory over plain NF4"
assert all(r["latency_ms"] > 0 for r in comparison), "every stand-in answered (a latency was measured)"
assert picks["zero-shot classification"] == "clip" and picks["chat"] == "smolvlm", picks  # SmolVLM-256M: the smallest chat model
assert all(r["real_nf4_gb"] < r["real_int8_gb"] < r["real_fp16_gb"] for r in comparison), "4 bits < 8 bits < 16 bits"
print("All checks passed.")

# %% [markdown]
# ## Summary
#
# * A model's memory is its parameters times the bytes each one takes; when a chatbot writes one token at a time, every weight is read once per token, so fewer bytes can also mean faster decoding.
# * In transformers 5 a precision is one `quantization_config` (a `BitsAndBytesConfig`); `quantize.preset` shows it and `vlmstudy.load(..., quantization=...)` takes it.
# * The bits really stored per weight include the scales (NF4 with blocks of 64: 4.5 bits; with double quantization: about 4.127), and only the large linear layers are quantized, so a model never shrinks by the full factor.
# * Measured on the tiny CLIP: the size falls, accuracy barely moves, and on a CPU bitsandbytes is usually slower than fp32 while PyTorch's dynamic int8 is often faster.
# * A 4-bit layer stores two codes per byte with its block scales in `quant_state`, which `get_memory_footprint()` does not count and `quantize.footprint` does; the size of a real 7 B model at each precision can be computed on the `meta` device without a download.
# * The right model for a task is the smallest one that does it, within the memory you have.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. How many bits does an NF4 weight really cost with blocks of 64, and where does the extra half bit come from?**
#
# <details><summary>Answer</summary>
#
# 4 + 32/64 = 4.5 bits: every block of 64 weights stores one fp32 `absmax` scale. Double quantization stores those scales in 8 bits (with one fp32 scale per 256 of them), about 4.127 bits in all.
#
# </details>
#
# **2. Why does a 7 B model in NF4 take more than a quarter of its fp16 size?**
#
# <details><summary>Answer</summary>
#
# Only the large `nn.Linear` layers are quantized: embeddings, norms, biases, the patch-embedding convolution and the output layer stay in 16 bits. The block scales add half a bit per quantized weight on top.
#
# </details>
#
# **3. Why can 4-bit weights make decoding faster on a GPU, while bitsandbytes is usually slower than fp32 on a CPU?**
#
# <details><summary>Answer</summary>
#
# At batch size 1 every weight is read once per token, so where memory bandwidth sets the pace, weights of about a quarter of the bytes take less time per token (if the kernels that unpack them are fast). On a CPU, bitsandbytes' kernels unpack the weights at every call, which costs more than the bytes saved.
#
# </details>
#
# **4. Why does `quantize.footprint` report more than `get_memory_footprint()` for an NF4 model?**
#
# <details><summary>Answer</summary>
#
# `get_memory_footprint()` counts parameters and buffers only; the block scales live in each layer's `quant_state`, which only `quantize.footprint` adds.
#
# </details>
#
# **5. How can the notebook give the NF4 size of a model you have not downloaded?**
#
# <details><summary>Answer</summary>
#
# `quantize.estimate` builds the architecture on PyTorch's `meta` device (shapes, no memory), applies transformers' rule for which layers bitsandbytes would quantize, and adds up the bytes with the bits-per-weight formulas.
#
# </details>

# %% [markdown]
# ## References
#
# * Dettmers et al., *LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale* (2022): [arXiv:2208.07339](https://arxiv.org/abs/2208.07339).
# * Dettmers et al., *QLoRA: Efficient Finetuning of Quantized LLMs* (NF4, double quantization, 2023): [arXiv:2305.14314](https://arxiv.org/abs/2305.14314).
# * Model card: [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf).
# * Docs: [transformers quantization with bitsandbytes](https://huggingface.co/docs/transformers/quantization/bitsandbytes), [quantization reference](https://huggingface.co/docs/transformers/main_classes/quantization), [bitsandbytes](https://huggingface.co/docs/bitsandbytes), [PyTorch `quantize_dynamic`](https://pytorch.org/docs/stable/generated/torch.ao.quantization.quantize_dynamic.html).
