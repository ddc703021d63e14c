"""``vlmstudy finetune`` and ``vlmstudy data``.

::

    vlmstudy finetune --config configs/llava_vqa.yaml [--set training.max_steps=20 ...] [--overwrite]
    vlmstudy finetune --resume runs/llava-vqa              # go on from the last checkpoint
    vlmstudy finetune --merge runs/llava-vqa --out runs/llava-vqa-merged
    vlmstudy finetune --keys                               # every config key with its default

    vlmstudy data check data/shapes/vqa.json [--format vqa]
    vlmstudy data shapes data/shapes --n 200               # ShapesWorld in all three formats
    vlmstudy data convert coco captions_train2017.json --images train2017/ --out caption.json
    vlmstudy data convert vqav2 --questions Q.json --annotations A.json --images train2014/ \\
        --split train2014 --out vqa.json
"""

from __future__ import annotations

import json
import sys


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="LoRA / QLoRA fine-tuning from a YAML config; resume; merge",
                              description="LoRA / QLoRA fine-tuning of a course model (see configs/*.yaml).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="CONFIG.yaml", help="start a run from this config")
    what.add_argument("--resume", metavar="OUTPUT_DIR", help="continue the run in OUTPUT_DIR from its last checkpoint")
    what.add_argument("--merge", metavar="RUN_OR_ADAPTER", help="merge a finished run's adapter into its base model")
    what.add_argument("--keys", action="store_true", help="list every config key with its default and exit")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, e.g. training.max_steps=20); repeatable")
    p.add_argument("--overwrite", action="store_true", help="with --config: delete an earlier run in output_dir first")
    p.add_argument("--out", metavar="DIR", help="with --merge: where the merged model goes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-step lines")
    p.set_defaults(func=_finetune)

    d = subparsers.add_parser("data", help="check, export and convert data files (caption / vqa / instruction)",
                              description="The course's three JSON data formats: check, export, convert.")
    sub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a data file; every bad record by index and field")
    c.add_argument("path")
    c.add_argument("--format", choices=("caption", "vqa", "instruction"), default=None)
    c.add_argument("--image-root", default=None, help="folder the image paths are relative to (default: the file's)")
    c.add_argument("--max-problems", type=int, default=20)
    c.set_defaults(func=_data_check)
    s = sub.add_parser("shapes", help="export ShapesWorld scenes in all three formats (PNG images + JSON)")
    s.add_argument("out_dir")
    s.add_argument("--n", type=int, default=200, help="number of scenes")
    s.add_argument("--split", default="train", choices=("train", "val", "test", "heldout"))
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_data_shapes)
    v = sub.add_parser("convert", help="COCO captions -> caption format, VQAv2 -> vqa format")
    v.add_argument("source", choices=("coco", "vqav2"))
    v.add_argument("captions", nargs="?", help="coco: the captions_*.json file")
    v.add_argument("--questions", help="vqav2: the questions JSON")
    v.add_argument("--annotations", help="vqav2: the annotations JSON")
    v.add_argument("--images", required=True, help="folder with the images")
    v.add_argument("--split", default="train2014", help="vqav2: the split in the image names (COCO_{split}_...)")
    v.add_argument("--out", required=True, help="output JSON (image paths become relative to its folder)")
    v.add_argument("--max-per-image", type=int, default=None, help="coco: keep at most N captions per image")
    v.set_defaults(func=_data_convert)


def _finetune(args) -> int:
    from ..errors import ConfigError
    from . import config as config_mod

    if args.keys:
        defaults = config_mod.FinetuneConfig().to_dict()
        for key in config_mod.all_keys():
            section, _, name = key.rpartition(".")
            value = defaults[section][name] if section else defaults[key]
            print(f"{key:34} {json.dumps(value)}")
        return 0
    if args.overrides and not args.config:
        raise ConfigError("--set only applies to --config (a resumed run keeps its own config.yaml).")
    callbacks = [] if args.quiet else None
    if args.merge:
        from .model import merge_adapter

        if not args.out:
            raise ConfigError("--merge needs --out DIR: the folder the merged model is written to.")
        out = merge_adapter(args.merge, args.out, device=args.device or "cpu")
        print(f"merged model written to {out}; load it with vlmstudy.load({str(out)!r})")
        return 0
    from .train import finetune, resume

    if args.resume:
        result = resume(args.resume, callbacks=callbacks, progress=not args.quiet, device=args.device)
    else:
        overrides = dict(config_mod.parse_override(o) for o in args.overrides)
        result = finetune(args.config, callbacks=callbacks, progress=not args.quiet, overwrite=args.overwrite,
                          device=args.device, **overrides)
    print(json.dumps({"output_dir": str(result.output_dir), "steps": result.steps,
                      "train_seconds": round(result.seconds, 2), **result.metrics}))
    return 0


def _data_check(args) -> int:
    from ..data import load_dataset

    ds = load_dataset(args.path, args.format, args.image_root, max_problems=args.max_problems)
    print(f"{args.path}: {len(ds)} valid {ds.format} records; examples: {len(ds.examples())}")
    return 0


def _data_shapes(args) -> int:
    from .. import shapes

    paths = shapes.export_dataset(shapes.make_scenes(args.split, args.n, seed=args.seed), args.out_dir, seed=args.seed)
    for name, path in paths.items():
        print(f"{name:12} {path}")
    return 0


def _data_convert(args) -> int:
    from ..data import coco_to_caption, vqav2_to_vqa
    from ..errors import ConfigError

    if args.source == "coco":
        if not args.captions:
            raise ConfigError("data convert coco needs the captions JSON file: vlmstudy data convert coco "
                              "captions_train2017.json --images DIR --out caption.json")
        records = coco_to_caption(args.captions, args.images, out=args.out, max_per_image=args.max_per_image)
    else:
        if not (args.questions and args.annotations):
            raise ConfigError("data convert vqav2 needs --questions and --annotations (the two VQAv2 JSON files).")
        records = vqav2_to_vqa(args.questions, args.annotations, args.images, split=args.split, out=args.out)
    print(f"{len(records)} records written to {args.out}", file=sys.stdout)
    return 0
