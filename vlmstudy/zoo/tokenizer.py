"""A word-level tokenizer over ShapesWorld's vocabulary, built with the ``tokenizers`` library.

Real checkpoints ship BPE / SentencePiece tokenizers with tens of thousands of entries; ShapesWorld
needs ~100 words, so each stand-in gets a word-level tokenizer wrapped in
``PreTrainedTokenizerFast``. It saves and reloads with ``AutoTokenizer`` like any other, and every
processor (CLIP, SigLIP, BLIP, BLIP-2, LLaVA ...) accepts it.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from ..shapes import vocabulary

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)


def vocab_dict() -> dict[str, int]:
    """Token -> id: the special tokens first (pad 0, unk 1, bos 2, eos 3, image 4), then the words."""
    return {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + vocabulary())}


def build_tokenizer(
    add_bos: bool = False,
    add_eos: bool = False,
    image_token: bool = False,
    model_max_length: int = 64,
    padding_side: str = "right",
    extra_special: dict | None = None,
) -> PreTrainedTokenizerFast:
    """Build the tokenizer.

    add_bos / add_eos: wrap every sequence as ``<s> ... </s>`` (CLIP pools its text at ``</s>``).
    image_token: register ``<image>`` as the processor's image token (LLaVA); BLIP-2 /
    InstructBLIP must not have it (their processors add it themselves).
    """
    vocab = vocab_dict()
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies " ?" -> "?"
    single = " ".join(([f"{BOS}"] if add_bos else []) + ["$A"] + ([f"{EOS}"] if add_eos else []))
    pair = " ".join(([f"{BOS}"] if add_bos else []) + ["$A", "$B"] + ([f"{EOS}"] if add_eos else []))
    core.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    kwargs = dict(pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, **(extra_special or {}))
    if image_token:
        kwargs["extra_special_tokens"] = {"image_token": IMAGE}
    tok = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=model_max_length,
                                  padding_side=padding_side, **kwargs)
    # <image> is one token even in tokenizers that do not name it as their image token
    tok.add_special_tokens({"additional_special_tokens": [IMAGE]}) if not image_token else None
    return tok
