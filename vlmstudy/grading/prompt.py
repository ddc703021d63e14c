"""Checks for exercise 08: a chat prompt built by hand (notebook 07's chat template).

``build_prompt(messages, add_generation_prompt=True) -> str``: ``messages`` in the format of
``processor.apply_chat_template`` (``{"role": ..., "content": [{"type": "image"} | {"type":
"text", "text": ...}]}``); the string LLaVA-1.5's chat template renders. The reference is the
course LLaVA processor's own ``apply_chat_template`` (the tiny stand-in carries the real
checkpoint's template): every visible check compares with it on a fixed conversation that shows
one rule; the hidden run compares on 40 new random conversations (system messages, several
images, text before an image, empty and multi-line texts, with and without the generation
prompt).

What the checks cannot tell: a submission that loads a processor itself and calls
``apply_chat_template`` produces the same string. The notebook asks for the template by hand;
the package's own renderer (:func:`vlmstudy.generation.chat_prompt`) is out of reach while graded.
"""

from __future__ import annotations

import copy

from .core import Check, CheckFailed, Env

TARGET = "build_prompt"

WORDS = ["what", "shape", "is", "on", "the", "left?", "and", "its", "colour?", "a", "red", "circle.", "two",
         "squares", "yes", "no", "describe", "image", "in", "one", "sentence", "é", "{x}", "ASSISTANT:", "<b>"]


def _rendered(processor, messages, add_generation_prompt: bool) -> str:
    return processor.apply_chat_template(copy.deepcopy(messages), add_generation_prompt=add_generation_prompt)


def _text(env: Env) -> dict:
    rng = env.rng
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 7)))]
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.08:
        text = ""
    elif roll < 0.16:
        text = text.replace(" ", "\n", 1)
    elif roll < 0.22:
        text = "  " + text + "  "
    return {"type": "text", "text": text}


def _message(env: Env, role: str, images: int) -> dict:
    content = [_text(env) for _ in range(int(env.rng.integers(1, 3)) if role == "user" else 1)]
    for _ in range(images):
        content.insert(int(env.rng.integers(len(content) + 1)), {"type": "image"})
    return {"role": role, "content": content}


def conversation(env: Env) -> tuple[list[dict], bool]:
    """A random conversation in apply_chat_template's format and whether it asks for an answer."""
    rng = env.rng
    messages = [_message(env, "system", 0)] if rng.random() < 0.3 else []
    turns = int(rng.integers(1, 4))
    for i in range(turns):
        images = int(rng.choice([0, 1, 1, 2])) if i == 0 else int(rng.random() < 0.15)
        messages.append(_message(env, "user", images))
        if i < turns - 1 or rng.random() < 0.3:
            messages.append(_message(env, "assistant", 0))
    return messages, bool(rng.random() < 0.75)


def _compare(fn, env: Env, messages, add_generation_prompt: bool, what: str) -> None:
    _, processor = env.model("llava")
    want = _rendered(processor, messages, add_generation_prompt)
    got = fn(copy.deepcopy(messages), add_generation_prompt)
    if not isinstance(got, str):
        raise CheckFailed(f"build_prompt returned {type(got).__name__}; return the prompt as a str")
    if got != want:
        roles = "/".join(m["role"] for m in messages)
        raise CheckFailed(f"{what} ({roles}, add_generation_prompt={add_generation_prompt}): got {got!r}, the chat "
                          f"template gives {want!r}")


def _user(*content) -> dict:
    return {"role": "user", "content": [{"type": "image"} if c is None else {"type": "text", "text": c} for c in content]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def check_single_turn(fn, env: Env) -> None:
    _compare(fn, env, [_user(None, "What shape is on the left?")], True, "one question about one image")


def check_multi_turn(fn, env: Env) -> None:
    messages = [_user(None, "What shape is on the left?"), _assistant("A circle."), _user("And its colour?")]
    _compare(fn, env, messages, True, "a follow-up question")


def check_no_generation_prompt(fn, env: Env) -> None:
    messages = [_user(None, "What shape is it?"), _assistant("A square.")]
    _compare(fn, env, messages, False, "a finished conversation, for training")
    _compare(fn, env, [_user(None, "Describe the image.")], False, "no generation prompt")


def check_images_first(fn, env: Env) -> None:
    _compare(fn, env, [_user("Compare these:", None, None)], True, "two images after the text")
    _compare(fn, env, [_user("Look.", None, "Which is bigger?")], True, "an image between two texts")


def check_system(fn, env: Env) -> None:
    messages = [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
                _user(None, "What colour is the square?")]
    _compare(fn, env, messages, True, "a system message")


def check_inputs_unchanged(fn, env: Env) -> None:
    messages = [_user(None, "What is it?"), _assistant("A circle."), _user("Where?")]
    before = copy.deepcopy(messages)
    fn(messages, True)
    if messages != before:
        raise CheckFailed("build_prompt changed the messages it was given (pop, append or edit in place)")


def check_random(fn, env: Env) -> None:
    for _ in range(40):
        messages, generation = conversation(env)
        _compare(fn, env, messages, generation, "a random conversation")


CHECKS = [
    Check("single_turn", 2, "one question about one image: 'USER: <image>\\n... ASSISTANT:'",
          "the role in upper case and ': ', one '<image>\\n' per image, the text and a space, then 'ASSISTANT:'",
          check_single_turn),
    Check("multi_turn", 2, "a follow-up: every turn, the answers included, in order",
          "loop over the messages; an assistant message is 'ASSISTANT: ' + its text + ' '", check_multi_turn),
    Check("no_generation_prompt", 1, "add_generation_prompt=False ends after the last message",
          "append 'ASSISTANT:' only when add_generation_prompt is true", check_no_generation_prompt),
    Check("images_first", 1, "in a message, every image comes first, then every text",
          "two passes over a message's content: the images, then the texts (each text + ' ')", check_images_first),
    Check("system", 1, "a system message has no role prefix",
          "write 'ROLE: ' for every role but 'system'", check_system),
    Check("inputs_unchanged", 1, "leaves the messages unchanged",
          "read the messages; do not pop, append or edit them", check_inputs_unchanged),
    Check("random", 2, "equals the chat template on 40 new random conversations",
          "the same rules for every message; texts are copied as they are (spaces, newlines, braces)",
          check_random, visible=False),
]
