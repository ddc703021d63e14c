"""A simulated Hugging Face Hub: a standard HF cache holding every registry checkpoint, built locally.

``build_hub_cache(home)`` writes ``home/hub/models--ORG--NAME/{blobs,refs,snapshots}`` exactly as
``huggingface_hub`` lays out a download, so that with ``HF_HOME=home HF_HUB_OFFLINE=1
VLMSTUDY_MODE=hub`` every ``from_pretrained("openai/clip-vit-base-patch32")`` in the course finds
a checkpoint, and hub mode can run in CI with no network.

What is real and what is not, per simulated repository (its ``README.md`` says the same):

* real: the file layout each real repo ships, ``config.json`` values that decide shapes and
  behaviour (image size, patch size, vocabulary sizes, special-token ids, ``image_token_index``,
  query-token counts, feature layer / select strategy, any-res pinpoints), the processor and
  image-processor settings (resize, crop, resample, mean / std, padding, ``patch_size``,
  ``num_additional_image_tokens``, chat templates), the tokenizer class and files (SentencePiece
  ``spiece.model`` for SigLIP, CLIP BPE, BERT WordPiece, GPT-2 BPE for OPT, Llama
  ``tokenizer.model``), the special tokens at their real ids, and the weight key names;
* shrunk: every transformer is 2 layers of width 32 (vision, Q-Former) or 64 (text);
* not real: the weights (random, seeded) and the tokenizers' merges / pieces, which are trained
  on ShapesWorld text; ids between the trained pieces and the real special tokens are unused
  filler entries, so vocabulary sizes and special ids match the real ones.

So mechanics (shapes, token counts, templates, loading, generation loops) are those of the real
checkpoints, while every output is noise. Nothing here can stand for the real models' quality.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

HUBSIM_VERSION = 1
STAMP_NAME = "vlmstudy-hubsim.json"  # beside hub/, not inside it: scan_cache_dir wants only repos there

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
RESCALE = 0.00392156862745098
BICUBIC = 3

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
SHRUNK_NOTE = ("every transformer stack has 2 layers; vision towers and the Q-Former are 32 wide, "
               "text models 64 wide (4 heads of 16)")


# ----------------------------------------------------------------------------- text for tokenizers

def _corpus(n: int = 120) -> list[str]:
    """ShapesWorld captions, questions, answers and dialogue turns (seeded): what the simulated
    tokenizers are trained on."""
    from .. import shapes

    rng = random.Random(0)
    lines = [" ".join(shapes.vocabulary())]
    for scene in shapes.make_scenes("train", n=n, seed=0):
        lines.append(shapes.caption(scene, with_size=True))
        lines.append(shapes.short_description(scene))
        for qa in shapes.questions(scene, rng):
            lines += [qa.question, qa.answer]
        for user, assistant in shapes.dialogue(scene, rng):
            lines += [user, assistant]
    lines.append("What is in this picture? Describe the image. USER: ASSISTANT: 0 1 2 3 4 5 6 7 8 9 , . ! ? ' \"")
    return lines


def _filler(i: int) -> str:
    return f"<|hubsim_unused_{i}|>"


# ----------------------------------------------------------------------------- BPE (CLIP, OPT)

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (also CLIP's); ids 0-255 follow it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _train_bpe(lines: list[str], clip_style: bool, n_merges: int = 400) -> list[tuple[str, str]]:
    """BPE merges learned on ``lines`` with the real pre-tokenization (CLIP: lower-case, words end
    in ``</w>``; GPT-2: byte-level with ``Ġ`` marking a leading space)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if clip_style:
        tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                                 behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False)])
        trainer = trainers.BpeTrainer(vocab_size=512 + n_merges, end_of_word_suffix="</w>", initial_alphabet=alphabet,
                                      show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def _add_merges(tokens: list[str], lines: list[str], clip_style: bool, reserved: frozenset | set = frozenset()) -> list[str]:
    """Append the BPE pieces learnt on ``lines`` whose halves are already known to ``tokens`` (in
    place; ``reserved`` counts as known but is placed later) and return the merges as ``"a b"``."""
    seen = set(tokens) | set(reserved)
    merges = []
    for a, b in _train_bpe(lines, clip_style=clip_style):
        if a in seen and b in seen and a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
            merges.append(f"{a} {b}")
    return merges


def _clip_vocab(lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP's layout: 256 byte characters, the same with ``</w>``, merges, then filler up to
    49406, ``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407 (49408 entries)."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = _add_merges(tokens, lines, clip_style=True)
    tokens += [_filler(i) for i in range(49406 - len(tokens))]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def _opt_vocab(lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """OPT's GPT-2 vocabulary layout: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, byte-level
    BPE pieces, filler up to 50265 entries, with the newline ``Ċ`` at its real id 50118 (BLIP-2's
    ``eos_token_id``: generation stops at a new line)."""
    chars = list(_bytes_to_unicode().values())
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [c for c in chars if c != "Ċ"]
    merges = _add_merges(tokens, lines, clip_style=False, reserved={"Ċ"})
    fill = iter(range(10**6))
    while len(tokens) < 50265:
        tokens.append("Ċ" if len(tokens) == 50118 else _filler(next(fill)))
    return {t: i for i, t in enumerate(tokens)}, merges


# ----------------------------------------------------------------------------- WordPiece (BERT)

def _bert_vocab(lines: list[str]) -> list[str]:
    """bert-base-uncased's layout: ``[PAD]`` 0, ``[unused0..98]``, ``[UNK]`` 100, ``[CLS]`` 101,
    ``[SEP]`` 102, ``[MASK]`` 103, WordPiece pieces trained here, ``[unused..]`` filler up to 30522."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=800, special_tokens=[], show_progress=False))
    learned = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [t for t, _ in learned if t not in head]
    vocab = head + words
    vocab += [f"[unused{99 + i}]" for i in range(30522 - len(vocab))]
    return vocab


# ----------------------------------------------------------------------------- SentencePiece

def _train_sentencepiece(lines: list[str], kind: str, size: int) -> bytes:
    """A SentencePiece model with the real special ids, padded to ``size`` pieces with UNUSED
    entries (never produced by encoding).

    kind "siglip": unigram, ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, no bos (google/siglip-*'s spiece.model);
    kind "llama": BPE with byte fallback, ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, bytes 3-258 (Llama / Mistral).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    out = io.BytesIO()
    common = dict(sentence_iterator=iter(lines), model_writer=out, vocab_size=600, hard_vocab_limit=False,
                  character_coverage=1.0, num_threads=1, minloglevel=2, seed_sentencepiece_size=100000,
                  shuffle_input_sentence=False)
    if kind == "siglip":
        spm.SentencePieceTrainer.train(**common, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    else:
        spm.SentencePieceTrainer.train(**common, model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2,
                                       pad_id=-1)
    proto = pb.ModelProto()
    proto.ParseFromString(out.getvalue())
    i = 0
    while len(proto.pieces) < size:
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = _filler(i), -1e9, pb.ModelProto.SentencePiece.UNUSED
        i += 1
    return proto.SerializeToString()


# ----------------------------------------------------------------------------- serialisation helpers

def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def _added(content: str, special: bool = True, normalized: bool = False, lstrip: bool = False,
           rstrip: bool = False) -> dict:
    return dict(content=content, lstrip=lstrip, normalized=normalized, rstrip=rstrip, single_word=False,
                special=special)


def _saved(obj, *names: str, **save_kwargs) -> dict[str, bytes]:
    """``obj.save_pretrained`` into a scratch folder; return the files named (all when none)."""
    with tempfile.TemporaryDirectory() as tmp:
        obj.save_pretrained(tmp, **save_kwargs)
        root = Path(tmp)
        paths = [root / n for n in names] if names else [p for p in root.rglob("*") if p.is_file()]
        return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def _quiet_ids(tokenizer_files: dict[str, bytes], vocab_size: int) -> list[int]:
    """Ids a generating model should never pick: the filler entries and the ids past the
    tokenizer (real text vocabularies are padded to a multiple of 64)."""
    spec = json.loads(tokenizer_files["tokenizer.json"])
    vocab = spec["model"]["vocab"]
    pairs = [(tok, i) for i, (tok, _) in enumerate(vocab)] if isinstance(vocab, list) else list(vocab.items())
    pairs += [(t["content"], t["id"]) for t in spec.get("added_tokens", [])]
    live = {i for tok, i in pairs if not (tok.startswith("<|hubsim_unused_") or tok.startswith("[unused"))}
    return [i for i in range(vocab_size) if i not in live]


def _model_files(model_class: str, config, seed: int, dtype: str, quiet: list[int] | None = None) -> dict[str, bytes]:
    """Random seeded weights for ``config``, saved with the key names the real checkpoint uses
    (transformers writes the original format by default), plus config.json / generation_config.json.

    quiet: output ids whose rows of the output embedding are zeroed (and bias, if any, set to
    -30) so that greedy decoding picks trained pieces rather than filler: the random weights then
    produce noise that decodes to ShapesWorld words instead of placeholder names.
    """
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).to(getattr(torch, dtype)).eval()
    if quiet:
        head = model.get_output_embeddings()
        if head is None and hasattr(model, "text_decoder"):
            head = model.text_decoder.get_output_embeddings()
        with torch.no_grad():
            head.weight[torch.tensor(quiet)] = 0
            if getattr(head, "bias", None) is not None:
                head.bias[torch.tensor(quiet)] = -30.0
    hf_logging.disable_progress_bar()  # "Writing model shards" bars for a few MB
    try:
        return _saved(model)
    finally:
        hf_logging.enable_progress_bar()


def _readme(card, shrunk: str, tokenizer_note: str) -> bytes:
    return f"""---
tags: [vlmstudy-hubsim, simulated]
---
# Simulated `{card.hub_id}` (vlmstudy hubsim v{HUBSIM_VERSION})

**This is not `{card.hub_id}`.** It is a stand-in built by `vlmstudy zoo hubsim` so that the course's
hub mode can be tested with no network. Its outputs are noise.

- Real: the repository's file layout, the `config.json` values that fix shapes and special ids,
  the processor settings (image size, crop, resample, mean/std, padding, chat template, image-token
  counts) and the weight key names of the real checkpoint.
- Shrunk: {shrunk}.
- Weights: random (seeded), not trained.
- Tokenizer: the real class and files, with the real special tokens at their real ids; {tokenizer_note}
""".encode()


# ----------------------------------------------------------------------------- tokenizers per family

def _clip_tokenizer_files(lines) -> dict[str, bytes]:
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab(lines)
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges])
    files = _saved(tok, "tokenizer.json")
    files["vocab.json"] = _json(vocab)
    files["merges.txt"] = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    end = _added("<|endoftext|>", normalized=True)
    files["special_tokens_map.json"] = _json(dict(bos_token=_added("<|startoftext|>", normalized=True), eos_token=end,
                                                  pad_token="<|endoftext|>", unk_token=end))
    files["tokenizer_config.json"] = _json({
        "add_prefix_space": False,
        "bos_token": "<|startoftext|>", "do_lower_case": True, "eos_token": "<|endoftext|>", "errors": "replace",
        "model_max_length": 77, "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
        "added_tokens_decoder": {"49406": _added("<|startoftext|>", normalized=True),
                                 "49407": _added("<|endoftext|>", normalized=True)},
    })
    return files


def _bert_tokenizer_files(lines, processor_class: str, extra: dict | None = None) -> dict[str, bytes]:
    from transformers import BertTokenizer

    vocab = _bert_vocab(lines)
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    for token, _ in (extra or {}).items():
        tok.add_special_tokens({"bos_token": token} if token == "[DEC]" else {"additional_special_tokens": [token]})
    files = _saved(tok, "tokenizer.json")
    files["vocab.txt"] = ("\n".join(vocab) + "\n").encode()
    specials = dict(cls_token="[CLS]", mask_token="[MASK]", pad_token="[PAD]", sep_token="[SEP]", unk_token="[UNK]")
    files["special_tokens_map.json"] = _json(dict(specials, **({"bos_token": "[DEC]"} if extra else {})))
    config = dict(specials, do_basic_tokenize=True, do_lower_case=True, model_max_length=512, never_split=None,
                  processor_class=processor_class, strip_accents=None, tokenize_chinese_chars=True,
                  tokenizer_class="BertTokenizer")
    decoder = {"0": _added("[PAD]"), "100": _added("[UNK]"), "101": _added("[CLS]"), "102": _added("[SEP]"),
               "103": _added("[MASK]")}
    for token, idx in (extra or {}).items():
        decoder[str(idx)] = _added(token)
        if token == "[DEC]":
            config["bos_token"] = token
    config["added_tokens_decoder"] = decoder
    files["tokenizer_config.json"] = _json(config)
    if extra:
        files["added_tokens.json"] = _json(extra)
    return files


def _opt_tokenizer_files(lines) -> dict[str, bytes]:
    from transformers import GPT2Tokenizer

    vocab, merges = _opt_vocab(lines)
    tok = GPT2Tokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], bos_token="</s>", eos_token="</s>",
                        unk_token="</s>", pad_token="<pad>", add_bos_token=True)
    tok.add_tokens([_tokenizers_added("<image>")], special_tokens=True)
    assert tok.convert_tokens_to_ids("<image>") == 50265
    files = _saved(tok, "tokenizer.json")
    files["vocab.json"] = _json(vocab)
    files["merges.txt"] = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    files["added_tokens.json"] = _json({"<image>": 50265})
    end = _added("</s>", normalized=True)
    files["special_tokens_map.json"] = _json(dict(bos_token=end, eos_token=end, pad_token=_added("<pad>", normalized=True),
                                                  unk_token=end))
    files["tokenizer_config.json"] = _json({
        "add_bos_token": True, "add_prefix_space": False, "bos_token": "</s>", "eos_token": "</s>", "errors": "replace",
        "model_max_length": 1000000000000000019884624838656, "pad_token": "<pad>",
        "processor_class": "Blip2Processor", "tokenizer_class": "GPT2Tokenizer", "unk_token": "</s>",
        "added_tokens_decoder": {"1": _added("<pad>", normalized=True), "2": _added("</s>", normalized=True),
                                 "50265": _added("<image>")},
    })
    return files


