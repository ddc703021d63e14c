# %% [markdown]
# # 11 · LoRA and QLoRA: teaching LLaVA a colour it has never seen
#
# **Objective.** By the end of this notebook you can fine-tune a vision-language model on your
# own data with LoRA: write the data in one of the course's three formats, describe the run in a
# config, train it (with a live loss curve, evaluation and checkpoints that survive a crash),
# measure what changed, and save, reload and merge the result. You will also know what the LoRA
# knobs `r` and `alpha` do, what QLoRA changes on a GPU, what the same recipe adapts in a model
# built differently (BLIP-VQA), and how to run the fine-tuning guide's own commands end to end.
#
# The task: the tiny LLaVA was trained on eight colours. **Brown** is in its vocabulary but
# appeared in none of its training text, so it has never said "brown". We will teach it, in
# well under a minute on a laptop CPU, without making it forget the other colours.

# %%
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

import vlmstudy
from vlmstudy import data, finetune, plotting
from vlmstudy.finetune import concept
from vlmstudy.generation import chat_prompt

# One thread: runs on these tiny models are then repeatable bit for bit, and a busy 2-core machine
# does not slow them down tenfold (threads waiting for each other); a big model wants them all.
torch.set_num_threads(1)
vlmstudy.seed_everything(0)
model, processor = vlmstudy.load("llava")
work = Path(tempfile.mkdtemp(prefix="vlmstudy-11-"))   # every file this notebook writes goes here
print(type(model).__name__, "in", vlmstudy.get_mode(), "mode; files in", work)

# %% [markdown]
# ## Step 1: what the model does with a colour it has never seen
#
# `concept.concept_test` paints one object of each held-out test scene brown and asks the question
# whose answer is the new word ("what colour is the shape on the left?"). It also gives ordinary
# test questions, so that we can check later that nothing else was forgotten.

# %%
new_test, old_test = concept.concept_test(n=60, seed=7, n_ordinary=150)
plotting.show_images([e.image for e in new_test[:4]], titles=[e.question for e in new_test[:4]], scale=2.0);

# %%
before_new = finetune.evaluate(model, processor, new_test, loss=False)
before_old = finetune.evaluate(model, processor, old_test, loss=False)
print(f"brown questions:    {before_new['eval_accuracy']:.2f} exact match")
print(f"ordinary questions: {before_old['eval_accuracy']:.2f} exact match")
print("what it answers instead of 'brown':", Counter(r["prediction"] for r in before_new["predictions"]).most_common(4))

# %% [markdown]
# It answers with the nearest colour it knows (red, orange ...): it sees *something*, but it has
# no word for it. Why can it not simply say "brown"? The last layer, `lm_head`, turns the final
# hidden state into one score per vocabulary word. The row for "brown" was never the right answer
# during training, and every training step *lowered* the score of every word that was not the
# answer, so brown's row now points away from anything the model computes:

# %%
tok = processor.tokenizer
brown = tok.convert_tokens_to_ids("brown")
ex = new_test[0]
enc = processor(images=[ex.image], text=chat_prompt(processor, [(ex.question, None)]), return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits[0, -1]
rank = int((logits > logits[brown]).sum()) + 1
print(f"'brown' is word {rank} of {len(logits)} for this image; the top word is {tok.decode([int(logits.argmax())])!r}")

# %% [markdown]
# ## Step 2: the data
#
# Fine-tuning data comes in one of three JSON formats (`vlmstudy.data`): **caption**
# (`image`, `caption`), **vqa** (`image`, `question`, `answer`) and **instruction** (`image`,
# `conversations`: alternating `human` / `gpt` turns, `<image>` in the first one). Image paths are
# relative to the JSON file. Converters read the public COCO-captions and VQAv2 files
# (`data.coco_to_caption`, `data.vqav2_to_vqa`, or `vlmstudy data convert ...`).
#
# Our training set, in the vqa format: 120 scenes with a brown object (one question answered by
# "brown" each, plus two other questions about the scene, some of which *name* brown in the
# question) and 120 ordinary scenes (three questions each). The ordinary half is what keeps the
# model from forgetting: a fine-tune only on the new word would soon answer "brown" to everything.

# %%
train_file = concept.concept_dataset(work / "brown-data", n_concept=120, n_ordinary=120, per_scene=3, seed=0)
dataset = data.load_dataset(train_file)
print(dataset)
print(f"{sum(r['answer'] == 'brown' for r in dataset)} answers are 'brown'")
for record in dataset.records[:3]:
    print({**record, "image": Path(record["image"]).name})

# %% [markdown]
# `load_dataset` checks every record before anything trains, and names each bad one by index and
# field. A run refuses to start on bad data (or skips the bad records with `skip_invalid: true`):

# %%
broken = [dict(dataset.records[0], answer=""),
          {"image": "images/missing.png", "conversations": [{"from": "human", "value": "what is it?"},
                                                            {"from": "gpt", "value": "a circle"}]}]
for fmt, record in (("vqa", broken[0]), ("instruction", broken[1])):
    for problem in data.validate_records([record], fmt, image_root=train_file.parent):
        print(f"{fmt:12}", problem)

# %% [markdown]
# ## Step 3: LoRA, and which weights we train
#
# LoRA ([Hu et al., 2021](https://arxiv.org/abs/2106.09685)) freezes every weight matrix `W` of
# the model and learns a *low-rank* change to it: `W' = W + (alpha / r) · B A`, with `A` of shape
# `r x d_in` and `B` of shape `d_out x r`. `B` starts at zero, so training starts from the
# original model exactly. For a `128 x 128` layer and `r = 8`, that is `8 · (128 + 128) = 2048`
# trainable numbers instead of 16 384. We put adapters on every linear layer of the *language
# model* (`target_modules: all-linear`); the CLIP vision tower stays frozen, as in LLaVA's own
# fine-tuning.
#
# **The new word needs one more thing.** LoRA on the attention and MLP layers can only change the
# *hidden state*; the score of "brown" is that hidden state times brown's row of `lm_head`, a row
# that training pushed out of the way (above). We also train exactly that row, and brown's row of
# the input embedding (for questions that *mention* brown): `trainable_tokens: [brown]`, which
# becomes peft's `trainable_token_indices`. That is 2 x 128 extra numbers. The alternatives are
# `modules_to_save: [lm_head]` (a trainable copy of the whole output layer: every word's row, which
# on a real 7 B model is 131 M parameters, and which lets every other word drift too) or LoRA on
# `lm_head` (a low-rank change to all rows). The r / alpha sweep below also shows what LoRA alone,
# without the brown rows, manages in the same number of steps.
#
# **And the eyes.** Brown (RGB 125, 75, 35) is close to orange and red. We also put adapters on
# the two layers of the **projector** that hands the image features to the language model, so that
# brown objects can become distinct tokens there (`multi_modal_projector` in `target_modules`; LLaVA
# itself trains the whole projector when it is fine-tuned). The CLIP vision tower stays frozen.
#
# The whole run is one config (a dict here; a YAML file on the command line, see the end):

# %%
config = {
    "model": "llava",
    "output_dir": str(work / "llava-brown"),
    "seed": 0,
    "data": {"path": str(train_file), "format": "vqa", "eval_split": 0.1},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["all-linear", "multi_modal_projector"],
             "trainable_tokens": ["brown"]},
    "training": {"max_steps": 80, "batch_size": 32, "learning_rate": 3e-3, "warmup_steps": 3,
                 "eval_every": 20, "save_every": 20, "eval_max_examples": 40},
}
cfg = finetune.load_config(config)      # checks every key; a typo gets a "did you mean" hint
try:
    finetune.load_config(config, **{"lora.alfa": 16, "training.lr_scheduler": "cosin"})
