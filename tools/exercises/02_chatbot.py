# %% [markdown]
# # Exercise 02 · A multimodal chatbot with memory
#
# **Objective.** Write a `MultimodalChatbot` that holds a conversation about one image, as
# `vlmstudy.ChatSession` does in notebook 07: `set_image(image)`, `chat(message) -> str`,
# `clear_history()`, and a `history` of the finished `(user, assistant)` turns.
#
# **The point.** A chat model has no memory between two calls of `generate`: the history **is**
# the prompt. Every turn renders the whole conversation so far with the processor's chat
# template, the image in the first user message, and asks for the next answer.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run the check
# cell: points, and a hint for every check that fails. The checks look at the exact prompt your
# chatbot hands to the model, so they test that the history is really used, not what a tiny
# model happens to answer. When your notebook is graded, the checks and a few hidden ones run
# again on new data.

# %%
from vlmstudy import generation, shapes
from vlmstudy.generation import chat_prompt
from vlmstudy.grading import check_chatbot, load_quietly
from vlmstudy.images import load_image

# %% [markdown]
# ## The task
#
# `generate(prompt)` is given: it runs the model on `self.image` and one prompt string and
# returns the new text. Write:
#
# * `set_image(image)`: talk about this image from now on (keep it in `self.image`, as a PIL
#   image: `load_image(image)`); a new image starts a new conversation.
# * `chat(message)`: render `self.history` plus the new message with
#   `chat_prompt(self.processor, turns)` (turns are `(user, assistant)` pairs; the last one is
#   `(message, None)`, which asks for the answer), call `self.generate(prompt)`, append
#   `(message, reply)` to `self.history` and return the reply.
# * `clear_history()`: forget the conversation, keep the image.
#
# Try `print(chat_prompt(processor, [("what is this?", "a circle"), ("what colour?", None)]))`
# to see what the model reads.

# %%
class MultimodalChatbot:
    def __init__(self, model, processor, max_new_tokens=16):
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.image = None
        self.history = []  # [(user, assistant), ...], oldest first

    def generate(self, prompt):
        """The model's answer to one prompt about self.image (given)."""
        return generation.generate_text(self.model, self.processor, [self.image], [prompt],
                                        max_new_tokens=self.max_new_tokens)[0]

    def set_image(self, image):
        ### BEGIN SOLUTION
        self.image = load_image(image)
        self.history = []
        ### END SOLUTION

    def chat(self, message):
        ### BEGIN SOLUTION
        prompt = chat_prompt(self.processor, self.history + [(message, None)])
        reply = self.generate(prompt)
        self.history.append((message, reply))
        return reply
        ### END SOLUTION

    def clear_history(self):
        ### BEGIN SOLUTION
        self.history = []
        ### END SOLUTION

# %% [markdown]
# ## Check

# %%
report = check_chatbot(MultimodalChatbot)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(MultimodalChatbot, "02_chatbot", "chatbot")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# A short conversation with the tiny LLaVA stand-in. Its answers are often wrong (it is tiny);
# what matters here is that the second prompt holds the first turn.

# %%
# NBVAL_IGNORE_OUTPUT
if report.passed:
    llava, processor = load_quietly("llava")
    scene = shapes.make_scenes("test", 1, seed=5)[0]
    bot = MultimodalChatbot(llava, processor)
    bot.set_image(scene.render())
    print("scene:", scene.caption)
    for message in ["what shape is on the left?", "and what colour is it?"]:
        print("user:", message)
        print("bot: ", bot.chat(message))
    print(len(bot.history), "turns in the history")
else:
    print("Finish MultimodalChatbot first: the checks above say what is missing.")
