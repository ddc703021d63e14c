"""The training loop: LoRA / QLoRA on a course model, with evaluation, checkpoints and resume.

::

    result = finetune("configs/llava_vqa.yaml")        # or a dict, or a FinetuneConfig
    result = resume("runs/llava-vqa")                   # a killed run goes on from its last checkpoint

Data order is a function of ``(seed, epoch)``: micro-batch ``m`` of the run is slice ``m mod
batches_per_epoch`` of epoch ``m // batches_per_epoch``'s permutation, so the position in the data
is the step alone. A checkpoint (see :mod:`.checkpoint`) stores the adapter, optimizer and
scheduler state, the random states and the step; resuming rebuilds the same model, loads them
and continues, and gives the same final weights as a run that was never interrupted.

Output folder::

    OUTPUT_DIR/config.yaml           the config, paths made absolute (what --resume reads)
    OUTPUT_DIR/checkpoints/step-N/   every save_every steps (atomic)
    OUTPUT_DIR/adapter/              the final adapter (safetensors), for load_adapter / merge_adapter
    OUTPUT_DIR/final_model/          the fine-tuned model on its own (adapter merged in): vlmstudy.load(path)
    OUTPUT_DIR/history.json          losses and evaluations, step by step
    OUTPUT_DIR/run.json              summary: steps, seconds, parameters, final metrics, quantization
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import shapes
from ..data import Example, load_dataset, to_examples
from ..errors import CheckpointError, ConfigError, DataFormatError
from ..generation import context_length, family, generate_text
from ..settings import seed_everything
from ..torch_utils import model_device_dtype, move_batch
from . import checkpoint as ckpt
from . import distributed
from .callbacks import default_callbacks
from .collate import TRAINABLE_FAMILIES, Collator, EncodedDataset, prompt_text
from .config import MODEL_TYPES, FinetuneConfig, load_config
from .model import apply_full_finetuning, apply_lora, load_base, parameter_counts, save_adapter, save_final_model

#: Seconds to sleep after every step (0: off). Only for testing interruption: it makes a tiny run
#: slow enough to be killed between two checkpoints.
STEP_DELAY_ENV = "VLMSTUDY_FINETUNE_STEP_DELAY"


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the trained ``model`` (a ``peft.PeftModel``), its
    ``processor``, the ``history``, the final ``metrics``, and where everything was written."""

    output_dir: Path
    model: object
    processor: object
    history: list[dict]
    metrics: dict
    seconds: float
    steps: int
    params: dict
    info: dict = field(default_factory=dict)

    def plot(self, title: str | None = None):
        from .callbacks import loss_figure

        return loss_figure(self.history, title=title, total_steps=self.steps)

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items())
        return (f"FinetuneResult({self.steps} steps in {self.seconds:.1f} s, {self.params['trainable']:,} trainable "
                f"parameters, {m}, output_dir={str(self.output_dir)!r})")


# ----------------------------------------------------------------------------- data

