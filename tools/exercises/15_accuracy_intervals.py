# %% [markdown]
# # Exercise 15 · A per-kind accuracy table with confidence intervals
#
# **Objective.** Report a model's results the way notebook 12 asks: not one accuracy, but one
# per question kind, each with how sure it is. 7 right out of 10 and 700 out of 1,000 are both
# 70 %, but the first could well be a 45 % model that was lucky. A **95 % confidence interval**
# says which true accuracies the count is compatible with; when two models' intervals overlap
# widely, the table cannot tell them apart.
#
# 1. `wilson_interval(correct, n, z=1.96) -> (low, high)`: the Wilson score interval, the one
#    the course's tables print;
# 2. `accuracy_table(kinds, correct) -> dict`: one row per question kind.
#
# Write your code where a cell says `raise NotImplementedError()`, run it, then run its check
# cell: points, and a hint for every check that fails. The checks solve the interval's defining
# equation independently of the formula; the grade also runs new counts, levels and questions.

# %%
import math
import random

from vlmstudy import evaluation, shapes, tasks
from vlmstudy.grading import check_accuracy_table, check_wilson_interval, load_quietly

# %% [markdown]
# ## Part 1: Wilson's interval
#
# The textbook interval `p ± z·sqrt(p(1 - p) / n)` (Wald's, with `p = correct / n`) breaks
# exactly where a model's table needs it: at 0 right out of 10 it is `(0, 0)`, certain of a
# perfect failure, and near 100 % it leaves `[0, 1]`. Wilson's interval keeps the unknown true
# accuracy `p` inside the error instead: its ends are the two `p` with
# `(correct / n - p)² = z² · p (1 - p) / n`, a quadratic whose solutions are
#
# `centre = (p̂ + z² / 2n) / (1 + z² / n)`, `half = z / (1 + z² / n) · sqrt(p̂ (1 - p̂) / n + z² / 4n²)`,
# and the interval `(centre - half, centre + half)`, with `p̂ = correct / n`.
#
# Clip the ends to `[0, 1]` (rounding), and raise `ValueError` when `n < 1` or `correct` is not
# between 0 and `n`. `z = 1.96` gives 95 %, 1.0 about 68 %, 2.576 99 %.

# %%
def wilson_interval(correct, n, z=1.96):
    ### BEGIN SOLUTION
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
    ### END SOLUTION

# %%
report = check_wilson_interval(wilson_interval)
report

# %% [markdown]
# ## Part 2: the table
#
# `kinds[i]` is the kind of question `i` (`"color"`, `"count"` ...) and `correct[i]` whether
# the model got it right. Return `{kind: {"n": ..., "correct": ..., "accuracy": ..., "low": ...,
# "high": ...}}`, one row per kind that occurs, in sorted order of the kinds, `low` and `high`
# from `wilson_interval`. Raise `ValueError` when the lists differ in length or are empty.

# %%
def accuracy_table(kinds, correct):
    ### BEGIN SOLUTION
    if len(kinds) != len(correct) or not kinds:
        raise ValueError(f"need one correct flag per question, got {len(kinds)} kinds and {len(correct)} flags")
    rows = {}
    for kind in sorted(set(kinds)):
        flags = [bool(c) for k, c in zip(kinds, correct) if k == kind]
        low, high = wilson_interval(sum(flags), len(flags))
        rows[kind] = {"n": len(flags), "correct": sum(flags), "accuracy": sum(flags) / len(flags), "low": low, "high": high}
    return rows
    ### END SOLUTION

# %%
table_report = check_accuracy_table(accuracy_table)
table_report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

print(hidden_checks(wilson_interval, "15_accuracy_intervals", "wilson_interval"))
hidden_checks(accuracy_table, "15_accuracy_intervals", "accuracy_table")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# The course's BLIP (VQA) on 40 test scenes, every question of each, scored as the course
# scores answers (`evaluation.answer_matches`): your table, then the same kinds on a random
# tenth of the questions. The accuracies move; the intervals say by how much they may.

# %%
if report.passed and table_report.passed:
    scenes = shapes.make_scenes("test", 40, seed=3)
    asked = [(s, qa) for s in scenes for qa in shapes.questions(s)]
    answers = tasks.answer_batch([s.render() for s, _ in asked], [qa.question for _, qa in asked],
                                 model=load_quietly("blip-vqa"), progress=False)
    kinds = [qa.kind for _, qa in asked]
    correct = [evaluation.answer_matches(a, qa.answer) for a, (_, qa) in zip(answers, asked)]
    tenth = random.Random(0).sample(range(len(kinds)), len(kinds) // 10)
    for title, rows in (("all questions", accuracy_table(kinds, correct)),
                        ("a random tenth of them", accuracy_table([kinds[i] for i in tenth], [correct[i] for i in tenth]))):
        print(f"{title}:")
        for kind, row in rows.items():
            print(f"  {kind:<9} {row['correct']:>4}/{row['n']:<4} {row['accuracy']:6.1%}   "
                  f"95 % CI {row['low']:6.1%} to {row['high']:6.1%}")
else:
    print("Finish both parts first: the checks above say what is missing.")