except vlmstudy.ConfigError as err:
    print(err)

# %% [markdown]
# ### Inside the trainer: one collated batch
#
# Before handing the run to the package, look at what it feeds the model. `finetune.encode` turns
# one example into token ids and **labels**; `finetune.Collator` pads a list of them into a batch.
# The label `-100` means "not a target": the loss skips it. Every prompt token gets it, and so do
# the image tokens (the processor expands `<image>` into one placeholder per image feature) and the
# padding; only the answer and the end-of-text token are learned.

# %%
from vlmstudy.generation import family
from vlmstudy.prompting import IGNORE

fam = family(model)
examples = dataset.examples()
collator = finetune.Collator(processor, fam)
batch = collator([finetune.encode(fam, processor, ex) for ex in examples[:2]])
print({name: tuple(t.shape) for name, t in batch.items()})
image_id, tokens = model.config.image_token_id, processor.tokenizer.convert_ids_to_tokens
row_ids, row_labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
runs = []                                      # [token id, label, count], image tokens collapsed
for tid, lab in zip(row_ids, row_labels):
    if runs and tid == image_id == runs[-1][0]:
        runs[-1][2] += 1
    else:
        runs.append([tid, lab, 1])
print(f"example 0: {examples[0].question!r} -> {examples[0].answer!r}")
for tid, lab, count in runs:
    print(f"  {tokens(tid) + (f' x{count}' if count > 1 else ''):<16} label {'-100' if lab == IGNORE else tokens(lab)}")
learned = [t for t, lab in zip(row_ids, row_labels) if lab != IGNORE]
print(f"{len(row_ids)} positions: {row_ids.count(image_id)} image tokens, "
      f"{len(row_ids) - row_ids.count(image_id) - len(learned)} other prompt tokens, "
      f"{len(learned)} learned ({processor.tokenizer.decode(learned)!r}); padding per example "
      f"{(batch['attention_mask'] == 0).sum(dim=1).tolist()} (label -100, attention_mask 0)")
assert all(lab == IGNORE for t, lab in zip(row_ids, row_labels) if t == image_id), "no image token is a target"

# %% [markdown]
# The model's loss is the mean cross-entropy of predicting token *t + 1* at position *t*, over the
# positions whose label is not `-100`. Computed by hand, it must equal `model(**batch).loss`:

# %%
with torch.no_grad():
    out = model(**{name: t.to(model.device) for name, t in batch.items()})
shifted_logits, shifted_labels = out.logits[:, :-1].float(), batch["labels"][:, 1:].to(model.device)
by_hand = torch.nn.functional.cross_entropy(shifted_logits.reshape(-1, shifted_logits.shape[-1]),
                                            shifted_labels.reshape(-1), ignore_index=IGNORE)
print(f"model's loss {float(out.loss):.6f}   by hand over the unmasked positions {float(by_hand):.6f}")
assert torch.allclose(out.loss.float(), by_hand, atol=1e-4), "the loss covers exactly the positions not labelled -100"

# %% [markdown]
# ### A training loop by hand
#
# The trainer's core is ten lines: pick a batch, run the model with `labels`, back-propagate,
# step the optimizer. Here on a fresh copy of the tiny stand-in (always the tiny one, even in hub
# mode: this is a look inside, not a run), full fine-tuning of everything but the vision tower,
# eight seeded steps of 8 examples. The loss of single small batches jumps around (a batch full of
# "brown" answers is harder than one without); the fixed batch measured before and after shows
# the trend.

# %%
student, student_processor = vlmstudy.load("llava", mode="tiny", device="cpu", dtype="float32")
student_collator = finetune.Collator(student_processor, fam)   # its own pad id
encoded = [finetune.encode(fam, student_processor, ex) for ex in examples[:64]]
fixed = student_collator(encoded[:16])
with torch.no_grad():
    fixed_before = float(student(**fixed).loss)
