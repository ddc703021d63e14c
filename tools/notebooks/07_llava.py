# %% [markdown]
# # 07 · LLaVA-1.5: the chat template, image tokens and multi-turn conversations
#
# **Objective.** By the end of this notebook you can turn a conversation into the exact prompt
# LLaVA reads (chat template, token ids), say where the single `<image>` becomes one token per
# image patch and what the projector hands the language model, hold a multi-turn conversation
# about an image with `ChatSession` (and see that the follow-ups need the history), and know
# what happens when a conversation outgrows the model's context.
#
# LLaVA ([Liu et al., 2023](https://arxiv.org/abs/2304.08485); 1.5:
# [Liu et al., 2024](https://arxiv.org/abs/2310.03744)) is the simplest recipe that works: a
# CLIP image encoder, a small MLP **projector**, and a chat LLM (Vicuna-7B). Every image
# *patch* becomes one token in the LLM's input, right where the prompt says `<image>`; the
# model is then tuned on conversations about images. No Q-Former, no fixed summary: the LLM
# sees all 576 patches of a 336-pixel picture.

# %%
import warnings

import torch
from transformers import pipeline

import vlmstudy
from vlmstudy import diagrams, evaluation, plotting, shapes, tasks
from vlmstudy.generation import chat_prompt, generate_text, to_model
from vlmstudy.zoo.table import real_config

vlmstudy.seed_everything(0)
llava = tasks.get_model("llava")
model, processor = llava
print(type(model).__name__, "+", type(processor).__name__, "in", vlmstudy.get_mode(), "mode")
fig = diagrams.draw_family("llava")

# %% [markdown]
# ## Step 1: the chat template
#
# A chat model is trained on conversations written in one exact format: who speaks, where the
# image goes, where the answer starts. You should never write that format by hand. The
# conversation is a list of *messages* and the processor's **chat template** (a small Jinja
# program shipped with the checkpoint) renders it:

# %%
messages = [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": "what shape is on the left?"}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
print(repr(prompt))

# %% [markdown]
# `add_generation_prompt=True` ends the text with `ASSISTANT:`, the cue for the model to
# answer. The course's `generation.chat_prompt` builds the messages from `(user, assistant)`
# turns and calls the same template; a finished turn shows how the answers are written back:

# %%
print(repr(chat_prompt(processor, [("what shape is on the left?", None)])))
print(repr(chat_prompt(processor, [("what shape is on the left?", "circle"), ("and what colour is it?", None)])))

# %% [markdown]
# ## Step 2: token ids, and the one `<image>` token
#
# The tokenizer turns the prompt into ids. The stand-in's tokenizer knows only ShapesWorld's
# words (so it writes `USER` as `user`); the real one splits text into sub-words. Either way,
# `<image>` is **one** special token, id `config.image_token_index`:

# %%
ids = processor.tokenizer(prompt).input_ids
print(ids)
print(processor.tokenizer.convert_ids_to_tokens(ids))
print("image token id:", model.config.image_token_index, "| occurrences:", ids.count(model.config.image_token_index))

# %% [markdown]
# ## Step 3: the processor expands `<image>` into one token per patch
#
# With the picture, the processor does two things: it resizes and normalises the image into
# `pixel_values`, and it **repeats** the image token once for every vector the vision side
# will produce, so that the text and the image features line up one to one. The vision tower
# cuts the picture into patches; with `vision_feature_select_strategy="default"` the CLS
# vector is dropped, leaving one token per patch:

# %%
scene = shapes.make_scenes("test", 1, seed=4)[0]
inputs = processor(images=scene.render(), text=prompt, return_tensors="pt")
vc = model.config.vision_config
n_patches = (vc.image_size // vc.patch_size) ** 2
n_image_tokens = int((inputs["input_ids"] == model.config.image_token_index).sum())
print({k: tuple(v.shape) for k, v in inputs.items()})
print(f"{vc.image_size} px / {vc.patch_size} px patches = {n_patches} patches -> {n_image_tokens} image tokens")
fig = plotting.token_strip(processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]),
                           title=f"what LLaVA reads: {inputs['input_ids'].shape[1]} tokens, {n_image_tokens} of them <image>")

