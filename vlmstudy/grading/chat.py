"""Checks for exercise 02: ``MultimodalChatbot`` (a conversation about one image).

The learner's class keeps the given ``generate(prompt) -> str`` (runs the model on ``self.image``
and one prompt) and writes ``set_image``, ``chat``, ``clear_history``, keeping ``history``. The
checks swap ``generate`` for a recorder that returns known replies (a subclass made on the fly):
they see the exact prompt the model would read, so "the history is used" is tested on the
prompt, not on the answers of a weak stand-in. The prompt must be the processor's chat template
rendering of the whole conversation (:func:`vlmstudy.generation.chat_prompt`). The hidden run adds
an end-to-end check against :class:`vlmstudy.tasks.ChatSession` with the real (tiny) LLaVA.
"""

from __future__ import annotations

import numpy as np

from .core import Check, CheckFailed, Env
from .remote import with_methods

TARGET = "MultimodalChatbot"

QUESTIONS = ["what shape is on the left?", "and what colour is it?", "how many shapes are there?",
             "is there a red circle?", "what colour is the shape at the top?", "where is the blue square?"]
REPLIES = ["circle", "red", "two", "yes", "green", "on the right", "square", "no", "three", "blue"]


def _probe(cls, env: Env):
    """A learner chatbot whose ``generate`` records ``(prompt, image)`` and answers from a list."""
    model, processor = env.model("llava")
    replies = [str(r) for r in env.rng.permutation(REPLIES)]
    seen: list[tuple[str, object]] = []

    def generate(self, prompt):
        seen.append((prompt, getattr(self, "image", None)))
        return replies[(len(seen) - 1) % len(replies)]

    probe = with_methods(cls, {"generate": generate})
    return probe(model, processor), seen, replies, processor


def _questions(env: Env, n: int) -> list[str]:
    return [str(q) for q in env.rng.permutation(QUESTIONS)[:n]]


def _image(env: Env, seed_offset: int = 0):
    from .. import shapes

    return shapes.make_scenes("test", 1, seed=int(env.rng.integers(1 << 30)) + seed_offset)[0].render()


def _expected(processor, turns) -> str:
    from ..generation import chat_prompt

    return chat_prompt(processor, turns, n_images=1)


def _pixels(image) -> np.ndarray | None:
    from ..images import load_image

    return None if image is None else np.asarray(load_image(image))


def _short(text: str, limit: int = 90) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[:limit - 5] + "...'"


def _prompt_problem(got, want: str, turn: int) -> str:
    if not isinstance(got, str):
        return f"turn {turn}: generate got {type(got).__name__}, not a prompt string"
    if got.count("<image>") != 1:
        return (f"turn {turn}: the prompt holds <image> {got.count('<image>')} times; the image goes once, in the "
                f"first user message. Prompt: {_short(got)}")
    return f"turn {turn}: the model read {_short(got)}; the chat template gives {_short(want)}"


def check_first_prompt(cls, env: Env) -> None:
    bot, seen, _, processor = _probe(cls, env)
    bot.set_image(_image(env))
    (question,) = _questions(env, 1)
    bot.chat(question)
    if len(seen) != 1:
        raise CheckFailed(f"one chat() called self.generate {len(seen)} times; expected once")
    want = _expected(processor, [(question, None)])
    if seen[0][0] != want:
        raise CheckFailed(_prompt_problem(seen[0][0], want, 1))


def check_returns_reply(cls, env: Env) -> None:
    bot, seen, replies, _ = _probe(cls, env)
    bot.set_image(_image(env))
    got = [bot.chat(q) for q in _questions(env, 2)]
    if got != replies[:2]:
        raise CheckFailed(f"chat() returned {got!r}; the model answered {replies[:2]!r}")


def _history(bot) -> list:
    history = getattr(bot, "history", None)
    if history is None:
        raise CheckFailed("the chatbot has no .history attribute")
    try:
        return [tuple(turn) for turn in history]
    except TypeError:
        raise CheckFailed(f"history should be a list of (user, assistant) pairs, not {history!r:.80}") from None


def check_history_kept(cls, env: Env) -> None:
    bot, _, replies, _ = _probe(cls, env)
    bot.set_image(_image(env))
    questions = _questions(env, 2)
    for q in questions:
        bot.chat(q)
    want = list(zip(questions, replies[:2]))
    if _history(bot) != want:
        raise CheckFailed(f"after two turns, history is {_history(bot)!r:.160}; expected {want!r}")


