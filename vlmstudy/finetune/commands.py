"""``vlmstudy finetune`` and ``vlmstudy data``.

::

    vlmstudy finetune --config configs/llava_vqa.yaml [--set training.max_steps=20 ...] [--overwrite]
    vlmstudy finetune --resume runs/llava-vqa              # go on from the last checkpoint
    vlmstudy finetune --merge runs/llava-vqa --out runs/llava-vqa-merged
    vlmstudy finetune --keys                               # every config key with its default
    vlmstudy finetune --estimate [--config FILE]           # memory per model: LoRA and QLoRA
    # the fine-tuning guide's spellings (alone, or overriding a --config):
    vlmstudy finetune --model_name llava-hf/llava-1.5-7b-hf --model_type llava \
        --dataset_path data/multimodal_train.json --output_dir outputs/llava_finetuned

    vlmstudy data check data/shapes/vqa.json [--format vqa] [--allow-outside-root]
    vlmstudy data shapes data/shapes --n 200               # ShapesWorld: caption, vqa, instruction (conversations)
    vlmstudy data shapes data --n 50 --format text         # one file in one format (data/text.json)
    vlmstudy data convert data/vqa.json data/vqa_as_text.json --to text
    vlmstudy data convert coco captions_train2017.json --images train2017/ --out caption.json
    vlmstudy data convert vqav2 --questions Q.json --annotations A.json --images train2014/ \\
        --split train2014 --out vqa.json
"""

from __future__ import annotations

import json
import sys

