# %% [markdown]
# # Exercise 01 · Image search with CLIP
#
# **Objective.** Write the search engine of notebook 04 yourself: a `CLIPImageSearch` class that
# embeds a gallery of images **once** (`index_images`) and returns the `top_k` images whose
# embeddings are the most similar to a text query (`search`), best first, as
# `[(image_index, score), ...]`.
#
# **How this works.** Write your code where a cell says `raise NotImplementedError()`, run that
# cell, then run the check cell below it: it gives points and, for every check that fails, what
# went wrong and a hint. The checks test what your code *does* (the ranking against a brute-force
# search, ties, `top_k` larger than the gallery, cosine similarity against dot product, ...). When
# your notebook is graded, the same checks and a few hidden ones run again on new data.

# %%
import torch
import torch.nn.functional as F

from vlmstudy import contrastive, shapes
from vlmstudy.grading import check_search, load_quietly

# %% [markdown]
# ## The task
#
# `embed_images` and `embed_text` are given: they return raw CLIP features (**not** normalised),
# `(N, D)` for a list of images and `(D,)` for one text. Write:
#
# * `index_images(images)`: embed the gallery and keep what `search` needs. Calling it again
#   replaces the gallery.
# * `search(query, top_k=5)`: a list of `(index, score)` pairs, best first, where `index` is the
#   position of the image in the gallery and `score` its **cosine similarity** with the query.
#   At most `top_k` pairs (fewer when the gallery is smaller); equal scores keep the lower index
#   first. Embed the query once per search, never the gallery.
#
# Cosine similarity, not a raw dot product: `a · b / (|a| |b|)`, so that a long embedding does
# not win only because it is long. `torch.nn.functional.normalize` and a stable
# `torch.sort(..., descending=True, stable=True)` are all you need.

# %%
class CLIPImageSearch:
    def __init__(self, model, processor):
        self.model = model
        self.processor = processor
        self.image_embeddings = None  # set by index_images

    def embed_images(self, images):
        """Raw CLIP image features, (N, D) (given)."""
        return contrastive.embed_images(self.model, self.processor, images, normalize=False, progress=False)

    def embed_text(self, text):
        """Raw CLIP text features of one query, (D,) (given)."""
        return contrastive.embed_texts(self.model, self.processor, [text], normalize=False, progress=False)[0]

    def index_images(self, images):
        """Embed the gallery once and keep the (normalised) embeddings."""
        ### BEGIN SOLUTION
        self.image_embeddings = F.normalize(self.embed_images(images), dim=-1)
        ### END SOLUTION

    def search(self, query, top_k=5):
        """[(image_index, cosine_similarity), ...] for the top_k best images, best first."""
        ### BEGIN SOLUTION
        query_embedding = F.normalize(self.embed_text(query), dim=-1)
        scores = self.image_embeddings @ query_embedding
        order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
        return [(int(i), float(scores[i])) for i in order]
        ### END SOLUTION

# %% [markdown]
# ## Check
#
# Most checks give your class known vectors in place of CLIP's (they replace `embed_images` and
# `embed_text`), so that the right answer is exact.

# %%
report = check_search(CLIPImageSearch)
report

# %%
### BEGIN HIDDEN TESTS
from vlmstudy.grading import hidden_checks

hidden_checks(CLIPImageSearch, "01_clip_search", "search")
### END HIDDEN TESTS

# %% [markdown]
# ## Try it
#
# Once every check passes, search 60 ShapesWorld scenes with the tiny CLIP.

# %%
if report.passed:
    clip, processor = load_quietly("clip")
    scenes = shapes.make_scenes("test", 60, seed=3)
    engine = CLIPImageSearch(clip, processor)
    engine.index_images([s.render() for s in scenes])
    for query in ["a red circle", "a blue square on the left"]:
        print(query)
        for index, score in engine.search(query, top_k=3):
            print(f"  {score:.2f}  image {index:2d}: {scenes[index].caption}")
else:
    print("Finish CLIPImageSearch first: the checks above say what is missing.")
