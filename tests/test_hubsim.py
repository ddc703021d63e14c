"""The simulated Hub (vlmstudy.testing.hubsim): a cache huggingface_hub accepts, in which every
registry checkpoint loads through ``vlmstudy.load`` in hub mode and runs with its real processor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vlmstudy.zoo.registry import CARDS

pytestmark = pytest.mark.hub  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

# Runs in a child process: the root conftest.py fixed HF_HOME for this one before anything was imported.
_CHECK_ALL = r"""
import json, sys
import torch
import vlmstudy
from vlmstudy import attention
from vlmstudy.shapes import make_scenes, render

image = render(make_scenes("test", n=1, seed=0)[0], size=200)
out = {}
for name in vlmstudy.zoo.registry.model_names():
    model, proc = vlmstudy.load(name)
    r = {"tokenizer": type(proc.tokenizer).__name__, "mode": vlmstudy.get_mode(),
         "source": model.config._name_or_path}
    with torch.no_grad():
        if name in ("clip", "siglip"):
            kw = {"padding": "max_length"} if name == "siglip" else {"padding": True}
            inp = proc(text=["a red circle", "a blue square"], images=image, return_tensors="pt", **kw)
            logits = model(**inp).logits_per_image
            r.update(pixels=list(inp.pixel_values.shape), ids=inp.input_ids[0].tolist(), logits=list(logits.shape))
        else:
            if name.startswith("llava") or name in ("qwen2-vl", "smolvlm"):
                conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
                prompt = proc.apply_chat_template(conv, add_generation_prompt=True)
            elif name == "blip-caption":
                prompt = "a picture of"
            else:
                prompt = "Question: what colour is the circle? Answer:"
            inp = proc(images=image, text=prompt, return_tensors="pt")
            gen = model.generate(**inp, max_new_tokens=4, do_sample=False)
            r.update(prompt=prompt, pixels=list(inp.pixel_values.shape), ids=inp.input_ids[0].tolist(),
                     generated=gen[0].tolist(), text=proc.decode(gen[0], skip_special_tokens=True))
            if "qformer_input_ids" in inp:
                r["qformer_ids"] = inp.qformer_input_ids[0].tolist()
            if hasattr(model.config, "image_token_index"):
                r["image_token_index"] = model.config.image_token_index
    if name in ("clip", "blip-caption"):
        maps = attention.cls_attention_map(attention.vision_attentions(model, proc, [image]))
        r["cls_map"] = list(maps.shape)
    out[name] = r
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def results(hub_env):
    proc = subprocess.run([sys.executable, "-c", _CHECK_ALL], env=hub_env, capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    return json.loads(line[0][len("RESULT "):])


def test_cache_layout_is_what_huggingface_hub_expects(hubsim_home):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hubsim_home / "hub")
    assert not info.warnings, info.warnings
    assert sorted(r.repo_id for r in info.repos) == sorted(c.hub_id for c in CARDS)
    for repo in info.repos:
        (revision,) = repo.revisions
        assert "main" in revision.refs
        names = {f.file_name for f in revision.files}
        assert {"config.json", "model.safetensors", "README.md"} <= names, (repo.repo_id, names)
        for f in revision.files:  # snapshot entries are links into blobs/, as huggingface_hub writes them
            assert f.file_path.is_symlink() and f.blob_path.parent.name == "blobs"
    assert info.size_on_disk < 300e6


def test_build_is_idempotent_and_names_select(hubsim_home, tmp_path):
    from vlmstudy.testing.hubsim import STAMP_NAME, build_hub_cache

    stamp = hubsim_home / STAMP_NAME
    before = stamp.stat().st_mtime_ns
    build_hub_cache(hubsim_home)  # already built by this version: nothing is rewritten
    assert stamp.stat().st_mtime_ns == before
    hub = build_hub_cache(tmp_path, names=["clip"])
    assert [p.name for p in hub.iterdir()] == ["models--openai--clip-vit-base-patch32"]
    assert json.loads((tmp_path / STAMP_NAME).read_text())["repos"].keys() == {"openai/clip-vit-base-patch32"}


