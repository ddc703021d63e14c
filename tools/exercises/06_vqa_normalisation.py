# %% [markdown]
# # Exercise 06 · Scoring VQA answers: normalisation and matching
#
# **Objective.** Write the answer scoring of notebook 05: a model that answers `"Two."` to a
# question whose truth is `"2"` is right, and exact string comparison says it is wrong. The
# official VQA evaluation (Antol et al., 2015, `vqaEval.py`) first brings every answer to a
# canonical form; the course then also accepts the truth *inside* a sentence, because chat
# models answer in sentences.
#
# 1. `normalize_answer(text) -> str`: the canonical form, `"Two red Circles."` -> `"2 red circles"`;
# 2. `answer_matches(answer, truth) -> bool`: does the answer say the truth?
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The two parts are graded separately; the
# grade also runs hidden checks on new random answers.

# %%
import re

from vlmstudy.grading import check_answer_matches, check_normalize_answer

# The tables of the official script (the ones the course uses)
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't",
    "isnt": "isn't", "shouldnt": "shouldn't", "thats": "that's", "theres": "there's", "wasnt": "wasn't",
    "werent": "weren't", "whats": "what's", "wont": "won't", "wouldnt": "wouldn't", "youre": "you're",
}
PUNCTUATION = ";/[]\"{}()=+\\_-><@`,?!*#%^&$:|~'"

# %% [markdown]
# ## Part 1: the canonical form
#
# In this order:
#
# 1. `None` becomes `""`, anything else `str(...)`; lower case; newlines and tabs become spaces;
# 2. a comma **between two digits** goes: `"1,000"` -> `"1000"` (`re.sub(r"(\d),(\d)", r"\1\2", text)`);
# 3. every character of `PUNCTUATION` becomes a space, except the apostrophe, which is removed
#    (`"it's"` -> `"its"`);
# 4. a full stop becomes a space unless a digit follows it (`"3.5"` stays, `"red."` does not);
# 5. word by word (split on whitespace): a number word becomes its digits (`NUMBER_WORDS`), an
#    article is dropped (`ARTICLES`), a contraction gets its apostrophe back (`CONTRACTIONS`);
# 6. join the words with single spaces.

# %%
def normalize_answer(text):
    ### BEGIN SOLUTION
    text = ("" if text is None else str(text)).lower().replace("\n", " ").replace("\t", " ")
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    for ch in PUNCTUATION:
        text = text.replace(ch, "" if ch == "'" else " ")
    text = re.sub(r"\.(?!\d)", " ", text)
    words = []
    for word in text.split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)
    ### END SOLUTION

# %%
check_normalize_answer(normalize_answer)

# %% [markdown]
# ## Part 2: does the answer say the truth?
#
# Normalise both (with your `normalize_answer`). Then:
#
# * equal: `True`; otherwise, if either is empty: `False`;
# * a truth `"yes"` (or `"no"`) is not said by an answer whose words hold the opposite
#   (`"yes and no"` says neither);
# * otherwise `True` when the truth's words appear **whole and in order** inside the answer's:
#   `"it is a red circle"` says `"red circle"` and `"circle"`, not `"red square"`, and
#   `"reddish"` does not say `"red"`.

# %%
def answer_matches(answer, truth):
    ### BEGIN SOLUTION
    said, true = normalize_answer(answer), normalize_answer(truth)
    if said == true:
        return True
    if not said or not true:
        return False
    words, target = said.split(), true.split()
    if true in ("yes", "no") and ({"yes", "no"} - {true}) & set(words):
        return False
    k = len(target)
    return any(words[i:i + k] == target for i in range(len(words) - k + 1))
    ### END SOLUTION

# %%
report = check_answer_matches(answer_matches)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(normalize_answer, "06_vqa_normalisation", "normalize_answer"))
hidden_checks(answer_matches, "06_vqa_normalisation", "answer_matches")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# Answers in the style of the course's models (a BLIP-style short answer, a LLaVA-style
# sentence) against their truths: exact comparison, then yours.

# %%
answers = ["Two.", "there are 2 shapes", "Red", "It is a blue square.", "yes, it is", "no", "a triangle",
           "The circle is on the left.", "3", "It's green."]
truths = ["2", "2", "red", "blue square", "yes", "yes", "triangle", "left", "three", "green"]
if report.passed:
    exact = sum(a == t for a, t in zip(answers, truths)) / len(truths)
    mine = sum(answer_matches(a, t) for a, t in zip(answers, truths)) / len(truths)
    print(f"exact string match: {exact:.0%}   VQA normalisation + matching: {mine:.0%}")
    for a, t in zip(answers, truths):
        print(f"  {a!r:32} truth {t!r:14} -> {answer_matches(a, t)}")
else:
    print("Finish answer_matches first: the checks above say what is missing.")
