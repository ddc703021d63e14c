"""Checks for exercise 15: a per-kind accuracy table with 95 % confidence intervals (notebook 12).

* ``wilson_interval(correct, n, z=1.96) -> (low, high)``: the Wilson score interval of a
  proportion, the one the course's tables print (its endpoints are the proportions ``p`` for
  which ``(correct / n - p) ** 2 == z ** 2 * p * (1 - p) / n``, which a check solves
  independently of any formula); ``ValueError`` for ``n < 1`` or ``correct`` outside ``0 .. n``.
  The interval the usual mistake gives, ``p +- z sqrt(p (1 - p) / n)`` (Wald), is ``(0, 0)`` at
  ``correct = 0`` and leaves ``[0, 1]`` near the edges: the checks tell them apart.
* ``accuracy_table(kinds, correct) -> dict``: one row per question kind, sorted by kind,
  ``{kind: {"n", "correct", "accuracy", "low", "high"}}``; ``ValueError`` when the two lists
  differ in length or are empty.

The package's own versions (``vlmstudy.pointing._wilson``, :func:`vlmstudy.evaluation.accuracy_by_kind`)
are out of reach while graded.
"""

from __future__ import annotations

import math

from .core import Check, CheckFailed, Env

INTERVAL_TARGET = "wilson_interval"
TABLE_TARGET = "accuracy_table"
KINDS = ["color", "count", "exists", "position", "shape", "size"]
ROW_KEYS = ("n", "correct", "accuracy", "low", "high")


def reference(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval, written out."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _interval(fn, correct, n, z=None) -> tuple[float, float]:
    got = fn(correct, n) if z is None else fn(correct, n, z)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in got):
        raise CheckFailed(f"wilson_interval({correct}, {n}) returned {got!r}; return (low, high), two floats")
    return float(got[0]), float(got[1])


def _expect(fn, correct, n, z=None, what="") -> None:
    got = _interval(fn, correct, n, z)
    want = reference(correct, n, 1.96 if z is None else z)
    if not all(math.isclose(g, w, abs_tol=1e-9) for g, w in zip(got, want)):
        zs = "" if z is None else f", z={z}"
        raise CheckFailed(f"{what}wilson_interval({correct}, {n}{zs}) gave ({got[0]:.5f}, {got[1]:.5f}), expected "
                          f"({want[0]:.5f}, {want[1]:.5f})")


def check_middle(fn, env: Env) -> None:
    for correct, n in ((45, 100), (7, 20), (150, 200)):
        _expect(fn, correct, n)


def check_score_equation(fn, env: Env) -> None:
    z = 1.96
    for correct, n in ((3, 10), (61, 80), (1, 4)):
        low, high = _interval(fn, correct, n)
        p_hat = correct / n
        if not low <= p_hat <= high:
            raise CheckFailed(f"wilson_interval({correct}, {n}) = ({low:.4f}, {high:.4f}) does not hold the observed "
                              f"accuracy {p_hat:.4f}")
        for p in (low, high):
            gap = (p_hat - p) ** 2 - z * z * p * (1 - p) / n
            if abs(gap) > 1e-9:
                raise CheckFailed(f"wilson_interval({correct}, {n}): the endpoint {p:.5f} is not a p with (p_hat - p)^2 "
                                  f"= z^2 p (1 - p) / n (off by {gap:.2g}): is it the Wald interval p_hat +- z SE?")


def check_edges(fn, env: Env) -> None:
    for n in (5, 40):
        low, high = _interval(fn, 0, n)
        want = 1.96 ** 2 / (n + 1.96 ** 2)
        if abs(low) > 1e-12 or not math.isclose(high, want, rel_tol=1e-9):
            raise CheckFailed(f"0 right out of {n} gave ({low:.5f}, {high:.5f}), expected (0, {want:.5f}): the interval "
                              "does not shrink to a point at 0 %")
        low, high = _interval(fn, n, n)
        if abs(high - 1.0) > 1e-12 or not math.isclose(low, 1 - want, rel_tol=1e-9):
            raise CheckFailed(f"{n} right out of {n} gave ({low:.5f}, {high:.5f}), expected ({1 - want:.5f}, 1)")
        if not (0.0 <= low <= high <= 1.0):
            raise CheckFailed(f"{n} out of {n} gave ({low}, {high}), outside [0, 1]: clip the rounding")


def check_z(fn, env: Env) -> None:
    _expect(fn, 30, 50, z=1.0, what="a 68 % interval: ")
    _expect(fn, 30, 50, z=2.576, what="a 99 % interval: ")


def check_bad_input(fn, env: Env) -> None:
    for correct, n in ((0, 0), (5, 3), (-1, 10)):
        try:
            got = fn(correct, n)
        except Exception as err:  # graded, the learner's error arrives by its type name only
            if isinstance(err, ValueError) or type(err).__name__ == "ValueError":
                continue
            raise
        raise CheckFailed(f"wilson_interval({correct}, {n}) gave {got!r}; raise ValueError when n < 1 or correct is not "
                          "between 0 and n")


def check_random_interval(fn, env: Env) -> None:
    for _ in range(8):
        n = int(env.rng.integers(1, 500))
        _expect(fn, int(env.rng.integers(0, n + 1)), n, z=float(env.rng.choice([1.0, 1.645, 1.96, 2.576])))


