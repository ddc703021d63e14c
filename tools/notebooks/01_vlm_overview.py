# %% [markdown]
# # 01 · The families of vision-language models, and the course's model zoo
#
# **Objective.** By the end of this notebook you can name the four ways vision-language models
# join an image encoder to text, say which model of the course belongs to which, and load any
# of them with one call that works the same for the tiny stand-ins and the real checkpoints.
#
# You will also meet *ShapesWorld*, the small synthetic world of coloured shapes that every
# stand-in was trained on, and that every notebook uses for its examples.

# %%
import vlmstudy
from vlmstudy import shapes

vlmstudy.seed_everything(0)
print("mode:", vlmstudy.get_mode())

# %% [markdown]
# ## Four ways to join images and text
#
# Every model in this course starts the same way: a **vision transformer (ViT)** cuts the image
# into patches and turns each patch into a vector. The families differ in what happens next.
#
# * **Dual encoder** (CLIP, SigLIP; notebooks 02-04). A second, separate transformer encodes the
#   text. Both end in one vector each, in one shared space, and a cosine similarity says how
#   well they match. Trained on image-caption pairs with a *contrastive* loss: matching pairs
#   close, all other pairs in the batch far apart. They cannot write text, but they are fast to
#   compare (embed a million images once, then search them): zero-shot classification, search,
#   and the image encoder of the bigger models.
# * **Encoder-decoder** (BLIP; notebook 05). A text transformer *reads* the patch vectors through
#   **cross-attention** in every layer and *writes* text: a caption, or the answer to a question.
# * **Q-Former bridge** (BLIP-2, InstructBLIP; notebook 06). A large language model (LLM) already
#   writes well; train only a small bridge. The **Q-Former** has 32 learned *query* vectors that
#   cross-attend to the frozen image encoder and come out as 32 "soft tokens" that the frozen LLM
#   reads like words. InstructBLIP also feeds the instruction into the Q-Former, so what it
#   extracts depends on the question.
# * **Projector + LLM** (LLaVA-1.5, LLaVA-NeXT; notebooks 07-08). Simpler still: a small MLP
#   maps *every* patch vector to one token in the LLM's word space (576 tokens for a 336 px image
#   in LLaVA-1.5), and the LLM is fine-tuned on conversations about images. LLaVA-NeXT tiles
#   large images so that it sees more detail.
#
# Hatched blocks are usually kept *frozen* while the rest is trained.

# %%
families = vlmstudy.diagrams.draw_families()

# %% [markdown]
# ## ShapesWorld: the course's toy world
#
# Each scene has one to three shapes, each with a colour, a shape, a size and a position, and
# every scene comes with its caption, questions and answers, and short dialogues. It is small
# enough that a model of a few million parameters learns it on a laptop in minutes, and exact:
# we know the right answer for every question, so every claim about a model can be measured.
#
# Some colour-shape pairs (`HELD_OUT_COMBOS`) never appear in training: the `heldout` split
# asks whether a model can *compose* a colour and a shape it knows but never saw together.

# %%
scenes = shapes.make_scenes("train", 8, seed=0)
grid = vlmstudy.show_scenes(scenes, cols=4)

# %%
print("colours:", ", ".join(shapes.COLORS))
print("shapes: ", ", ".join(shapes.SHAPES))
print("never together in training:", ", ".join(f"{c} {s}" for c, s in sorted(shapes.HELD_OUT_COMBOS)))

# %% [markdown]
# A scene is data, not just pixels: its questions and answers come with it.

# %%
for qa in shapes.questions(scenes[0])[:5]:
    print(f"{qa.kind:>8}: {qa.question:<40} -> {qa.answer}")

# %% [markdown]
# ## The model zoo
#
# Each model the course teaches has a card: the real checkpoint on the Hugging Face Hub, its
# transformers class, and the tiny stand-in that replaces it in `tiny` mode. The real parameter
# counts below are not typed in: each real architecture is *built* from its configuration on
# PyTorch's `meta` device, where tensors have shapes but no memory, so even a 7-billion
# parameter model "exists" for a second without a download, and we count its parameters.

# %%
print(vlmstudy.zoo_table())

# %% [markdown]
# The stand-ins are a hundred to a few thousand times smaller than the real models, but they
# are **the same classes**: same forward pass, same processor,
# same `generate`. Only the numbers in the configuration differ. Here are some of them for CLIP:

# %%
model, processor = vlmstudy.load("openai/clip-vit-base-patch32")
real = vlmstudy.zoo.table.real_config("clip")
print(f"{'':<32}{'this model':>12}{'real CLIP':>12}")
for part in ("vision_config", "text_config"):
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        print(f"{part + '.' + key:<32}{getattr(getattr(model.config, part), key):>12}"
              f"{getattr(getattr(real, part), key):>12}")

# %% [markdown]
# ## Load the same way in both modes
#
# `vlmstudy.load(name)` takes a short name (`"clip"`), the Hub id, or a folder with a saved
# model, and returns `(model, processor)`. Where the weights come from depends on the *mode*
# only. `resolve_source` tells you where a name would load from without loading anything:

# %%
for mode in ("tiny", "hub"):
    source, card = vlmstudy.zoo.resolve_source("openai/clip-vit-base-patch32", mode=mode)
    print(f"{mode:>4} mode loads {card.model_class} from {source}")