def check_history_used(cls, env: Env) -> None:
    bot, seen, replies, processor = _probe(cls, env)
    bot.set_image(_image(env))
    questions = _questions(env, 3)
    for q in questions:
        bot.chat(q)
    for turn in (2, 3):
        done = list(zip(questions[:turn - 1], replies[:turn - 1]))
        want = _expected(processor, done + [(questions[turn - 1], None)])
        got = seen[turn - 1][0]
        if got != want:
            if isinstance(got, str) and questions[0] not in got:
                raise CheckFailed(f"turn {turn}: the prompt does not contain the first question, so the model cannot "
                                  f"know what 'it' means. Prompt: {_short(got)}")
            raise CheckFailed(_prompt_problem(got, want, turn))


def check_clear(cls, env: Env) -> None:
    bot, seen, _, processor = _probe(cls, env)
    image = _image(env)
    bot.set_image(image)
    first, second, third = _questions(env, 3)
    bot.chat(first)
    bot.chat(second)
    bot.clear_history()
    if _history(bot):
        raise CheckFailed(f"after clear_history(), history still holds {len(_history(bot))} turn(s)")
    bot.chat(third)
    want = _expected(processor, [(third, None)])
    if seen[-1][0] != want:
        raise CheckFailed("after clear_history() the next prompt still carries old turns: "
                          + _prompt_problem(seen[-1][0], want, 1))
    pixels = _pixels(seen[-1][1])
    if pixels is None or not np.array_equal(pixels, _pixels(image)):
        raise CheckFailed("after clear_history() the image is gone or changed; clearing forgets the conversation only")


def check_set_image(cls, env: Env) -> None:
    bot, seen, _, processor = _probe(cls, env)
    first_image, second_image = _image(env), _image(env, seed_offset=1)
    bot.set_image(first_image)
    a, b = _questions(env, 2)
    bot.chat(a)
    bot.set_image(second_image)
    if _history(bot):
        raise CheckFailed("set_image(new image) kept the old conversation; a new image starts a new one")
    bot.chat(b)
    if seen[-1][0] != _expected(processor, [(b, None)]):
        raise CheckFailed("after set_image(new image) the prompt still carries the old turns")
    pixels = _pixels(seen[-1][1])
    if pixels is None or not np.array_equal(pixels, _pixels(second_image)):
        raise CheckFailed("after set_image(new image) the model still sees the old image (self.image)")


def check_real_llava(cls, env: Env) -> None:
    from ..tasks import ChatSession

    model, processor = env.model("llava")
    image = _image(env)
    bot = cls(model, processor)
    bot.set_image(image)
    session = ChatSession((model, processor), max_new_tokens=int(getattr(bot, "max_new_tokens", 16))).set_image(image)
    for q in _questions(env, 2):
        got, want = bot.chat(q), session.ask(q)
        if got != want:
            raise CheckFailed(f"with the real LLaVA, {q!r} got {got!r}; vlmstudy.tasks.ChatSession answers {want!r} to "
                              "the same conversation")


CHECKS = [
    Check("first_prompt", 2, "the first prompt is the chat template with the image",
          "render [(message, None)] with vlmstudy.generation.chat_prompt(self.processor, turns) (or the processor's "
          "apply_chat_template, image first, add_generation_prompt=True) and pass it to self.generate", check_first_prompt),
    Check("returns_reply", 1, "chat() returns the model's reply",
          "return the string self.generate(prompt) gave back", check_returns_reply),
    Check("history_kept", 1, "history holds the finished (user, assistant) turns",
          "append (message, reply) to self.history after every turn", check_history_kept),
    Check("history_used", 2, "every prompt holds the whole conversation so far",
          "render self.history + [(message, None)], not only the new message: the model has no memory",
          check_history_used),
    Check("clear", 2, "clear_history() forgets the turns and keeps the image",
          "set self.history to an empty list (and anything else that feeds the prompt); leave self.image",
          check_clear),
    Check("set_image", 1, "set_image() switches the image and starts a new conversation",
          "store the new image in self.image and empty the history", check_set_image),
    Check("real_llava", 1, "with the real LLaVA, the same replies as vlmstudy.tasks.ChatSession",
          "build the prompt with the chat template from the whole history and call self.generate", check_real_llava,
          visible=False),
]
