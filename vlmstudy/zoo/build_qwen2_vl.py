"""The tiny Qwen2-VL stand-in's config, tokenizer and processor, built the way the real ones are.

``Qwen/Qwen2-VL-2B-Instruct`` is a ViT with 2D rotary positions over 14 px patches (any image
size: *naive dynamic resolution*), a merger that turns each 2x2 block of patches into one
language-model token, and a Qwen2 decoder whose rotary embedding is split three ways (M-RoPE:
temporal, height, width rows of position ids). The stand-in keeps all of it, only small:

- the vision tower has tiny CLIP's dimensions (128 wide, 4 blocks, 8 px patches), so tiny
  CLIP's weights can be copied in; ``Qwen2VLImageProcessorPil`` with tiny ``min_pixels`` /
  ``max_pixels`` resizes to a multiple of 16 px, so a 64 px picture gives 8x8 patches and 16
  merged tokens, 128 px 64 tokens;
- the decoder has tiny LLaVA's dimensions (128 wide, 4 layers, 4 heads of 32) with
  ``mrope_section`` [16, 24, 24] (sum 64 = head_dim 128 / 2) scaled to [4, 6, 6] (sum 16);
- the course's word-level vocabulary (:mod:`vlmstudy.zoo.tokenizer`) plus the Qwen2 special
  tokens in the real order, and the real chat template (ChatML with ``<|vision_start|>``).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

from .common import CLIP_MEAN, CLIP_STD
from .tokenizer import PAD, UNK, vocab_dict

#: Qwen/Qwen2-VL-2B-Instruct's chat template (its chat_template.json): ChatML, a default system
#: turn, and ``<|vision_start|><|image_pad|><|vision_end|>`` where each image goes.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
#: The Qwen2 special tokens, in the real tokenizer's order (ids 151643-151656 there).
QWEN2_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
#: Words of the real default system prompt ("You are a helpful assistant.") missing from ShapesWorld's.
EXTRA_WORDS = ("helpful",)
#: Dynamic resolution, scaled down: each side is rounded to a multiple of patch 8 x merge 2 = 16 px
#: and the area kept within [32 x 32, 128 x 128] px (4 to 64 merged tokens; the real model:
#: 3136 to 12845056 px, 4 to 16384 tokens of 28 px).
PATCH, MERGE = 8, 2
MIN_PIXELS, MAX_PIXELS = 32 * 32, 128 * 128


def qwen2_vl_vocab() -> dict[str, int]:
    """The course's vocabulary (:func:`vocab_dict`), the extra words, then :data:`QWEN2_SPECIAL`."""
    vocab = dict(vocab_dict())
    for token in EXTRA_WORDS + QWEN2_SPECIAL:
        vocab.setdefault(token, len(vocab))
    return vocab


def special_id(token: str) -> int:
    return qwen2_vl_vocab()[token]


def qwen2_vl_tokenizer(model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (as :func:`vlmstudy.zoo.tokenizer.build_tokenizer`, no bos: Qwen2 has
    none) whose special tokens are Qwen2's: eos ``<|im_end|>``, pad ``<|endoftext|>``."""
    vocab = qwen2_vl_vocab()
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=model_max_length, padding_side="left",
                                  unk_token=UNK, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  extra_special_tokens={"image_token": "<|image_pad|>",
                                                        "video_token": "<|video_pad|>"})
    tok.add_special_tokens({"additional_special_tokens": [t for t in QWEN2_SPECIAL if t not in ("<|im_end|>",
                                                          "<|endoftext|>")] + [PAD]})
    assert all(tok.convert_tokens_to_ids(t) == vocab[t] for t in QWEN2_SPECIAL), "special ids moved"
    return tok


def qwen2_vl_image_processor(min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=PATCH,
                                    temporal_patch_size=2, merge_size=MERGE, image_mean=list(CLIP_MEAN),
                                    image_std=list(CLIP_STD))


def qwen2_vl_processor() -> Qwen2VLProcessor:
    return image_only_processor(qwen2_vl_image_processor(), qwen2_vl_tokenizer(), QWEN2_VL_CHAT_TEMPLATE)