@pytest.mark.parametrize("repo_id, shipped", [
    ("google/siglip-base-patch16-224", {"spiece.model", "tokenizer_config.json", "preprocessor_config.json"}),
    ("openai/clip-vit-base-patch32", {"vocab.json", "merges.txt", "tokenizer.json", "preprocessor_config.json"}),
    ("Salesforce/blip-vqa-base", {"vocab.txt", "tokenizer.json", "preprocessor_config.json"}),
    ("Salesforce/blip2-opt-2.7b", {"vocab.json", "merges.txt", "processor_config.json"}),
    ("Salesforce/instructblip-vicuna-7b", {"tokenizer.model", "qformer_tokenizer/vocab.txt", "processor_config.json"}),
    ("llava-hf/llava-1.5-7b-hf", {"tokenizer.model", "chat_template.json", "processor_config.json"}),
    ("llava-hf/llava-v1.6-mistral-7b-hf", {"tokenizer.model", "chat_template.json", "preprocessor_config.json"}),
])
def test_repos_ship_the_real_files(hubsim_home, repo_id, shipped):
    snapshots = hubsim_home / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    (snapshot,) = snapshots.iterdir()
    names = {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()}
    assert shipped <= names
    if repo_id.startswith("google/siglip"):
        assert "tokenizer.json" not in names  # the real repo has none: loading needs sentencepiece
    card = (snapshot / "README.md").read_text()
    assert "simulated" in card.lower() and "random" in card.lower()


def test_every_model_loads_in_hub_mode(results):
    assert set(results) == {c.name for c in CARDS}
    assert all(r["mode"] == "hub" for r in results.values())
    assert {r["source"] for r in results.values()} == {c.hub_id for c in CARDS}


def test_dual_encoders_run_at_real_sizes(results):
    clip, siglip = results["clip"], results["siglip"]
    assert clip["pixels"] == [1, 3, 224, 224] and clip["logits"] == [1, 2]
    assert clip["ids"][0] == 49406 and clip["ids"][-1] == 49407  # <|startoftext|> ... <|endoftext|>
    assert clip["cls_map"] == [1, 7, 7]  # ViT-B/32 at 224 px
    assert siglip["tokenizer"] == "SiglipTokenizer" and siglip["pixels"] == [1, 3, 224, 224]
    assert len(siglip["ids"]) == 64 and siglip["ids"][-1] == 1  # padded to 64 with </s> = 1


def test_blip_runs_at_384_px(results):
    for name in ("blip-caption", "blip-vqa"):
        r = results[name]
        assert r["tokenizer"] == "BertTokenizer" and r["pixels"] == [1, 3, 384, 384]
        assert r["generated"][0] == 30522  # BLIP's decoder starts at bos_token_id [DEC]
    assert results["blip-caption"]["cls_map"] == [1, 24, 24]  # ViT-B/16 at 384 px
    assert results["blip-caption"]["ids"][0] == 30522  # the caption prompt's [CLS] is replaced by bos


def test_qformer_models_get_32_query_tokens(results):
    blip2, iblip = results["blip2"], results["instructblip"]
    assert blip2["image_token_index"] == 50265 and blip2["ids"].count(50265) == 32
    assert iblip["image_token_index"] == 32001 and iblip["ids"].count(32001) == 32
    assert blip2["pixels"] == iblip["pixels"] == [1, 3, 224, 224]
    # the Q-Former reads the instruction with its own BERT tokenizer (qformer_tokenizer/), not Vicuna's
    assert iblip["qformer_ids"][0] == 101 and max(iblip["qformer_ids"]) < 30523


def test_llava_has_576_image_tokens_and_the_real_template(results):
    r = results["llava"]
    assert r["prompt"] == "USER: <image>\nWhat is this? ASSISTANT:"
    assert r["pixels"] == [1, 3, 336, 336]
    assert r["ids"][0] == 1 and r["ids"].count(32000) == 576


def test_llava_next_uses_any_resolution_tiles(results):
    r = results["llava-next"]
    assert r["prompt"] == "[INST] <image>\nWhat is this? [/INST]"
    n_tiles = r["pixels"][1]
    assert r["pixels"][2:] == [3, 336, 336] and n_tiles >= 3  # base view + a 336x672 / 672x336 grid
    assert r["ids"].count(32000) > 576  # generate ran, so the model's own feature count matched


@pytest.mark.parametrize("name", ["blip-caption", "blip2", "instructblip", "llava", "llava-next"])
def test_generation_is_noise_made_of_real_pieces(results, name):
    """Random weights, but the output decodes to trained pieces, never the vocabulary's filler."""
    r = results[name]
    assert r["text"].strip()
    assert "hubsim_unused" not in r["text"] and "[unused" not in r["text"]


def test_hubsim_cli_prints_the_environment(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "vlmstudy", "zoo", "hubsim", "--home", str(tmp_path), "clip"],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"export HF_HOME={tmp_path}" in proc.stdout and "VLMSTUDY_MODE=hub" in proc.stdout
    assert "HF_HUB_OFFLINE=1" in proc.stdout
    assert (tmp_path / "hub" / "models--openai--clip-vit-base-patch32").is_dir()
    assert not os.path.exists(tmp_path / "hub" / "models--llava-hf--llava-1.5-7b-hf")