# %% [markdown]
# ## Step 4: what the projector feeds the language model
#
# The vision tower (a CLIP ViT) encodes the picture; LLaVA takes the hidden states of its
# second-to-last layer (`vision_feature_layer=-2`), drops the CLS vector, and the two-layer MLP
# projector maps every patch vector to the LLM's embedding width. Those vectors replace the
# embeddings of the image tokens, position by position. (`to_model` puts the processor's CPU
# tensors on the model's device, in its dtype: on a GPU in fp16 they must follow the model.)

# %%
batch = to_model(model, inputs)
with torch.no_grad():
    vision = model.model.vision_tower(batch["pixel_values"], output_hidden_states=True)
    chosen = vision.hidden_states[model.config.vision_feature_layer]
    patches = chosen[:, 1:]                                  # drop CLS ("default" strategy)
    projected = model.model.multi_modal_projector(patches)
    own = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output  # the model's own path
    text_embeddings = model.get_input_embeddings()(batch["input_ids"])
print(f"pixel_values            {tuple(inputs['pixel_values'].shape)}")
print(f"vision layer {model.config.vision_feature_layer}         {tuple(chosen.shape)}   (CLS + {n_patches} patches)")
print(f"patches                 {tuple(patches.shape)}")
print(f"projected (to the LLM)  {tuple(projected.shape)}   LLM width {model.config.text_config.hidden_size}")
print(f"prompt embeddings       {tuple(text_embeddings.shape)}   -> image rows replaced by the projected patches")
print("same as get_image_features:", torch.allclose(projected[0], own[0].reshape(projected[0].shape), atol=1e-5))

# %% [markdown]
# The real LLaVA-1.5-7B does the same with bigger numbers:

# %%
real = real_config("llava")
rv = real.vision_config
print(f"real: {rv.image_size} px / {rv.patch_size} px = {(rv.image_size // rv.patch_size) ** 2} image tokens, "
      f"vision width {rv.hidden_size} -> LLM width {real.text_config.hidden_size}, "
      f"context {real.text_config.max_position_embeddings} tokens")

# %% [markdown]
# ## One question
#
# `tasks.answer` does steps 1 to 4 and `generate` for you:

# %%
for qa in shapes.questions(scene)[:4]:
    print(f"{qa.question:42} -> {tasks.answer(scene.render(), qa.question, model=llava)!r:12} truth: {qa.answer}")

# %% [markdown]
# ## A conversation: `ChatSession`
#
# `generate` has no memory: every call starts from the prompt it is given. A conversation is
# kept by re-rendering the **whole history** through the chat template on every turn.
# `tasks.ChatSession` does that: `set_image`, then `ask`; `history` holds the finished turns,
# `last_prompt` the exact string the model just read.
#
# "and what colour is it?" has no answer on its own: *it* is whatever the previous turn was
# about. One conversation proves nothing here: without the history the model can still guess
# the right colour (a scene has only two or three), and with it the model can miss. So first
# the measurement, on 50 test scenes with three objects each: ask what shape is at the last
# object's place, then "and what colour is it?" once with that first turn in the prompt and
# once without it (the same prompts `ChatSession` renders, in three batches).

# %%
FOLLOW_UP = "and what colour is it?"
follow_scenes = shapes.make_scenes("test", 50, seed=21, n_objects=3)
follow_pictures = [s.render() for s in follow_scenes]
follow_targets = [s.objects[-1] for s in follow_scenes]
openers = [f"what shape is {shapes.POSITION_PHRASES[o.position]}?" for o in follow_targets]
greedy = tasks.ChatSession(llava).settings  # the settings a conversation uses


def answer_all(prompts, batch=10):
    """One answer per scene (batches of 10: a 7B model in hub mode needs the memory)."""
    return [reply for i in range(0, len(prompts), batch)
            for reply in generate_text(model, processor, follow_pictures[i:i + batch], prompts[i:i + batch], settings=greedy)]


