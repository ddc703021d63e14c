"""``vlmstudy exercises build | grade | list``: the graded exercises on the command line."""

from __future__ import annotations

import json

from .grader import DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT
from .sandbox import MEMORY_LIMIT


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("exercises", help="build the exercise notebooks, grade a submission",
                              description="The graded exercises: exercises/ (learner) and solutions/ (instructor) "
                                          "are built from tools/exercises/; a submission is graded in a fresh kernel.")
    sub = p.add_subparsers(dest="exercises_command", metavar="ACTION")
    p.set_defaults(func=lambda args: p.print_help())

    b = sub.add_parser("build", help="write exercises/NN_*.ipynb and solutions/NN_*.ipynb from tools/exercises/",
                       description="Write the learner's notebooks (stubs, no hidden tests) and the instructor's "
                                   "(full code, executed: outputs stored) from the masters in tools/exercises/. "
                                   "They are written into the repository this vlmstudy package was imported from "
                                   "(the checkout of an editable install), whatever the current directory.")
    b.add_argument("names", nargs="*", metavar="NAME", help="only these exercises (01 or 01_clip_search); default all")
    b.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a built notebook differs from its master")
    b.add_argument("--no-execute", action="store_true", help="write the solutions without running them (no outputs)")
    b.set_defaults(func=_build)

    g = sub.add_parser("grade", help="grade submitted notebooks: each runs confined, the checks run outside it",
                       description="Run each SUBMISSION.ipynb in a fresh, confined process (bubblewrap: no network, "
                                   "read-only system, no repository, its own /tmp; time and memory limits), then "
                                   "every check of its exercise (hidden ones included) on new data, in the grader's "
                                   "own process, and print a score table. A crash, a dead process, a timeout or a "
                                   "call to the package's own reference scores 0 for that part.")
    g.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb")
    g.add_argument("--exercise", help="which exercise (default: the notebook's metadata, else its file name)")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per cell and per part (default {DEFAULT_TIMEOUT}); a check may take a third of it")
    g.add_argument("--total-timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT,
                   help=f"seconds for the whole grade of one submission (default {DEFAULT_TOTAL_TIMEOUT})")
    g.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT / 2 ** 30, metavar="GIB",
                   help=f"address space of a submission's process, GiB (default {MEMORY_LIMIT / 2 ** 30:g})")
    g.add_argument("--seed", type=int, help="data of the hidden checks (default: a new seed, printed)")
    g.add_argument("--csv", metavar="FILE", help="also write one row per submission (points per part) to FILE")
    g.add_argument("--json", action="store_true", help="print the grade (a list for several) as JSON instead of a table")
    g.add_argument("-v", "--verbose", action="store_true", help="say what the grader does while it runs")
    g.set_defaults(func=_grade)

    ls = sub.add_parser("list", help="list the exercises, their parts and points")
    ls.set_defaults(func=_list)


def _build(args) -> int:
    from ..settings import REPO_DIR
    from .build import build_all, stale

    if args.check:
        found = stale()
        if found:
            print("out of date (run vlmstudy exercises build): "
                  + ", ".join(str(p.relative_to(REPO_DIR)) for p in found))
            return 1
        print("exercises/ and solutions/ match tools/exercises/")
        return 0
    build_all(args.names or None, execute=not args.no_execute)
    return 0


def _grade(args) -> int:
    import sys

    from .grader import GradingError, grade, grade_many, write_csv

    if args.timeout <= 0 or args.total_timeout <= 0 or args.memory_limit <= 0:
        raise GradingError("--timeout, --total-timeout and --memory-limit must be positive numbers.")
    log = (lambda line: print(f"grade: {line}", file=sys.stderr)) if args.verbose else None
    options = dict(exercise=args.exercise, timeout=args.timeout, total_timeout=args.total_timeout, seed=args.seed,
                   log=log, memory=int(args.memory_limit * 2 ** 30))
    if len(args.submissions) == 1 and not args.csv:  # one notebook: an error is the command's error
        results = [grade(args.submissions[0], **options)]
    else:
        results = grade_many(args.submissions, **options)
    if args.json:
        data = [r.to_dict() if not isinstance(r, GradingError) else {"path": p, "error": str(r)}
                for p, r in zip(args.submissions, results)]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1, ensure_ascii=False))
    else:
        for path, r in zip(args.submissions, results):
            print(f"{path}: error: {r}" if isinstance(r, GradingError) else r.table())
    if args.csv:
        write_csv(args.csv, args.submissions, results)
        print(f"wrote {args.csv} ({len(results)} submissions)", file=sys.stderr)
    return 0 if not any(isinstance(r, GradingError) for r in results) else 2


def _list(args) -> int:
    from .registry import EXERCISES

    for ex in EXERCISES.values():
        print(f"{ex.name}  {ex.title}  ({ex.max_points} points)")
        for part in ex.parts:
            hidden = sum(c.points for c in part.checks if not c.visible)
            print(f"    {part.name}: {part.target}, {len(part.checks)} checks, {part.max_points} points "
                  f"({hidden} hidden)")
    return 0
