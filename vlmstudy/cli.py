"""The ``vlmstudy`` command.

Each feature module brings its own subcommands: it is listed in :data:`COMMAND_MODULES` and
exposes ``add_commands(subparsers)``, which adds its parsers and gives each one
``set_defaults(func=...)``. ``func(args)`` returns an exit code (``None`` means 0). Example::

    def add_commands(subparsers):
        p = subparsers.add_parser("zoo", help="train, evaluate and list the tiny models")
        ...
        p.set_defaults(func=_zoo_table)

A listed module that does not exist (yet) is skipped; any other import error surfaces. Errors a
user can fix (:class:`vlmstudy.errors.VlmStudyError`) are printed as one line,
``error: <message>``, on stderr with exit code 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VlmStudyError

#: Modules whose ``add_commands(subparsers)`` adds subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: list[str] = [
    "vlmstudy.doctor",          # vlmstudy doctor
    "vlmstudy.zoo.commands",    # vlmstudy zoo train / evaluate / table
    "vlmstudy.finetune.commands",  # vlmstudy finetune (--config / --resume / --merge), vlmstudy data
    "vlmstudy.inference_commands",  # vlmstudy describe / ask / chat / serve
    "vlmstudy.infer_command",   # vlmstudy infer (the fine-tuning guide's spelling)
    "vlmstudy.apps",            # vlmstudy demo (the widget demos as a Voila app)
    "vlmstudy.apps.gradio",     # vlmstudy gradio (the ask-an-image app, Spaces-style)
    "vlmstudy.grading.commands",  # vlmstudy exercises build / grade / list
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _import_command_module(name: str):
    """Import ``name``; ``None`` when that module (or its package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        # only the listed module itself (or a package on its path, such as vlmstudy.grading for
        # vlmstudy.grading.commands) counts as "not written yet"; a missing dependency inside an
        # existing module is a real error and surfaces
        if missing != "vlmstudy" and (name == missing or name.startswith(missing + ".")):
            return None
        raise


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlmstudy",
        description="Helper command of the vlmstudy course on Vision-Language Models.",
    )
    parser.add_argument("--version", action="version", version=f"vlmstudy {__version__}")
    parser.add_argument(
        "--traceback", action="store_true",
        help="show the full Python traceback instead of a one-line error (for bug reports)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if modules is None else modules:
        module = _import_command_module(name)
        if module is None:
            continue
        add_commands = getattr(module, "add_commands", None)
        if not callable(add_commands):
            raise TypeError(f"{name} is listed in vlmstudy.cli.COMMAND_MODULES but has no add_commands(subparsers)")
        add_commands(subparsers)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    show_traceback = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        show_traceback = args.traceback
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0
        code = func(args)
    except VlmStudyError as err:
        if show_traceback:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