own_answers = answer_all([chat_prompt(processor, [(q, None)]) for q in openers])
with_turn = answer_all([chat_prompt(processor, [(q, a), (FOLLOW_UP, None)]) for q, a in zip(openers, own_answers)])
alone = answer_all([chat_prompt(processor, [(FOLLOW_UP, None)])] * len(follow_scenes))
right_with = [shapes.normalize_text(a) == o.color for a, o in zip(with_turn, follow_targets)]
right_alone = [shapes.normalize_text(a) == o.color for a, o in zip(alone, follow_targets)]
history_helped = [i for i, (w, a) in enumerate(zip(right_with, right_alone)) if w and not a]
print(f"'{FOLLOW_UP}' answered right on {sum(right_with)} of {len(follow_scenes)} scenes with the first turn in the "
      f"prompt ({sum(right_with) / len(follow_scenes):.0%}), on {sum(right_alone)} without it "
      f"({sum(right_alone) / len(follow_scenes):.0%})")
print(f"right only with the history: {len(history_helped)} scenes; right only without it: "
      f"{sum(a and not w for w, a in zip(right_with, right_alone))}")

# %% [markdown]
# The conversation below is one of the scenes where the history made the difference (the first
# of them, from the list just measured; the first scene if there were none), replayed with
# `ChatSession`:

# %%
shown = history_helped[0] if history_helped else 0
print(f"scene {shown + 1} of {len(follow_scenes)}: with the history {with_turn[shown]!r}, without {alone[shown]!r}")
chat_scene = follow_scenes[shown]
target = chat_scene.objects[-1]
where = shapes.POSITION_PHRASES[target.position]
fig = vlmstudy.show_images([chat_scene.render(128)], [chat_scene.caption], scale=3.0)
chat = tasks.ChatSession(llava).set_image(chat_scene.render())
first = chat.ask(f"what shape is {where}?")
follow_up = chat.ask("and what colour is it?")
for user, assistant in chat.history:
    print(f"user: {user:32} assistant: {assistant}")
print("\nthe prompt of the second turn:\n" + chat.last_prompt)

# %% [markdown]
# The same follow-up with the history cleared: the model has to guess what *it* is.

# %%
second_prompt = chat.last_prompt
without_history = chat.clear().ask("and what colour is it?")
print(f"with history: {follow_up!r}   without: {without_history!r}   truth: {target.color!r}")

# %% [markdown]
# ## When the conversation outgrows the context
#
# Every turn makes the prompt longer, and the image tokens are in it every time. The language
# model has a fixed context (`max_position_embeddings`: 4096 tokens for Vicuna in LLaVA-1.5,
# 512 in the stand-in), which must also hold the answer (`max_new_tokens`). `ChatSession`
# counts the tokens (image tokens included) before every turn and, when they would not fit,
# **drops the oldest turns** with a warning. Here with a deliberately small context, computed
# from this model's own token counts: the image tokens, two short finished turns and the next
# question, plus the 8 tokens kept free for the answer. The fourth question cannot fit with
# all the history, whatever the model answers.

# %%
questions = ["how many shapes are there?", f"what shape is {where}?", "and what colour is it?", "is there a red circle?"]
probe = tasks.ChatSession(llava, max_new_tokens=8).set_image(chat_scene.render())
two_turns = probe.count_tokens(probe.render(questions[2], [(questions[0], "three"), (questions[1], "circle")]))
small = tasks.ChatSession(llava, max_context=two_turns + 8, max_new_tokens=8).set_image(chat_scene.render())
print(f"context: {small.context_length} tokens ({n_image_tokens} of them the image)")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for question in questions:
        answer = small.ask(question)
        print(f"{question:32} -> {answer!r:10} prompt: {small.count_tokens(small.last_prompt)} tokens, "
              f"turns kept: {len(small.history)}, dropped so far: {small.dropped_turns}")
for w in caught:
    print("warning:", w.message)

