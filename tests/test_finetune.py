"""vlmstudy.finetune: config validation, label masking, LoRA layers, training, kill-and-resume,
adapter save / load / merge, the CLI, and the QLoRA benchmark's --small path.

Models are tiny random LLaVA / BLIP configs built here (tens of thousands of parameters), so each
training run takes seconds; nothing depends on the shipped stand-ins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import CLIPVisionConfig

import vlmstudy
from vlmstudy import shapes
from vlmstudy.cli import main as cli_main
from vlmstudy.data import Example
from vlmstudy.errors import ConfigError, DataFormatError
from vlmstudy.finetune import Collator, encode, finetune, load_adapter, load_config, merge_adapter, resume
from vlmstudy.finetune import checkpoint as ckpt
from vlmstudy.finetune.config import all_keys
from vlmstudy.finetune.model import apply_lora, language_model_linears, resolve_target_modules
from vlmstudy.zoo import build_generative as bg

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

REPO = Path(__file__).resolve().parent.parent
IGNORE = -100


@contextlib.contextmanager
def one_thread():
    """Training runs compared bit for bit use one thread (as the subprocesses do)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_vision():
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            image_size=64, patch_size=16, projection_dim=32)


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory):
    """A random tiny LLaVA (16 image tokens, 2-layer decoder of width 32), saved like a stand-in."""
    out = tmp_path_factory.mktemp("tiny-llava")
    torch.manual_seed(0)
    bg.llava_model(small_vision(), width=32, layers=2).save_pretrained(out)
    bg.llava_processor(patch_size=16).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-data")
    return shapes.export_dataset(shapes.make_scenes("train", 6, seed=0), out)


def base_config(model_dir, data_path, out, **training):
    return {"model": str(model_dir), "output_dir": str(out),
            "data": {"path": str(data_path), "eval_split": 8},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "trainable_tokens": ["brown"]},
            "training": {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 2,
                         "eval_max_examples": 4, "max_new_tokens": 4, **training}}


# ----------------------------------------------------------------------------- config

MINIMAL = {"model": "llava", "output_dir": "runs/x", "data": {"path": "data/vqa.json"}}

