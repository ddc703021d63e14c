"""Issue 20: the fine-tuning guide's config layout, commands and Python API on the tiny models; the
2-process accelerate run (CPU, gloo) against a 1-process run, and its kill + resume; issue 25's
hostile configs (alias bomb, output_dir that is a file)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_finetune import one_thread, shapes_data, tiny_llava_dir  # noqa: F401  (fixtures)

from vlmstudy import data
from vlmstudy.cli import main as cli_main
from vlmstudy.errors import ConfigError
from vlmstudy.finetune import checkpoint as ckpt
from vlmstudy.finetune import finetune, load_config

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

REPO = Path(__file__).resolve().parent.parent


def guide_config(model, data_path, out, **training):
    """The guide's layout, as configs/multimodal_config.yaml writes it, made small."""
    return {"model_name": str(model), "model_type": "llava", "dataset_path": str(data_path), "output_dir": str(out),
            "lora": {"use_lora": True, "r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
            "training": {"batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                         "max_steps": 4, "eval_max_examples": 0, **training},
            "advanced": {"gradient_checkpointing": False}, "image_processing": {"resize": [64, 64]},
            "data": {"eval_split": 0}}


def test_the_shipped_guide_config_is_accepted_as_written():
    cfg = load_config(REPO / "configs" / "multimodal_config.yaml")
    assert (cfg.model, cfg.model_type, cfg.data.path) == ("llava-hf/llava-1.5-7b-hf", "llava", "data/multimodal_train.json")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.use_lora) == (16, 32, True)
    assert cfg.training.gradient_accumulation == 4 and cfg.training.gradient_checkpointing is True
    assert cfg.data.resize == [224, 224]


@pytest.mark.parametrize("raw,message", [
    ({"advanced": {"gradient_checkpoint": True}}, "unknown key 'advanced.gradient_checkpoint'. Did you mean "
                                                  "'advanced.gradient_checkpointing'?"),
    ({"image_processing": {"size": 3}}, "unknown key 'image_processing.size'"),
    ({"lora": {"lora_alph": 3}}, "Did you mean 'lora.lora_alpha'?"),
    ({"model": "blip2"}, "model_name and model are the same setting"),
    ({"image_processing": {"resize": [224]}}, "data.resize (image_processing.resize) must be [width, height]"),
    ({"model_type": "gpt"}, "model_type must be one of"),
])
def test_guide_layout_errors_name_the_key(raw, message):
    base = {"model_name": "llava", "dataset_path": "d.json", "output_dir": "o"}
    with pytest.raises(ConfigError) as err:
        load_config({**base, **raw})
    assert message in str(err.value)


def test_yaml_alias_bomb_and_recursive_alias_are_refused(tmp_path):
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(bomb)
    assert time.perf_counter() - started < 5
    (tmp_path / "loop.yaml").write_text("a: &a [*a]\n")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "ok.yaml").write_text("model: &m llava\noutput_dir: o\ndata: {path: *m}\n")
    assert load_config(tmp_path / "ok.yaml").data.path == "llava"       # a few plain aliases are fine


