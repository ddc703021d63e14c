"""The tiny SmolVLM stand-in: ``Idefics3ForConditionalGeneration`` + ``Idefics3Processor``, small.

HuggingFaceTB/SmolVLM-256M-Instruct is an Idefics3 model: a SigLIP-style ViT (512 px tiles,
patch 16: 32 x 32 = 1024 patch states), a pixel-shuffle connector (``scale_factor`` 4: every
4 x 4 block of patch states becomes one vector, 1024 -> 64 image tokens per tile, then a linear
layer to the LM width) and a SmolLM2 (Llama) decoder. Large images are split into 512 px tiles
(up to ``longest_edge`` 2048, so 4 x 4 tiles) plus one downscaled global image, each its own 64
tokens, laid out as ``<fake_token_around_image><row_1_col_1><image>*64 ... <global-img>...``.

The stand-in keeps all of that at ShapesWorld size: 32 px tiles with patch 8 (4 x 4 = 16 patch
states), ``scale_factor`` 2 (16 -> 4 image tokens per tile), ``longest_edge`` 64, so a 64 px
picture is split into 2 x 2 tiles + the global image: 5 x 4 = 20 image tokens. The vision
tower has tiny CLIP's width and depth (its weights are copied in where shapes match, see
:func:`copy_clip_tower`); the decoder is the course's small Llama with tiny LLaVA's width.
The tokenizer is the course's word-level vocabulary plus SmolVLM's special tokens.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
)

from .build_generative import PAD_ID, text_decoder_config
from .common import CLIP_MEAN, CLIP_STD
from .tokenizer import build_tokenizer, vocab_dict

TILE = 32  #: tile side in pixels (real: 512)
LONGEST_EDGE = 64  #: images are resized so that their longest edge is this (real: 4 * 512 = 2048)
PATCH = 8  #: ViT patch side (real: 16)
SCALE_FACTOR = 2  #: pixel shuffle factor (real: 4)
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR ** 2  #: image tokens per tile: 4 (real: 64)
MEAN = STD = (0.5, 0.5, 0.5)  #: SmolVLM's normalisation (SigLIP's)

IM_START, END_OF_UTTERANCE = "<|im_start|>", "<end_of_utterance>"
FAKE_IMAGE, GLOBAL_IMAGE = "<fake_token_around_image>", "<global-img>"
ROW_COL = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))
#: SmolVLM's special tokens, after the course's vocabulary (ids 0-4 are the course's specials).
SPECIAL = (IM_START, END_OF_UTTERANCE, FAKE_IMAGE, GLOBAL_IMAGE) + ROW_COL

#: HuggingFaceTB/SmolVLM-256M-Instruct's chat template (the Idefics3 / SmolVLM one):
#: ``<|im_start|>User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n``.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def token_ids() -> dict[str, int]:
    """Ids of the stand-in's special tokens: the course's word-level ids, then :data:`SPECIAL`."""
    base = len(vocab_dict())
    return {tok: base + i for i, tok in enumerate(SPECIAL)}


def vocab_size() -> int:
    return len(vocab_dict()) + len(SPECIAL)


def smolvlm_tokenizer():
    """The course's word-level tokenizer with SmolVLM's special tokens at :func:`token_ids`; no
    bos is added (the chat template writes ``<|im_start|>``), ``<end_of_utterance>`` ends answers."""
    tok = build_tokenizer(add_bos=False, image_token=True, model_max_length=512, padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL)}, replace_extra_special_tokens=False)
    tok.eos_token = END_OF_UTTERANCE
    tok.bos_token = IM_START
    ids = token_ids()
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in ids.items()), "special token ids moved"
    return tok


def smolvlm_processor() -> Idefics3Processor:
    """``Idefics3Processor`` with the real one's layout at ShapesWorld size (see module docstring)."""
    image = Idefics3ImageProcessorPil(do_resize=True, size={"longest_edge": LONGEST_EDGE},
                                      max_image_size={"longest_edge": TILE}, do_image_splitting=True,
                                      image_mean=list(MEAN), image_std=list(STD), resample=1)
    return Idefics3Processor(image_processor=image, tokenizer=smolvlm_tokenizer(), image_seq_len=IMAGE_SEQ_LEN,
                             chat_template=SMOLVLM_CHAT_TEMPLATE)