def _tokenizers_added(content: str):
    from tokenizers import AddedToken

    return AddedToken(content, normalized=False, special=True)


def _llama_tokenizer_files(lines, added: dict[str, int], processor_class: str, padding_side: str,
                           specials: dict, model_max_length, seed_tokenizer=None) -> dict[str, bytes]:
    """A Llama SentencePiece ``tokenizer.model`` (32000 pieces) + the converted ``tokenizer.json``,
    with ``added`` tokens at their real ids (LLaVA: ``<image>`` 32000, ``<pad>`` 32001)."""
    from transformers import LlamaTokenizer

    model_bytes = seed_tokenizer or _train_sentencepiece(lines, "llama", 32000)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(model_bytes)
        tok = LlamaTokenizer.from_pretrained(tmp, legacy=False)
    tok.add_tokens([_tokenizers_added(t) for t, _ in sorted(added.items(), key=lambda kv: kv[1])], special_tokens=True)
    for token, idx in added.items():
        assert tok.convert_tokens_to_ids(token) == idx, (token, idx, tok.convert_tokens_to_ids(token))
    files = _saved(tok, "tokenizer.json")
    # the real repos' tokenizer.json (saved by LlamaTokenizerFast) prepend <s> in their post-processor
    spec = json.loads(files["tokenizer.json"])
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    files["tokenizer.json"] = _json(spec)
    files["tokenizer.model"] = model_bytes
    files["added_tokens.json"] = _json(added)
    files["special_tokens_map.json"] = _json({k: _added(v, normalized=False) for k, v in specials.items()})
    decoder = {"0": _added("<unk>"), "1": _added("<s>"), "2": _added("</s>")}
    decoder.update({str(i): _added(t) for t, i in added.items()})
    files["tokenizer_config.json"] = _json(dict(
        specials, add_bos_token=True, add_eos_token=False, clean_up_tokenization_spaces=False, legacy=False,
        model_max_length=model_max_length, padding_side=padding_side, processor_class=processor_class,
        sp_model_kwargs={}, tokenizer_class="LlamaTokenizer", use_default_system_prompt=False,
        added_tokens_decoder=decoder))
    return files


