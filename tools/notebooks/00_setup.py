# %% [markdown]
# # 00 · Setup: modes, devices and an environment check
#
# **Objective.** By the end of this notebook you know that your environment can run the course,
# which *mode* and *device* the course uses, and how to switch to the real models.
#
# Every notebook calls the course's helper package, `vlmstudy`, so that the notebooks stay short
# and show the ideas rather than the plumbing.

# %% [markdown]
# ## Two modes: `tiny` and `hub`
#
# The course teaches real checkpoints from the Hugging Face Hub: CLIP, SigLIP, BLIP, BLIP-2,
# InstructBLIP, LLaVA-1.5 and LLaVA-NeXT. They weigh 0.6 to 15 GB each and the large ones
# want a GPU. So each one has a **tiny stand-in** in `assets/models/`: the *same* transformers
# class with the *same* processor, only a few million parameters, trained by the course's own
# code (`vlmstudy zoo train NAME`) on a small synthetic world of coloured shapes.
#
# | mode | what `vlmstudy.load("openai/clip-vit-base-patch32")` gives | needs |
# |---|---|---|
# | `tiny` (default) | the stand-in from `assets/models/tiny-clip` | nothing: offline, a laptop CPU, seconds |
# | `hub` | the real checkpoint | network once (then the cache), RAM or a GPU |
#
# Both come through `from_pretrained`, so the rest of every notebook is the same code: you can
# learn the mechanics on the stand-ins, then rerun a notebook on the real model.

# %% [markdown]
# ## Is everything installed?
#
# Each row says `ok`, `warn` (works; read the hint), `missing` or `error` (fix it first: the fix
# follows `->`). Stand-ins that are not built yet are only warnings. The same check runs in a
# terminal as `vlmstudy doctor`.

# %%
import os

import torch

import vlmstudy

ready = vlmstudy.print_environment_report()

# %% [markdown]
# ## Mode and device

# %%
print("mode:  ", vlmstudy.get_mode())
print("device:", vlmstudy.get_device())

# %% [markdown]
# To use the real checkpoints, either start JupyterLab with `VLMSTUDY_MODE=hub jupyter lab`, or
# run this at the top of a notebook (not executed here, so this notebook stays offline):
#
# ```python
# vlmstudy.set_mode("hub")   # real checkpoints from the Hub
# vlmstudy.set_mode(None)    # back to what VLMSTUDY_MODE says (tiny when unset)
# ```
#
# The device is chosen for you (CUDA, then Apple MPS, then CPU); you can pin it the same way,
# with `VLMSTUDY_DEVICE=cpu` or `vlmstudy.set_device(...)`:

# %%
print(vlmstudy.set_device("cpu"))   # pin the CPU ...
print(vlmstudy.set_device(None))    # ... and go back to the automatic choice

# %% [markdown]
# A wrong name is refused with a message that says what is allowed:

# %%
try:
    vlmstudy.set_mode("huge")
except vlmstudy.ConfigError as err:
    print(err)

# %% [markdown]
# ## Checks
#
# These should all pass. If one fails, its message says what to do.

# %%
assert ready, "a required package is missing: see the 'missing' / 'error' rows above"
# The mode decides where a model name loads from: the stand-in's folder, or the Hub id.
from vlmstudy.zoo import resolve_source

assert resolve_source("openai/clip-vit-base-patch32", mode="hub")[0] == "openai/clip-vit-base-patch32"
assert resolve_source("openai/clip-vit-base-patch32", mode="tiny")[0].endswith(os.path.join("assets", "models", "tiny-clip"))
assert vlmstudy.set_mode("tiny") == "tiny" and vlmstudy.get_mode() == "tiny", "set_mode must win over the environment"
vlmstudy.set_mode(None)   # back to the environment's choice
# A pinned device is the one a tensor lands on.
assert vlmstudy.set_device("cpu") == "cpu" and torch.ones(2, device=vlmstudy.get_device()).device.type == "cpu"
vlmstudy.set_device(None)
assert torch.ones(2, device=vlmstudy.get_device()).sum().item() == 2, "the automatic device must run a tensor"
print("All set: on to 01.")

# %% [markdown]
# ## Summary
#
# * The course runs in one of two **modes**. `tiny` (the default) loads small stand-ins from `assets/models/`: the same transformers classes and processors as the real models, trained on ShapesWorld, offline and fast on a CPU. `hub` loads the real checkpoints from the Hugging Face Hub.
# * Both go through `from_pretrained`, so the code of every notebook is the same in both modes; only where the weights come from changes.
# * `vlmstudy.print_environment_report()` (or `vlmstudy doctor` in a terminal) says whether the environment can run the course: `missing` and `error` rows must be fixed first, `warn` rows work.
# * The device is chosen for you (CUDA, then Apple MPS, then CPU) and can be pinned with `VLMSTUDY_DEVICE` or `vlmstudy.set_device`; a name that is not allowed is refused with a message that lists the allowed ones.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why can a notebook written for the stand-ins run unchanged on the real checkpoints?**
#
# <details><summary>Answer</summary>
#
# A stand-in is the same transformers class with the same processor as the real model, loaded through the same `from_pretrained`; only its configuration numbers and weights differ. The mode decides where the weights come from, not what the code does.
#
# </details>
#
# **2. How do you switch to the real models for a whole JupyterLab session, and for one notebook only?**
#
# <details><summary>Answer</summary>
#
# For a session: start it with `VLMSTUDY_MODE=hub jupyter lab`. For one notebook: `vlmstudy.set_mode("hub")` at its top; `vlmstudy.set_mode(None)` goes back to what `VLMSTUDY_MODE` says (`tiny` when it is unset).
#
# </details>
#
# **3. Which device does the course pick on a Mac with Apple silicon and no CUDA, and how do you make it use the CPU instead?**
#
# <details><summary>Answer</summary>
#
# Apple's MPS (the order is CUDA, then MPS, then CPU). `VLMSTUDY_DEVICE=cpu` before starting, or `vlmstudy.set_device("cpu")` in the notebook; `set_device(None)` returns to the automatic choice.
#
# </details>
#
# **4. The environment report shows a `warn` row for a stand-in that is not built yet. Must you fix it before going on?**
#
# <details><summary>Answer</summary>
#
# No. `warn` means it works and the hint is worth reading; only `missing` and `error` rows must be fixed first (the fix follows `->` in the row). The first check in this notebook fails only on those.
#
# </details>

# %% [markdown]
# ## References
#
# * Wolf et al., *Transformers: State-of-the-Art Natural Language Processing* (2020): [arXiv:1910.03771](https://arxiv.org/abs/1910.03771).
# * transformers docs: [Installation, the cache and offline mode](https://huggingface.co/docs/transformers/installation), [Auto classes and `from_pretrained`](https://huggingface.co/docs/transformers/model_doc/auto).
# * Hugging Face Hub docs: [Manage the cache](https://huggingface.co/docs/huggingface_hub/guides/manage-cache).
# * The first real checkpoint of the course: [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32).
# * PyTorch: [MPS backend](https://pytorch.org/docs/stable/notes/mps.html) (Apple GPUs).