BAD_VALUES = [
    ("quantization", "nf8", "quantization must be one of none, nf4, int8"),
    ("seed", "zero", "seed must be an integer"),
    ("data.format", "captions", "data.format must be one of caption, vqa, instruction, text, conversations"),
    ("data.eval_split", 1.5, "data.eval_split must be a fraction in [0, 1)"),
    ("data.eval_split", -3, "data.eval_split must be a fraction in [0, 1)"),
    ("data.skip_invalid", "yes", "data.skip_invalid must be true or false"),
    ("data.max_problems", 0, "data.max_problems must be an integer >= 1"),
    ("data.image_root", 3, "data.image_root must be a non-empty string or null"),
    ("data.eval_path", "", "data.eval_path must be a non-empty string or null"),
    ("data.prompt", 5, "data.prompt must be a non-empty string or null"),
    ("lora.r", 0, "lora.r must be an integer >= 1"),
    ("lora.r", 4.5, "lora.r must be an integer >= 1"),
    ("lora.alpha", 0, "lora.alpha must be a number > 0"),
    ("lora.dropout", 1.0, "lora.dropout must be a number >= 0 and < 1"),
    ("lora.target_modules", "all", "lora.target_modules must be 'all-linear' or a list"),
    ("lora.target_modules", [], "lora.target_modules must not be empty"),
    ("lora.target_modules", [3], "lora.target_modules must be a list of names"),
    ("lora.modules_to_save", "lm_head", "lora.modules_to_save must be a list of names"),
    ("lora.trainable_tokens", "brown", "lora.trainable_tokens must be a list of names"),
    ("training.learning_rate", 0, "training.learning_rate must be a number > 0 and <= 1"),
    ("training.learning_rate", "fast", "training.learning_rate must be a number"),
    ("training.epochs", 0, "training.epochs must be a number > 0"),
    ("training.max_steps", 0, "training.max_steps must be an integer >= 1 or null"),
    ("training.batch_size", 0, "training.batch_size must be an integer >= 1"),
    ("training.batch_size", True, "training.batch_size must be an integer >= 1"),
    ("training.gradient_accumulation", 0, "training.gradient_accumulation must be an integer >= 1"),
    ("training.warmup_steps", -1, "training.warmup_steps must be an integer >= 0"),
    ("training.lr_scheduler", "cosin", "training.lr_scheduler must be one of constant, linear, cosine; got 'cosin' "
                                       "(did you mean 'cosine'?)"),
    ("training.weight_decay", 2, "training.weight_decay must be a number >= 0 and <= 1"),
    ("training.max_grad_norm", 0, "training.max_grad_norm must be a number > 0"),
    ("training.optimizer", "sgd", "training.optimizer must be one of adamw, paged_adamw_8bit"),
    ("training.gradient_checkpointing", 1, "training.gradient_checkpointing must be true or false"),
    ("training.eval_every", 0, "training.eval_every must be an integer >= 1 or null"),
    ("training.save_every", "often", "training.save_every must be an integer >= 1 or null"),
    ("training.keep_checkpoints", 0, "training.keep_checkpoints must be an integer >= 1 or null"),
    ("training.eval_max_examples", -1, "training.eval_max_examples must be an integer >= 0"),
    ("training.max_new_tokens", 0, "training.max_new_tokens must be an integer >= 1"),
    ("training.log_every", 0, "training.log_every must be an integer >= 1"),
    ("model_type", "gpt", "model_type must be one of llava, llava-next, blip2, instructblip"),
    ("data.resize", [224], "data.resize (image_processing.resize) must be [width, height]"),
    ("data.allow_outside_root", "yes", "data.allow_outside_root must be true or false"),
    ("lora.use_lora", "no", "lora.use_lora must be true or false"),
    ("training.mixed_precision", "fp8", "training.mixed_precision must be one of no, fp16, bf16"),
]