# %% [markdown]
# Dropped turns are gone for the model: a follow-up that needs one of them will be answered
# without it. If even one question and the images do not fit, you get an error that says what
# to change. A context no longer than the image tokens leaves no room for the question:

# %%
try:
    tasks.ChatSession(llava, max_context=n_image_tokens).set_image(chat_scene.render()).ask("how many shapes are there?")
except tasks.ContextLengthError as err:
    print(type(err).__name__, ":", err)

# %% [markdown]
# ## The same with a transformers pipeline
#
# In transformers 5 the `image-text-to-text` pipeline is the one way to chat with a
# vision-language model through `pipeline` (the `image-to-text` and `visual-question-answering`
# pipelines are gone, see [notebook 05](05_blip.ipynb)). It takes the same messages, with the
# image inside, applies the chat template and returns the conversation with the reply added.
# `pipeline` also takes a Hub id or a folder and loads the model itself; we hand it the model
# and processor already in memory, because a second copy of a 7B model would double the memory.
# With the same decoding settings as the chat's first turn (greedy, the same `max_new_tokens`)
# it must give the same reply:

# %%
pipe = pipeline("image-text-to-text", model=model, processor=processor)
pipe_messages = [{"role": "user", "content": [{"type": "image", "image": chat_scene.render()},
                                              {"type": "text", "text": f"what shape is {where}?"}]}]
result = pipe(text=pipe_messages, generate_kwargs=chat.settings.generate_kwargs())
pipe_reply = result[0]["generated_text"][-1]["content"]
print(type(pipe.model).__name__, "|", chat.settings.describe(), "| pipeline:", repr(pipe_reply),
      "| ChatSession's first turn:", repr(first))

# %% [markdown]
# ## Outside the toy world: another renderer, other wordings
#
# A stand-in can be perfect on the pictures and the one wording it was trained on and still fail
# a learner who draws a shape a little differently or types "What color is ...". So every metric
# is measured three ways: on the training renderer's pictures with the trained wording; with
# **held-out wordings** no training ever used (`vlmstudy.phrasings`); and on pictures from a
# **second renderer** (`vlmstudy.second_renderer`: other drawing code, shades, proportions and
# backgrounds), also with held-out wordings. The same test scenes are drawn by both:

# %%
import random

from vlmstudy import phrasings, second_renderer
from vlmstudy.zoo.evaluate import generalisation_check

fig = second_renderer.show_renderers(shapes.make_scenes("test", 4, seed=5))
example = shapes.questions(shapes.make_scenes("test", 1, seed=5)[0])[1]
print(f"trained wording: {example.question!r}; a held-out one: "
      f"{phrasings.paraphrase(example, random.Random(0), 'heldout')!r}")

# %% [markdown]
# LLaVA's first turns, asked with held-out wordings and on second-renderer pictures.
# `generalisation_check` measures 40 test scenes in each condition and plots the accuracy per
# question kind; for a shipped stand-in it also holds each condition to the floor its model card
# sets (the card's figure minus two standard errors), and for a real checkpoint it only prints.

# %%
generalisation, fig = generalisation_check("llava", llava, n=40)

# %% [markdown]
# ## On a real photo
#
# A conversation about one real photograph (`vlmstudy.real_photo("astronaut")`: public domain,
# NASA): the photo's questions asked one after the other in the same `ChatSession`, each with
# the answer a person wrote. First, how many image tokens the photo becomes: LLaVA-1.5 resizes
# every picture to its encoder's size, so a 384-pixel photo costs exactly what a 64-pixel scene
# did (`tasks.image_token_count`).
#
# In `tiny` mode the stand-in has only seen ShapesWorld and its vocabulary is ShapesWorld's
# ("suit", "flag" and "smiling" are unknown tokens), so expect short ShapesWorld answers that
# are not about this photo: a chat model outside its training world still replies, as fluently
# as ever. With `VLMSTUDY_MODE=hub` the real LLaVA-1.5 answers, in sentences.