# %% [markdown]
# The `model` loaded above came through the same `from_pretrained` call the real checkpoint
# would. To run this very notebook on the real models, start JupyterLab with
# `VLMSTUDY_MODE=hub`, or put `vlmstudy.set_mode("hub")` at the top (not done here, so that the
# notebook stays offline). No other line changes:
#
# ```python
# vlmstudy.set_mode("hub")
# model, processor = vlmstudy.load("openai/clip-vit-base-patch32")   # now the real CLIP, 151 M parameters
# ```

# %%
print(type(model).__name__, "+", type(processor).__name__, "in", vlmstudy.get_mode(), "mode")
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# ## Checks

# %%
rows = vlmstudy.zoo.table.zoo_rows()
assert [r["name"] for r in rows] == vlmstudy.model_names()
assert {r["family"].split(" (")[0] for r in rows} >= {"dual encoder", "encoder-decoder", "projector + LLM"}
assert all(r["real_params"] > 100e6 for r in rows), "every real checkpoint has over 100 M parameters"
assert all(r["stand_in_params"] is None or r["stand_in_params"] < r["real_params"] / 50 for r in rows)
assert type(model).__name__ == vlmstudy.get_card("clip").model_class
assert vlmstudy.zoo.resolve_source("clip", mode="hub")[0] == "openai/clip-vit-base-patch32"
assert len(vlmstudy.diagrams.FAMILIES) == 4 and len(families.axes) == 4
assert not any((c, s) in shapes.HELD_OUT_COMBOS for sc in shapes.make_scenes("train", 200) for c, s in
               ((o.color, o.shape) for o in sc.objects)), "held-out pairs never appear in training"
print("All checks passed: on to 02, CLIP.")

# %% [markdown]
# ## Summary
#
# * Every model of the course starts with a vision transformer that turns image patches into vectors; the four families differ in what they do next.
# * **Dual encoders** (CLIP, SigLIP) end in one vector per image and per text, compared by cosine similarity: fast search and zero-shot classification, but no text output. **Encoder-decoders** (BLIP) write text while cross-attending to the patch vectors. A **Q-Former** (BLIP-2, InstructBLIP) hands a frozen LLM a fixed number of query vectors. A **projector** (LLaVA) turns every patch into one LLM token.
# * ShapesWorld gives every scene its exact caption, questions and answers, so every claim about a model can be measured; the `heldout` split tests whether a model composes a colour and a shape it never saw together.
# * The zoo's real parameter counts come from building each architecture on PyTorch's `meta` device, without a download; the stand-ins are the same classes with much smaller configurations.
# * `vlmstudy.load(name)` returns `(model, processor)` in both modes; `zoo.resolve_source` tells you where a name would load from.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why can a dual encoder search a million images quickly, and why can it not caption one?**
#
# <details><summary>Answer</summary>
#
# It encodes each image and each text on its own into one vector in a shared space, so the gallery is embedded once and a query is one text encoding plus a similarity against all stored vectors. It has no decoder: it can score an image-text pair, never write a word.
#
# </details>
#
# **2. What does the language model receive from a Q-Former, and what from a LLaVA projector?**
#
# <details><summary>Answer</summary>
#
# From a Q-Former: a fixed number of vectors, one per learned query (32 in the real BLIP-2), whatever the picture. From LLaVA's projector: one token per image patch (576 for a 336-pixel image in LLaVA-1.5), so more detail and a longer prompt.
#
# </details>
#
# **3. What does the `heldout` split test, and why could the training split not test it?**
#
# <details><summary>Answer</summary>
#
# Composition: each held-out colour-shape pair is made of a colour and a shape the model saw in training, but never together. By construction no training scene contains such a pair (the last check of this notebook asserts it), so only a split of unseen pairs can ask whether the model learned colour and shape separately.
#
# </details>
#
# **4. How can the zoo table print the parameter count of a 7-billion-parameter model without downloading it?**
#
# <details><summary>Answer</summary>
#
# It builds the architecture from its configuration on PyTorch's `meta` device, where tensors have shapes but no memory, and counts the parameters of that empty model.
#
# </details>
#
# **5. What differs between the tiny CLIP stand-in and the real CLIP?**
#
# <details><summary>Answer</summary>
#
# The numbers in the configuration (hidden sizes, layers, heads, vocabulary) and the weights. The class, the forward pass, the processor and the loading call are the same.
#
# </details>

# %% [markdown]
# ## References
#
# * Dosovitskiy et al., *An Image is Worth 16x16 Words* (ViT, 2020): [arXiv:2010.11929](https://arxiv.org/abs/2010.11929).
# * The four families, one paper each: CLIP [arXiv:2103.00020](https://arxiv.org/abs/2103.00020), BLIP [arXiv:2201.12086](https://arxiv.org/abs/2201.12086), BLIP-2 [arXiv:2301.12597](https://arxiv.org/abs/2301.12597), LLaVA [arXiv:2304.08485](https://arxiv.org/abs/2304.08485).
# * Model cards on the Hub: [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32), [google/siglip-base-patch16-224](https://huggingface.co/google/siglip-base-patch16-224), [Salesforce/blip-image-captioning-base](https://huggingface.co/Salesforce/blip-image-captioning-base), [Salesforce/blip-vqa-base](https://huggingface.co/Salesforce/blip-vqa-base), [Salesforce/blip2-opt-2.7b](https://huggingface.co/Salesforce/blip2-opt-2.7b), [Salesforce/instructblip-vicuna-7b](https://huggingface.co/Salesforce/instructblip-vicuna-7b), [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf), [llava-hf/llava-v1.6-mistral-7b-hf](https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf).
# * transformers docs: [Auto classes](https://huggingface.co/docs/transformers/model_doc/auto); PyTorch: [the meta device](https://pytorch.org/docs/stable/meta.html).