@pytest.mark.parametrize("key,value,message", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_each_bad_value_names_its_key_and_the_allowed_values(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(MINIMAL, **{key: value})
    assert message in str(err.value)


def test_every_key_is_covered_by_a_bad_value_test():
    covered = {k for k, _, _ in BAD_VALUES} | {"model", "output_dir", "data.path"}
    assert set(all_keys()) == covered


@pytest.mark.parametrize("key", ["model", "output_dir", "data.path"])
def test_required_keys(key):
    raw = json.loads(json.dumps(MINIMAL))
    section, _, name = key.rpartition(".")
    (raw[section] if section else raw).pop(name)
    with pytest.raises(ConfigError, match=f"{key} is required"):
        load_config(raw)


@pytest.mark.parametrize("raw,hint", [
    ({**MINIMAL, "modle": "x"}, "unknown key 'modle'. Did you mean 'model'?"),
    ({**MINIMAL, "trainig": {}}, "unknown key 'trainig'. Did you mean 'training'?"),
    ({**MINIMAL, "training": {"learnig_rate": 1e-3}}, "unknown key 'training.learnig_rate'. Did you mean "
                                                      "'training.learning_rate'?"),
    ({**MINIMAL, "lora": {"alfa": 8}}, "unknown key 'lora.alfa'. Did you mean 'lora.alpha'?"),
    ({**MINIMAL, "data": {"path": "x", "fromat": "vqa"}}, "unknown key 'data.fromat'. Did you mean 'data.format'?"),
    ({**MINIMAL, "xyz": 1}, "unknown key 'xyz'. Allowed here: model, output_dir"),
    ({**MINIMAL, "batch_size": 4}, "unknown key 'batch_size'. Did you mean 'training.batch_size'?"),
    ({**MINIMAL, "lora": {"learning_rate": 1}}, "unknown key 'lora.learning_rate'. Did you mean "
                                                "'training.learning_rate'?"),
])
def test_unknown_keys_get_a_close_match_hint(raw, hint):
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    assert hint in str(err.value)


def test_all_problems_are_reported_together_and_sections_must_be_mappings():
    with pytest.raises(ConfigError) as err:
        load_config({"model": "llava", "lora": [1], "training": {"batch_size": 0, "epochs": -1}})
    text = str(err.value)
    for part in ("output_dir is required", "lora must be a mapping", "training.batch_size", "training.epochs"):
        assert part in text


def test_yaml_file_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: llava\noutput_dir: runs/a\ndata: {path: d.json}\ntraining: {learning_rate: 2e-4}\n")
    cfg = load_config(path)
    assert cfg.training.learning_rate == 2e-4          # PyYAML reads 2e-4 as a string: coerced
    assert cfg.lora.r == 8 and cfg.quantization == "none" and cfg.training.batch_size == 8
    assert cfg.replace(**{"training.max_steps": 5}).training.max_steps == 5
    assert load_config(cfg.absolute_paths().to_dict()).output_dir == str((Path.cwd() / "runs/a").resolve())
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("model: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_example_configs_are_valid_and_cover_the_three_formats():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    formats = set()
    for path in paths:
        cfg = load_config(path)
        formats.add(cfg.data.format)
    assert formats == {"caption", "vqa", "instruction", None}   # None: multimodal_config.yaml detects its format


# ----------------------------------------------------------------------------- label masking

@pytest.fixture(scope="module")
def image():
    return shapes.make_scenes("train", 1, seed=3)[0].render()


def _answer_ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_llava_labels_mask_prompt_and_image_tokens(image):
    proc = bg.llava_processor()
    ex = Example(image, "what colour is the circle?", "brown")
    enc = encode("llava", proc, ex)
    ids_, labels = enc.input_ids.tolist(), enc.labels.tolist()
    answer = _answer_ids(proc.tokenizer, "brown") + [proc.tokenizer.eos_token_id]
    assert ids_[-len(answer):] == answer and labels[-len(answer):] == answer
    assert all(x == IGNORE for x in labels[:-len(answer)])
    n_image = ids_.count(bg.IMAGE_TOKEN_ID)
    assert n_image == 64 and len(ids_) == len(labels)
    # the prompt is exactly what generation sees: the chat template with the expanded image
    prompt = proc(images=[image], text="USER: <image>\nwhat colour is the circle? ASSISTANT:", return_tensors="pt")
    assert ids_[:-len(answer)] == prompt["input_ids"][0].tolist()


def test_multi_turn_history_is_masked(image):
    proc = bg.llava_processor()
    ex = Example(image, "and what colour is it?", "red", (("what shape is on the left?", "circle"),))
    enc = encode("llava", proc, ex)
    supervised = [t for t, lab in zip(enc.input_ids.tolist(), enc.labels.tolist()) if lab != IGNORE]
    assert supervised == _answer_ids(proc.tokenizer, "red") + [proc.tokenizer.eos_token_id]
    assert _answer_ids(proc.tokenizer, "circle")[0] in enc.input_ids.tolist()   # the history is in the input
    with pytest.raises(DataFormatError, match="multi-turn"):
        encode("blip2", bg.blip2_processor(), ex)


@pytest.mark.parametrize("fam,make", [("blip2", bg.blip2_processor), ("instructblip", bg.instructblip_processor),
                                      ("blip-caption", bg.blip_processor)])
def test_query_token_models_mask_the_prompt(fam, make, image):
    proc = make()
    ex = Example(image, "what colour is the circle?", "red")
    enc = encode(fam, proc, ex, bos_token_id=bg.BOS_ID)
    eos = bg.EOS_ID
    answer = _answer_ids(proc.tokenizer, "red") + [eos]
    labels = enc.labels.tolist()
    assert labels[-len(answer):] == answer and all(x == IGNORE for x in labels[:-len(answer)])
    if fam != "blip-caption":
        assert enc.input_ids.tolist()[:bg.NUM_QUERY_TOKENS] == [bg.IMAGE_TOKEN_ID] * bg.NUM_QUERY_TOKENS
        if fam == "blip2":
            text = shapes.normalize_text(proc.tokenizer.decode(enc.input_ids, skip_special_tokens=True))
            assert text == "question what colour is the circle answer red"   # "Question: ... Answer:" + answer
    else:
        assert enc.input_ids[0] == bg.BOS_ID and enc.input_ids.tolist().count(eos) == 1
    if fam == "instructblip":
        assert "qformer_input_ids" in enc.extra


def test_blip_vqa_supervises_the_decoder_answer_only(image):
    proc = bg.blip_processor()
    enc = encode("blip-vqa", proc, Example(image, "what colour is the circle?", "red"), bos_token_id=bg.BOS_ID)
    assert (enc.labels == IGNORE).all()
    assert enc.extra["decoder_input_ids"].tolist() == [bg.BOS_ID] + _answer_ids(proc.tokenizer, "red") + [bg.EOS_ID]


def test_collator_pads_right_with_ignored_labels(image):
    proc = bg.llava_processor()
    items = [encode("llava", proc, Example(image, "what colour is the circle?", "red")),
             encode("llava", proc, Example(image, "describe the image.", "a red circle on the left and a blue square"))]
    batch = Collator(proc, "llava")(items)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    short = len(items[0].input_ids)
    assert (batch["attention_mask"][0, short:] == 0).all() and (batch["labels"][0, short:] == IGNORE).all()
    assert (batch["input_ids"][0, short:] == proc.tokenizer.pad_token_id).all()
    assert batch["pixel_values"].shape == (2, 3, 64, 64)
    assert (batch["labels"] != IGNORE).sum() == items[0].n_supervised + items[1].n_supervised


def test_answer_longer_than_the_context_is_refused(image):
    proc = bg.llava_processor()
    with pytest.raises(DataFormatError, match="more than the model's context"):
        encode("llava", proc, Example(image, "q", "red " * 50, index=4), max_length=90)


# ----------------------------------------------------------------------------- LoRA layers, every family

def family_model(fam):
    vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          image_size=64, patch_size=16)
    torch.manual_seed(0)
    if fam == "llava":
        return bg.llava_model(vc, 32, 2), bg.llava_processor(patch_size=16)
    if fam == "blip2":
        return bg.blip2_model(vc, 32, 1), bg.blip2_processor()
    if fam == "instructblip":
        return bg.instructblip_model(vc, 32, 1), bg.instructblip_processor()
    config = bg.blip_config(vc, 32, 1)
    if fam == "blip-caption":
        return bg.BlipForConditionalGeneration(config), bg.blip_processor()
    return bg.BlipForQuestionAnswering(config), bg.blip_processor()


def test_target_modules_stay_in_the_language_model():
    model, proc = family_model("llava")
    names = language_model_linears(model)
    assert names and all(n.startswith("model.language_model.") for n in names)
    assert "lm_head" not in names and not any("vision_tower" in n for n in names)
    assert sorted(resolve_target_modules(model, ["q_proj", "v_proj"])) == sorted(
        n for n in names if n.endswith(("q_proj", "v_proj")))
    assert resolve_target_modules(model, ["multi_modal_projector.linear_1"]) == ["model.multi_modal_projector.linear_1"]
    projector = ["model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"]
    assert resolve_target_modules(model, ["all-linear", "multi_modal_projector"]) == names + projector
    with pytest.raises(ConfigError, match="'qproj' match no linear layer.*q_proj"):
        resolve_target_modules(model, ["qproj"])
    with pytest.raises(ConfigError, match="not a module"):
        apply_lora(model, proc, modules_to_save=["head"])
    with pytest.raises(ConfigError, match="one token each"):
        apply_lora(model, proc, trainable_tokens=["brownish-red"])


@pytest.mark.parametrize("fam", ["llava", "blip2", "instructblip", "blip-caption", "blip-vqa"])
def test_every_family_trains_through_its_lora_layers(fam, image):
    from vlmstudy.finetune import evaluate

    model, proc = family_model(fam)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = apply_lora(model, proc, r=2, alpha=4, trainable_tokens=["brown"])
    bos = bg.BOS_ID if fam.startswith("blip-") else None
    q = None if fam == "blip-caption" else "what colour is the circle?"
    items = [encode(fam, proc, Example(image, q, "a brown circle"), bos_token_id=bos) for _ in range(2)]
    loss = peft_model(**Collator(proc, fam)(items)).loss
    loss.backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert any("lora_B" in n for n in grads) and any("trainable_tokens" in n for n in grads)
    assert not any(n.split(".")[2] == "vision_model" or "vision_tower" in n for n in grads)
    for n, p in model.named_parameters():   # base weights untouched and frozen
        if n in frozen:
            assert not p.requires_grad and torch.equal(p, frozen[n])
    res = evaluate(peft_model, proc, [Example(image, q, "a brown circle")], max_new_tokens=3)
    assert set(res) >= {"eval_loss", "eval_accuracy", "predictions"} and res["eval_examples"] == 1


# ----------------------------------------------------------------------------- training, checkpoints

def test_finetune_writes_checkpoints_adapter_history_and_summary(tiny_llava_dir, shapes_data, tmp_path):
    out = tmp_path / "run"
    with one_thread():
        result = finetune(base_config(tiny_llava_dir, shapes_data["vqa"], out, save_every=2, eval_every=3,
                                      keep_checkpoints=2), callbacks=[], progress=False)
    assert result.steps == 6 and [s for s, _ in ckpt.list_checkpoints(out)] == [4, 6]   # keep_checkpoints: 2
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "config.yaml").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["finished"] and run["steps"] == 6 and run["quantization_applied"] is False
    assert run["parameters"]["trainable"] < run["parameters"]["total"]
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history if "eval_loss" in h] == [3, 6]
    assert [h["step"] for h in history if "loss" in h] == list(range(1, 7))
    assert 0 <= result.metrics["eval_accuracy"] <= 1 and result.metrics["eval_loss"] > 0
    assert not any(p.name.startswith(".tmp") for p in (out / "checkpoints").iterdir())
    saved = json.loads((out / "checkpoints" / "step-000006" / "trainer_state.json").read_text())
    assert saved["step"] == 6 and saved["micro_batch"] == 6
    # a second fresh start into the same folder is refused; resume of a finished run just loads it
    with pytest.raises(ConfigError, match="--resume"):
        finetune(base_config(tiny_llava_dir, shapes_data["vqa"], out), callbacks=[], progress=False)
    again = resume(out, callbacks=[], progress=False)
    assert again.steps == 6 and again.metrics == result.metrics


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / ckpt.CHECKPOINTS / "step-000001"
    ckpt.atomic_dir(target, lambda d: (d / "state.pt").write_text("one"))

    def crash(d):
        (d / "state.pt").write_text("two")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        ckpt.atomic_dir(target, crash)
    assert (target / "state.pt").read_text() == "one"                    # the old one is intact
    assert [p for _, p in ckpt.list_checkpoints(tmp_path)] == [target]   # the half-written one is not listed
    ckpt.clean_temporaries(tmp_path)
    assert sorted(p.name for p in target.parent.iterdir()) == ["step-000001"]
    ckpt.atomic_dir(target, lambda d: (d / "state.pt").write_text("three"))
    assert (target / "state.pt").read_text() == "three"


