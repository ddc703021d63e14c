"""The model zoo: one card per real checkpoint the course teaches, and its tiny stand-in.

A card maps a Hub id (``openai/clip-vit-base-patch32``) to the transformers classes it loads
with and to the stand-in directory under ``assets/models/`` that replaces it in ``tiny`` mode.
``real_config`` holds the architecture numbers of the real checkpoint's ``config.json`` so that
its size can be computed by building it on the meta device, with nothing downloaded.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..errors import UnknownModelError

_CLIP_L_336 = dict(  # openai/clip-vit-large-patch14-336, the vision tower of LLaVA
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14, projection_dim=768,
)
_EVA_VIT_G = dict(  # BLIP-2 / InstructBLIP vision tower
    hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
    image_size=224, patch_size=14, qkv_bias=True,
)
#: Salesforce/blip-image-captioning-base and blip-vqa-base: the same ViT-B/16 at 384 px and BERT-base text side.
_BLIP_BASE_384 = dict(
    model_type="blip",
    text_config=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, max_position_embeddings=512),
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, image_size=384, patch_size=16),
)
_QFORMER = dict(  # BLIP-2's Q-Former (both BLIP-2 checkpoints)
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    cross_attention_frequency=2, encoder_hidden_size=1408,
)
_LLAMA_7B = dict(
    model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
)


@dataclass(frozen=True)
class ModelCard:
    """What the zoo knows about one model.

    name: short name used in the course ("clip"); hub_id: the real checkpoint;
    family: architecture family; tasks: what it is used for in the course;
    model_class / processor_class: transformers classes (the stand-in uses the same ones);
    stand_in: directory under ``assets/models``; notebook: where the course teaches it;
    real_config: kwargs for ``<model_type>Config`` reproducing the real architecture.
    """

    name: str
    hub_id: str
    family: str
    tasks: tuple[str, ...]
    model_class: str
    processor_class: str
    stand_in: str
    notebook: str
    real_config: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def stand_in_dir(self) -> Path | None:
        return settings.MODELS_DIR / self.stand_in if self.stand_in else None

    @property
    def has_stand_in(self) -> bool:
        """False for the cards of :data:`LARGER_CARDS` that say "no stand-in" (hub mode only)."""
        return bool(self.stand_in)

    @property
    def model_type(self) -> str:
        return self.real_config["model_type"]

    def is_present(self) -> bool:
        """True when the tiny stand-in's weights are on disk."""
        return self.has_stand_in and (self.stand_in_dir / "model.safetensors").exists()


CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        "clip", "openai/clip-vit-base-patch32", "dual encoder (contrastive)",
        ("zero-shot classification", "embeddings", "retrieval"),
        "CLIPModel", "CLIPProcessor", "tiny-clip", "02_clip",
        dict(model_type="clip", projection_dim=512,
             text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                              num_attention_heads=8, max_position_embeddings=77),
             vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, image_size=224, patch_size=32)),
    ),
    ModelCard(
        "siglip", "google/siglip-base-patch16-224", "dual encoder (sigmoid loss)",
        ("zero-shot classification", "embeddings", "retrieval"),
        "SiglipModel", "SiglipProcessor", "tiny-siglip", "03_siglip",
        dict(model_type="siglip",
             text_config=dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, max_position_embeddings=64, pad_token_id=1,
                              bos_token_id=None, eos_token_id=1),
             vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, image_size=224, patch_size=16)),
    ),
    ModelCard(
        "blip-caption", "Salesforce/blip-image-captioning-base", "encoder-decoder",
        ("captioning",),
        "BlipForConditionalGeneration", "BlipProcessor", "tiny-blip-caption", "05_blip",
        _BLIP_BASE_384,
    ),
    ModelCard(
        "blip-vqa", "Salesforce/blip-vqa-base", "encoder-decoder",
        ("visual question answering",),
        "BlipForQuestionAnswering", "BlipProcessor", "tiny-blip-vqa", "05_blip",
        _BLIP_BASE_384,
    ),
    ModelCard(
        "blip2", "Salesforce/blip2-opt-2.7b", "Q-Former bridge + frozen LLM",
        ("captioning", "visual question answering"),
        "Blip2ForConditionalGeneration", "Blip2Processor", "tiny-blip2", "06_blip2_instructblip",
        dict(model_type="blip-2", num_query_tokens=32,
             vision_config=_EVA_VIT_G,
             qformer_config=_QFORMER,
             text_config=dict(model_type="opt", vocab_size=50272, hidden_size=2560, ffn_dim=10240,
                              num_hidden_layers=32, num_attention_heads=32, word_embed_proj_dim=2560,
                              max_position_embeddings=2048)),
    ),
    ModelCard(
        "instructblip", "Salesforce/instructblip-vicuna-7b", "Q-Former bridge + frozen LLM",
        ("instruction following", "visual question answering"),
        "InstructBlipForConditionalGeneration", "InstructBlipProcessor", "tiny-instructblip",
        "06_blip2_instructblip",
        dict(model_type="instructblip", num_query_tokens=32,
             vision_config=_EVA_VIT_G,
             qformer_config=dict(vocab_size=30523, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, cross_attention_frequency=2, encoder_hidden_size=1408),
             text_config=dict(_LLAMA_7B, vocab_size=32001)),
    ),
    ModelCard(
        "llava", "llava-hf/llava-1.5-7b-hf", "projector + LLM",
        ("chat", "visual question answering", "captioning"),
        "LlavaForConditionalGeneration", "LlavaProcessor", "tiny-llava", "07_llava",
        dict(model_type="llava", vision_config=dict(_CLIP_L_336, model_type="clip_vision_model"),
             text_config=dict(_LLAMA_7B, vocab_size=32064), projector_hidden_act="gelu",
             vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=576),
    ),
    ModelCard(
        "llava-next", "llava-hf/llava-v1.6-mistral-7b-hf", "projector + LLM, any resolution",
        ("chat", "multi-image", "visual question answering"),
        "LlavaNextForConditionalGeneration", "LlavaNextProcessor", "tiny-llava-next", "08_llava_next_multi_image",
        dict(model_type="llava_next", vision_config=dict(_CLIP_L_336, model_type="clip_vision_model"),
             text_config=dict(model_type="mistral", vocab_size=32064, hidden_size=4096, intermediate_size=14336,
                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                              max_position_embeddings=32768),
             image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
             vision_feature_layer=-2, vision_feature_select_strategy="default"),
    ),
    ModelCard(  # Qwen/Qwen2-VL-2B-Instruct's config.json (issue 24)
        "qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct", "ViT + merger + LLM, dynamic resolution, M-RoPE",
        ("chat", "visual question answering", "captioning"),
        "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "tiny-qwen2-vl", "14_since_llava",
        dict(model_type="qwen2_vl", image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
             vision_end_token_id=151653, tie_word_embeddings=True,
             vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, in_channels=3,
                                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu"),
             text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                              rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
                              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                               "mrope_section": [16, 24, 24]})),
    ),
    ModelCard(  # HuggingFaceTB/SmolVLM-256M-Instruct: Idefics3, SigLIP-B/16-512 + SmolLM2-135M (issue 24)
        "smolvlm", "HuggingFaceTB/SmolVLM-256M-Instruct", "ViT + pixel shuffle + LLM, image splitting",
        ("chat", "visual question answering", "captioning"),
        "Idefics3ForConditionalGeneration", "Idefics3Processor", "tiny-smolvlm", "14_since_llava",
        dict(model_type="idefics3", image_token_id=49190, scale_factor=4, tie_word_embeddings=False,
             vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                image_size=512, patch_size=16),
             text_config=dict(model_type="llama", vocab_size=49280, hidden_size=576, intermediate_size=1536,
                              num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                              max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False,
                              pad_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
    ),
)