# %%
photo = vlmstudy.real_photo("astronaut")
print(photo, "->", tasks.image_token_count(processor, photo.image), "image tokens; a ShapesWorld scene:",
      tasks.image_token_count(processor, chat_scene.render()))
photo_chat = tasks.ChatSession(llava, max_new_tokens=24).set_image(photo.image)
for photo_question, written in photo.questions:
    reply = photo_chat.ask(photo_question)
    print(f"Q: {photo_question}\n   LLaVA: {reply!r}   (a person: {written!r})")
assert len(photo_chat.history) == len(photo.questions) and all(isinstance(a, str) for _, a in photo_chat.history)
fig = vlmstudy.show_images([photo.image], [photo.caption], scale=2.6)

# %% [markdown]
# ## Checks
#
# The first block checks the mechanics: they hold for any weights, in every mode. The second
# checks what the model can do: the stand-in must reach the floor its model card sets (it fails
# on untrained placeholder weights; `vlmstudy zoo train llava` builds it), a real checkpoint is
# printed beside its published figure.

# %%
assert prompt == chat_prompt(processor, [("what shape is on the left?", None)])
image_token = str(processor.image_token)
assert prompt.count(image_token) == 1 and prompt.index(image_token) < prompt.index("what shape is on the left?"), \
    "the image goes once, before the question"
assert prompt.rstrip().endswith("ASSISTANT:"), "add_generation_prompt ends with the cue for the answer"
two_turns = chat_prompt(processor, [("what shape is on the left?", "circle"), ("and what colour is it?", None)])
assert two_turns.count(image_token) == 1 and two_turns.rstrip().endswith("ASSISTANT:")
assert two_turns.index("on the left?") < two_turns.index("circle") < two_turns.index("and what colour"), \
    "a finished turn is written back, in order, before the next question"
assert ids.count(model.config.image_token_index) == 1, "before the processor: one <image> token"
assert n_image_tokens == n_patches == projected.shape[1], "one image token per patch"
assert projected.shape == (1, n_patches, model.config.text_config.hidden_size)
assert second_prompt == chat_prompt(processor, [(f"what shape is {where}?", first), ("and what colour is it?", None)]), \
    "the second turn's prompt is the whole conversation so far"
assert chat.last_prompt == chat_prompt(processor, [("and what colour is it?", None)]), "after clear() no earlier turn is sent"
assert chat.history == [("and what colour is it?", without_history)]
assert len(with_turn) == len(alone) == len(own_answers) == len(follow_scenes) == 50
assert f"what shape is {where}?" in second_prompt and first in second_prompt, "the follow-up prompt holds turn 1"
assert second_prompt.count(str(processor.image_token)) == 1
assert small.dropped_turns >= 1 and any(issubclass(w.category, tasks.ContextTrimmedWarning) for w in caught)
assert small.count_tokens(small.last_prompt) + 8 <= small.context_length
assert pipe.model is model, "the pipeline reuses the loaded model"
assert pipe_reply.strip() == first.strip(), "the pipeline and ChatSession give the same answer to the same prompt"
print("mechanics: all checks passed")

# %% [markdown]
# What the model can do, measured on 48 test scenes it never saw, the way its model card was
# measured. The course's targets are 0.90 for first turns and 0.85 for follow-ups; the stand-in's
# model card (`assets/models/tiny-llava/training.json`, printed below as a stored result with the
# command that measured it) says whether it reaches them. Guessing is the floor to compare with:
# for a shape or colour question, one of 6 shapes or 8 colours, 0.125 to 0.167 (the cell computes
# it; a yes/no question is guessed right half the time).
# `evaluation.check_quality` holds the stand-in to the floor its card sets (the card's value
# minus two standard errors of a 48-scene sample); a real checkpoint is printed beside its
# published figure, not asserted.

# %%
from vlmstudy.zoo.evaluate import CONDITIONS, evaluate_generative

measured = evaluate_generative("llava", model, processor, n=48, progress=False,
                               conditions={"": CONDITIONS[""]})  # the other two: see "Outside the toy world"
