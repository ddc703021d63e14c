"""Small helpers the scripts in ``benchmarks/`` share."""

from __future__ import annotations

import os
import platform


def busy_warning(threads: int, consequence: str = "these timings are not representative") -> list[float]:
    """The load averages before a run; prints a warning when other work competes for the cores
    (timings then mean little, and more threads than free cores can make small ops very slow)."""
    load = list(os.getloadavg())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load[0] + threads > cpus + 0.5:
        print(f"WARNING: load average {load[0]:.1f} on {cpus} CPUs before starting: other processes compete "
              f"for the cores, so {consequence}. Run on an idle machine.")
    return load


def small_llava_config():
    """A LLaVA with the real one's structure (CLIP vision tower, projector, LLaMA), a few hundred K
    parameters: what the GPU benchmarks run with ``--small`` on a CPU."""
    from transformers import LlavaConfig

    return LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        # every in_features a multiple of 64: bitsandbytes' CPU 4-bit kernels need it (see quantize.footprint)
        text_config=dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=320, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_id=319, image_seq_length=16, vision_feature_layer=-2, vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def llava_image_tokens(config) -> int:
    """Image tokens per image of a LLaVA config: patches, plus CLS only with the "full" strategy."""
    v = config.vision_config
    return (v.image_size // v.patch_size) ** 2 + (1 if config.vision_feature_select_strategy == "full" else 0)


def machine_info() -> dict:
    """CPU, load average and library versions, stored with every measurement."""
    import torch
    import transformers

    from .quantize import bitsandbytes_status

    info = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
    }
    ok, message = bitsandbytes_status()
    info["bitsandbytes"] = message.split(" ", 1)[1] if ok else message
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        info["cpu_model"] = None
    return info