# ----------------------------------------------------------------------------- one builder per checkpoint

def _build_clip(card, lines) -> dict[str, bytes]:
    from transformers import CLIPConfig

    real = card.real_config
    config = CLIPConfig(
        text_config=dict(real["text_config"], **TEXT, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                         hidden_act="quick_gelu", projection_dim=512),
        vision_config=dict(real["vision_config"], **VISION, hidden_act="quick_gelu", projection_dim=512),
        projection_dim=real["projection_dim"], logit_scale_init_value=2.6592)
    files = _model_files("CLIPModel", config, 1, "float32")
    files.update(_clip_tokenizer_files(lines))
    files["preprocessor_config.json"] = _json({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
        "resample": BICUBIC, "size": 224})
    files["README.md"] = _readme(card, SHRUNK_NOTE + "; the projection stays 512 wide",
                                 "BPE merges trained on ShapesWorld text, vocab.json 49408 entries.")
    return files


def _build_siglip(card, lines) -> dict[str, bytes]:
    from transformers import SiglipConfig

    real = card.real_config
    # no projection in SigLIP: text and image embeddings are both hidden_size wide, so both towers get VISION's width
    config = SiglipConfig(text_config=dict(real["text_config"], **VISION, bos_token_id=None),
                          vision_config=dict(real["vision_config"], **VISION))
    files = _model_files("SiglipModel", config, 2, "float32")
    files["spiece.model"] = _train_sentencepiece(lines, "siglip", 32000)
    files["special_tokens_map.json"] = _json(dict(eos_token=_added("</s>", normalized=True, lstrip=True, rstrip=True),
                                                  pad_token=_added("</s>", normalized=True, lstrip=True, rstrip=True),
                                                  unk_token=_added("<unk>", normalized=True, lstrip=True, rstrip=True)))
    files["tokenizer_config.json"] = _json({
        "added_tokens_decoder": {"1": _added("</s>", normalized=True, lstrip=True, rstrip=True),
                                 "2": _added("<unk>", normalized=True, lstrip=True, rstrip=True)},
        "additional_special_tokens": [], "clean_up_tokenization_spaces": True, "do_lower_case": True,
        "eos_token": "</s>", "model_input_names": ["input_ids"], "model_max_length": 64, "pad_token": "</s>",
        "processor_class": "SiglipProcessor", "sp_model_kwargs": {}, "tokenizer_class": "SiglipTokenizer",
        "unk_token": "<unk>"})
    files["preprocessor_config.json"] = _json({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor", "resample": BICUBIC, "rescale_factor": RESCALE,
        "size": {"height": 224, "width": 224}})
    files["README.md"] = _readme(card, SHRUNK_NOTE.replace("text models 64", "the text tower too (no projection): 32"),
                                 "a unigram spiece.model trained on ShapesWorld text (no "
                                 "tokenizer.json, like the real repo, so loading needs sentencepiece + protobuf).")
    return files