INTERVAL_CHECKS = [
    Check("middle", 2, "Wilson's interval at 45/100, 7/20 and 150/200",
          "centre = (p + z²/2n) / (1 + z²/n); half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)", check_middle),
    Check("score_equation", 1, "its endpoints solve (p_hat - p)² = z² p (1 - p) / n",
          "not the Wald interval p_hat +- z sqrt(p_hat (1 - p_hat) / n): Wilson's uses p, not p_hat, in the error",
          check_score_equation),
    Check("edges", 1, "0 % and 100 %: a real interval, inside [0, 1]",
          "Wilson's interval at 0/n is (0, z² / (n + z²)); clip rounding with max(0, .) and min(1, .)", check_edges),
    Check("z", 1, "other confidence levels through z",
          "use the argument z everywhere (1.96 is only its default)", check_z),
    Check("bad_input", 1, "n < 1, or correct outside 0..n, raises ValueError",
          "raise ValueError(...) with a message that says what was wrong", check_bad_input),
    Check("random", 2, "equals Wilson's interval on new counts and z",
          "the same formula for every n, count and z", check_random_interval, visible=False),
]


# ----------------------------------------------------------------------------- the table

def reference_table(kinds, correct) -> dict:
    rows = {}
    for kind in sorted(set(kinds)):
        flags = [bool(c) for k, c in zip(kinds, correct) if k == kind]
        n, right = len(flags), sum(flags)
        low, high = reference(right, n)
        rows[kind] = {"n": n, "correct": right, "accuracy": right / n, "low": low, "high": high}
    return rows


def _records(env: Env, n: int, kinds=None) -> tuple[list[str], list[bool]]:
    kinds = kinds or KINDS
    share = {k: float(env.rng.uniform(0.1, 0.95)) for k in kinds}
    names = [str(k) for k in env.rng.choice(kinds, size=n)]
    return names, [bool(env.rng.random() < share[k]) for k in names]


def _table(fn, kinds, correct) -> dict:
    got = fn(list(kinds), list(correct))
    if not isinstance(got, dict):
        raise CheckFailed(f"accuracy_table returned {type(got).__name__}; return a dict {{kind: row}}")
    for kind, row in got.items():
        if not isinstance(row, dict) or not set(ROW_KEYS) <= set(row):
            raise CheckFailed(f"the row of {kind!r} is {row!r:.80}; each row is a dict with keys {', '.join(ROW_KEYS)}")
    return got


def _expect_table(fn, kinds, correct, what: str, keys=ROW_KEYS) -> None:
    got, want = _table(fn, kinds, correct), reference_table(kinds, correct)
    if set(got) != set(want):
        raise CheckFailed(f"{what}: rows for {sorted(map(str, got))}, the questions have the kinds {sorted(want)}")
    for kind, row in want.items():
        for key in keys:
            if not math.isclose(float(got[kind][key]), float(row[key]), abs_tol=1e-9):
                raise CheckFailed(f"{what}: {kind} {key} = {got[kind][key]!r}, expected {row[key]!r:.6}")


def check_counts(fn, env: Env) -> None:
    kinds = ["color", "count", "color", "shape", "count", "color"]
    correct = [True, False, True, True, True, False]
    _expect_table(fn, kinds, correct, "6 questions", keys=("n", "correct", "accuracy"))
    _expect_table(fn, *_records(env, 60), "60 questions", keys=("n", "correct", "accuracy"))


def check_table_intervals(fn, env: Env) -> None:
    _expect_table(fn, *_records(env, 80), "80 questions")
    _expect_table(fn, ["size"] * 12, [False] * 12, "12 wrong answers")


def check_sorted(fn, env: Env) -> None:
    kinds = ["shape", "color", "size", "color", "exists"]
    got = _table(fn, kinds, [True, False, True, True, False])
    if list(got) != sorted(set(kinds)):
        raise CheckFailed(f"the rows come as {list(got)}; sort them by kind: {sorted(set(kinds))}")


def check_table_bad_input(fn, env: Env) -> None:
    for kinds, correct in ((["color", "shape"], [True]), ([], [])):
        try:
            got = fn(kinds, correct)
        except Exception as err:  # graded, the learner's error arrives by its type name only
            if isinstance(err, ValueError) or type(err).__name__ == "ValueError":
                continue
            raise
        raise CheckFailed(f"accuracy_table({kinds}, {correct}) gave {got!r:.80}; raise ValueError when the lists differ "
                          "in length or are empty")


def check_random_table(fn, env: Env) -> None:
    for _ in range(3):
        k = int(env.rng.integers(1, len(KINDS) + 1))
        kinds = [str(x) for x in env.rng.choice(KINDS, size=k, replace=False)]
        _expect_table(fn, *_records(env, int(env.rng.integers(k, 300)), kinds), "new questions")


TABLE_CHECKS = [
    Check("counts", 2, "n, correct and accuracy per kind",
          "group the answers by kind; accuracy = correct / n", check_counts),
    Check("intervals", 1, "each row's low and high are its Wilson interval",
          "low, high = wilson_interval(correct, n) for each kind", check_table_intervals),
    Check("sorted", 1, "one row per kind present, sorted by kind",
          "for kind in sorted(set(kinds)): ...", check_sorted),
    Check("bad_input", 1, "lists of different lengths, or none, raise ValueError",
          "check len(kinds) == len(correct) > 0 first", check_table_bad_input),
    Check("random", 2, "right on new questions and kinds",
          "the same rows for any kinds", check_random_table, visible=False),
]
