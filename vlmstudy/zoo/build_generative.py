"""Small configs and processors for the generative stand-ins, built the way the real ones are.

- LLaVA-1.5 / LLaVA-NeXT: the trained tiny CLIP vision tower + a 2-layer MLP projector + a small
  Llama / Mistral decoder. Processors carry the real checkpoints' chat template.
- BLIP (captioning, VQA): a ViT with BLIP's fused-qkv attention + BERT-style text encoder/decoder.
- BLIP-2 / InstructBLIP: a frozen ViT, a Q-Former with learned query tokens (InstructBLIP's also
  reads the instruction), a projection, and a small OPT / Llama decoder.

All share one word-level tokenizer vocabulary (:mod:`vlmstudy.zoo.tokenizer`).
"""

from __future__ import annotations

from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForQuestionAnswering,
    BlipImageProcessorPil,
    BlipProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    MistralConfig,
    OPTConfig,
)

from .common import CLIP_MEAN, CLIP_STD
from .tokenizer import build_tokenizer, vocab_dict

IMAGE_TOKEN_ID = vocab_dict()["<image>"]
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3

#: llava-hf/llava-1.5-7b-hf's chat template: "USER: <image>\n... ASSISTANT:".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
#: llava-hf/llava-v1.6-mistral-7b-hf's chat template: "[INST] <image>\n... [/INST]".
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]"
    "['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ ' ' + content['text'] + '</s> '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
)
#: Any-resolution grid for 64 px images (the real model uses 336 px tiles).
NEXT_GRID_PINPOINTS = [[64, 64], [64, 128], [128, 64], [128, 128]]