def _blip_vision(real) -> dict:
    return dict(real["vision_config"], **VISION)


def _blip_text(real) -> dict:
    # BLIP-VQA's answer decoder cross-attends to the question encoder, BLIP's to the ViT: one width for all
    return dict(real["text_config"], **VISION, encoder_hidden_size=VISION["hidden_size"], bos_token_id=30522,
                sep_token_id=102, pad_token_id=0)


_BLIP_IMAGE_PROCESSOR = {
    "do_normalize": True, "do_resize": True, "image_mean": OPENAI_MEAN, "image_processor_type": "BlipImageProcessor",
    "image_std": OPENAI_STD, "processor_class": "BlipProcessor", "resample": BICUBIC, "rescale_factor": RESCALE,
    "size": {"height": 384, "width": 384}}


def _build_blip(card, lines, model_class: str, seed: int) -> dict[str, bytes]:
    from transformers import BlipConfig

    real = card.real_config
    config = BlipConfig(text_config=_blip_text(real), vision_config=_blip_vision(real), projection_dim=512,
                        image_text_hidden_size=256)
    tokenizer = _bert_tokenizer_files(lines, "BlipProcessor")
    files = _model_files(model_class, config, seed, "float32", _quiet_ids(tokenizer, config.text_config.vocab_size))
    files.update(tokenizer)
    files["preprocessor_config.json"] = _json(_BLIP_IMAGE_PROCESSOR)
    files["README.md"] = _readme(card, SHRUNK_NOTE.replace("text models 64", "the text encoder / decoder too: 32"),
                                 "WordPiece vocab.txt (30522 entries, bert-base-uncased "
                                 "special ids) trained on ShapesWorld text.")
    return files


def _blip2_image_processor(processor_class: str) -> dict:
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": OPENAI_MEAN, "image_processor_type": "BlipImageProcessor", "image_std": OPENAI_STD,
            "processor_class": processor_class, "resample": BICUBIC, "rescale_factor": RESCALE,
            "size": {"height": 224, "width": 224}}