def split_records(n: int, eval_split: float | int, seed: int) -> tuple[list[int], list[int]]:
    """``(train, eval)`` record indices: a seeded shuffle, the first ``eval_split`` (fraction or
    count) held out. Records, not examples, are split, so a conversation stays on one side."""
    n_eval = eval_split if isinstance(eval_split, int) else int(round(eval_split * n))
    if n_eval >= n:
        raise ConfigError(f"data.eval_split holds out {n_eval} of {n} records, leaving none to train on; use a "
                          "smaller fraction or count.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def prepare_examples(cfg: FinetuneConfig) -> tuple[list[Example], list[Example], dict]:
    """Load, check and split the data of ``cfg``: ``(train, eval, info)``."""
    d = cfg.data
    ds = load_dataset(d.path, d.format, d.image_root, skip_invalid=d.skip_invalid, max_problems=d.max_problems,
                      allow_outside_root=d.allow_outside_root)
    info = {"format": ds.format, "records": len(ds), "skipped_records": len({p.index for p in ds.skipped})}
    if d.eval_path:
        ev = load_dataset(d.eval_path, d.format or ds.format, d.image_root if d.image_root else None,
                          skip_invalid=d.skip_invalid, max_problems=d.max_problems,
                          allow_outside_root=d.allow_outside_root)
        train_recs, eval_recs = ds.records, ev.records
    else:
        tr, ev_idx = split_records(len(ds), d.eval_split, cfg.seed)
        train_recs, eval_recs = [ds.records[i] for i in tr], [ds.records[i] for i in ev_idx]
    train, evals = to_examples(train_recs, ds.format), to_examples(eval_recs, ds.format)
    info.update(train_records=len(train_recs), eval_records=len(eval_recs), train_examples=len(train),
                eval_examples=len(evals))
    return train, evals, info


class DataOrder:
    """Which examples micro-batch ``m`` holds: a seeded permutation per epoch, sliced."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = math.ceil(n / batch_size)
        self._perm: tuple[int, list[int]] | None = None

    def permutation(self, epoch: int) -> list[int]:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g).tolist())
        return self._perm[1]

    def batch(self, m: int) -> tuple[list[int], int, int]:
        """``(indices, epoch, batch_in_epoch)`` of micro-batch ``m``."""
        epoch, k = divmod(m, self.per_epoch)
        return self.permutation(epoch)[k * self.batch_size:(k + 1) * self.batch_size], epoch, k


def lr_lambda(kind: str, warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 1.0 - progress if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return f


def _model_device_dtype(model):
    """Where batches go, and the dtype of their floating tensors (fp16 / bf16 / fp32; another
    floating dtype trains its inputs in fp32)."""
    device, dtype = model_device_dtype(model)
    return device, (dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, processor, examples: Sequence[Example], batch_size: int = 16, max_new_tokens: int = 16,
             caption_prompt: str | None = None, dataset: EncodedDataset | None = None, loss: bool = True,
             accuracy: bool = True, max_examples: int | None = None) -> dict:
    """Teacher-forced loss (mean over answer tokens) and exact-match accuracy of greedy answers.

    Answers are compared after :func:`vlmstudy.shapes.normalize_text` (case and punctuation do not
    count). Returns ``{"eval_loss", "eval_accuracy", "eval_examples", "predictions"}`` with one
    ``{"question", "answer", "prediction", "correct"}`` per example scored for accuracy.
    """
    model = unwrap(model)   # LoRA layers live inside the base model: it runs with the adapter
    fam = family(model)
    examples = list(examples)[:max_examples] if max_examples is not None else list(examples)
    was_training = model.training
    model.eval()
    device, dtype = _model_device_dtype(model)
    out: dict = {"eval_examples": len(examples)}
    with torch.random.fork_rng(devices=[]):
        if loss and examples:
            ds = dataset or EncodedDataset(examples, processor, fam, caption_prompt, _bos(model))
            collate = Collator(processor, fam)
            total = weight = 0.0
            for start in range(0, len(examples), batch_size):
                items = [ds[i] for i in range(start, min(start + batch_size, len(examples)))]
                n = sum(e.n_supervised for e in items)
                total += float(model(**move_batch(collate(items), device, dtype)).loss) * n
                weight += n
            out["eval_loss"] = total / max(weight, 1)
        if accuracy and examples:
            preds = []
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                prompts = [prompt_text(fam, processor, e, caption_prompt) or None for e in chunk]
                images = [dataset.image(start + i) if dataset is not None else e.image for i, e in enumerate(chunk)]
                preds += generate_text(model, processor, images, prompts, max_new_tokens=max_new_tokens)
            rows = [{"question": e.question, "answer": e.answer, "prediction": p,
                     "correct": shapes.normalize_text(p) == shapes.normalize_text(e.answer)}
                    for e, p in zip(examples, preds)]
            out["eval_accuracy"] = sum(r["correct"] for r in rows) / len(rows)
            out["predictions"] = rows
    if was_training:
        model.train()
    return out


def unwrap(model):
    """The transformers model inside a ``PeftModel`` (its layers carry the adapters)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _bos(model) -> int | None:
    if family(model) in ("blip-caption", "blip-vqa"):
        cfg = model.config
        return getattr(getattr(cfg, "text_config", cfg), "bos_token_id", None)
    return None


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """One fine-tuning run (use :func:`finetune` / :func:`resume`)."""

    def __init__(self, cfg: FinetuneConfig, callbacks=None, progress: bool = True, device: str | None = None):
        self.config = cfg
        self.out = Path(cfg.output_dir)
        self.progress = progress
        self.callbacks = default_callbacks(progress) if callbacks is None else list(callbacks)
        self.device = device
        self.step = 0
        self.history: list[dict] = []
        self.seconds = 0.0
        self.accelerator, self.precision_note = distributed.make_accelerator(cfg.training.mixed_precision, device)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        if self.world > 1:   # each process trains on its own device (cuda:RANK, or the CPU)
            self.device = str(self.accelerator.device)

    @property
    def is_main(self) -> bool:
        """Only the main process writes files (checkpoints, history, adapter, final model)."""
        return self.accelerator.is_main_process

    # -- setup
    def setup(self) -> None:
        cfg, t = self.config, self.config.training
        seed_everything(cfg.seed)
        self.train_examples, self.eval_examples, self.data_info = prepare_examples(cfg)
        if not self.train_examples:
            raise DataFormatError(f"{cfg.data.path}: no training examples are left after the eval split.")
        base, self.processor, self.quant_info = load_base(cfg.model, cfg.quantization, self.device,
                                                          t.gradient_checkpointing)
        self.family = family(base)
        if self.family not in TRAINABLE_FAMILIES:
            raise ConfigError(f"model {cfg.model!r} is a {self.family} model, which writes no text; fine-tuning "
                              f"here needs one of {', '.join(TRAINABLE_FAMILIES)}.")
        if cfg.model_type is not None and self.family not in MODEL_TYPES[cfg.model_type]:
            raise ConfigError(f"model_type is {cfg.model_type!r} but {cfg.model!r} is a {self.family} model: set "
                              f"model_type: {self.family} (or leave it out), or choose a {cfg.model_type} model.")
        lo = cfg.lora
        if lo.use_lora:
            self.model = apply_lora(base, self.processor, r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                                    target_modules=lo.target_modules, modules_to_save=lo.modules_to_save,
                                    trainable_tokens=lo.trainable_tokens)
        else:
            self.model = apply_full_finetuning(base)
        self.params = parameter_counts(self.model)
        if not lo.use_lora and self.progress and self.is_main:
            print(f"lora.use_lora is false: full fine-tuning of what fits, the language model's own weights "
                  f"({self.params['trainable']:,} of {self.params['total']:,} parameters; the vision tower stays "
                  "frozen). No intermediate checkpoints are written (they hold adapters), so such a run cannot be "
                  "resumed.", flush=True)
        try:
            max_len = context_length(base, self.processor)
        except ConfigError:
            max_len = None
        bos = _bos(base)
        resize = cfg.data.resize
        self.train_ds = EncodedDataset(self.train_examples, self.processor, self.family, cfg.data.prompt, bos, max_len,
                                       resize=resize)
        self.eval_ds = EncodedDataset(self.eval_examples, self.processor, self.family, cfg.data.prompt, bos, max_len,
                                      resize=resize)
        self.collate = Collator(self.processor, self.family)
        # one global batch of batch_size x processes per micro-step; each process takes its slice
        self.order = DataOrder(len(self.train_ds), t.batch_size * self.world, cfg.seed)
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * self.order.per_epoch / t.gradient_accumulation))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self._optimizer(trainable)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(t.lr_scheduler, t.warmup_steps, self.total_steps))
        # accelerate's optimizer wrapper applies fp16 loss scaling; the scheduler steps once per optimizer step
        self.optimizer = self.accelerator.prepare_optimizer(optimizer)
        # DDP (or FSDP / DeepSpeed from the launch config) wraps the model in a multi-process run
        self.engine = self.accelerator.prepare_model(self.model) if self.world > 1 else self.model
        self.trainable = trainable

    def _optimizer(self, params):
        t = self.config.training
        if t.optimizer == "paged_adamw_8bit":
            if torch.cuda.is_available() and self.quant_info.get("device") == "cuda":
                import bitsandbytes as bnb

                return bnb.optim.PagedAdamW8bit(params, lr=t.learning_rate, weight_decay=t.weight_decay)
            import warnings

            warnings.warn("training.optimizer paged_adamw_8bit needs a CUDA GPU (bitsandbytes pages optimizer state "
                          "between GPU and CPU memory); using torch's AdamW here.", stacklevel=3)
            self.quant_info["optimizer_note"] = "paged_adamw_8bit -> adamw (no CUDA GPU)"
        return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)

    # -- state
    def state_dict(self) -> dict:
        accum = self.config.training.gradient_accumulation
        _, epoch, k = self.order.batch(self.step * accum)
        return {"step": self.step, "micro_batch": self.step * accum, "epoch": epoch, "batch_in_epoch": k,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": ckpt.rng_state(), "history": self.history, "seconds": self.seconds,
                "total_steps": self.total_steps}

    def load_checkpoint(self, path: Path) -> None:
        """Go on from checkpoint ``path`` (verified and read by :func:`.checkpoint.read_checkpoint`:
        safetensors and JSON only). Raises :class:`CheckpointError` if it is damaged."""
        state, weights = ckpt.read_checkpoint(path)
        if state["total_steps"] != self.total_steps:
            raise ConfigError(f"{path} was written by a run of {state['total_steps']} steps but this config makes "
                              f"{self.total_steps}: resume with the run's own config.yaml.")
        self.apply_state(path, state, weights)

    def apply_state(self, path: Path, state: dict, weights: dict) -> None:
        from peft import set_peft_model_state_dict

        own_scheduler_keys = set(self.scheduler.state_dict())
        if not set(state["scheduler"]) <= own_scheduler_keys:
            raise CheckpointError(f"checkpoint {path}: the scheduler state has keys this scheduler does not know "
                                  f"({sorted(set(state['scheduler']) - own_scheduler_keys)[:3]})")
        try:
            result = set_peft_model_state_dict(self.model, weights)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k or "trainable_tokens" in k]
            if missing:
                raise CheckpointError(f"checkpoint {path}: adapter weights do not fit this model ({missing[:3]} ...)")
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            ckpt.set_rng_state(state["rng"])
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this run ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
        self.step, self.history, self.seconds = state["step"], state["history"], state["seconds"]

    def _save(self) -> None:
        t = self.config.training
        last = next((h for h in reversed(self.history) if "loss" in h), {})
        summary = {"step": self.step, "total_steps": self.total_steps, "micro_batch": self.step * t.gradient_accumulation,
                   "loss": last.get("loss"), "seconds": round(self.seconds, 2),
                   "evaluations": [h for h in self.history if "eval_loss" in h]}
        if not self.config.lora.use_lora:
            return   # checkpoints hold adapters; a full fine-tune writes only its final model
        if self.is_main:
            path = ckpt.save_checkpoint(self.out, self.step, self.model, self.state_dict(), summary,
                                        t.keep_checkpoints)
            self._call("on_save", path)
        self.accelerator.wait_for_everyone()

    def _call(self, name: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(self, *args)

    # -- the loop
    def evaluate(self) -> dict:
        t = self.config.training
        n = min(len(self.eval_examples), t.eval_max_examples)
        res = evaluate(self.model, self.processor, self.eval_examples[:n], batch_size=max(t.batch_size, 8),
                       max_new_tokens=t.max_new_tokens, caption_prompt=self.config.data.prompt, dataset=self.eval_ds,
                       accuracy=n > 0)
        return res

    def train(self) -> FinetuneResult:
        from tqdm.auto import tqdm

        t = self.config.training
        device, dtype = _model_device_dtype(self.model)
        delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        self._call("on_train_begin")
        bar = tqdm(total=self.total_steps, initial=self.step, desc="fine-tuning",
                   disable=not self.progress or not self.is_main, leave=True)
        self.model.train()
        while self.step < self.total_steps:
            started = time.perf_counter()
            if self.world > 1:
                torch.manual_seed(distributed.step_seed(self.config.seed, self.step, self.rank))
            running = 0.0
            for micro in range(t.gradient_accumulation):
                idx, epoch, k = self.order.batch(self.step * t.gradient_accumulation + micro)
                loss, share = self._micro_loss(idx, device, dtype)
                self.accelerator.backward(loss / t.gradient_accumulation)
                running += share / t.gradient_accumulation
            if t.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(self.trainable, t.max_grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.seconds += time.perf_counter() - started
            record = {"step": self.step, "loss": running, "lr": lr,
                      "epoch": round(epoch + (k + 1) / self.order.per_epoch, 4), "seconds": round(self.seconds, 3)}
            if self.step % t.log_every == 0 or self.step == self.total_steps:
                self.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            self._call("on_step", record)
            due = (t.eval_every and self.step % t.eval_every == 0) or self.step == self.total_steps
            if due and self.eval_examples and t.eval_max_examples > 0:
                res = self.evaluate()
                ev = {"step": self.step, "eval_loss": res["eval_loss"], "eval_accuracy": res.get("eval_accuracy"),
                      "eval_examples": res["eval_examples"]}
                self.history.append(ev)
                self._call("on_evaluate", ev)
            if t.save_every and self.step % t.save_every == 0:
                self._save()
            if delay:
                time.sleep(delay)
        bar.close()
        self.model.eval()
        return self.finish()

    def _micro_loss(self, indices: list[int], device, dtype) -> tuple[torch.Tensor, float]:
        """This process's loss on its slice of one global micro-batch, weighted so that the
        gradients DDP averages over the processes are those of the global batch's mean loss over
        answer tokens; and that global loss (a float, the same on every process).

        One process: the model's own mean loss, unchanged (weight exactly 1)."""
        mine = distributed.shard(indices, self.rank, self.world)
        items = [self.train_ds[i] for i in (mine or indices[:1])]   # an empty slice still joins the all-reduce
        n_mine = sum(e.n_supervised for e in items) if mine else 0
        batch = move_batch(self.collate(items), device, dtype)
        with self.accelerator.autocast():
            loss = self.engine(**batch).loss
        if self.world == 1:
            return loss, float(loss.detach())
        n_all = float(self.accelerator.reduce(torch.tensor(float(n_mine), device=loss.device), "sum"))
        weighted = loss * (n_mine / max(n_all, 1.0))
        total = float(self.accelerator.reduce(weighted.detach().clone(), "sum"))
        return weighted * self.world, total

    def finish(self) -> FinetuneResult:
        cfg = self.config
        final = next((h for h in reversed(self.history) if "eval_loss" in h), None)
        metrics = {}
        if final is not None:
            metrics = {"eval_loss": final["eval_loss"], "eval_accuracy": final["eval_accuracy"]}
        last = next((h for h in reversed(self.history) if "loss" in h), None)
        if last is not None:
            metrics["train_loss"] = last["loss"]
        from .. import settings

        if self.is_main:
            if cfg.lora.use_lora:
                ckpt.atomic_dir(self.out / "adapter",
                                lambda tmp: save_adapter(self.model, tmp, cfg.model, settings.get_mode()))
            ckpt.atomic_dir(self.out / FINAL_MODEL, lambda tmp: save_final_model(
                self.model, self.processor, tmp, adapter=self.out / "adapter" if cfg.lora.use_lora else None,
                quantized=self.quant_info.get("quantization_applied", False)))
            ckpt.atomic_write_text(self.out / "history.json", json.dumps(self.history, indent=1))
        summary = {"finished": True, "model": cfg.model, "family": self.family, "steps": self.step,
                   "train_seconds": round(self.seconds, 2), "parameters": self.params, "metrics": metrics,
                   "data": self.data_info, "device": self.quant_info.get("device"),
                   "dtype": self.quant_info.get("dtype"), "quantization": cfg.quantization,
                   "quantization_applied": self.quant_info.get("quantization_applied", False),
                   "notes": [n for n in (self.quant_info.get("note"), self.quant_info.get("optimizer_note"),
                                         self.precision_note) if n],
                   "use_lora": cfg.lora.use_lora, "mixed_precision": cfg.training.mixed_precision,
                   "processes": self.world, "final_model": str(self.out / FINAL_MODEL),
                   "torch": torch.__version__, "threads": torch.get_num_threads()}
        if self.is_main:
            ckpt.atomic_write_text(self.out / "run.json", json.dumps(summary, indent=1))
        self.accelerator.wait_for_everyone()
        result = FinetuneResult(self.out, self.model, self.processor, self.history, metrics, self.seconds, self.step,
                                self.params, summary)
        self._call("on_train_end", result)
        return result


# ----------------------------------------------------------------------------- entry points

FINAL_MODEL = "final_model"
OWN_FILES = ("config.yaml", "run.json", "history.json", "adapter", FINAL_MODEL, ckpt.CHECKPOINTS)


def _existing_run(out: Path) -> bool:
    return any((out / name).exists() for name in OWN_FILES)


def finetune(config, callbacks=None, progress: bool = True, overwrite: bool = False, device: str | None = None,
             **overrides) -> FinetuneResult:
    """Run a fine-tune from a config (YAML path, dict or :class:`FinetuneConfig`; dotted
    ``overrides`` such as ``**{"training.max_steps": 20}``).

    A fresh run refuses an ``output_dir`` that already holds one (resume it with :func:`resume`,
    or pass ``overwrite=True`` to delete that run's files first). callbacks: ``None`` = a live
    plot in notebooks and printed lines elsewhere; ``[]`` = silent.
    """
    cfg = load_config(config, **overrides).absolute_paths()
    out = Path(cfg.output_dir)
    check_output_dir(out)
    trainer = Trainer(cfg, callbacks, progress, device)   # joins the other processes of a launched run
    existing = _existing_run(out)
    trainer.accelerator.wait_for_everyone()   # every process has looked before the main one writes
    if existing:
        if not overwrite:
            raise ConfigError(f"output_dir {out} already holds a fine-tuning run. Continue it with "
                              f"`vlmstudy finetune --resume {out}`, choose another output_dir, or pass overwrite "
                              "(--overwrite) to delete it.")
        if trainer.is_main:
            for name in OWN_FILES:
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    trainer.setup()  # checks data and model before anything is written
    if trainer.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(out / "config.yaml", cfg.to_yaml())
    trainer.accelerator.wait_for_everyone()
    return trainer.train()


def check_output_dir(out: Path) -> None:
    """Refuse an ``output_dir`` that is a file, or lies under one, before any work is done."""
    for part in (out, *out.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == out else f"lies under {part}, which is a file"
                raise ConfigError(f"output_dir {out} {what}, not a folder. Choose a folder for the run (it is "
                                  "created if missing), e.g. output_dir: runs/my-run.")
            return


def resume(output_dir, callbacks=None, progress: bool = True, device: str | None = None) -> FinetuneResult:
    """Continue the run in ``output_dir`` from its last complete checkpoint (or from the start if
    it saved none). A finished run is loaded and returned as it is."""
    out = Path(output_dir)
    if not (out / "config.yaml").is_file():
        raise ConfigError(f"{out} holds no fine-tuning run (no config.yaml). Start one with "
                          "`vlmstudy finetune --config CONFIG.yaml`.")
    cfg = load_config(out / "config.yaml")
    if Path(cfg.output_dir).resolve() != out.resolve():  # the folder was moved: follow it
        cfg = cfg.replace(output_dir=str(out.resolve()))
    trainer = Trainer(cfg, callbacks, progress, device)
    trainer.setup()
    run_file = out / "run.json"
    if run_file.is_file() and _finished(run_file):
        from peft import set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            set_peft_model_state_dict(trainer.model, load_file(str(out / "adapter" / "adapter_model.safetensors")))
            trainer.history = json.loads((out / "history.json").read_text())
            info = json.loads(run_file.read_text())
            trainer.step, trainer.seconds = info["steps"], info["train_seconds"]
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"the finished run in {out} is damaged ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:100] if str(err) else ''}); its checkpoints are in "
                                  f"{out / ckpt.CHECKPOINTS}.") from None
        trainer.model.eval()
        return FinetuneResult(out, trainer.model, trainer.processor, trainer.history, info["metrics"],
                              trainer.seconds, trainer.step, trainer.params, info)
    _resume_from_newest_intact(trainer, out)
    ckpt.clean_temporaries(out)
    return trainer.train()


def _finished(run_file: Path) -> bool:
    try:
        return json.loads(run_file.read_text()).get("finished") is True
    except (ValueError, AttributeError, OSError):  # a cut run.json: the run did not finish cleanly
        return False


def _resume_from_newest_intact(trainer: Trainer, out: Path) -> None:
    """Load the newest checkpoint that verifies and reads; warn about each damaged newer one.

    No checkpoint folder at all means the run was stopped before its first save: it starts over.
    Folders that are all damaged stop with one :class:`CheckpointError` (starting over silently would
    overwrite them)."""
    import warnings

    found = ckpt.list_checkpoints(out)
    damaged = []
    for step, path in reversed(found):
        try:
            trainer.load_checkpoint(path)
        except CheckpointError as err:
            damaged.append(str(err))
            continue
        for reason in damaged:
            warnings.warn(f"{reason}; skipped it and went on from {path.name} (step {step}).", stacklevel=3)
        return
    if damaged:
        raise CheckpointError(f"no intact checkpoint in {out / ckpt.CHECKPOINTS}: {'; '.join(damaged[:3])}. Start the "
                              f"run again with `vlmstudy finetune --config {out / 'config.yaml'} --overwrite`.")