from ..data import FORMATS


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="LoRA / QLoRA fine-tuning from a YAML config; resume; merge",
                              description="LoRA / QLoRA fine-tuning of a course model (see configs/*.yaml).")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--config", metavar="CONFIG.yaml", help="start a run from this config")
    what.add_argument("--resume", metavar="OUTPUT_DIR", help="continue the run in OUTPUT_DIR from its last checkpoint")
    what.add_argument("--merge", metavar="RUN_OR_ADAPTER", help="merge a finished run's adapter into its base model")
    what.add_argument("--keys", action="store_true", help="list every config key with its default and exit")
    p.add_argument("--estimate", action="store_true",
                   help="print the memory LoRA and QLoRA need per model (weights, adapter, optimizer, activations) "
                        "at the config's batch size (with --config) and exit")
    p.add_argument("--seq-len", type=int, default=None, metavar="N",
                   help="with --estimate: text tokens per example (default 128; image tokens are added per model)")
    guide = p.add_argument_group("the fine-tuning guide's flags (alone, they make the config; with --config, "
                                 "they override it)")
    guide.add_argument("--model_name", "--model-name", dest="model_name", metavar="NAME",
                       help="model: a zoo name, a Hub id (its tiny stand-in in tiny mode) or a model folder")
    guide.add_argument("--model_type", "--model-type", dest="model_type", metavar="TYPE",
                       help="llava | llava-next | blip2 | instructblip | blip: checked against the model")
    guide.add_argument("--dataset_path", "--dataset-path", dest="dataset_path", metavar="FILE",
                       help="the training data file (any of the five formats, detected)")
    guide.add_argument("--output_dir", "--output-dir", dest="output_dir", metavar="DIR",
                       help="where the run goes; the fine-tuned model ends up in DIR/final_model")
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
    c.add_argument("--format", choices=FORMATS, default=None, help="default: detected from the first record")
    c.add_argument("--image-root", default=None, help="folder the image paths are relative to (default: the file's)")
    c.add_argument("--max-problems", type=int, default=20)
    c.add_argument("--allow-outside-root", action="store_true",
                   help="accept image paths that lead outside the data folder (only for files you trust)")
    c.add_argument("--no-check-images", dest="check_images", action="store_false",
                   help="do not require every image file to exist")
    c.set_defaults(func=_data_check)
    s = sub.add_parser("shapes", help="export ShapesWorld scenes (PNG images + JSON), in the course's three files or "
                                      "in one --format")
    s.add_argument("out_dir", help="a folder, or a FILE.json (the guide's data/multimodal_train.json): images go "
                                   "in images/ beside it")
    s.add_argument("--n", type=int, default=200, help="number of scenes (images)")
    s.add_argument("--split", default="train", choices=("train", "val", "test", "heldout"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=FORMATS, default=None,
                   help="write only OUT_DIR/FORMAT.json in this format (default: caption.json, vqa.json and "
                        "instruction.json in the conversations format)")
    s.set_defaults(func=_data_shapes)
    v = sub.add_parser("convert", help="a data file to another format (IN OUT --to FORMAT); COCO captions, VQAv2",
                       description="vlmstudy data convert IN.json OUT.json --to FORMAT (any of the five formats), or "
                                   "vlmstudy data convert coco|vqav2 ... for the public datasets.")
    v.add_argument("source", help="IN.json, or coco / vqav2")
    v.add_argument("captions", nargs="?", help="OUT.json (or, for coco, the captions_*.json file)")
    v.add_argument("--to", choices=FORMATS, default=None, help="target format (for IN OUT)")
    v.add_argument("--format", choices=FORMATS, default=None, help="IN's format (default: detected)")
    v.add_argument("--question", default=None, help="the question captions answer in question formats "
                                                    "(default: 'describe the image.')")
    v.add_argument("--image-root", default=None, help="folder IN's image paths are relative to (default: IN's)")
    v.add_argument("--allow-outside-root", action="store_true", help="accept IN's image paths outside its folder")
    v.add_argument("--questions", help="vqav2: the questions JSON")
    v.add_argument("--annotations", help="vqav2: the annotations JSON")
    v.add_argument("--images", default=None, help="coco / vqav2: folder with the images")
    v.add_argument("--split", default="train2014", help="vqav2: the split in the image names (COCO_{split}_...)")
    v.add_argument("--out", default=None, help="coco / vqav2: output JSON (image paths become relative to its folder)")
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
    guide = {key: getattr(args, attr) for attr, key in GUIDE_FLAGS.items() if getattr(args, attr) is not None}
    if args.estimate:
        return _estimate(args, guide)
    if not (args.config or args.resume or args.merge or guide):
        raise ConfigError("vlmstudy finetune needs --config FILE, --resume DIR, --merge DIR, --keys or --estimate, or "
                          "the guide's flags (--model_name M --dataset_path FILE --output_dir DIR).")
    if guide and (args.resume or args.merge):
        raise ConfigError(f"{', '.join('--' + a for a in GUIDE_FLAGS if getattr(args, a) is not None)} start a run: "
                          "they do not combine with --resume or --merge.")
    if args.overrides and not (args.config or guide):
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
        overrides = {**guide, **dict(config_mod.parse_override(o) for o in args.overrides)}
        source = args.config if args.config else {}
        result = finetune(source, callbacks=callbacks, progress=not args.quiet, overwrite=args.overwrite,
                          device=args.device, **overrides)
        if result.info.get("processes", 1) > 1 and not _is_main_process():
            return 0   # one summary line per run, from the main process
    print(json.dumps({"output_dir": str(result.output_dir), "steps": result.steps,
                      "train_seconds": round(result.seconds, 2), **result.metrics,
                      **({"final_model": result.info["final_model"]} if "final_model" in result.info else {})}))
    return 0


#: The guide's command-line flags and the config keys they set.
GUIDE_FLAGS = {"model_name": "model", "model_type": "model_type", "dataset_path": "data.path",
               "output_dir": "output_dir"}


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _estimate(args, guide: dict) -> int:
    from . import config as config_mod
    from .memory import estimate_rows, format_estimate

    cfg = None
    if args.config:
        raw = config_mod.read_yaml(__import__("pathlib").Path(args.config)) or {}
        if not isinstance(raw, dict):
            raise config_mod.ConfigError(f"{args.config} must be a mapping of keys.")
        cfg = config_mod.load_config(raw, **guide)
    names = [cfg.model] if cfg is not None and guide.get("model") else None
    rows = estimate_rows(names, config=cfg, text_tokens=args.seq_len)
    print(format_estimate(rows, cfg))
    return 0


def _data_check(args) -> int:
    from ..data import load_dataset

    ds = load_dataset(args.path, args.format, args.image_root, max_problems=args.max_problems,
                      check_images=args.check_images, allow_outside_root=args.allow_outside_root)
    print(f"{args.path}: {len(ds)} valid {ds.format} records; examples: {len(ds.examples())}")
    return 0


def _data_shapes(args) -> int:
    from .. import shapes
    from ..data import create_sample_multimodal_dataset

    if args.format or args.out_dir.lower().endswith(".json"):
        from pathlib import Path

        fmt = args.format or "caption"
        path = Path(args.out_dir) if args.out_dir.lower().endswith(".json") else Path(args.out_dir) / f"{fmt}.json"
        path = create_sample_multimodal_dataset(path, args.n, format=fmt, split=args.split, seed=args.seed)
        print(f"{fmt:12} {path}")
        return 0
    paths = shapes.export_dataset(shapes.make_scenes(args.split, args.n, seed=args.seed), args.out_dir, seed=args.seed)
    for name, path in paths.items():
        print(f"{name:12} {path}")
    return 0


def _data_convert(args) -> int:
    from ..data import CAPTION_QUESTION, coco_to_caption, convert_file, vqav2_to_vqa
    from ..errors import ConfigError

    if args.source not in ("coco", "vqav2"):
        if not args.captions or not args.to:
            raise ConfigError("data convert IN OUT needs the output file and the target format: vlmstudy data convert "
                              f"{args.source} OUT.json --to {{{','.join(FORMATS)}}}")
        out, fmt, n = convert_file(args.source, args.captions, args.to, args.format, args.image_root,
                                   args.question or CAPTION_QUESTION, args.allow_outside_root)
        print(f"{n} {args.to} records (from {fmt}) written to {out}")
        return 0
    if not args.images or not args.out:
        raise ConfigError(f"data convert {args.source} needs --images DIR (the image folder) and --out FILE.json.")
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