student.train()
student.model.vision_tower.requires_grad_(False)                # the vision tower stays frozen
optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
torch.manual_seed(0)
for step in range(8):
    picks = torch.randint(len(encoded), (8,)).tolist()          # a random batch of 8 examples
    loss = student(**student_collator([encoded[i] for i in picks])).loss   # the model's loss over the labels
    loss.backward()                                              # gradients of the trainable weights
    optimizer.step()                                             # one AdamW update
    optimizer.zero_grad()
    print(f"step {step}  batch loss {loss.item():.4f}")
student.eval()
with torch.no_grad():
    fixed_after = float(student(**fixed).loss)
print(f"loss on 16 fixed examples: {fixed_before:.4f} before, {fixed_after:.4f} after 8 steps")
assert fixed_after < fixed_before, "eight steps of AdamW on the same data must lower its loss"

# %% [markdown]
# `finetune.finetune` adds the rest a real run needs: LoRA adapters instead of full fine-tuning,
# a learning-rate schedule and warm-up, gradient clipping and accumulation, evaluation, checkpoints
# and resume, logging.

# %% [markdown]
# ## Step 4: train
#
# `finetune.finetune(config)` loads the model, wraps it with the adapters, and trains; the curve
# redraws as it goes (training loss per step; eval loss and exact-match accuracy on the held-out
# 10 % every `eval_every` steps). Every `save_every` steps a checkpoint is written. 80 steps of 32
# questions: about 20-30 seconds on a laptop CPU.

# %%
start = time.perf_counter()
result = finetune.finetune(cfg)
wall = time.perf_counter() - start
print(result)
print(f"training loop {result.seconds:.1f} s, {wall:.1f} s with loading and evaluation")

# %%
params = result.params
print(f"trainable parameters: {params['trainable']:,} of {params['total']:,} ({params['percent']:.2f} %)")
kinds = Counter()
for name, p in result.model.named_parameters():
    if p.requires_grad:
        kinds["LoRA A" if "lora_A" in name else "LoRA B" if "lora_B" in name else "brown rows (trainable_tokens)"] += p.numel()
print(dict(kinds))

# %% [markdown]
# ## Step 5: before and after

# %%
after_new = finetune.evaluate(result.model, processor, new_test, loss=False)
after_old = finetune.evaluate(result.model, processor, old_test, loss=False)
scores = {"before": {"brown questions": before_new["eval_accuracy"], "ordinary questions": before_old["eval_accuracy"]},
          "after LoRA": {"brown questions": after_new["eval_accuracy"], "ordinary questions": after_old["eval_accuracy"]}}
print(scores)
plotting.accuracy_bars(scores, title="exact match on held-out test scenes", target=0.9);

# %% [markdown]
# How good can it get? The brown questions need the model to find the right object first ("the
# shape on the left"), and the stand-in is not perfect at that. The same questions about scenes
# whose object has a colour it *knows* show that ceiling (before any fine-tuning):

# %%
ceiling = {c: finetune.evaluate(model, processor, concept.concept_test(60, seed=7, color=c, n_ordinary=1)[0],
                                loss=False)["eval_accuracy"] for c in ("orange", "red", "blue")}
print("same questions, known colours, before fine-tuning:", {c: round(a, 2) for c, a in ceiling.items()})
print(f"brown after fine-tuning: {after_new['eval_accuracy']:.2f}")

# %%
show = list(range(6))
plotting.show_images([new_test[i].image for i in show], cols=6, scale=1.8, wrap=22, titles=[
    f"{new_test[i].question} before: {before_new['predictions'][i]['prediction']} | "
    f"after: {after_new['predictions'][i]['prediction']}" for i in show]);

# %% [markdown]
# The loss curve of the run, redrawn from its history (also saved as `history.json`):

# %%
result.plot(title="LLaVA learns 'brown'");

# %% [markdown]
# ## Step 6: what is on disk, checkpoints and resume
#
# The output folder holds the config (with absolute paths), the checkpoints, the final adapter
# and a summary. A checkpoint is written to a temporary folder, synced to disk and then *renamed*
# into place, so a run killed at any moment (power cut, `kill -9`, a closed laptop) leaves only
# complete checkpoints. Each holds the adapter, the optimizer and scheduler state, the random
# states of Python, NumPy and torch, and the step (the data order is a function of the seed and the
# step). `vlmstudy finetune --resume OUTPUT_DIR` continues from the last one and ends with exactly
# the weights an uninterrupted run would have (the test suite kills a run with SIGKILL and checks
# this bit for bit).

# %%
out = result.output_dir
for path in sorted(out.rglob("*")):
    if path.is_file():
        print(f"{path.stat().st_size:>10,}  {path.relative_to(out)}")

# %% [markdown]
# ## Step 7: save, load, merge
#
# The adapter alone is small (a few hundred KB here; ~160 MB for r = 16 on a 7 B model, against
# 14 GB for the model itself), so you can keep one base model and many adapters.
# `finetune.load_adapter` rebuilds base + adapter. `finetune.merge_adapter` folds `(alpha/r) B A`
# into each `W` and saves an ordinary model (safetensors): no peft needed to use it, no extra cost
# per token, and `vlmstudy.load(folder)` loads it like any stand-in.

# %%
merged_dir = finetune.merge_adapter(out, work / "llava-brown-merged")
merged, merged_processor = vlmstudy.load(str(merged_dir))
print(type(merged).__name__, "with", sum(p.numel() for p in merged.parameters()), "parameters, from", merged_dir.name)
merged_new = finetune.evaluate(merged, merged_processor, new_test, loss=False)
same = [a["prediction"] == b["prediction"] for a, b in zip(after_new["predictions"], merged_new["predictions"])]
with torch.no_grad():
    gap = (merged(**enc).logits - result.model(**enc).logits).abs().max().item()
print(f"merged model: {merged_new['eval_accuracy']:.2f} on brown questions; same answer as the adapter model "
      f"on {sum(same)}/{len(same)}; largest logit difference {gap:.1e}")