def text_decoder_config(kind: str, width: int = 128, layers: int = 4, heads: int = 4, max_len: int = 512):
    """A small causal LM config: ``llama`` (Vicuna-like), ``mistral`` or ``opt``."""
    vocab = len(vocab_dict())
    common = dict(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                  max_position_embeddings=max_len, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    if kind == "llama":
        return LlamaConfig(**common, intermediate_size=3 * width, num_key_value_heads=heads, tie_word_embeddings=False)
    if kind == "mistral":
        return MistralConfig(**common, intermediate_size=3 * width, num_key_value_heads=heads,
                             tie_word_embeddings=False, sliding_window=None)
    if kind == "opt":
        return OPTConfig(**common, ffn_dim=4 * width, word_embed_proj_dim=width, do_layer_norm_before=True,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    raise ValueError(kind)


def clip_image_processor(size: int = 64) -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


# ----------------------------------------------------------------------------- LLaVA

def llava_processor(patch_size: int = 8, size: int = 64) -> LlavaProcessor:
    tok = build_tokenizer(add_bos=True, image_token=True, model_max_length=512)
    return LlavaProcessor(image_processor=clip_image_processor(size), tokenizer=tok, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA_CHAT_TEMPLATE)


def llava_model(vision_config: CLIPVisionConfig, width: int = 128, layers: int = 4) -> LlavaForConditionalGeneration:
    n_patches = (vision_config.image_size // vision_config.patch_size) ** 2
    config = LlavaConfig(vision_config=vision_config.to_dict(), text_config=text_decoder_config("llama", width, layers),
                         image_token_index=IMAGE_TOKEN_ID, projector_hidden_act="gelu", vision_feature_layer=-2,
                         vision_feature_select_strategy="default", image_seq_length=n_patches)
    return LlavaForConditionalGeneration(config)


def llava_next_processor(patch_size: int = 8, size: int = 64) -> LlavaNextProcessor:
    tok = build_tokenizer(add_bos=True, image_token=True, model_max_length=1024)
    image = LlavaNextImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                       image_grid_pinpoints=NEXT_GRID_PINPOINTS, image_mean=list(CLIP_MEAN),
                                       image_std=list(CLIP_STD))
    return LlavaNextProcessor(image_processor=image, tokenizer=tok, patch_size=patch_size,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=LLAVA_NEXT_CHAT_TEMPLATE)


def llava_next_model(vision_config: CLIPVisionConfig, width: int = 128, layers: int = 4) -> LlavaNextForConditionalGeneration:
    config = LlavaNextConfig(vision_config=vision_config.to_dict(),
                             text_config=text_decoder_config("mistral", width, layers, max_len=1024),
                             image_token_index=IMAGE_TOKEN_ID, projector_hidden_act="gelu", vision_feature_layer=-2,
                             vision_feature_select_strategy="default", image_grid_pinpoints=NEXT_GRID_PINPOINTS)
    return LlavaNextForConditionalGeneration(config)


# ----------------------------------------------------------------------------- BLIP family

def _vit_config(vision_config: CLIPVisionConfig) -> dict:
    """BLIP-family ViT of the same size as the tiny CLIP tower (so it can be distilled from it)."""
    return dict(image_size=vision_config.image_size, patch_size=vision_config.patch_size,
                hidden_size=vision_config.hidden_size, intermediate_size=vision_config.intermediate_size,
                num_hidden_layers=vision_config.num_hidden_layers, num_attention_heads=vision_config.num_attention_heads)


def blip_image_processor(size: int = 64) -> BlipImageProcessorPil:
    return BlipImageProcessorPil(size={"height": size, "width": size}, image_mean=list(CLIP_MEAN),
                                 image_std=list(CLIP_STD))


def blip_processor(size: int = 64) -> BlipProcessor:
    # BERT-style "[CLS] text [SEP]": generate() swaps the first token for bos and stops at sep
    tok = build_tokenizer(add_bos=True, add_eos=True, model_max_length=64)
    return BlipProcessor(image_processor=blip_image_processor(size), tokenizer=tok)


def blip_config(vision_config: CLIPVisionConfig, width: int = 128, layers: int = 3) -> BlipConfig:
    vit = _vit_config(vision_config)
    text = dict(vocab_size=len(vocab_dict()), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=4, max_position_embeddings=64, encoder_hidden_size=vit["hidden_size"],
                pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, sep_token_id=EOS_ID)
    return BlipConfig(text_config=text, vision_config=vit, projection_dim=width)


def blip_caption_model(vision_config: CLIPVisionConfig) -> BlipForConditionalGeneration:
    return BlipForConditionalGeneration(blip_config(vision_config))


def blip_vqa_model(vision_config: CLIPVisionConfig) -> BlipForQuestionAnswering:
    return BlipForQuestionAnswering(blip_config(vision_config))


NUM_QUERY_TOKENS = 8


def blip2_processor(size: int = 64) -> Blip2Processor:
    # no image_token on the tokenizer: the processor registers "<image>" itself (anchors.md)
    tok = build_tokenizer(add_bos=True, model_max_length=128)
    return Blip2Processor(image_processor=blip_image_processor(size), tokenizer=tok, num_query_tokens=NUM_QUERY_TOKENS)


def _qformer(vit: dict, width: int, layers: int) -> dict:
    return dict(vocab_size=len(vocab_dict()), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=4, cross_attention_frequency=1, encoder_hidden_size=vit["hidden_size"],
                max_position_embeddings=64, pad_token_id=PAD_ID)


def blip2_model(vision_config: CLIPVisionConfig, width: int = 128, layers: int = 2) -> Blip2ForConditionalGeneration:
    vit = _vit_config(vision_config)
    config = Blip2Config(vision_config=vit, qformer_config=_qformer(vit, width, layers),
                         text_config=text_decoder_config("opt", width, 3).to_dict(), num_query_tokens=NUM_QUERY_TOKENS,
                         image_token_index=IMAGE_TOKEN_ID)
    return Blip2ForConditionalGeneration(config)


def instructblip_processor(size: int = 64) -> InstructBlipProcessor:
    tok = build_tokenizer(add_bos=True, model_max_length=128)
    qformer_tok = build_tokenizer(add_bos=True, add_eos=True, model_max_length=64)
    return InstructBlipProcessor(image_processor=blip_image_processor(size), tokenizer=tok,
                                 qformer_tokenizer=qformer_tok, num_query_tokens=NUM_QUERY_TOKENS)


def instructblip_model(vision_config: CLIPVisionConfig, width: int = 128,
                       layers: int = 2) -> InstructBlipForConditionalGeneration:
    vit = _vit_config(vision_config)
    config = InstructBlipConfig(vision_config=vit, qformer_config=_qformer(vit, width, layers),
                                text_config=text_decoder_config("llama", width, 3).to_dict(),
                                num_query_tokens=NUM_QUERY_TOKENS, image_token_index=IMAGE_TOKEN_ID)
    return InstructBlipForConditionalGeneration(config)