def _tree_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def test_sigkill_then_resume_gives_the_same_adapter_as_an_uninterrupted_run(tiny_llava_dir, shapes_data, tmp_path,
                                                                            subprocess_env):
    training = dict(max_steps=8, save_every=2, eval_every=3, lr_scheduler="cosine")
    killed = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(base_config(tiny_llava_dir, shapes_data["vqa"], killed, **training)))
    env = dict(subprocess_env, OMP_NUM_THREADS="1", VLMSTUDY_FINETUNE_STEP_DELAY="0.4")
    proc = subprocess.Popen([sys.executable, "-m", "vlmstudy", "finetune", "--config", str(config), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not ckpt.list_checkpoints(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    log = proc.communicate()[0].decode(errors="replace")
    saved = ckpt.list_checkpoints(killed)
    assert saved and saved[-1][0] < 8, f"the run was not killed mid-way: {saved}\n{log[-2000:]}"
    assert not (killed / "run.json").exists() and proc.returncode == -signal.SIGKILL
    before = {step: _tree_hashes(path) for step, path in saved}

    env.pop("VLMSTUDY_FINETUNE_STEP_DELAY")
    done = subprocess.run([sys.executable, "-m", "vlmstudy", "finetune", "--resume", str(killed), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 8
    for step, path in saved:                      # nothing saved before the kill was lost or changed
        assert _tree_hashes(path) == before[step]

    with one_thread():
        straight = finetune(base_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / "straight", **training),
                            callbacks=[], progress=False)
    a, b = _adapter(killed), _adapter(straight.output_dir)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key
    resumed_history = json.loads((killed / "history.json").read_text())
    assert [h.get("loss") for h in resumed_history] == [h.get("loss") for h in straight.history]


# ----------------------------------------------------------------------------- save / load / merge

def test_adapter_save_load_merge_give_the_same_logits(tiny_llava_dir, shapes_data, tmp_path):
    out = tmp_path / "run"
    cfg = base_config(tiny_llava_dir, shapes_data["vqa"], out, max_steps=4, learning_rate=5e-2)
    cfg["lora"]["modules_to_save"] = ["multi_modal_projector"]
    with one_thread():
        result = finetune(cfg, callbacks=[], progress=False)
    ex = result.model.get_base_model()
    proc = result.processor
    scene = shapes.make_scenes("test", 2, seed=5)
    text = "USER: <image>\nwhat colour is the shape on the left? ASSISTANT:"
    batch = proc(images=[s.render() for s in scene], text=[text, text], return_tensors="pt")

    def logits(model):
        with torch.no_grad():
            return model(**batch).logits

    trained = logits(result.model)
    base, _ = vlmstudy.load(str(tiny_llava_dir))
    assert (trained - logits(base)).abs().max() > 1e-4            # the adapter changed something
    loaded, _ = load_adapter(out)
    assert torch.allclose(logits(loaded), trained, atol=1e-5)
    merged_dir = merge_adapter(out, tmp_path / "merged")
    assert (merged_dir / "model.safetensors").is_file()
    merged, merged_proc = vlmstudy.load(str(merged_dir))
    assert type(merged).__name__ == "LlavaForConditionalGeneration"
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(logits(merged), trained, atol=1e-5)
    assert merged_proc.tokenizer("brown").input_ids == proc.tokenizer("brown").input_ids
    assert ex is not None


def test_load_adapter_errors(tmp_path):
    with pytest.raises(vlmstudy.ModelUnavailableError, match="No LoRA adapter"):
        load_adapter(tmp_path)


def test_quantization_without_cuda_falls_back_to_lora_and_says_so(tiny_llava_dir, shapes_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: QLoRA would really run")
    cfg = base_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / "q", max_steps=1, eval_max_examples=0)
    cfg["quantization"] = "nf4"
    cfg["training"]["optimizer"] = "paged_adamw_8bit"
    with one_thread(), pytest.warns(UserWarning, match="QLoRA \\(nf4\\) needs a CUDA GPU"):
        result = finetune(cfg, callbacks=[], progress=False)
    assert result.info["quantization_applied"] is False
    assert any("needs a CUDA GPU" in n for n in result.info["notes"])
    assert any("paged_adamw_8bit -> adamw" in n for n in result.info["notes"])


def test_bad_data_refuses_to_start_and_skip_invalid_trains(tiny_llava_dir, shapes_data, tmp_path):
    records = json.loads(Path(shapes_data["vqa"]).read_text())[:20]
    records[3]["answer"] = ""
    records[5]["image"] = "images/none.png"
    bad = Path(shapes_data["vqa"]).parent / "bad.json"
    bad.write_text(json.dumps(records))
    cfg = base_config(tiny_llava_dir, bad, tmp_path / "bad", max_steps=1, eval_max_examples=0)
    with pytest.raises(DataFormatError) as err:
        finetune(cfg, callbacks=[], progress=False)
    assert "record 3, field 'answer'" in str(err.value) and "record 5, field 'image'" in str(err.value)
    assert not (tmp_path / "bad").exists()                     # nothing written before the data is checked
    cfg["data"]["skip_invalid"] = True
    with one_thread(), pytest.warns(UserWarning, match="skipping 2"):
        result = finetune(cfg, callbacks=[], progress=False)
    assert result.info["data"]["skipped_records"] == 2 and result.info["data"]["records"] == 18


# ----------------------------------------------------------------------------- CLI

def test_cli_keys_and_errors(capsys, tmp_path):
    assert cli_main(["finetune", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "lora.r" in out and "training.save_every" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llava\noutput_dir: x\ndata: {path: d.json}\nlora: {rank: 8}\n")
    assert cli_main(["finetune", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lora.rank" in err and err.count("\n") == 1
    assert cli_main(["finetune", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert cli_main(["finetune", "--merge", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_data_commands(tmp_path, capsys):
    assert cli_main(["data", "shapes", str(tmp_path / "s"), "--n", "2"]) == 0
    assert cli_main(["data", "check", str(tmp_path / "s" / "instruction.json")]) == 0
    assert "valid conversations records" in capsys.readouterr().out   # instruction.json holds conversations
    vqa = tmp_path / "s" / "vqa.json"
    assert cli_main(["data", "convert", str(vqa), str(tmp_path / "t" / "text.json"), "--to", "text"]) == 0
    assert cli_main(["data", "check", str(tmp_path / "t" / "text.json"), "--allow-outside-root"]) == 0
    assert "valid text records" in capsys.readouterr().out
    assert cli_main(["data", "shapes", str(tmp_path / "g" / "multimodal_train.json"), "--n", "2", "--format", "vqa"]) == 0
    assert cli_main(["data", "check", str(tmp_path / "g" / "multimodal_train.json")]) == 0
    assert "valid vqa records" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "x.png", "question": "q", "answer": ""}]))
    assert cli_main(["data", "check", str(tmp_path / "bad.json")]) == 2
    assert "record 0, field 'image'" in capsys.readouterr().err
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "a cat"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert cli_main(["data", "convert", "coco", str(tmp_path / "coco.json"), "--images", "imgs",
                     "--out", str(tmp_path / "cap.json")]) == 0
    assert json.loads((tmp_path / "cap.json").read_text())[0]["caption"] == "a cat"
    assert cli_main(["data", "convert", "vqav2", "--images", "imgs", "--out", str(tmp_path / "v.json")]) == 2


# ----------------------------------------------------------------------------- benchmark

def test_bench_qlora_small(tmp_path, load_script, restore_threads):
    module = load_script("benchmarks/bench_qlora_gpu.py")
    out = tmp_path / "q.json"
    assert module.main(["--small", "--steps", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "qlora_gpu" and data["small"] is True
    r = data["results"]
    assert r["steps_timed"] == 2 and r["seconds_per_step"] > 0 and r["trainable_parameters"] > 0
    assert r["tokens_per_sequence"] == data["config"]["sequence_length"]
    assert set(data["choices"]) >= {"gradient_checkpointing", "optimizer", "quantization", "lora"}


@pytest.mark.parametrize("name", ["llava_instruction", "llava_vqa_qlora", "blip2_caption", "blip_vqa"])
def test_example_configs_run_one_step_on_the_stand_ins(name, shapes_data, tmp_path):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    overrides = {"data.path": str(shapes_data[cfg.data.format]), "output_dir": str(tmp_path / name),
                 "data.eval_split": 2, "training.max_steps": 1, "training.eval_max_examples": 2,
                 "training.save_every": 1}
    with one_thread(), warnings_allowed():
        result = finetune(cfg, callbacks=[], progress=False, **overrides)
    assert result.steps == 1 and ckpt.list_checkpoints(tmp_path / name)
    assert result.info["quantization_applied"] is (cfg.quantization != "none" and torch.cuda.is_available())


@contextlib.contextmanager
def warnings_allowed():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the QLoRA config warns that it falls back to LoRA on a CPU
        yield