# %% [markdown]
# ## Step 8: what `r` and `alpha` do
#
# * **`r`** (rank) is how many directions the update `B A` can change a layer in: the number of
#   trainable parameters grows linearly with it. A new colour word is a *small* change, so a
#   small rank is enough; large ranks cost memory and mainly help on large, varied datasets.
# * **`alpha`** scales the update: the layer adds `(alpha / r) · B A`. Because `B` starts at zero
#   and Adam moves each number by about the learning rate per step, `alpha / r` acts like a
#   multiplier on the learning rate of the adapter. Keeping `alpha = 2 r` keeps that scale fixed
#   while you change `r` (a common convention).
#
# A small sweep, each run a quarter as long as the one above (20 steps, about half a minute in
# all): first `r` with `alpha = 2 r`, then `alpha` at `r = 8`, and one run of LoRA alone, without
# training brown's rows.

# %%
def short_run(name, **lora):
    overrides = {"output_dir": str(work / f"sweep-{name}"), "training.max_steps": 20, "training.eval_every": None,
                 "training.save_every": None, "data.eval_split": 0, **{f"lora.{k}": v for k, v in lora.items()}}
    res = finetune.finetune(cfg, callbacks=[], progress=False, **overrides)
    acc = finetune.evaluate(res.model, processor, new_test, loss=False)["eval_accuracy"]
    return {"accuracy": acc, "trainable": res.params["trainable"], "seconds": res.seconds}


sweep_alpha = {a: short_run(f"alpha{a}", r=8, alpha=a) for a in (2, 16, 128)}
sweep_r = {1: short_run("r1", r=1, alpha=2), 8: sweep_alpha[16], 16: short_run("r16", r=16, alpha=32)}
lora_only = short_run("no-tokens", trainable_tokens=[])
for r, row in sweep_r.items():
    print(f"r={r:<3} alpha={2 * r:<4} trainable {row['trainable']:>7,}  brown accuracy {row['accuracy']:.2f}  ({row['seconds']:.1f} s)")
for a, row in sweep_alpha.items():
    print(f"r=8   alpha={a:<4} scale {a / 8:>5.2f}  brown accuracy {row['accuracy']:.2f}")
print(f"LoRA only (no brown rows), r=8 alpha=16: brown accuracy {lora_only['accuracy']:.2f}")

# %%
import matplotlib.pyplot as plt

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(list(sweep_r), [row["accuracy"] for row in sweep_r.values()], "o-", label="brown accuracy")
ax1.set_xscale("log", base=2)
ax1.set_xlabel("rank r (alpha = 2r)")
ax1.set_ylabel("exact match")
ax1.set_ylim(-0.02, 1.02)
ax1b = ax1.twinx()
ax1b.plot(list(sweep_r), [row["trainable"] for row in sweep_r.values()], "s--", color="tab:gray")
ax1b.set_ylabel("trainable parameters", color="tab:gray")
ax1.set_title("rank: capacity and cost", fontsize=10)
ax2.plot([a / 8 for a in sweep_alpha], [row["accuracy"] for row in sweep_alpha.values()], "o-", color="tab:green")
ax2.set_xscale("log", base=2)
ax2.set_xlabel("alpha / r (r = 8)")
ax2.set_ylim(-0.02, 1.02)
ax2.set_title("alpha: the size of the update", fontsize=10)
fig.tight_layout()

# %% [markdown]
# Read the plots with the noise in mind (60 test questions: one question is 0.017). 20 steps is
# short on purpose: it shows how *fast* each setting learns. A larger `alpha / r` is a bigger step:
# too small and the run has barely moved (until it overshoots, at some point, when it is too big).
# A larger `r` costs parameters linearly; with `alpha = 2 r` each direction moves as fast, and more
# directions move the layer further per step. Given enough steps a small rank is enough for one
# new word: the main run used `r = 8`. LoRA without brown's rows has to bend the hidden state
# towards a row that points away from it, and gets only part of the way there.

# %% [markdown]
# ## Step 9: the same lesson for BLIP-VQA
#
# Does the recipe carry over to a model built differently? BLIP-VQA (notebook 05) has no projector
# and no single language model: a text **encoder** reads the question and cross-attends to the
# vision tower's output, and an answer **decoder** writes the answer. For BLIP-VQA,
# `target_modules: all-linear` means every linear layer of those two: self-attention,
# cross-attention and feed-forward, in the encoder and in the decoder. `trainable_tokens: [brown]`
# trains brown's rows of the *answer decoder's* input embedding and output layer (the encoder only
# reads questions). And the hand-off from the eyes? BLIP has nothing between the vision tower and
# the text side, so the closest thing to LLaVA's projector is the vision tower's **last layer**: we
# put adapters on its MLP (a module path in `target_modules`), and keep the rest of the tower
# frozen. (Try the run without that entry: the text side alone has to tell brown from orange
# in image features that barely separate them.)
#
# Same training file, same held-out questions, half the steps of the LLaVA run (40 of 32).

# %%
blip, blip_processor = vlmstudy.load("blip-vqa")
blip_before_new = finetune.evaluate(blip, blip_processor, new_test, loss=False)
blip_before_old = finetune.evaluate(blip, blip_processor, old_test, loss=False)
last_vision_mlp = f"vision_model.encoder.layers.{blip.config.vision_config.num_hidden_layers - 1}.mlp"
blip_cfg = finetune.load_config({
    "model": "blip-vqa", "output_dir": str(work / "blip-brown"), "seed": 0,
    "data": {"path": str(train_file), "format": "vqa", "eval_split": 0},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["all-linear", last_vision_mlp],
             "trainable_tokens": ["brown"]},
    "training": {"max_steps": 40, "batch_size": 32, "learning_rate": 3e-3, "warmup_steps": 3, "eval_max_examples": 0}})
