"""``assemble_llava``: a real ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` from parts.

The parts are a CLIP vision tower (``CLIPVisionModel``, or the ``CLIPModel`` / LLaVA model
holding one), a causal language model (``LlamaForCausalLM`` and friends) with its tokenizer, and
a projector (:mod:`vlmstudy.assemble.projectors`). The weights of tower and language model are
copied in; the projector starts random. :func:`course_parts` loads the course's parts: tiny
CLIP's tower and the tiny pre-trained ShapesWorld language model in tiny mode, real checkpoints
(CLIP ViT-B/32 and SmolLM2-135M, as nanoVLM pairs a SigLIP tower with SmolLM2) in hub mode.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .projectors import make_projector, projector_spec

IMAGE_TOKEN = "<image>"
#: Real counterpart of the tiny pre-trained language model in hub mode (nanoVLM's language model).
HUB_LANGUAGE_MODEL = "HuggingFaceTB/SmolLM2-135M"
TINY_LANGUAGE_MODEL = "tiny-shapes-lm"


def _vision_tower(part):
    """The ``CLIPVisionModel`` inside ``part`` (itself, a ``CLIPModel``'s or a LLaVA model's)."""
    from transformers import CLIPVisionModel

    for candidate in (part, getattr(part, "vision_model", None), getattr(getattr(part, "model", None), "vision_tower", None)):
        if isinstance(candidate, CLIPVisionModel):
            return candidate
    raise ConfigError(f"assemble_llava needs a CLIP vision tower (CLIPVisionModel, CLIPModel or a LLaVA model); "
                      f"got {type(part).__name__}.")


def _with_image_token(tokenizer, language_model) -> int:
    """Make sure ``<image>`` is one token; new tokens grow the LM's embeddings. Returns its id."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        language_model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token is None:  # SmolLM2 ships none; batches need one (labels ignore it)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def assemble_llava(vision_tower, language_model, tokenizer, projector: str = "mlp", image_tokens: int | None = None,
                   image_processor=None, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Build ``(model, processor)``: a ``LlavaForConditionalGeneration`` holding copies of the parts.

    vision_tower: ``CLIPVisionModel`` (or a model holding one); its ``(B, 3, S, S)`` pixels
    give ``(B, 1 + N, C)`` states, ``N = (S / patch)^2``; LLaVA takes the second-to-last layer's
    and drops the CLS token: ``(B, N, C)``.
    language_model: a causal LM (``...ForCausalLM``) of width ``D``, with ``tokenizer``.
    projector: ``"linear"``, ``"mlp"`` or ``"pixel_shuffle"`` (:mod:`.projectors`).
    image_tokens: tokens per image for ``pixel_shuffle`` (``N / r^2``; default ``N / 4``).
    image_processor: defaults to a CLIP image processor at the tower's size with OpenAI's mean/std.
    dtype: of the assembled model (fp32 by default: fp16 matrix products are slow on a CPU).
    """
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from ..zoo.build_generative import LLAVA_CHAT_TEMPLATE
    from ..zoo.common import CLIP_MEAN, CLIP_STD

    tower = _vision_tower(vision_tower)
    vc = tower.config
    n_patches = (vc.image_size // vc.patch_size) ** 2
    spec = projector_spec(projector, n_patches, image_tokens)
    image_id = _with_image_token(tokenizer, language_model)
    text_config = language_model.config
    config = LlavaConfig(vision_config=vc.to_dict(), text_config=text_config.to_dict(), image_token_index=image_id,
                         projector_hidden_act="linear" if projector == "linear" else "gelu",
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         image_seq_length=spec["image_tokens"], tie_word_embeddings=text_config.tie_word_embeddings)
    if spec["kind"] == "pixel_shuffle":
        config.vlmstudy_projector = {"kind": spec["kind"], "scale": spec["scale"]}
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(tower.state_dict())
    model.model.language_model.load_state_dict(language_model.model.state_dict())
    model.lm_head.load_state_dict(language_model.lm_head.state_dict())
    model.model.multi_modal_projector = make_projector(spec, vc.hidden_size, text_config.hidden_size,
                                                       model.model.multi_modal_projector)
    model.to(dtype).eval()
    if image_processor is None:
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": vc.image_size},
                                                crop_size={"height": vc.image_size, "width": vc.image_size},
                                                image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    # the processor writes (S / patch_size)^2 + 1 - 1 <image> tokens: a shuffle of scale r is a patch r times larger
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=vc.patch_size * spec["scale"], vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    return model, processor


def image_token_count(processor, size: int | None = None) -> int:
    """``<image>`` tokens the processor writes for one picture (of the processor's crop size)."""
    from PIL import Image

    side = size or processor.image_processor.crop_size["height"]
    enc = processor(images=[Image.new("RGB", (side, side))], text=IMAGE_TOKEN, return_tensors="pt")
    return int((enc["input_ids"] == processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).sum())


def course_parts(mode: str | None = None):
    """``(vision_tower, language_model, tokenizer)``: the parts notebook 13 assembles.

    tiny mode: tiny CLIP's tower (``assets/models/tiny-clip``) and ``assets/models/tiny-shapes-lm``.
    hub mode: the CLIP card's checkpoint (``openai/clip-vit-base-patch32``) and SmolLM2-135M, from
    the Hugging Face cache (or the simulated Hub).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .. import settings
    from ..zoo.loading import load

    mode = settings.check_mode(mode) if mode else settings.get_mode()
    clip, _ = load("clip", mode=mode, device="cpu", dtype=torch.float32)
    if mode == "tiny":
        source = settings.MODELS_DIR / TINY_LANGUAGE_MODEL
        if not (source / "model.safetensors").exists():
            raise ConfigError(f"The tiny language model is missing from {source}: restore it with "
                              f"`git checkout -- assets/models/{TINY_LANGUAGE_MODEL}` or run `vlmstudy zoo train shapes-lm`.")
    else:
        source = HUB_LANGUAGE_MODEL
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True,
                                              trust_remote_code=False).eval()
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    return clip.vision_model, lm, tok