def _build_blip2(card, lines) -> dict[str, bytes]:
    from transformers import Blip2Config

    real = card.real_config
    text = dict(real["text_config"], hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                word_embed_proj_dim=64, vocab_size=50304, eos_token_id=50118, bos_token_id=2, pad_token_id=1,
                prefix="</s>")
    config = Blip2Config(vision_config=dict(real["vision_config"], **VISION),
                         qformer_config=dict(real["qformer_config"], **VISION, encoder_hidden_size=VISION["hidden_size"]),
                         text_config=text, num_query_tokens=real["num_query_tokens"], image_token_index=50265,
                         image_text_hidden_size=256)
    tokenizer = _opt_tokenizer_files(lines)
    files = _model_files("Blip2ForConditionalGeneration", config, 5, "float32",
                         _quiet_ids(tokenizer, config.text_config.vocab_size))
    files.update(tokenizer)
    files["preprocessor_config.json"] = _json(_blip2_image_processor("Blip2Processor"))
    files["processor_config.json"] = _json({"num_query_tokens": 32, "processor_class": "Blip2Processor"})
    files["README.md"] = _readme(card, SHRUNK_NOTE + "; 32 query tokens, 224 px, OPT vocabulary 50304 as in the real repo",
                                 "GPT-2 byte-level BPE trained on ShapesWorld text, `<image>` 50265, newline 50118.")
    return files


def _build_instructblip(card, lines, llama_model: bytes) -> dict[str, bytes]:
    from transformers import InstructBlipConfig

    real = card.real_config
    text = dict(real["text_config"], **TEXT, num_key_value_heads=4, head_dim=16, vocab_size=32064,
                pad_token_id=32000, bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-6, tie_word_embeddings=False)
    config = InstructBlipConfig(vision_config=dict(real["vision_config"], **VISION),
                                qformer_config=dict(real["qformer_config"], **VISION,
                                                    encoder_hidden_size=VISION["hidden_size"]),
                                text_config=text, num_query_tokens=real["num_query_tokens"], image_token_index=32001)
    tokenizer = _llama_tokenizer_files(
        lines, {"[PAD]": 32000, "<image>": 32001}, "InstructBlipProcessor", "right",
        dict(bos_token="</s>", eos_token="</s>", pad_token="[PAD]", unk_token="</s>"), 2048, llama_model)
    files = _model_files("InstructBlipForConditionalGeneration", config, 6, "float32",
                         _quiet_ids(tokenizer, config.text_config.vocab_size))
    files.update(tokenizer)
    qformer = _bert_tokenizer_files(lines, "InstructBlipProcessor", extra={"[DEC]": 30522})
    files.update({f"qformer_tokenizer/{name}": data for name, data in qformer.items()})
    files["preprocessor_config.json"] = _json(_blip2_image_processor("InstructBlipProcessor"))
    files["processor_config.json"] = _json({"num_query_tokens": 32, "processor_class": "InstructBlipProcessor"})
    files["README.md"] = _readme(card, SHRUNK_NOTE + "; 32 query tokens, 224 px, Vicuna vocabulary 32064",
                                 "Llama SentencePiece tokenizer.model (32000 pieces) trained on ShapesWorld text, "
                                 "`[PAD]` 32000, `<image>` 32001; a BERT qformer_tokenizer/ with `[DEC]` 30522.")
    return files


def _clip_vision_336(real) -> dict:
    return dict(real["vision_config"], **VISION, projection_dim=768, vocab_size=32000)


def _llava_processor_files(processor_class: str) -> dict[str, bytes]:
    return {"processor_config.json": _json({
        "image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
        "processor_class": processor_class, "vision_feature_select_strategy": "default"})}


def _build_llava(card, lines, llama_model: bytes) -> dict[str, bytes]:
    from transformers import LlavaConfig

    from ..zoo.build_generative import LLAVA_CHAT_TEMPLATE

    real = card.real_config
    text = dict(real["text_config"], **TEXT, num_key_value_heads=4, head_dim=16, rms_norm_eps=1e-5,
                pad_token_id=32001, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=_clip_vision_336(real), text_config=text, image_token_index=32000,
                         pad_token_id=32001, projector_hidden_act="gelu", vision_feature_layer=-2,
                         vision_feature_select_strategy="default", image_seq_length=576)
    tokenizer = _llama_tokenizer_files(
        lines, {"<image>": 32000, "<pad>": 32001}, "LlavaProcessor", "left",
        dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
        1000000000000000019884624838656, llama_model)
    files = _model_files("LlavaForConditionalGeneration", config, 7, "float16",
                         _quiet_ids(tokenizer, config.text_config.vocab_size))
    files.update(tokenizer)
    files["preprocessor_config.json"] = _json({
        "crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": OPENAI_MEAN,
        "image_processor_type": "CLIPImageProcessor", "image_std": OPENAI_STD, "processor_class": "LlavaProcessor",
        "resample": BICUBIC, "rescale_factor": RESCALE, "size": {"shortest_edge": 336}})
    files.update(_llava_processor_files("LlavaProcessor"))
    files["chat_template.json"] = _json({"chat_template": LLAVA_CHAT_TEMPLATE})
    files["README.md"] = _readme(card, SHRUNK_NOTE + "; CLIP ViT-L/14 tower kept at 336 px / patch 14 (576 image "
                                 "tokens), Vicuna vocabulary 32064", "Llama SentencePiece tokenizer.model (32000 pieces) "
                                 "trained on ShapesWorld text, `<image>` 32000, `<pad>` 32001.")
    return files