blip_result = finetune.finetune(blip_cfg, callbacks=[], progress=True)
blip_after_new = finetune.evaluate(blip_result.model, blip_processor, new_test, loss=False)
blip_after_old = finetune.evaluate(blip_result.model, blip_processor, old_test, loss=False)
print(f"BLIP-VQA: {blip_result.steps} steps in {blip_result.seconds:.1f} s")

# %% [markdown]
# What each run adapted, layer by layer (the LoRA layers grouped by the part of the model they sit
# in, with the layer numbers taken out), how many numbers each trains, and what it learned:

# %%
import re

from peft.tuners.lora import LoraLayer


def adapted_parts(peft_model) -> dict[str, Counter]:
    """{part of the model: Counter(layer kind -> how many adapted layers)} of a LoRA model."""
    parts: dict[str, Counter] = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            name = name.removeprefix("base_model.model.")
            match = re.search(r"\.layers?\.\d+\.", name)
            part, kind = (name[:match.start()], name[match.end():]) if match else name.rsplit(".", 1)
            parts.setdefault(part, Counter())[kind] += 1
    return parts


blip_ceiling = finetune.evaluate(blip, blip_processor, concept.concept_test(60, seed=7, color="orange", n_ordinary=1)[0],
                                loss=False)["eval_accuracy"]
compared = {"LLaVA": (result, before_new, before_old, after_new, after_old, cfg, ceiling["orange"]),
            "BLIP-VQA": (blip_result, blip_before_new, blip_before_old, blip_after_new, blip_after_old, blip_cfg, blip_ceiling)}
for name, (res, b_new, b_old, a_new, a_old, c, ceil) in compared.items():
    p = res.params
    print(f"{name}: {p['trainable']:,} trainable of {p['total']:,} parameters ({p['percent']:.2f} %), "
          f"{res.steps} steps of {c.training.batch_size}")
    for part, layer_kinds in adapted_parts(res.model).items():
        print(f"   {part:34} {sum(layer_kinds.values()):>3} layers: {', '.join(sorted(layer_kinds))}")
    print(f"   brown questions {b_new['eval_accuracy']:.2f} -> {a_new['eval_accuracy']:.2f}   "
          f"ordinary questions {b_old['eval_accuracy']:.2f} -> {a_old['eval_accuracy']:.2f}   "
          f"(the brown questions' ceiling: {ceil:.2f} on the same questions with an orange object, before training)")
plotting.accuracy_bars({f"{name} {when}": {"brown questions": r[1 + 2 * k]["eval_accuracy"],
                                            "ordinary questions": r[2 + 2 * k]["eval_accuracy"]}
                        for name, r in compared.items() for k, when in enumerate(("before", "after"))},
                       title="brown, taught to two architectures (held-out test scenes)");

# %% [markdown]
# Read the lists side by side. LLaVA's adapters sit in one decoder-only language model
# (attention projections `q/k/v/o_proj` and the MLP's `gate/up/down_proj`) and in the projector;
# BLIP-VQA's are spread over two text models, including their **cross-attention** layers (the
# `crossattention.*` entries), which is where BLIP's text reads the image, and the last vision
# layer's MLP. Judge each accuracy against its own model's ceiling (the last number of each
# block): a brown question is only as easy as finding "the shape on the left", and the two
# stand-ins are not equally good at that before any fine-tuning.

# %%
blip_lora = [m for m in blip_result.model.modules() if isinstance(m, LoraLayer)]
blip_trained = {n.removeprefix("base_model.model.") for n, p in blip_result.model.named_parameters() if p.requires_grad}
assert blip_result.params["trainable"] == sum(
    p.numel() for p in blip_result.model.parameters() if p.requires_grad), "the run's count = the parameters with gradients"
blip_lora_numbers = sum(p.numel() for n, p in blip_result.model.named_parameters() if p.requires_grad and "lora_" in n)
assert blip_lora_numbers == sum(m.r[a] * (m.in_features + m.out_features) for m in blip_lora for a in m.lora_A), \
    "LoRA adds r (d_in + d_out) numbers per adapted layer"
assert {n.split(".")[0] for n in blip_trained} == {"text_encoder", "text_decoder", "vision_model"}, blip_trained
assert all(n.startswith(last_vision_mlp + ".") for n in blip_trained if n.startswith("vision_model")), \
    "only the last vision layer's MLP is adapted; the rest of the tower stays frozen"
assert any("crossattention" in n for n in blip_trained), "BLIP's cross-attention (text reading the image) is adapted"
assert blip_before_new["eval_accuracy"] <= 0.05, "before fine-tuning BLIP-VQA never says brown either"
if vlmstudy.get_mode() == "tiny":   # what the run learned: only the trained stand-in can show it (hub mode: random weights)
    assert blip_after_new["eval_accuracy"] >= 0.3, f"BLIP-VQA learned brown: {blip_after_new['eval_accuracy']:.2f} < 0.3"
    assert blip_after_old["eval_accuracy"] >= blip_before_old["eval_accuracy"] - 0.1, "BLIP-VQA forgot ordinary questions"
print("BLIP-VQA: all checks passed")