def smolvlm_config(vision: CLIPVisionConfig | None = None, width: int = 128, layers: int = 4,
                   vision_layers: int = 3) -> Idefics3Config:
    """Tiny Idefics3 config: the vision tower as wide as ``vision`` (tiny CLIP's) with its first
    ``vision_layers`` layers (3 of 4: the stand-in stays under 3.5 MB in fp16), at :data:`TILE` px;
    the decoder as :func:`text_decoder_config` ("llama") with the larger vocabulary."""
    vision = vision or CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                                        num_attention_heads=4, hidden_act="quick_gelu")
    text = text_decoder_config("llama", width, layers).to_dict()
    ids = token_ids()
    text.update(vocab_size=vocab_size(), bos_token_id=ids[IM_START], eos_token_id=ids[END_OF_UTTERANCE],
                rms_norm_eps=1e-5)
    vision_config = dict(hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
                         num_hidden_layers=min(vision_layers, vision.num_hidden_layers),
                         num_attention_heads=vision.num_attention_heads,
                         image_size=TILE, patch_size=PATCH, hidden_act=vision.hidden_act,
                         layer_norm_eps=vision.layer_norm_eps)
    config = Idefics3Config(vision_config=vision_config, text_config=text, scale_factor=SCALE_FACTOR,
                            image_token_id=vocab_dict()["<image>"], pad_token_id=PAD_ID, tie_word_embeddings=False)
    return config


def smolvlm_model(vision: CLIPVisionConfig | None = None, width: int = 128, layers: int = 4):
    model = Idefics3ForConditionalGeneration(smolvlm_config(vision, width, layers))
    ids = token_ids()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = ids[IM_START], ids[END_OF_UTTERANCE], PAD_ID
    return model


def copy_clip_tower(clip_vision, tower) -> None:
    """Copy tiny CLIP's ViT (``CLIPVisionTransformer``) into the Idefics3 tower where shapes match.

    The encoder layers and the final LayerNorm have the same names and shapes. The patch
    convolution is copied with CLIP's normalisation folded in (SmolVLM feeds ``(x - 0.5) / 0.5``,
    CLIP ``(x - mean) / std``: the same convolution of the same picture, so exact). The position
    embeddings of the tower's 4 x 4 grid are CLIP's 8 x 8 grid average-pooled (a tile is a
    quarter of the picture CLIP saw at 64 px); CLIP's class token, pre-LayerNorm and last
    layer (the tower keeps the first ``num_hidden_layers``) have no
    counterpart (SigLIP has neither), so the tower is trained on from there.
    """
    src = clip_vision
    emb = tower.embeddings
    with torch.no_grad():
        w = src.embeddings.patch_embedding.weight  # (D, 3, p, p), no bias
        std, mean = torch.tensor(CLIP_STD), torch.tensor(CLIP_MEAN)
        a = torch.tensor(STD) / std  # x_clip = a * x_smol + b (per channel)
        b = (torch.tensor(MEAN) - mean) / std
        emb.patch_embedding.weight.copy_(w * a.view(1, 3, 1, 1))
        emb.patch_embedding.bias.copy_((w * b.view(1, 3, 1, 1)).sum(dim=(1, 2, 3)))
        pos = src.embeddings.position_embedding.weight[1:]  # drop the class position
        side = int(pos.shape[0] ** 0.5)
        grid = pos.T.reshape(1, -1, side, side)
        new_side = int(emb.num_patches ** 0.5)
        pooled = torch.nn.functional.adaptive_avg_pool2d(grid, new_side).reshape(-1, new_side * new_side).T
        emb.position_embedding.weight.copy_(pooled)
        for mine, theirs in zip(tower.encoder.layers, src.encoder.layers):  # the first len(tower) layers
            mine.load_state_dict(theirs.state_dict())
        tower.post_layernorm.load_state_dict(src.post_layernorm.state_dict())
