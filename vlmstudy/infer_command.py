"""``vlmstudy infer``: the fine-tuning guide's inference command, on :class:`vlmstudy.MultiModalModel`.

::

    vlmstudy infer --model_path outputs/llava_finetuned/final_model --model_type llava --image test.jpg
    vlmstudy infer --model_path ... --image test.jpg --question "what colour is the circle?"
    vlmstudy infer --model_path ... --image test.jpg --prompt "List the shapes."
    vlmstudy infer --model_path ...        # interactive: one request per line on stdin
        describe PATH
        ask PATH QUESTION
        prompt PATH TEXT
        quit

PATH may be quoted ("my image.png"). In the interactive mode each answer is one line on stdout and
a failed request one ``error: ...`` line on stderr, after which the loop goes on (exit code 1 at
the end if any failed). The one-shot form exits 2 on a bad image or model, like ``describe`` / ``ask``.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError, VlmStudyError

INTERACTIVE_HELP = ("requests: describe PATH | ask PATH QUESTION | prompt PATH TEXT | help | quit "
                    "(PATH may be quoted)")


def add_commands(subparsers) -> None:
    from .inference_commands import _add_generation_options

    p = subparsers.add_parser("infer", help="the guide's inference command: describe / ask / prompt, or interactive",
                              description="Run a (fine-tuned) model on an image: --image alone describes it, "
                                          "--question asks, --prompt runs a custom prompt; without --image, reads "
                                          f"requests from stdin. {INTERACTIVE_HELP}.")
    p.add_argument("--model_path", "--model-path", "--model_name", "--model-name", "--model", dest="model_path",
                   default="llava", metavar="PATH_OR_NAME",
                   help="a model folder (a fine-tune's final_model) or a zoo name / Hub id (default: llava)")
    p.add_argument("--model_type", "--model-type", dest="model_type", default=None, metavar="TYPE",
                   help="llava | llava-next | blip2 | instructblip | blip: checked against the model")
    p.add_argument("--image", default=None, help="the image (without it: interactive mode)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--question", default=None, help="ask this question about the image")
    what.add_argument("--prompt", default=None, help="a custom prompt (the chat template wraps it for LLaVA)")
    p.add_argument("--max_new_tokens", dest="max_new_tokens_guide", type=int, default=None, help=argparse.SUPPRESS)
    _add_generation_options(p)
    p.set_defaults(func=_infer)


def _generation(args) -> dict:
    from .inference_commands import _generation as base

    out = base(args)
    if args.max_new_tokens_guide is not None:
        out["max_new_tokens"] = args.max_new_tokens_guide
    return out


def run_request(model, kind: str, image, text: str | None, generation: dict) -> str:
    if kind == "describe":
        return model.describe(image, **generation)
    if kind == "ask":
        return model.ask(image, text, **generation)
    return model.inference.generate(image, text, **generation)


def split_path(rest: str) -> tuple[str, str]:
    """``'"my image.png" what is it?'`` -> ``("my image.png", "what is it?")``; unquoted: the first word."""
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ConfigError(f"unclosed quote in {rest!r}")
        return rest[1:end], rest[end + 1:].strip()
    path, _, tail = rest.partition(" ")
    return path, tail.strip()


def parse_request(line: str) -> tuple[str, str, str | None]:
    """``(kind, image path, question or prompt)`` of one interactive line."""
    kind, _, rest = line.strip().partition(" ")
    kind = kind.lower()
    if kind not in ("describe", "ask", "prompt"):
        raise ConfigError(f"unknown request {kind!r}; {INTERACTIVE_HELP}")
    if not rest.strip():
        raise ConfigError(f"{kind} needs an image path: {kind} PATH{'' if kind == 'describe' else ' TEXT'}")
    path, text = split_path(rest)
    if kind != "describe" and not text:
        raise ConfigError(f"{kind} needs text after the image path: {kind} PATH {'QUESTION' if kind == 'ask' else 'TEXT'}")
    if kind == "describe" and text:
        raise ConfigError("describe takes only an image path (quote a path with spaces); to ask, use: ask PATH QUESTION")
    return kind, path, text or None


def _infer(args) -> int:
    from .images import load_image
    from .inference_commands import _one_line, _quiet_loading
    from .multimodal import MultiModalModel

    generation = _generation(args)
    if args.image is None and (args.question or args.prompt):
        raise ConfigError("--question and --prompt need --image (without --image, infer reads requests from stdin: "
                          f"{INTERACTIVE_HELP}).")
    with _quiet_loading():
        image = load_image(args.image) if args.image is not None else None   # a bad image fails before loading
        model = MultiModalModel(model_name=args.model_path, model_type=args.model_type)
        if image is not None:
            kind = "ask" if args.question else "prompt" if args.prompt else "describe"
            print(run_request(model, kind, image, args.question or args.prompt, generation))
            return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"{model!r} ready; {INTERACTIVE_HELP}", file=sys.stderr, flush=True)
    failed = False
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() in ("quit", "exit", "/quit"):
            break
        if line.lower() in ("help", "/help"):
            print(INTERACTIVE_HELP, file=sys.stderr, flush=True)
            continue
        try:
            kind, path, text = parse_request(line)
            with _quiet_loading():
                print(run_request(model, kind, load_image(path), text, generation), flush=True)
        except VlmStudyError as err:
            failed = True
            print(f"error: {_one_line(err)}", file=sys.stderr, flush=True)
    return 1 if failed else 0