def image_only_processor(image_processor, tokenizer, chat_template: str | None) -> Qwen2VLProcessor:
    """A ``Qwen2VLProcessor`` for images and text, with no video processor.

    transformers 5's ``Qwen2VLProcessor`` also holds a ``Qwen2VLVideoProcessor``, which needs
    ``torchvision`` even when no video is ever passed; the course's CPU PyTorch has no matching
    torchvision. Built here with ``video_processor=None``, it tokenizes, expands
    ``<|image_pad|>`` and returns ``pixel_values`` / ``image_grid_thw`` / ``mm_token_type_ids``
    exactly as the full processor does; ``save_pretrained`` writes the files the real repo ships
    for a processor (``preprocessor_config.json``, tokenizer files, ``chat_template.json``).
    """
    from transformers.processing_utils import ProcessorMixin

    check = ProcessorMixin.check_argument_for_proper_class

    def allow_no_video(self, name, arg):
        return None if name == "video_processor" and arg is None else check(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = allow_no_video
    try:
        processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                                     chat_template=chat_template)
    finally:
        ProcessorMixin.check_argument_for_proper_class = check
    processor.save_pretrained = lambda out, **kwargs: _save_image_only(processor, out)
    return processor


def _save_image_only(processor: Qwen2VLProcessor, out) -> None:
    import json
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    processor.image_processor.save_pretrained(out)
    config = json.loads((out / "preprocessor_config.json").read_text())
    config["processor_class"] = "Qwen2VLProcessor"
    (out / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")
    processor.tokenizer.save_pretrained(out)
    if processor.chat_template:
        (out / "chat_template.json").write_text(json.dumps({"chat_template": processor.chat_template}, indent=2) + "\n")


def load_image_only_processor(source, **kwargs) -> Qwen2VLProcessor:
    """:func:`image_only_processor` from a saved Qwen2-VL repo or folder (what ``vlmstudy.load``
    falls back to when ``AutoProcessor`` needs torchvision). ``kwargs``: ``from_pretrained``'s."""
    import json
    from pathlib import Path

    from huggingface_hub import hf_hub_download
    from transformers import AutoTokenizer

    local = Path(str(source))
    template_path = local / "chat_template.json" if local.is_dir() else None
    if template_path is None:
        try:
            template_path = Path(hf_hub_download(str(source), "chat_template.json",
                                                 local_files_only=kwargs.get("local_files_only", False)))
        except Exception:  # noqa: BLE001 - the template may live in tokenizer_config.json instead
            template_path = None
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    template = (json.loads(template_path.read_text())["chat_template"] if template_path and template_path.exists()
                else getattr(tokenizer, "chat_template", None))
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(source, **kwargs)
    return image_only_processor(image_processor, tokenizer, template)


def qwen2_vl_config(width: int = 128, layers: int = 4, heads: int = 4, vision_width: int = 128,
                    vision_depth: int = 4, vision_heads: int = 4) -> Qwen2VLConfig:
    """Tiny Qwen2-VL: ``mrope_section`` sums to ``head_dim / 2`` (real: [16, 24, 24] for 128)."""
    vocab = qwen2_vl_vocab()
    half = width // heads // 2
    t = half // 4
    section = [t, (half - t) // 2, half - t - (half - t) // 2]  # 16 -> [4, 6, 6], as 64 -> [16, 24, 24]
    text = dict(vocab_size=len(vocab), hidden_size=width, intermediate_size=3 * width, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=1024,
                rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
                bos_token_id=None, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"])
    vision = dict(depth=vision_depth, embed_dim=vision_width, hidden_size=width, num_heads=vision_heads, mlp_ratio=4,
                  patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2, hidden_act="quick_gelu")
    return Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=vocab["<|image_pad|>"],
                         video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
                         vision_end_token_id=vocab["<|vision_end|>"], tie_word_embeddings=False)


def qwen2_vl_model(**sizes) -> Qwen2VLForConditionalGeneration:
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(**sizes))
    vocab = qwen2_vl_vocab()
    model.generation_config.eos_token_id = [vocab["<|im_end|>"], vocab["<|endoftext|>"]]
    model.generation_config.pad_token_id = vocab["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    return model