# %% [markdown]
# ## Step 10: QLoRA, on a GPU
#
# LLaVA-1.5-7B's weights in fp16 are about 14.1 GB before any training memory (an estimate from
# the architecture, as in notebook 10; the estimator's table below prints it). **QLoRA**
# ([Dettmers et al., 2023](https://arxiv.org/abs/2305.14314)) loads the frozen base in 4-bit NF4
# (about 4 GB with its scales, same table) and trains LoRA adapters in 16/32 bits *through* the quantized weights. In the config
# that is one line, `quantization: nf4` (or `int8`); the code calls
# `peft.prepare_model_for_kbit_training` (frozen base, norms and embeddings in fp32, gradient
# checkpointing). bitsandbytes' 4-bit training kernels need a CUDA GPU: **on a CPU the run says so
# and falls back to plain LoRA** on the full-precision model, so one config works everywhere.
#
# `configs/llava_vqa_qlora.yaml` is a complete QLoRA recipe for the real model, and
# `benchmarks/bench_qlora_gpu.py` measures it on a GPU (random weights of the real architecture,
# batch 2 x 673 tokens) with the choices meant to keep peak memory low: NF4 with double
# quantization, bf16 compute, gradient checkpointing, LoRA r = 16 on every linear layer of the
# language model (~40 M parameters), paged 8-bit AdamW. How low is an **estimate**, not a
# measurement: vlmstudy's memory estimator (`vlmstudy finetune --estimate --config
# configs/llava_vqa_qlora.yaml`, the cell below) adds weights, adapter, gradients, optimizer
# state and activations on paper, and puts this config well under 8 GB. No GPU has measured it
# for this course; CUDA's context, the allocator's fragmentation and temporary buffers come on
# top. The benchmark's results, if it has been run here:

# %%
bench = Path(vlmstudy.__file__).resolve().parent.parent / "benchmarks" / "results" / "qlora_gpu.json"
if bench.is_file():
    import json

    r = json.loads(bench.read_text())["results"]
    print(f"peak {r['peak_allocated_gb']:.2f} GB, {r['seconds_per_step']:.2f} s/step, "
          f"{r['trainable_parameters']:,} trainable parameters")
else:
    print("not measured on this machine: run `python benchmarks/bench_qlora_gpu.py` on a CUDA GPU")
print(open(Path(vlmstudy.__file__).resolve().parent.parent / "configs" / "llava_vqa_qlora.yaml").read()[:600])

# %%
# The estimate (arithmetic on the real architecture built on the meta device: nothing is downloaded)
from vlmstudy.finetune import config as finetune_config
from vlmstudy.finetune.memory import estimate_rows, format_estimate

qlora_cfg = finetune_config.load_config(finetune_config.read_yaml(
    Path(vlmstudy.__file__).resolve().parent.parent / "configs" / "llava_vqa_qlora.yaml"))
estimate = estimate_rows([qlora_cfg.model], config=qlora_cfg)
print(format_estimate(estimate, qlora_cfg))
qlora_gb = next(r["total"] for r in estimate if r["method"] == "QLoRA") / 1e9
print(f"\nQLoRA with this config: about {qlora_gb:.1f} GB estimated, plus 0.3-1 GB of CUDA context; not measured")

# %% [markdown]
# ## Step 11: the fine-tuning guide's workflow, end to end
#
# The course's fine-tuning guide writes its own data files, config and commands; they work here
# as it writes them. Its workflow, on the tiny LLaVA, in a folder of its own laid out as the guide
# lays out a project (`data/`, `configs/`, `outputs/`). Every `vlmstudy ...` line below is run as
# a terminal runs it, a new Python process in that folder, and its output is shown.
#
# **1. Data.** The guide's `create_sample_multimodal_dataset(path, n)` writes a ready folder:
# `n` ShapesWorld scenes as PNGs in `data/images/` and the JSON beside them, in any of the five
# formats (`format=`: `caption`, `vqa`, `instruction` with the guide's `instruction` / `input` /
# `output` keys, `text` with one `User: ... Assistant: ...` turn, or LLaVA's `conversations`).
# On the command line: `vlmstudy data shapes data/multimodal_train.json --n 100 --format instruction`.

# %%
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

guide = work / "guide"                      # the guide's project folder; every command runs in it
repo = Path(vlmstudy.__file__).resolve().parent.parent
(guide / "configs").mkdir(parents=True)
data_file = vlmstudy.create_sample_multimodal_dataset(guide / "data" / "multimodal_train.json", 24, format="instruction")
guide_records = json.loads(data_file.read_text())
n_images = len(list((guide / "data" / "images").glob("*.png")))
print(f"{data_file.relative_to(guide)}: {len(guide_records)} records about {n_images} images")
print(json.dumps(guide_records[0]))


def run_vlmstudy(command: str, stdin: str | None = None) -> str:
    """Run one `vlmstudy ...` command line in the guide's folder, as a terminal would (a new process:
    `python -m vlmstudy`); print it and its output; fail on a non-zero exit code. Returns stdout."""
    args = shlex.split(command)
    done = subprocess.run([sys.executable, "-m", "vlmstudy", *args[1:]], cwd=guide, input=stdin, text=True,
                          capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in "\n".join((done.stderr, done.stdout)).splitlines()]
    lines = [line for line in lines if line]
    bar = re.compile(r"\|.*(it/s|s/it)")     # a progress bar redraws itself: keep only its last frame
    shown = "\n".join(line for i, line in enumerate(lines)
                      if not (bar.search(line) and i + 1 < len(lines) and bar.search(lines[i + 1])))
    print(f"$ {command}\n{shown}")
    assert done.returncode == 0, f"{args[1]} exited with {done.returncode}"
    return done.stdout


run_vlmstudy("vlmstudy data check data/multimodal_train.json");

# %% [markdown]
# **2. The config.** The guide's YAML, `configs/multimodal_config.yaml` (shipped with the course),
# copied unchanged into the project. Its `model_name` is the real checkpoint's Hub id: in tiny mode
# that loads the tiny LLaVA stand-in, in hub mode the real one. It asks for one epoch; for a short
# run here we cut the budget on the command line with `--set` (the override any config key takes),
# and keep every other setting as the guide writes it, gradient checkpointing included.

# %%
shutil.copy(repo / "configs" / "multimodal_config.yaml", guide / "configs")
print("\n".join(line for line in (guide / "configs" / "multimodal_config.yaml").read_text().splitlines()
                if not line.startswith("#")))

