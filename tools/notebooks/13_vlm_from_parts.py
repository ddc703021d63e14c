# %% [markdown]
# # 13 · A VLM from parts, trained on a laptop
#
# **Objective.** By the end of this notebook you can build a vision-language model yourself from
# three parts: a vision tower that already sees (tiny CLIP's), a language model that already
# speaks (a tiny Llama pre-trained on ShapesWorld text, with no image), and a **projector** that
# you train to connect them. You will follow the tensors through every joint, train the model the
# way LLaVA-1.5 was trained (stage 1: only the projector, on captions; stage 2: instruction
# tuning), measure it per question kind after each stage, save it in Hugging Face format and use
# it like any zoo model. The last section lists ablations to run yourself: projector type,
# frozen vs trained tower, fewer image tokens through pixel shuffle, and skipping stage 1.
#
# Everything here is `vlmstudy.assemble`, a few small modules you can read in one sitting.

# %%
import tempfile
from pathlib import Path

import torch

import vlmstudy
from vlmstudy import assemble, plotting, shapes
from vlmstudy.assemble import StageConfig

# one thread: the runs are repeatable bit for bit and a busy 2-core laptop is not slowed down
torch.set_num_threads(1)
vlmstudy.seed_everything(0)
HUB = vlmstudy.get_mode() == "hub"
work = Path(tempfile.mkdtemp(prefix="vlmstudy-13-"))  # the trained model is saved here
# a short budget: seconds on a laptop CPU (hub mode: a few steps, the mechanics only)
STAGE1 = StageConfig(steps=4, batch=2, pool=16, eval_n=4) if HUB else StageConfig(steps=30, batch=16, pool=400, eval_n=48)
STAGE2 = StageConfig(steps=4, batch=2, pool=16, eval_n=4) if HUB else StageConfig(steps=60, batch=16, pool=400, eval_n=48)
print("mode:", vlmstudy.get_mode(), "| files in", work)

# %% [markdown]
# ## Step 1: the parts
#
# `assemble.course_parts()` loads the two pre-trained parts. In tiny mode: tiny CLIP's vision
# tower (`assets/models/tiny-clip`) and `assets/models/tiny-shapes-lm`, a 4-layer Llama trained
# by `vlmstudy zoo train shapes-lm` on image-free ShapesWorld chats (its model card says how
# long and to what loss). In hub mode: the vision tower of `openai/clip-vit-base-patch32` and
# `HuggingFaceTB/SmolLM2-135M`, the language model nanoVLM builds on.

# %%
tower, lm, tokenizer = assemble.course_parts()
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(f"vision tower:   {type(tower).__name__:<18} {count(tower):>12,} parameters, "
      f"{tower.config.image_size} px, patch {tower.config.patch_size}, width {tower.config.hidden_size}")
print(f"language model: {type(lm).__name__:<18} {count(lm):>12,} parameters, width {lm.config.hidden_size}, "
      f"vocabulary {lm.config.vocab_size}")

# %% [markdown]
# The language model has never seen a picture, but it knows ShapesWorld's language: asked a
# question in LLaVA's chat format, it answers with a word of the right *kind*, not the right one.

# %%
if not HUB:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "what color is the circle?"}]}],
                                           add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = lm.generate(ids, max_new_tokens=3, do_sample=False)
    print(repr(prompt), "->", repr(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))

# %% [markdown]
# ## Step 2: assemble, and the shapes at every joint
#
# `assemble_llava` builds a real `transformers.LlavaForConditionalGeneration` and copies the two
# parts' weights in; the projector between them starts random. Here it is LLaVA-1.5's MLP
# (Linear -> GELU -> Linear). The processor is a `LlavaProcessor`: it expands each `<image>` in
# the prompt into as many placeholder tokens as the projector will return.

# %%
model, processor = assemble.assemble_llava(tower, lm, tokenizer, projector="mlp")
inner = model.model
for name, part in [("vision tower", inner.vision_tower), ("projector", inner.multi_modal_projector),
                   ("language model", inner.language_model), ("lm_head", model.lm_head)]:
    print(f"{name:<15} {type(part).__name__:<26} {count(part):>12,}")
