"""Build a VLM from its parts: a vision tower, a projector and a language model (notebook 13).

- :mod:`.projectors`: linear, MLP (LLaVA-1.5) and pixel-shuffle + MLP (Idefics3 / SmolVLM);
- :mod:`.build`: :func:`assemble_llava` -> a real ``LlavaForConditionalGeneration`` + processor;
- :mod:`.joints`: :func:`shapes_at_every_joint`, pixels -> patches -> tokens -> LM input;
- :mod:`.stages`: :func:`train_stage1` (projector on captions), :func:`train_stage2` (instructions);
- :mod:`.live_plot`: :class:`LiveLossPlot`;
- :mod:`.saving`: :func:`save_vlm` / :func:`load_vlm` in Hugging Face format.
"""

from .build import assemble_llava, course_parts, image_token_count
from .joints import shapes_at_every_joint
from .live_plot import LiveLossPlot
from .projectors import KINDS, PixelShuffleProjector, pixel_shuffle, pixel_unshuffle, projector_spec
from .saving import is_assembled, load_vlm, save_vlm
from .stages import StageConfig, StageResult, per_kind_accuracy, train_stage1, train_stage2

__all__ = ["KINDS", "LiveLossPlot", "PixelShuffleProjector", "StageConfig", "StageResult", "assemble_llava",
           "course_parts", "image_token_count", "is_assembled", "load_vlm", "per_kind_accuracy", "pixel_shuffle",
           "pixel_unshuffle", "projector_spec", "save_vlm", "shapes_at_every_joint", "train_stage1", "train_stage2"]