# %% [markdown]
# **3. Train.** `vlmstudy finetune --config FILE` (or the guide's flags alone: `--model_name
# llava-hf/llava-1.5-7b-hf --model_type llava --dataset_path data/multimodal_train.json
# --output_dir outputs/llava_finetuned`). Three optimizer steps of 4 x 4 examples (batch 4, gradient
# accumulation 4, from the YAML), an evaluation on 8 held-out examples, and the fine-tuned model
# merged and saved in `OUTPUT_DIR/final_model`. The last line is the run's summary, as JSON.

# %%
budget = "--set training.max_steps=3 --set training.eval_max_examples=8"
summary = json.loads(run_vlmstudy(f"vlmstudy finetune --config configs/multimodal_config.yaml {budget}").splitlines()[-1])
final_model = guide / "outputs" / "llava_finetuned" / "final_model"
assert summary["steps"] == 3 and Path(summary["final_model"]) == final_model.resolve(), summary
print(sorted(p.name for p in final_model.iterdir()))

# %% [markdown]
# **4. Inference on the fine-tuned model.** `vlmstudy infer --model_path ... --model_type llava
# --image IMG` describes the image, `--question "..."` asks, `--prompt "..."` runs a custom prompt.
# Without `--image` it reads one request per line, as the guide's interactive mode does:
# `describe PATH`, `ask PATH QUESTION` (and `prompt PATH TEXT`). One process answers all three
# here; a failed line prints `error: ...` and the loop goes on.

# %%
image = "data/images/0000.png"
question = next(r["instruction"] for r in guide_records if r["image"] == "images/0000.png")
custom = "List the shapes in the picture."
infer = "vlmstudy infer --model_path outputs/llava_finetuned/final_model --model_type llava --max_new_tokens 12"
answers = run_vlmstudy(infer, stdin=f"describe {image}\nask {image} {question}\nprompt {image} {custom}\nquit\n").splitlines()
print(f"describe -> {answers[0]!r}\nask {question!r} -> {answers[1]!r}\nprompt {custom!r} -> {answers[2]!r}")

# %% [markdown]
# **5. The Python API.** The guide's `MultiModalModel(model_name=..., model_type=...)` and its
# `generate_from_image(image_path, prompt, max_new_tokens=...)`, a thin name over
# `vlmstudy.Inference`. The same model, the same greedy decoding: it must write exactly what the
# command wrote.

# %%
mm = vlmstudy.MultiModalModel(model_name=str(final_model), model_type="llava")
in_python = {"ask": mm.ask(guide / image, question, max_new_tokens=12),
             "prompt": mm.generate_from_image(guide / image, custom, max_new_tokens=12)}
print(mm, in_python)

# %% [markdown]
# What the guide's run changed, checked on the weights: `final_model` loads as an ordinary LLaVA
# (no peft), and against the base model it was trained from (the same Hub id) exactly the
# weights LoRA adapted differ: every linear layer of the language model (`all-linear`), with the
# update `(alpha / r) B A` merged in; the vision tower, the projector and the embeddings are
# untouched. And the command's answers are the model's own: the ones Python computes.

# %%
tuned, _ = vlmstudy.load(str(final_model))
base, _ = vlmstudy.load("llava-hf/llava-1.5-7b-hf")
base_weights = dict(base.named_parameters())
changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, base_weights[n])}
adapted_weights = {f"{n}.weight" for n in finetune.language_model_linears(base)}
print(f"{type(tuned).__name__}: {len(changed)} of {len(base_weights)} weight tensors changed, e.g. {sorted(changed)[0]}; "
      f"largest change {max((p - base_weights[n]).abs().max().item() for n, p in tuned.named_parameters()):.1e}")
assert not hasattr(tuned, "peft_config"), "final_model is a plain model, adapter merged in"
assert changed == adapted_weights, f"changed: {sorted(changed ^ adapted_weights)[:4]} ..."
assert len(answers) == 3 and all(a.strip() for a in answers), answers
assert (answers[1], answers[2]) == (in_python["ask"], in_python["prompt"]), "the command prints what the model writes"
print("the guide's workflow: all checks passed")

# %% [markdown]
# ### The rest from the command line
#
# ```bash
# vlmstudy data shapes data/shapes --n 200                  # ShapesWorld in the course's three files
# vlmstudy data convert data/multimodal_train.json data/as_vqa.json --to vqa   # between the five formats
# vlmstudy finetune --keys                                  # every config key and its default
# vlmstudy finetune --config configs/llava_instruction.yaml [--set training.max_steps=50]
# vlmstudy finetune --resume runs/llava-instruction         # after a crash: from the last checkpoint
# vlmstudy finetune --merge runs/llava-instruction --out runs/llava-instruction-merged
# vlmstudy finetune --estimate --config configs/multimodal_config.yaml   # memory for LoRA and QLoRA
# ```
#
# Outside a notebook the run prints one line every 10 steps and each evaluation, under a
# progress bar.

# %% [markdown]
# ## Checks
#
# The first block checks the mechanics: they hold for any weights, and fail if LoRA, the
# trainable tokens or the saved files are wrong. The second checks what the fine-tune achieved; it fails if training did not work (or on an untrained placeholder stand-in).

# %%
assert before_new["eval_accuracy"] <= 0.05, "before fine-tuning the model never says brown"
# LoRA's count, worked out from the adapted layers themselves: r (d_in + d_out) numbers per layer
from peft.tuners.lora import LoraLayer

adapted = [m for m in result.model.modules() if isinstance(m, LoraLayer)]
assert kinds["LoRA A"] + kinds["LoRA B"] == sum(m.r[a] * (m.in_features + m.out_features) for m in adapted for a in m.lora_A), \
    "LoRA adds r x (d_in + d_out) trainable numbers per adapted layer"