print(measured)
print(f"guessing: a shape 1/{len(shapes.SHAPES)} = {1 / len(shapes.SHAPES):.3f}, "
      f"a colour 1/{len(shapes.COLORS)} = {1 / len(shapes.COLORS):.3f}")
_, _, card = evaluation.model_origin(model)
if card is not None:   # a stand-in: its card's stored figures (not run here)
    print(f"stored in the card ({card['command']}):", card["metrics"])
for metric in ("first_turn_accuracy", "follow_up_accuracy"):
    evaluation.check_quality(model, metric, measured[metric], n=48)
print("quality: checked. On to 08, LLaVA-NeXT.")

# %% [markdown]
# ## Summary
#
# * A chat model reads conversations in one exact format; the checkpoint's **chat template** renders a list of messages into it, and `add_generation_prompt=True` ends the text with the cue for the answer.
# * In the text, the image is **one** `<image>` token; the processor repeats it once for every vector the vision tower produces, and the model replaces those embeddings with the projector's output, position by position.
# * The projector, a two-layer MLP, maps the patch features of the vision tower's second-to-last layer (CLS dropped) to the language model's width: the LLM sees every patch.
# * `generate` has no memory: `ChatSession` re-renders the whole history through the template every turn, and the measurement on 50 scenes shows what the history does for follow-ups.
# * The image tokens are in every prompt, so a long conversation outgrows the context; `ChatSession` drops the oldest turns with a warning, and refuses a turn that cannot fit at all.
# * The `image-text-to-text` pipeline takes the same messages and gives the same answer with the same decoding settings.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why should you not write LLaVA's prompt format by hand?**
#
# <details><summary>Answer</summary>
#
# The model was tuned on one exact format (who speaks, where the image goes, where the answer starts), and any difference costs accuracy. The chat template shipped with the checkpoint renders it exactly, including the `ASSISTANT:` cue that `add_generation_prompt=True` adds.
#
# </details>
#
# **2. The tokenizer writes one `<image>` token, yet the language model reads one image token per patch. Who expands it, and why?**
#
# <details><summary>Answer</summary>
#
# The processor repeats the image token once for every vector the vision side will produce, so that the text positions and the image features line up one to one; the model then puts the projected patch vectors in place of those tokens' embeddings.
#
# </details>
#
# **3. How does a chat model "remember" the previous turn?**
#
# <details><summary>Answer</summary>
#
# It does not: every `generate` call starts from the prompt it is given. The conversation is kept by rendering the whole history into the prompt every turn, which is what `ChatSession` does (`last_prompt` shows it).
#
# </details>
#
# **4. Why does one conversation not show that the history helps, and what does?**
#
# <details><summary>Answer</summary>
#
# Without the history the model can still guess the right colour (a scene has only two or three objects), and with it the model can still miss. Only a count over many scenes (here 50), asked once with and once without the first turn, shows what the history changes.
#
# </details>
#
# **5. What does `ChatSession` do when the next turn would not fit in the context?**
#
# <details><summary>Answer</summary>
#
# It counts the tokens, image tokens included, plus the room kept for the answer, and drops the oldest turns with a `ContextTrimmedWarning`; the model then answers without them. If even the images and the question alone do not fit, it raises an error that says what to change.
#
# </details>

# %% [markdown]
# ## References
#
# * Liu et al., *Visual Instruction Tuning* (LLaVA, 2023): [arXiv:2304.08485](https://arxiv.org/abs/2304.08485); Liu et al., *Improved Baselines with Visual Instruction Tuning* (LLaVA-1.5, 2024): [arXiv:2310.03744](https://arxiv.org/abs/2310.03744).
# * Model card: [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf).
# * transformers docs: [LLaVA](https://huggingface.co/docs/transformers/model_doc/llava), [chat templates](https://huggingface.co/docs/transformers/chat_templating), [image-text-to-text](https://huggingface.co/docs/transformers/tasks/image_text_to_text), [pipelines](https://huggingface.co/docs/transformers/main_classes/pipelines).
