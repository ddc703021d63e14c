# %% [markdown]
# # Exercise 08 · A chat prompt, built by hand
#
# **Objective.** Write, without the processor, the exact string LLaVA-1.5 reads for a
# conversation (notebook 07): a chat model is trained on one layout of roles, image
# placeholders and separators, and a prompt in another layout is text it has never seen.
# `processor.apply_chat_template(messages, add_generation_prompt=...)` renders it from a Jinja
# template stored with the checkpoint; here you write that template as Python.
#
# `build_prompt(messages, add_generation_prompt=True) -> str`, with `messages` in the format
# `apply_chat_template` takes:
#
# ```python
# [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is it?"}]},
#  {"role": "assistant", "content": [{"type": "text", "text": "A circle."}]},
#  {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]}]
# ```
#
# Write your code where the cell says `raise NotImplementedError()` (without
# `apply_chat_template` or `vlmstudy.generation.chat_prompt`: the point is to know what they
# write), run it, then run the check cell: points, and a hint for every check that fails. The
# grade also runs hidden checks on new random conversations.

# %%
from vlmstudy.grading import check_prompt, load_quietly

# %% [markdown]
# ## The layout
#
# LLaVA-1.5's template, message by message:
#
# 1. the role in upper case and `": "` (`"USER: "`, `"ASSISTANT: "`); a `"system"` message gets
#    no prefix;
# 2. one `"<image>\n"` for every image of the message, **all images first**, wherever they are in
#    its content;
# 3. then every text of the message, each followed by one space;
#
# and at the end, when `add_generation_prompt` is true, `"ASSISTANT:"` (no space: the model
# writes the space and its answer). Texts are copied as they are. Leave `messages` unchanged.

# %%
def build_prompt(messages, add_generation_prompt=True):
    ### BEGIN SOLUTION
    parts = []
    for message in messages:
        if message["role"] != "system":
            parts.append(message["role"].upper() + ": ")
        parts += ["<image>\n" for item in message["content"] if item["type"] == "image"]
        parts += [item["text"] + " " for item in message["content"] if item["type"] == "text"]
    if add_generation_prompt:
        parts.append("ASSISTANT:")
    return "".join(parts)
    ### END SOLUTION

# %%
report = check_prompt(build_prompt)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(build_prompt, "08_chat_prompt", "prompt")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# Your prompt beside the processor's, then what the model reads: the processor expands each
# `<image>` into one placeholder token per image patch (576 for the real LLaVA-1.5's 24 x 24
# patches; the tiny stand-in has fewer), so the image, not the question, fills most of the prompt.

# %%
if report.passed:
    model, processor = load_quietly("llava")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is on the left?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]},
                {"role": "user", "content": [{"type": "text", "text": "And on the right?"}]}]
    mine = build_prompt(messages)
    print(repr(mine))
    print("same as apply_chat_template:", mine == processor.apply_chat_template(messages, add_generation_prompt=True))
    from vlmstudy import shapes

    image = shapes.make_scenes("test", 1, seed=3)[0].render()
    inputs = processor(images=image, text=mine, return_tensors="pt")
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    print(f"{inputs['input_ids'].shape[1]} tokens, {image_tokens} of them the image's placeholders")
else:
    print("Finish build_prompt first: the checks above say what is missing.")