print(type(model).__name__, "+", type(processor).__name__, "| <image> tokens per picture:",
      assemble.image_token_count(processor))

# %%
scene = shapes.make_scenes("test", 1, seed=5)[0]
image = scene.render(64)
rows = assemble.shapes_at_every_joint(model, processor, image, "what color is the circle?")

# %% [markdown]
# Read the table top to bottom: the image processor makes pixels `(B, 3, S, S)`; the tower cuts
# them into `N` patches and returns a CLS state plus one state per patch; LLaVA takes the
# second-to-last layer and drops CLS, `(B, N, C)`; the projector maps each to the language
# model's width `D`; and those `T` tokens replace the `T` `<image>` placeholders in the prompt's
# embeddings. The function checks its step-by-step result against LLaVA's own
# `get_image_features`.
#
# **Fewer image tokens: pixel shuffle.** Idefics3 and SmolVLM fold each `r x r` block of patches
# into one token `r^2` times as wide before the projector. The same joints with that projector:

# %%
grid = tower.config.image_size // tower.config.patch_size
options = [(grid // r) ** 2 for r in range(2, grid + 1) if grid % r == 0]
shuffled, shuffled_processor = assemble.assemble_llava(tower, lm, tokenizer, projector="pixel_shuffle",
                                                       image_tokens=options[0])
print(f"{grid} x {grid} patches; pixel shuffle can give {options} image tokens; using {options[0]}")
rows_ps = assemble.shapes_at_every_joint(shuffled, shuffled_processor, image, "what color is the circle?")
print(f"prompt length: {rows[-1]['shape'][1]} tokens with the MLP, {rows_ps[-1]['shape'][1]} with pixel shuffle")
del shuffled, shuffled_processor

# %% [markdown]
# ## Step 3: before training
#
# `assemble.per_kind_accuracy` asks one question about each of a set of test scenes (never used
# in training), greedy decoding, and scores the answers per question kind with
# `vlmstudy.evaluation.accuracy_by_kind`. With a random projector the language model gets noise
# where the picture should be:

# %%
accuracy = {"untrained": assemble.per_kind_accuracy(model, processor, n=STAGE1.eval_n or 4)}
print(accuracy["untrained"])

# %% [markdown]
# ## Step 4: stage 1, feature alignment (projector only, captions)
#
# Only the projector learns; the tower and the language model are frozen. The task is
# "describe the image." -> the scene's caption, so the projector must produce tokens the frozen
# language model reads as the right words. The loss curve redraws while it trains.

# %%
plot = assemble.LiveLossPlot(every=10, title="assembled VLM: training loss")
frozen_before = inner.language_model.layers[0].mlp.up_proj.weight.clone()
stage1 = assemble.train_stage1(model, processor, STAGE1, plot=plot)
accuracy["after stage 1"] = stage1.accuracy
print(f"stage 1: {STAGE1.steps} steps, {stage1.seconds} s, {stage1.trainable:,} trainable parameters; "
      f"loss {stage1.history[0]['loss']} -> {stage1.history[-1]['loss']}")
print("language model unchanged:", torch.equal(frozen_before, inner.language_model.layers[0].mlp.up_proj.weight))
print("after stage 1:", stage1.accuracy)

# %% [markdown]
# ## Step 5: stage 2, visual instruction tuning
#
# Now the projector *and* the language model learn, on questions (in many wordings) and
# multi-turn dialogues; the loss is on the answers only. The vision tower stays frozen, as in
# LLaVA-1.5.

# %%
stage2 = assemble.train_stage2(model, processor, STAGE2, plot=plot)
accuracy["after stage 2"] = stage2.accuracy
print(f"stage 2: {STAGE2.steps} steps, {stage2.seconds} s, {stage2.trainable:,} trainable parameters; "
      f"loss {stage2.history[0]['loss']} -> {stage2.history[-1]['loss']}")
print("after stage 2:", stage2.accuracy)
plotting.accuracy_bars(accuracy, title="per-kind accuracy on test scenes");

# %% [markdown]
# Compare the three sets of bars above. This is a budget of seconds, so do not expect the zoo's
# numbers: `vlmstudy zoo train llava` runs the same recipe for thousands of steps. What the bars
# show is *where* each stage helps; the exercise below lets you spend more.

# %% [markdown]
# ## Step 6: save it in Hugging Face format and use it like any zoo model
#
# `save_vlm` is `save_pretrained` of model and processor. The folder holds `config.json`, the
# safetensors weights, the tokenizer, the image processor and the chat template, so
# `vlmstudy.load(folder)` (and plain `LlavaForConditionalGeneration.from_pretrained` for the
# linear and MLP projectors), the chat helper and the command line all use it.

# %%
folder = assemble.save_vlm(model, processor, work / "my-vlm")
print(sorted(p.name for p in folder.iterdir()))
loaded, loaded_processor = vlmstudy.load(str(folder))
enc = processor(images=[image], text=vlmstudy.generation.chat_prompt(processor, [("what color is the circle?", None)]),
                return_tensors="pt")
with torch.no_grad():
    same = torch.allclose(model(**enc).logits, loaded(**enc).logits, atol=1e-5)
print("reloaded:", type(loaded).__name__, "| same logits:", same)

# %%
chat = vlmstudy.ChatSession((loaded, loaded_processor), images=[image])
print("truth:", shapes.caption(scene))
print("Q: what color is the circle? A:", chat.ask("what color is the circle?"))
print("Q: how many shapes are there? A:", chat.ask("how many shapes are there?"))

# %%
from vlmstudy import cli

image_file = work / "scene.png"
image.save(image_file)
print("$ vlmstudy ask", image_file.name, "'what shape is on the left?' --model", folder.name)
exit_code = cli.main(["ask", str(image_file), "what shape is on the left?", "--model", str(folder)])

# %% [markdown]
# ## Step 7: ablations to run yourself
#
# Each line below is one experiment: the same parts, the same seeded data and budget, one thing
# changed. They take a few minutes together on a laptop CPU, so they do not run by default: set
# `RUN_ABLATIONS = True` (and raise `steps` for clearer differences), then compare the per-kind
# accuracies. Before running, predict the outcome of each:
#
# * **projector type**: `linear` (LLaVA-1) vs `mlp` (LLaVA-1.5) vs `pixel_shuffle`;
# * **image tokens**: pixel shuffle with 16 or 4 tokens instead of 64 (prompt length, speed, accuracy);
# * **frozen vs trained tower** in stage 2 (`train_tower=True`);
# * **skipping stage 1**: instruction tuning straight from a random projector.

# %%
RUN_ABLATIONS = False
ABLATIONS = {  # name: (projector, image tokens, train the tower in stage 2, run stage 1)
    "mlp (as above)": ("mlp", None, False, True),
    "linear": ("linear", None, False, True),
    "pixel shuffle, 16 tokens": ("pixel_shuffle", 16, False, True),
    "pixel shuffle, 4 tokens": ("pixel_shuffle", 4, False, True),
    "tower trained in stage 2": ("mlp", None, True, True),
    "no stage 1": ("mlp", None, False, False),
}


def run_ablation(projector, image_tokens, train_tower, with_stage1, stage1=STAGE1, stage2=STAGE2):
    """Assemble fresh parts, train, return the per-kind accuracy after stage 2."""
    t, m, k = assemble.course_parts()
    vlm, proc = assemble.assemble_llava(t, m, k, projector=projector, image_tokens=image_tokens)
    if with_stage1:
        assemble.train_stage1(vlm, proc, assemble.stages.replace(stage1, eval_n=0), progress=False)
    return assemble.train_stage2(vlm, proc, stage2, train_tower=train_tower, progress=False).accuracy


if RUN_ABLATIONS and not HUB:
    results = {name: run_ablation(*spec) for name, spec in ABLATIONS.items()}
    for name, acc in results.items():
        print(f"{name:<26}", acc)
    plotting.accuracy_bars(results, title="ablations: per-kind accuracy after stage 2");
else:
    print("ablations not run (set RUN_ABLATIONS = True):", ", ".join(ABLATIONS))

# %% [markdown]
# ## Summary
#
# * A LLaVA-style VLM is three parts: a pre-trained vision tower, a pre-trained language model, and a small projector from patch features `(B, N, C)` to language-model tokens `(B, T, D)` that replace the `<image>` placeholders in the prompt's embeddings.
# * `assemble_llava` builds a real `LlavaForConditionalGeneration` + `LlavaProcessor` from the parts; the processor's image-token count must equal what the projector returns (`patch_size` times the shuffle scale).
# * Projectors: linear (LLaVA-1), a 2-layer MLP (LLaVA-1.5), pixel shuffle + MLP (Idefics3 / SmolVLM), which cuts the image tokens by `r^2` by folding each `r x r` block of patches into one wider token.
# * Stage 1 trains only the projector on captions, with tower and language model frozen; stage 2 tunes projector and language model on instructions; per-kind accuracy after each shows what each stage adds.
# * `save_vlm` writes Hugging Face format; `vlmstudy.load(folder)`, `ChatSession` and `vlmstudy ask --model FOLDER` use it like any zoo model.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. The tiny tower makes 64 patch states per picture. How many `<image>` tokens does the prompt hold with the MLP projector, and with a pixel shuffle of scale 2?**
#
# <details><summary>Answer</summary>
#
# 64 with the MLP (one token per patch; the CLS state is dropped), 16 with the shuffle: each 2 x 2 block of patches becomes one token, four times as wide before the projector's first layer. The processor writes that many placeholders because its `patch_size` is the tower's patch times the scale.
#
# </details>
#
# **2. Why does stage 1 freeze the language model?**
#
# <details><summary>Answer</summary>
#
# So that the projector learns to speak the language model's existing "input language": the tokens it produces must mean something to a model that is not allowed to change. Training both at once from a random projector lets the language model drift to fit noise, and it forgets what it knew.
#
# </details>
#
# **3. How can you check that stage 1 trained only the projector?**
#
# <details><summary>Answer</summary>
#
# Compare parameters before and after: every tower and language-model weight is bit-for-bit unchanged, only `multi_modal_projector.*` moved (the notebook checks one language-model matrix; `tests/test_vlm_parts.py` checks them all).
#
# </details>
#
# **4. What does pixel shuffle trade?**
#
# <details><summary>Answer</summary>
#
# Sequence length for width: `r^2` times fewer image tokens (a shorter, faster prompt, room for more images or tiles), each carrying `r^2` patches' features. Nothing is discarded, but the language model sees coarser positions, and the projector's first layer is `r^2` times larger.
#
# </details>
#
# **5. Why can `vlmstudy.load` read the saved folder, while plain transformers refuses it with a pixel-shuffle projector?**
#
# <details><summary>Answer</summary>
#
# Linear and MLP projectors are LLaVA's own module, so the folder is an ordinary LLaVA checkpoint. A pixel-shuffle projector is not a transformers module: `config.json` records it (`vlmstudy_projector`), and `vlmstudy.load` builds LLaVA, swaps the projector in and reads its weights; plain transformers stops with a size mismatch on `linear_1` instead of loading it wrong.
#
# </details>

# %% [markdown]
# ## References
#
# * Liu et al., *Visual Instruction Tuning* (LLaVA, 2023): [arXiv:2304.08485](https://arxiv.org/abs/2304.08485).
# * Liu et al., *Improved Baselines with Visual Instruction Tuning* (LLaVA-1.5: the MLP projector, the two stages, 2024): [arXiv:2310.03744](https://arxiv.org/abs/2310.03744).
# * Laurençon et al., *Building and better understanding vision-language models: insights and future directions* (Idefics3, pixel shuffle, 2024): [arXiv:2408.12637](https://arxiv.org/abs/2408.12637).
# * Marafioti et al., *SmolVLM: Redefining small and efficient multimodal models* (2025): [arXiv:2504.05299](https://arxiv.org/abs/2504.05299).
# * nanoVLM, a VLM from parts in pure PyTorch (SigLIP + SmolLM2 + pixel-shuffle projector): [github.com/huggingface/nanoVLM](https://github.com/huggingface/nanoVLM).
# * Model cards: [HuggingFaceTB/SmolLM2-135M](https://huggingface.co/HuggingFaceTB/SmolLM2-135M), [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf).
