"""Checks for exercise 06: VQA answer normalisation and matching (notebook 05's scoring).

``normalize_answer(text) -> str`` and ``answer_matches(answer, truth) -> bool``, written by the
learner from the rules of the official VQA evaluation script. The reference is the package's own
:func:`vlmstudy.evaluation.normalize_answer` / :func:`~vlmstudy.evaluation.answer_matches`
(out of reach while the exercise is graded). Every rule has its own visible check on fixed
strings; the hidden run adds random answers built from the same rules (case, spacing,
punctuation, number words, articles, thousands, decimals, contractions), compared with the
reference one by one, so a learner cannot pass by listing the visible cases.
"""

from __future__ import annotations

from .core import Check, CheckFailed, Env

NORMALIZE_TARGET = "normalize_answer"
MATCH_TARGET = "answer_matches"

WORDS = ["red", "green", "blue", "yellow", "circle", "circles", "square", "triangle", "left", "right", "top",
         "bottom", "shape", "shapes", "there", "is", "are", "it", "on", "of", "yes", "no", "theatre", "another",
         "someone", "twenty", "bigger", "dont", "isnt", "thats", "whats", "cant", "don't", "it's", "What's"]
NUMBER_WORDS = ["none", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ARTICLES = ["a", "an", "the", "A", "The", "AN"]
NUMBERS = ["1,000", "12,500", "1,000,000", "3.5", "0.25", "7", "42", "2."]
PUNCTUATION = list(";/[]\"{}()=+\\_-><@`,?!*#%^&$:|~'.")
SPACES = [" ", "  ", "\t", "\n", " \n "]


def _reference():
    from .. import evaluation

    return evaluation.normalize_answer, evaluation.answer_matches


def _answer(env: Env, words: int | None = None) -> str:
    """A random answer made of the pieces the rules are about (never an ambiguous edge case:
    thousands come in groups of three digits, a decimal point has a digit before it)."""
    rng = env.rng
    n = int(words if words is not None else rng.integers(1, 7))
    out = []
    for _ in range(n):
        pool = (WORDS, NUMBER_WORDS, ARTICLES, NUMBERS)[int(rng.choice(4, p=[0.55, 0.2, 0.15, 0.1]))]
        word = str(pool[int(rng.integers(len(pool)))])
        case = rng.random()
        word = word.upper() if case < 0.1 else word.capitalize() if case < 0.25 else word
        if rng.random() < 0.25:
            word += str(PUNCTUATION[int(rng.integers(len(PUNCTUATION)))])
        if rng.random() < 0.08:
            word = str(PUNCTUATION[int(rng.integers(len(PUNCTUATION) - 2))]) + word
        out.append(word)
        out.append(str(SPACES[int(rng.integers(len(SPACES)))]) if rng.random() < 0.3 else " ")
    return ("  " if rng.random() < 0.2 else "") + "".join(out).rstrip(" ") + (
        str(rng.choice(["?", ".", "!", ""])) if rng.random() < 0.5 else "")


def _normalized(fn, text) -> str:
    got = fn(text)
    if not isinstance(got, str):
        raise CheckFailed(f"normalize_answer({text!r}) returned {type(got).__name__}; return a str")
    return got


def _expect(fn, cases, what: str) -> None:
    for text, want in cases:
        got = _normalized(fn, text)
        if got != want:
            raise CheckFailed(f"{what}: normalize_answer({text!r}) gave {got!r}, expected {want!r}")


def check_case_space(fn, env: Env) -> None:
    _expect(fn, [("Red", "red"), ("  BLUE  square ", "blue square"), ("green\ncircle", "green circle"),
                 ("left\t\tright", "left right"), ("", "")], "lower case, one space between words")


def check_punctuation(fn, env: Env) -> None:
    _expect(fn, [("red!", "red"), ("yes, it is.", "yes it is"), ("left/right", "left right"),
                 ("(blue)", "blue"), ("it's red", "its red"), ("3.5", "3.5"), ("end. 0.25", "end 0.25"),
                 ("circle.square", "circle square"), ("2.", "2")], "punctuation")


def check_numbers(fn, env: Env) -> None:
    _expect(fn, [("two", "2"), ("Three circles", "3 circles"), ("none", "0"), ("ten", "10"),
                 ("someone", "someone"), ("twenty", "twenty"), ("one, two", "1 2")], "number words")


def check_articles(fn, env: Env) -> None:
    _expect(fn, [("a red circle", "red circle"), ("The square", "square"), ("an apple", "apple"),
                 ("another theatre", "another theatre"), ("the the a", "")], "articles")


def check_thousands(fn, env: Env) -> None:
    _expect(fn, [("1,000", "1000"), ("12,500 shapes", "12500 shapes"), ("1,000,000", "1000000"),
                 ("red,blue", "red blue"), ("2, 3", "2 3")], "thousands separators")


def check_contractions(fn, env: Env) -> None:
    _expect(fn, [("dont", "don't"), ("don't", "don't"), ("isnt it", "isn't it"), ("Whats that", "what's that"),
                 ("That's", "that's")], "contractions")


def check_not_a_string(fn, env: Env) -> None:
    _expect(fn, [(None, ""), (3, "3"), (2.5, "2.5")], "an answer that is not a str")


def check_random_answers(fn, env: Env) -> None:
    reference, _ = _reference()
    for _ in range(150):
        text = _answer(env)
        got, want = _normalized(fn, text), reference(text)
        if got != want:
            raise CheckFailed(f"normalize_answer({text!r}) gave {got!r}, the VQA rules give {want!r}")


NORMALIZE_CHECKS = [
    Check("case_space", 1, "lower case, whitespace collapsed to single spaces",
          "text.lower(), then ' '.join(text.split()) at the end", check_case_space),
    Check("punctuation", 2, "punctuation becomes a space, an apostrophe goes, a decimal point stays",
          "replace each PUNCTUATION character by ' ' (the apostrophe by ''); remove a '.' unless a digit follows it "
          "(re.sub(r'\\.(?!\\d)', ' ', text))", check_punctuation),
    Check("numbers", 1, "number words zero-ten (and 'none') become digits, whole words only",
          "map each word (after splitting) through NUMBER_WORDS; do not replace inside longer words", check_numbers),
    Check("articles", 1, "the articles a, an, the are dropped, whole words only",
          "drop words in ARTICLES after splitting ('another' stays)", check_articles),
    Check("thousands", 1, "a comma between digits goes first ('1,000' -> '1000'), other commas are punctuation",
          "before the punctuation step: re.sub(r'(\\d),(\\d)', r'\\1\\2', text)", check_thousands),
    Check("contractions", 1, "contractions written without the apostrophe get it back ('dont' -> \"don't\")",
          "after removing apostrophes, map each word through CONTRACTIONS", check_contractions),
    Check("not_a_string", 1, "None becomes '', a number its digits",
          "start with text = '' if text is None else str(text)", check_not_a_string),
    Check("random", 2, "equals the VQA rules on 150 new random answers",
          "apply the steps in the order of the notebook: lower, thousands, punctuation, full stops, then word by "
          "word (number words, articles, contractions)", check_random_answers, visible=False),
]


# ----------------------------------------------------------------------------- answer_matches

def _matches(fn, answer, truth) -> bool:
    got = fn(answer, truth)
    if not isinstance(got, bool):
        raise CheckFailed(f"answer_matches({answer!r}, {truth!r}) returned {type(got).__name__}; return True or False")
    return got


def _expect_match(fn, cases, what: str) -> None:
    for answer, truth, want in cases:
        got = _matches(fn, answer, truth)
        if got != want:
            raise CheckFailed(f"{what}: answer_matches({answer!r}, {truth!r}) gave {got}, expected {want}")


def check_equal(fn, env: Env) -> None:
    _expect_match(fn, [("Two.", "2", True), ("RED", "red", True), ("red", "blue", False),
                       ("a circle", "circle", True), ("1,000", "1000", True)], "equal after normalisation")


def check_inside(fn, env: Env) -> None:
    _expect_match(fn, [("It is a red circle.", "red circle", True), ("There are two shapes.", "2", True),
                       ("It is a red circle.", "red square", False), ("a circle that is red", "red circle", False),
                       ("on the left", "left", True)], "the truth inside a sentence")


def check_whole_words(fn, env: Env) -> None:
    _expect_match(fn, [("reddish", "red", False), ("circles", "circle", False), ("bigger", "big", False),
                       ("12 shapes", "2", False), ("the circle is big", "circle", True)], "whole words")


def check_yes_no(fn, env: Env) -> None:
    _expect_match(fn, [("yes and no", "yes", False), ("no, yes", "no", False), ("Yes, it is.", "yes", True),
                       ("no", "yes", False), ("No.", "no", True)], "yes/no")


def check_empty(fn, env: Env) -> None:
    _expect_match(fn, [("", "", True), ("something", "", False), ("", "red", False), ("!?", "", True)],
                  "empty answers")


def check_random_pairs(fn, env: Env) -> None:
    _, reference = _reference()
    for _ in range(150):
        truth = _answer(env, int(env.rng.integers(1, 3)))
        kind = env.rng.random()
        if kind < 0.4:  # the truth inside a sentence, or its words shuffled, or a random other answer
            answer = _answer(env, 2) + " " + truth + " " + _answer(env, 1)
        elif kind < 0.6:
            answer = " ".join(env.rng.permutation(truth.split()).tolist() + [_answer(env, 1)])
        elif kind < 0.75:
            truth = str(env.rng.choice(["yes", "no", "Yes", "No."]))
            answer = " ".join([_answer(env, 1), str(env.rng.choice(["yes", "no", "Yes,", "NO"])), _answer(env, 1)])
        else:
            answer = _answer(env)
        got, want = _matches(fn, answer, truth), reference(answer, truth)
        if got != want:
            raise CheckFailed(f"answer_matches({answer!r}, {truth!r}) gave {got}, the VQA rules give {want}")


MATCH_CHECKS = [
    Check("equal", 1, "True when the two are equal after normalize_answer",
          "normalise both with your normalize_answer and compare; return a bool", check_equal),
    Check("inside", 2, "True when the truth's words appear, whole and in order, inside the answer",
          "look for the truth's word list as a contiguous slice of the answer's word list", check_inside),
    Check("whole_words", 1, "whole words only: 'reddish' does not say 'red'",
          "compare lists of words, not substrings of the text", check_whole_words),
    Check("yes_no", 1, "a yes/no truth must not come with its opposite",
          "if the truth is 'yes' (or 'no') and the answer's words hold the other one, return False", check_yes_no),
    Check("empty", 1, "an empty truth matches only an empty answer",
          "after normalising: equal is True; otherwise an empty truth or answer is False", check_empty),
    Check("random", 2, "equals the VQA rules on 150 new random (answer, truth) pairs",
          "equal, else (neither empty) the yes/no rule, else the truth's words as a slice of the answer's",
          check_random_pairs, visible=False),
]