_LLAMA_13B = dict(_LLAMA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40)

#: The fine-tuning guide's other checkpoints: the zoo finds them by name and Hub id (hub mode,
#: meta-device size and memory estimates, ``vlmstudy finetune --estimate``), but they are not in
#: :data:`CARDS` (the course's syllabus, one trained stand-in each). LLaVA-1.5-13B has the 7B's
#: architecture at a larger width, so the tiny LLaVA stands in for it too; BLIP-2 Flan-T5 has a T5
#: encoder-decoder where the zoo's tiny BLIP-2 has OPT, so it has **no stand-in** (``stand_in=""``:
#: tiny mode refuses it with a message, hub mode loads the real one).
LARGER_CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        "llava-13b", "llava-hf/llava-1.5-13b-hf", "projector + LLM",
        ("chat", "visual question answering", "captioning"),
        "LlavaForConditionalGeneration", "LlavaProcessor", "tiny-llava", "11_lora",
        dict(model_type="llava", vision_config=dict(_CLIP_L_336, model_type="clip_vision_model"),
             text_config=dict(_LLAMA_13B, vocab_size=32064), projector_hidden_act="gelu",
             vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=576),
    ),
    ModelCard(
        "blip2-flan-t5-xl", "Salesforce/blip2-flan-t5-xl", "Q-Former bridge + frozen LLM (encoder-decoder)",
        ("captioning", "visual question answering"),
        "Blip2ForConditionalGeneration", "Blip2Processor", "", "11_lora",
        dict(model_type="blip-2", num_query_tokens=32,
             vision_config=_EVA_VIT_G,
             qformer_config=_QFORMER,
             text_config=dict(model_type="t5", vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24,
                              num_decoder_layers=24, num_heads=32, feed_forward_proj="gated-gelu",
                              tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                              eos_token_id=1)),
    ),
)
#: Every card get_card knows: the syllabus and the larger checkpoints.
ALL_CARDS: tuple[ModelCard, ...] = CARDS + LARGER_CARDS


def _aliases(card: ModelCard) -> set[str]:
    return {card.name, card.hub_id.lower(), card.hub_id.split("/")[-1].lower()} | ({card.stand_in} - {""})


def real_config(name: str):
    """The real checkpoint's ``PretrainedConfig``, rebuilt from the card's numbers (nothing is
    downloaded): what :func:`vlmstudy.quantize.estimate` and the zoo table build on the meta device."""
    from transformers import AutoConfig

    card = get_card(name)
    kwargs = dict(card.real_config)
    return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)


def get_card(name: str) -> ModelCard:
    """Find a card by short name, Hub id or stand-in directory name (case-insensitive); the
    syllabus' :data:`CARDS` first, then :data:`LARGER_CARDS`.

    Raises :class:`UnknownModelError` listing the known names and the closest matches.
    """
    key = str(name).strip().lower()
    for card in ALL_CARDS:
        if key in _aliases(card):
            return card
    known = [c.name for c in CARDS] + [c.hub_id for c in CARDS]
    close = difflib.get_close_matches(key, [k.lower() for k in known], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model {name!r}.{hint} Known models: {', '.join(c.name for c in CARDS)} "
        f"(or their Hub ids: {', '.join(c.hub_id for c in CARDS)}). `vlmstudy.zoo_table()` shows them all."
    )


def model_names() -> list[str]:
    """Short names of every model in the zoo, in syllabus order."""
    return [c.name for c in CARDS]