def test_output_dir_that_is_a_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    config = tmp_path / "c.yaml"
    for out, what in ((tmp_path / "taken", "is a file"), (tmp_path / "taken" / "run", "lies under")):
        config.write_text(yaml.safe_dump({"model": "llava", "output_dir": str(out), "data": {"path": "d.json"}}))
        assert cli_main(["finetune", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: output_dir") and what in err and err.count("\n") == 1


def test_guide_cli_flags_train_and_write_a_loadable_final_model(tiny_llava_dir, tmp_path, capsys):  # noqa: F811
    import vlmstudy

    path = data.create_sample_multimodal_dataset(tmp_path / "data" / "multimodal_train.json", 6, format="instruction")
    out = tmp_path / "outputs" / "llava_finetuned"
    with one_thread():
        code = cli_main(["finetune", "--model_name", str(tiny_llava_dir), "--model_type", "llava", "--dataset_path",
                         str(path), "--output_dir", str(out), "--set", "training.max_steps=2",
                         "--set", "training.eval_max_examples=0", "--set", "lora.r=4", "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["final_model"] == str(out / "final_model")
    model, processor = vlmstudy.load(str(out / "final_model"))
    assert type(model).__name__ == "LlavaForConditionalGeneration" and not hasattr(model, "peft_config")
    # the merged final model computes what the trained adapter model computes
    from vlmstudy.finetune import load_adapter

    peft_model, _ = load_adapter(out)
    image = data.load_dataset(path)[0]["image"]
    enc = processor(images=[vlmstudy.load_image(image)], text=processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], add_generation_prompt=True),
        return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, peft_model(**enc).logits, atol=1e-4)
    # wrong model_type: refused before training, naming both
    assert cli_main(["finetune", "--model_name", str(tiny_llava_dir), "--model_type", "blip2", "--dataset_path",
                     str(path), "--output_dir", str(tmp_path / "x"), "--quiet"]) == 2
    assert "model_type is 'blip2'" in capsys.readouterr().err
    # infer: describe, ask, prompt, and the interactive lines
    for extra in ([], ["--question", "what colour is it?"], ["--prompt", "list the shapes."]):
        assert cli_main(["infer", "--model_path", str(out / "final_model"), "--model_type", "llava", "--image", image,
                         "--max_new_tokens", "4", *extra]) == 0
        assert capsys.readouterr().out.strip() != ""
    mm = vlmstudy.MultiModalModel(model_name=str(out / "final_model"), model_type="llava")
    assert mm.generate_from_image(image, "list the shapes.", max_new_tokens=4) == \
        vlmstudy.Inference(model=str(out / "final_model")).generate(image, "list the shapes.", max_new_tokens=4)


def test_infer_interactive_mode(tiny_llava_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    import io

    image = str(data.create_sample_multimodal_dataset(tmp_path / "d.json", 1).parent / "images" / "0000.png")
    lines = f'describe {image}\nask "{image}" what colour is it?\nask nope.png what?\nprompt {image}\nquit\nask x y\n'
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = cli_main(["infer", "--model_path", str(tiny_llava_dir), "--max_new_tokens", "3"])
    captured = capsys.readouterr()
    assert code == 1                                              # two requests failed, the loop went on
    assert len(captured.out.strip().splitlines()) == 2            # describe + ask answered; nothing after quit
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and "nope.png" in errors[0] and "prompt needs text" in errors[1]


def test_full_finetuning_says_so_and_trains_the_language_model(tiny_llava_dir, shapes_data, tmp_path, capsys):  # noqa: F811
    cfg = guide_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / "full", max_steps=2)
    cfg["lora"] = {"use_lora": False}
    with one_thread():
        result = finetune(cfg, callbacks=[], progress=True)
    assert "full fine-tuning of what fits" in capsys.readouterr().out
    assert 0 < result.params["trainable"] < result.params["total"]   # the vision tower stays frozen
    assert not (tmp_path / "full" / "adapter").exists() and (tmp_path / "full" / "final_model" / "config.json").is_file()
    trained = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("model.language_model.") for n in trained)


def test_estimate_prints_every_registry_model(capsys):
    from vlmstudy.finetune.memory import estimate_model, trainable_model_names

    assert cli_main(["finetune", "--estimate", "--config", str(REPO / "configs" / "llava_vqa_qlora.yaml")]) == 0
    out = capsys.readouterr().out
    for name in trainable_model_names():
        assert f"\n{name} " in out
    assert "llava-13b" in out and "blip2-flan-t5-xl" in out
    lora, qlora = estimate_model("llava", batch_size=2, r=16)
    assert qlora["weights"] < lora["weights"] / 3                  # 4-bit vs 16-bit base
    assert lora["total"] == sum(lora[k] for k in ("weights", "adapter", "gradients", "optimizer_state", "activations"))
    big, _ = estimate_model("llava-13b", batch_size=2, r=16)
    assert big["weights"] > 1.8 * lora["weights"]


# ----------------------------------------------------------------------------- accelerate, 2 processes

def _launch(config: Path, env: dict, processes: int, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "vlmstudy", "finetune", *extra, "--quiet"]
    if not extra:
        cmd[-1:-1] = []
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it. ``os.killpg`` of the launcher is not enough:
    torch's elastic agent (what ``accelerate launch --multi_gpu`` runs) starts each worker with
    ``start_new_session=True`` (torch/distributed/elastic/multiprocessing/subprocess_handler), so
    the workers are in process groups of their own, outlive a killed launcher and finish the run."""
    import psutil

    root = psutil.Process(pid)
    family = [root, *root.children(recursive=True)]  # read before any dies: orphans leave the tree
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"still running after SIGKILL: {alive}"


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.fixture
def two_process_env(subprocess_env):
    env = dict(subprocess_env, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("WORLD_SIZE", None)
    return env


def test_two_processes_give_the_one_process_loss_curve(tiny_llava_dir, shapes_data, tmp_path,  # noqa: F811
                                                       two_process_env):
    """2 processes x batch 2 (DDP over gloo on the CPU) against 1 process x batch 4: the same global
    batches, so the same losses up to float rounding (tolerance 1e-4 relative)."""
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump(guide_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / "two", batch_size=2,
                                               max_steps=4, save_every=2)))
    done = _launch(two, two_process_env, 2, "--config", str(two))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["processes"] == 2 and (tmp_path / "two" / "final_model" / "model.safetensors").is_file()
    with one_thread():
        one = finetune(guide_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / "one", batch_size=4, max_steps=4),
                       callbacks=[], progress=False)
    two_losses = [h["loss"] for h in json.loads((tmp_path / "two" / "history.json").read_text()) if "loss" in h]
    one_losses = [h["loss"] for h in one.history if "loss" in h]
    assert len(two_losses) == len(one_losses) == 4
    assert two_losses == pytest.approx(one_losses, rel=1e-4)
    a, b = _adapter(tmp_path / "two"), _adapter(tmp_path / "one")
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-3, atol=1e-5), key


def test_two_process_kill_and_resume_gives_the_uninterrupted_adapter(tiny_llava_dir, shapes_data, tmp_path,  # noqa: F811
                                                                    two_process_env):
    def config(name):
        path = tmp_path / f"{name}.yaml"
        raw = guide_config(tiny_llava_dir, shapes_data["vqa"], tmp_path / name, batch_size=2, max_steps=6,
                           save_every=2)
        raw["lora"]["lora_dropout"] = 0.1    # random numbers too: they must follow the step after resume
        path.write_text(yaml.safe_dump(raw))
        return path

    killed = tmp_path / "killed"
    proc = _launch(config("killed"), dict(two_process_env, VLMSTUDY_FINETUNE_STEP_DELAY="1.5"), 2,
                   "--config", str(tmp_path / "killed.yaml"), wait=False)
    deadline = time.time() + 180
    while not ckpt.list_checkpoints(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    _kill_tree(proc.pid)                             # the launcher and both workers, as a crash would
    log = proc.communicate(timeout=60)[0].decode(errors="replace")
    saved = ckpt.list_checkpoints(killed)
    assert saved and saved[-1][0] < 6, f"not killed mid-way: {saved}\n{log[-3000:]}"
    assert not (killed / "run.json").exists()

    resumed = _launch(None, two_process_env, 2, "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    straight = _launch(config("straight"), two_process_env, 2, "--config", str(tmp_path / "straight.yaml"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = _adapter(killed), _adapter(tmp_path / "straight")
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- accelerate launch configs

ACCELERATE_CONFIGS = {"ddp": ("MULTI_GPU", "multi_gpu"), "fsdp": ("FSDP", "use_fsdp"),
                      "deepspeed_zero3": ("DEEPSPEED", "use_deepspeed")}


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_configs_load_with_accelerates_own_loader(name):
    """Each shipped launch config goes through accelerate's config loader (unknown top-level keys
    raise there) and its launch validation; every key of its fsdp_config / deepspeed_config is
    one that ``accelerate launch`` reads (it copies them onto its arguments, so a misspelt one
    would be ignored without a word); the FSDP and ZeRO-3 settings arrive in the workers' environment."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    distributed_type, flag = ACCELERATE_CONFIGS[name]
    loaded = load_config_from_file(str(path))
    assert isinstance(loaded, ClusterConfig) and loaded.distributed_type.name == distributed_type
    assert loaded.mixed_precision == "bf16" and loaded.num_machines == 1 and loaded.num_processes >= 2
    text = path.read_text()
    assert "7B" in text and "13B" in text, "the file says which model it is for"
    parser = launch_command_parser()
    dests = {action.dest for action in parser._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        for key in getattr(loaded, section):
            dest = "fsdp_" + key if section == "fsdp_config" and not key.startswith("fsdp") else key
            assert dest in dests, f"{path.name}: {section}.{key} is not an accelerate launch setting"
    args, defaults, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "-m", "vlmstudy",
                                                                    "finetune"]))
    assert getattr(args, flag) is True and args.num_processes == loaded.num_processes
    if name == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin
        from accelerate.utils.launch import prepare_multi_gpu_env

        env = {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_USE"))}
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            plugin = FullyShardedDataParallelPlugin()   # accelerate's own checks of the values
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    if name == "deepspeed_zero3":
        from accelerate.utils.launch import prepare_deepspeed_cmd_env

        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        env = prepare_deepspeed_cmd_env(args)[1]
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3" and env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"
        assert defaults.deepspeed_config["gradient_accumulation_steps"] == load_config(
            REPO / "configs" / "multimodal_config.yaml").training.gradient_accumulation


@pytest.mark.parametrize("variable,engine", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_a_sharded_launch_is_refused_in_one_line(variable, engine, monkeypatch):
    """The loop trains with DDP only: an FSDP / DeepSpeed launch (accelerate sets these variables
    from the config file) stops before any model is loaded, saying what to use instead."""
    from vlmstudy.finetune import distributed

    monkeypatch.setenv(variable, "true")
    with pytest.raises(ConfigError) as err:
        distributed.make_accelerator()
    message = str(err.value)
    assert "\n" not in message and engine in message and "configs/accelerate/ddp.yaml" in message
    monkeypatch.setenv(variable, "false")
    accelerator, _ = distributed.make_accelerator()
    assert accelerator.num_processes == 1