assert params["trainable"] == sum(kinds.values()), "the run's trainable count = the parameters that get gradients"
assert not any(p.requires_grad for n, p in result.model.named_parameters() if "vision_tower" in n), "the vision tower stays frozen"
assert (out / "adapter" / "adapter_model.safetensors").is_file() and (merged_dir / "model.safetensors").is_file()
assert [p.name for p in (out / "checkpoints").iterdir()] and (out / "run.json").is_file()
t1, t8, t16 = (sweep_r[r]["trainable"] for r in (1, 8, 16))
assert 7 * (t16 - t8) == 8 * (t8 - t1) and t8 > t1, "the trainable count is linear in r (plus brown's fixed rows)"
print("mechanics: all checks passed")

# %%
assert after_new["eval_accuracy"] >= 0.9, f"brown accuracy after fine-tuning {after_new['eval_accuracy']:.2f} < 0.9"
assert after_old["eval_accuracy"] >= before_old["eval_accuracy"] - 0.1, "the ordinary questions were forgotten"
assert all(same) and gap < 1e-4, "the merged model answers exactly like base + adapter"
print(f"fine-tune: all checks passed ({result.seconds:.0f} s of training). On to 12.")

# %% [markdown]
# ## Summary
#
# * Fine-tuning data comes in three JSON formats (caption, vqa, instruction), and `load_dataset` checks every record, naming each bad one, before anything trains.
# * LoRA freezes each weight matrix and learns a low-rank change, $W' = W + (\alpha / r)\,BA$, with $B$ starting at zero; here on every linear layer of the language model and the projector, while the vision tower stays frozen.
# * A word the model never said needs its own rows too: `trainable_tokens` trains brown's rows of the output layer and the input embedding, since LoRA alone changes only the hidden state.
# * Ordinary scenes in the training data keep the model from forgetting; before-and-after accuracy on brown and on ordinary questions measures both.
# * Checkpoints are written to a temporary folder and renamed, so a killed run resumes to the same weights; an adapter is small, can be reloaded on the base model, or merged into an ordinary model.
# * `r` sets how many directions the update has (parameters grow linearly with it), `alpha / r` acts like a learning-rate multiplier; QLoRA trains the adapters through a 4-bit base on a GPU, and falls back to plain LoRA on a CPU.
# * The same recipe on BLIP-VQA adapts a different set of layers: its text encoder and answer decoder (cross-attention included) and, since BLIP has no projector, the vision tower's last MLP; `adapted_parts` lists what each run adapted, and the trainable counts and accuracies are printed side by side.
# * The fine-tuning guide's workflow runs as the guide writes it: `create_sample_multimodal_dataset` (or `vlmstudy data shapes ... --format`), `vlmstudy data check`, `vlmstudy finetune --config configs/multimodal_config.yaml` (budget cut with `--set`), `OUTPUT_DIR/final_model`, `vlmstudy infer` (describe, ask, prompt, interactive) and `MultiModalModel.generate_from_image`, which writes exactly what the command printed.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why does a LoRA fine-tune start from exactly the original model?**
#
# <details><summary>Answer</summary>
#
# $B$ is initialised to zero, so the update $(\alpha / r)\,BA$ is zero at step 0 and every layer computes what $W$ alone computes.
#
# </details>
#
# **2. Why can LoRA on the attention and MLP layers alone struggle to make the model say "brown"?**
#
# <details><summary>Answer</summary>
#
# Brown's score is the final hidden state times brown's row of `lm_head`, and training pushed that row away from anything the model computes. LoRA on those layers changes only the hidden state; training brown's own rows (`trainable_tokens: [brown]`) fixes the other side.
#
# </details>
#
# **3. Why does the training set also hold ordinary scenes that have nothing brown in them?**
#
# <details><summary>Answer</summary>
#
# So that the model does not forget: a fine-tune only on the new word would soon answer "brown" to everything. The after-training check on the ordinary questions measures that nothing was lost.
#
# </details>
#
# **4. BLIP-VQA has no projector. Where did its run put adapters, besides its two text models, and why there?**
#
# <details><summary>Answer</summary>
#
# On the MLP of the vision tower's last layer. BLIP's text encoder cross-attends to the vision tower's output directly, so that last layer is the hand-off LLaVA's projector is; the rest of the tower stays frozen. Without it, only the text side could learn, from the features of a tower that never had to tell brown from orange (try the run without that entry).
#
# </details>
#
# **5. What does the guide's run leave in `OUTPUT_DIR/final_model`, and how does it differ from `OUTPUT_DIR/adapter`?**
#
# <details><summary>Answer</summary>
#
# `final_model` is the base model with $(\alpha / r)\,BA$ merged into each adapted weight, saved as an ordinary model: it loads without peft (`vlmstudy.load`, `vlmstudy infer --model_path`, `MultiModalModel`) and costs nothing extra per token. `adapter` holds only $A$ and $B$ (small), to be loaded on top of the base model. Comparing `final_model` with its base shows exactly the language model's linear weights changed.
#
# </details>

# %% [markdown]
# ## References
#
# * Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models* (2021): [arXiv:2106.09685](https://arxiv.org/abs/2106.09685).
# * Dettmers et al., *QLoRA: Efficient Finetuning of Quantized LLMs* (2023): [arXiv:2305.14314](https://arxiv.org/abs/2305.14314).
# * Liu et al., *Improved Baselines with Visual Instruction Tuning* (LLaVA-1.5, how it is fine-tuned, 2024): [arXiv:2310.03744](https://arxiv.org/abs/2310.03744).
# * Li et al., *BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language Understanding and Generation* (2022): [arXiv:2201.12086](https://arxiv.org/abs/2201.12086).
# * Model cards: [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf), [Salesforce/blip-vqa-base](https://huggingface.co/Salesforce/blip-vqa-base).
# * Docs: [PEFT](https://huggingface.co/docs/peft), [PEFT's LoRA guide](https://huggingface.co/docs/peft/developer_guides/lora), [PEFT in transformers](https://huggingface.co/docs/transformers/peft), [transformers quantization with bitsandbytes](https://huggingface.co/docs/transformers/quantization/bitsandbytes).
