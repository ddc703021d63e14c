"""``vlmstudy zoo ...``: table, train, evaluate, hubsim."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _table(args) -> int:
    from .table import zoo_table

    print(zoo_table(with_real=not args.no_real, markdown=args.markdown, metrics=args.metrics))
    return 0


def _train(args) -> int:
    import torch

    from .train import ORDER, train_model

    names = list(ORDER) if args.all else args.names
    if not names:
        print("error: name the models to train (e.g. `vlmstudy zoo train clip`) or pass --all", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.device:
        from .. import settings

        settings.set_device(args.device)
    start, failed = time.time(), []
    for name in sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        result = train_model(name, models_dir=args.models_dir, progress=not args.no_progress, eval_n=args.eval_n,
                             quick=args.quick, steps=args.steps, distill_steps=args.distill_steps,
                             batch=args.batch)
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
        failed += result["failures"]
    print(f"trained {len(names)} model(s) in {time.time() - start:.0f} s")
    if failed and not args.quick:
        print("targets not met:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _evaluate(args) -> int:
    from ..settings import MODELS_DIR
    from .evaluate import check_targets, evaluate_contrastive, evaluate_generative
    from .loading import load
    from .registry import CARDS, get_card

    cards = [get_card(n) for n in args.names] if args.names else [c for c in CARDS if c.is_present()]
    failures = []
    for card in cards:
        model, processor = load(card.name, mode="tiny", device="cpu")
        if card.name in ("clip", "siglip"):
            metrics = evaluate_contrastive(model, processor, n=args.n, seed=args.seed, progress=not args.no_progress)
        else:
            metrics = evaluate_generative(card.name, model, processor, n=args.n, seed=args.seed,
                                          progress=not args.no_progress)
        bad = check_targets(card.name, metrics)
        failures += bad
        if args.write_card:
            from .common import rewrite_card_metrics

            rewrite_card_metrics(card.stand_in_dir, metrics, bad,
                                 f"vlmstudy zoo evaluate {card.name} --n {args.n} --seed {args.seed} --write-card")
        print(json.dumps({"model": card.name, "n": args.n, "metrics": {k: round(v, 4) for k, v in metrics.items()},
                          "targets_met": not bad}))
    if not cards:
        print(f"no stand-ins found under {MODELS_DIR}", file=sys.stderr)
        return 1
    if failures:
        print("below target:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def _hubsim(args) -> int:
    import os
    import shlex
    from pathlib import Path

    from ..testing.hubsim import build_hub_cache

    home = Path(args.home or os.path.join(os.path.expanduser("~"), ".cache", "vlmstudy-hubsim")).expanduser().resolve()
    start = time.time()
    hub = build_hub_cache(home, names=args.names or None, force=args.force,
                          progress=lambda msg: print(msg, file=sys.stderr))
    repos = sorted(p.name.removeprefix("models--").replace("--", "/", 1) for p in hub.iterdir() if p.is_dir())
    print(f"simulated Hub in {hub} ({len(repos)} repos, {time.time() - start:.1f} s): random weights, "
          f"real configs and processors", file=sys.stderr)
    print(f"export HF_HOME={shlex.quote(str(home))} VLMSTUDY_MODE=hub HF_HUB_OFFLINE=1")
    return 0


def add_commands(subparsers) -> None:
    zoo = subparsers.add_parser("zoo", help="the model zoo: table, train, evaluate, hubsim")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)

    p = sub.add_parser("table", help="print the model zoo (real sizes computed on the meta device)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--no-real", action="store_true", help="skip the real-architecture parameter counts")
    p.add_argument("--metrics", action="store_true", help="add the stand-ins' measured metrics")
    p.set_defaults(func=_table)

    p = sub.add_parser("train", help="train tiny stand-ins from scratch (seeded)")
    p.add_argument("names", nargs="*", help="model names (clip, siglip, llava, ...)")
    p.add_argument("--all", action="store_true", help="train the whole zoo in dependency order")
    p.add_argument("--models-dir", default=None, help="where to write (default: assets/models)")
    p.add_argument("--eval-n", type=int, default=300, help="test scenes for the metrics in the model card")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a micro run that only proves the code path")
    p.add_argument("--steps", type=int, default=None, help="override the training steps")
    p.add_argument("--batch", type=int, default=None, help="override the batch size")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda", "mps"),
                   help="where to train (default: auto, a GPU when there is one)")
    p.add_argument("--distill-steps", type=int, default=None, help="override the BLIP ViT distillation steps")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="re-measure stand-ins on test scenes; exit 1 below target")
    p.add_argument("names", nargs="*")
    p.add_argument("--n", type=int, default=300, help="number of test scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-card", action="store_true",
                   help="store the measured metrics in the stand-in's model card (README.md + training.json)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("hubsim", help="build a simulated Hugging Face Hub cache (real configs and processors, "
                                      "shrunk random weights) to test hub mode offline")
    p.add_argument("names", nargs="*", help="models to build (default: every zoo checkpoint)")
    p.add_argument("--home", default=None, help="the HF_HOME to build into (default: ~/.cache/vlmstudy-hubsim)")
    p.add_argument("--force", action="store_true", help="rebuild even when already built by this version")
    p.set_defaults(func=_hubsim)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="vlmstudy")
    add_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