def _build_llava_next(card, lines, llama_model: bytes) -> dict[str, bytes]:
    from transformers import LlavaNextConfig

    from ..zoo.build_generative import LLAVA_NEXT_CHAT_TEMPLATE

    real = card.real_config
    text = dict(real["text_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=1, head_dim=16, rope_theta=1000000.0, sliding_window=None, rms_norm_eps=1e-5,
                tie_word_embeddings=False)
    config = LlavaNextConfig(vision_config=_clip_vision_336(real), text_config=text, image_token_index=32000,
                             image_grid_pinpoints=real["image_grid_pinpoints"], projector_hidden_act="gelu",
                             vision_feature_layer=-2, vision_feature_select_strategy="default",
                             use_image_newline_parameter=True, tie_word_embeddings=False)
    tokenizer = _llama_tokenizer_files(
        lines, {"<image>": 32000, "<pad>": 32001}, "LlavaNextProcessor", "left",
        dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
        1000000000000000019884624838656, llama_model)
    files = _model_files("LlavaNextForConditionalGeneration", config, 8, "float16",
                         _quiet_ids(tokenizer, config.text_config.vocab_size))
    files.update(tokenizer)
    files["preprocessor_config.json"] = _json({
        "aspect_ratio_setting": "anyres", "crop_size": {"height": 336, "width": 336}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
        "image_grid_pinpoints": real["image_grid_pinpoints"], "image_mean": OPENAI_MEAN,
        "image_processor_type": "LlavaNextImageProcessor", "image_std": OPENAI_STD,
        "processor_class": "LlavaNextProcessor", "resample": BICUBIC, "rescale_factor": RESCALE,
        "size": {"shortest_edge": 336}})
    files.update(_llava_processor_files("LlavaNextProcessor"))
    files["chat_template.json"] = _json({"chat_template": LLAVA_NEXT_CHAT_TEMPLATE})
    files["README.md"] = _readme(card, SHRUNK_NOTE + " (Mistral: 1 key/value head, as 8 of 32 in the real one); CLIP "
                                 "ViT-L/14 tower at 336 px with the real any-res pinpoints, Mistral vocabulary 32064",
                                 "Llama SentencePiece tokenizer.model (32000 pieces) trained on ShapesWorld text, "
                                 "`<image>` 32000, `<pad>` 32001.")
    return files


def _qwen2_vocab(lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """Qwen2's layout: 256 byte-level characters, BPE pieces, filler up to 151643 entries; the
    special tokens follow as added tokens (``<|endoftext|>`` 151643 ... ``<|video_pad|>`` 151656)."""
    tokens = list(_bytes_to_unicode().values())
    merges = _add_merges(tokens, lines, clip_style=False)
    tokens += [_filler(i) for i in range(151643 - len(tokens))]
    return {t: i for i, t in enumerate(tokens)}, merges


def _build_qwen2_vl(card, lines) -> dict[str, bytes]:
    """Qwen/Qwen2-VL-2B-Instruct: Qwen2 byte-level BPE (vocab.json, merges.txt, tokenizer.json),
    the real special ids, dynamic-resolution processor settings and chat template (issue 24)."""
    from transformers import Qwen2Tokenizer, Qwen2VLConfig

    from ..zoo.build_qwen2_vl import QWEN2_SPECIAL, QWEN2_VL_CHAT_TEMPLATE

    real = card.real_config
    vocab, merges = _qwen2_vocab(lines)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], unk_token=None, bos_token=None)
    tok.add_tokens([_tokenizers_added(t) for t in QWEN2_SPECIAL], special_tokens=True)
    tok.eos_token = "<|im_end|>"
    specials = {t: 151643 + i for i, t in enumerate(QWEN2_SPECIAL)}
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in specials.items())
    tokenizer = _saved(tok, "tokenizer.json")
    tokenizer["vocab.json"] = _json(vocab)
    tokenizer["merges.txt"] = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    tokenizer["tokenizer_config.json"] = _json({
        "add_prefix_space": False, "added_tokens_decoder": {str(i): _added(t) for t, i in specials.items()},
        "additional_special_tokens": [t for t in QWEN2_SPECIAL if t != "<|endoftext|>"], "bos_token": None,
        "chat_template": QWEN2_VL_CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
        "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None})
    text = dict(real["text_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rope_parameters=dict(real["text_config"]["rope_parameters"], mrope_section=[2, 3, 3]))
    vision = dict(real["vision_config"], depth=2, embed_dim=32, num_heads=2, hidden_size=64)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **{k: v for k, v in real.items() if k.endswith("_id")},
                           tie_word_embeddings=True)
    files = _model_files("Qwen2VLForConditionalGeneration", config, 9, "bfloat16", _quiet_ids(tokenizer, 151936))
    files.update(tokenizer)
    files["generation_config.json"] = _json({"bos_token_id": 151643, "eos_token_id": [151645, 151643],
                                             "pad_token_id": 151643})
    files["preprocessor_config.json"] = _json({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD, "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor"})
    files["chat_template.json"] = _json({"chat_template": QWEN2_VL_CHAT_TEMPLATE})
    files["README.md"] = _readme(card, "2-layer ViT 32 wide (patch 14, 2x2 merger), 2-layer Qwen2 decoder 64 wide "
                                 "(4 heads of 16, 2 key/value heads; mrope_section [16, 24, 24] scaled to [2, 3, 3]); "
                                 "vocabulary 151936 and the real min/max pixels, so image-token counts are real",
                                 "Qwen2 byte-level BPE trained on ShapesWorld text, vocab.json 151643 entries, "
                                 "`<|endoftext|>` 151643 ... `<|image_pad|>` 151655, `<|video_pad|>` 151656.")
    return files


#: SmolLM2's first ids (HuggingFaceTB/SmolLM2-135M's tokenizer), before the byte-level pieces.
_SMOLLM2_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
                    "<empty_output>")


def _smolvlm_added() -> dict[str, int]:
    """SmolVLM's added tokens at their ids: ``<global-img>`` 49152, ``<row_r_col_c>`` 49153-49188,
    ``<fake_token_around_image>`` 49189, ``<image>`` 49190, reserved 49191-49278,
    ``<end_of_utterance>`` 49279 (vocabulary 49280)."""
    added = {"<global-img>": 49152}
    added.update({f"<row_{r}_col_{c}>": 49153 + (r - 1) * 6 + (c - 1) for r in range(1, 7) for c in range(1, 7)})
    added.update({"<fake_token_around_image>": 49189, "<image>": 49190})
    added.update({f"<|reserved_special_token_{i}|>": 49191 + i for i in range(88)})
    added["<end_of_utterance>"] = 49279
    return added


def _build_smolvlm(card, lines) -> dict[str, bytes]:
    """HuggingFaceTB/SmolVLM-256M-Instruct: Idefics3 with a SmolLM2 GPT-2-style byte-level BPE
    (vocab.json, merges.txt, tokenizer.json), the real added-token ids, 512 px tiles up to a
    2048 px longest edge, 64 image tokens per tile and the SmolVLM chat template (issue 24)."""
    from transformers import GPT2Tokenizer, Idefics3Config

    from ..zoo.build_smolvlm import SMOLVLM_CHAT_TEMPLATE

    real = card.real_config
    chars = list(_bytes_to_unicode().values())
    tokens = list(_SMOLLM2_SPECIAL) + chars
    merges = _add_merges(tokens, lines, clip_style=False)
    tokens += [_filler(i) for i in range(49152 - len(tokens))]
    vocab = {t: i for i, t in enumerate(tokens)}
    added = _smolvlm_added()
    tok = GPT2Tokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], bos_token="<|im_start|>",
                        eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.add_tokens([_tokenizers_added(t) for t, _ in sorted(added.items(), key=lambda kv: kv[1])], special_tokens=True)
    tok.eos_token = "<end_of_utterance>"  # set after the added tokens, so that it keeps its id 49279
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in added.items())
    tokenizer = _saved(tok, "tokenizer.json")
    tokenizer["vocab.json"] = _json(vocab)
    tokenizer["merges.txt"] = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    tokenizer["added_tokens.json"] = _json(added)
    tokenizer["special_tokens_map.json"] = _json({
        "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        "bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>"})
    decoder = {str(i): _added(t) for i, t in enumerate(_SMOLLM2_SPECIAL)}
    decoder.update({str(i): _added(t) for t, i in added.items()})
    tokenizer["tokenizer_config.json"] = _json({
        "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        "bos_token": "<|im_start|>", "clean_up_tokenization_spaces": False, "eos_token": "<end_of_utterance>",
        "legacy": False, "model_max_length": 8192, "pad_token": "<|im_end|>", "processor_class": "Idefics3Processor",
        "tokenizer_class": "GPT2Tokenizer", "truncation_side": "left", "unk_token": "<|endoftext|>",
        "vocab_size": 49152})
    text = dict(real["text_config"], hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=1, head_dim=16)
    config = Idefics3Config(vision_config=dict(real["vision_config"], **VISION), text_config=text,
                            scale_factor=real["scale_factor"], image_token_id=real["image_token_id"], pad_token_id=2,
                            tie_word_embeddings=False)
    files = _model_files("Idefics3ForConditionalGeneration", config, 10, "bfloat16", _quiet_ids(tokenizer, 49280))
    files.update(tokenizer)
    files["generation_config.json"] = _json({"bos_token_id": 1, "eos_token_id": 49279, "pad_token_id": 2})
    files["preprocessor_config.json"] = _json({
        "do_convert_rgb": True, "do_image_splitting": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
        "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Idefics3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5], "max_image_size": {"longest_edge": 512}, "processor_class": "Idefics3Processor",
        "resample": 1, "rescale_factor": RESCALE, "size": {"longest_edge": 2048}})
    files["processor_config.json"] = _json({"image_seq_len": 64, "processor_class": "Idefics3Processor"})
    files["chat_template.json"] = _json({"chat_template": SMOLVLM_CHAT_TEMPLATE})
    files["README.md"] = _readme(card, SHRUNK_NOTE + " (1 key/value head, as 3 of 9 in SmolLM2-135M); the ViT kept at "
                                 "512 px / patch 16 with scale_factor 4 (64 image tokens per tile), 2048 px longest "
                                 "edge, vocabulary 49280",
                                 "GPT-2 byte-level BPE trained on ShapesWorld text, SmolLM2's 17 special tokens at "
                                 "0-16, `<global-img>` 49152, `<row_1_col_1>` 49153 ... `<image>` 49190, "
                                 "`<end_of_utterance>` 49279.")
    return files


def _build(card, lines, cache: dict) -> dict[str, bytes]:
    if card.name in ("instructblip", "llava", "llava-next") and "llama" not in cache:
        cache["llama"] = _train_sentencepiece(lines, "llama", 32000)
    return {
        "clip": lambda: _build_clip(card, lines),
        "siglip": lambda: _build_siglip(card, lines),
        "blip-caption": lambda: _build_blip(card, lines, "BlipForConditionalGeneration", 3),
        "blip-vqa": lambda: _build_blip(card, lines, "BlipForQuestionAnswering", 4),
        "blip2": lambda: _build_blip2(card, lines),
        "instructblip": lambda: _build_instructblip(card, lines, cache["llama"]),
        "llava": lambda: _build_llava(card, lines, cache["llama"]),
        "llava-next": lambda: _build_llava_next(card, lines, cache["llama"]),
        "qwen2-vl": lambda: _build_qwen2_vl(card, lines),
        "smolvlm": lambda: _build_smolvlm(card, lines),
    }[card.name]()


# ----------------------------------------------------------------------------- the cache layout

def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_LFS_SUFFIXES = (".safetensors", ".model", ".bin")


def _write_repo(hub: Path, repo_id: str, files: dict[str, bytes]) -> str:
    """Write ``files`` as huggingface_hub does: blobs named by their etag (sha256 for LFS files,
    the git blob sha1 otherwise), ``refs/main`` holding the commit, and the snapshot's files as
    relative symlinks into ``blobs/``. Returns the (content-derived) commit hash."""
    repo_dir = hub / ("models--" + repo_id.replace("/", "--"))
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    listing = hashlib.sha1()
    etags = {}
    for name in sorted(files):
        data = files[name]
        etag = hashlib.sha256(data).hexdigest() if name.endswith(_LFS_SUFFIXES) else _git_blob_sha1(data)
        etags[name] = etag
        listing.update(f"{name}\0{etag}\n".encode())
    commit = listing.hexdigest()
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        blob = repo_dir / "blobs" / etags[name]
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    _write_no_exist(repo_dir, commit, files)
    return commit


#: Optional files transformers asks for while loading these repos. A first (online) load records
#: each one a repo lacks under ``.no_exist/<commit>/``, and offline loads rely on those markers:
#: without ``qformer_tokenizer/config.json`` there, InstructBLIP's processor falls back to the
#: Llama tokenizer for its Q-Former. The simulated cache is the state after that first load.
_PROBED_OPTIONAL = (
    "adapter_config.json", "added_tokens.json", "audio_tokenizer_config.json", "chat_template.jinja",
    "chat_template.json", "processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer.model",
    "special_tokens_map.json", "generation_config.json", "model.safetensors.index.json",
    "video_preprocessor_config.json", "qformer_tokenizer/config.json", "qformer_tokenizer/added_tokens.json",
    "qformer_tokenizer/chat_template.jinja", "qformer_tokenizer/chat_template.json",
)


def _write_no_exist(repo_dir: Path, commit: str, files: dict[str, bytes]) -> None:
    for name in _PROBED_OPTIONAL:
        folder = name.rpartition("/")[0]
        if name in files or (folder and not any(f.startswith(folder + "/") for f in files)):
            continue
        marker = repo_dir / ".no_exist" / commit / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _read_stamp(home: Path) -> dict:
    try:
        return json.loads((home / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}


def build_hub_cache(home: str | os.PathLike, names=None, force: bool = False, progress=None) -> Path:
    """Build (or reuse) the simulated Hub cache under ``home/hub`` and return that folder.

    home: the folder to use as ``HF_HOME``. names: zoo names or Hub ids (default: every card in
    :data:`vlmstudy.zoo.registry.CARDS`). force: rebuild even when the stamp file
    (``home/vlmstudy-hubsim.json``) says this hubsim version already built them. progress: an
    optional ``print``-like callable told about each repository as it is written.
    """
    from ..zoo.registry import CARDS, get_card

    home = Path(home).expanduser().resolve()
    hub = home / "hub"
    cards = [get_card(n) for n in names] if names else list(CARDS)
    stamp = _read_stamp(home)
    built = set(stamp.get("repos", {})) if stamp.get("version") == HUBSIM_VERSION else set()
    todo = [c for c in cards if force or c.hub_id not in built
            or not (hub / ("models--" + c.hub_id.replace("/", "--")) / "refs" / "main").exists()]
    if not todo:
        return hub
    hub.mkdir(parents=True, exist_ok=True)
    lines = _corpus()
    cache: dict = {}
    repos = dict(stamp.get("repos", {})) if built else {}
    for card in todo:
        if progress:
            progress(f"hubsim: building {card.hub_id}")
        repos[card.hub_id] = _write_repo(hub, card.hub_id, _build(card, lines, cache))
    (home / STAMP_NAME).write_text(json.dumps({"version": HUBSIM_VERSION, "repos": repos}, indent=2) + "\n")
    return hub


def hub_environment(home: str | os.PathLike, base: dict | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set to run hub mode against the simulated cache:
    ``VLMSTUDY_MODE=hub``, ``HF_HOME=home``, ``HF_HUB_OFFLINE=1`` (and transformers offline)."""
    env = dict(os.environ if base is None else base)
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(name, None)
    sim = str(Path(home).expanduser().resolve())
    # VLMSTUDY_HUBSIM_CHILD tells the repository's conftest.py to keep this HF_HOME and hub mode
    env.update(VLMSTUDY_MODE="hub", HF_HOME=sim, VLMSTUDY_HUBSIM_CHILD=sim, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env
