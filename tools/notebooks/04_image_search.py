# %% [markdown]
# # 04 · Image search, and answers that start with a search
#
# **Objective.** By the end of this notebook you can index a gallery of images with CLIP, search
# it with a text or with another image, check an approximate (faiss) index against the exact
# one, save and reload an index, and chain a search with a question-answering model: retrieve
# the right image first, then answer a question about it.
#
# A dual encoder maps images and texts into one space, so search is a nearest-neighbour lookup:
# embed the gallery **once** (the slow part), then embed each query (fast) and take the images
# with the highest cosine similarity. That is how CLIP-based photo search works.

# %%
import tempfile

import torch

import vlmstudy
from vlmstudy import contrastive, evaluation, plotting, retrieval, shapes

vlmstudy.seed_everything(0)
clip, processor = vlmstudy.load("openai/clip-vit-base-patch32")
gallery = shapes.make_scenes("test", 300, seed=3)
images = [s.render() for s in gallery]
captions = [s.caption for s in gallery]
print(len(images), "images, for example:", captions[0])

# %% [markdown]
# ## Build the index
#
# `build_image_index` embeds the images in batches and stores the unit vectors in an
# `ImageIndex`, with one piece of metadata per image (here: its caption, which the search never
# looks at; we keep it only to read the results).

# %%
index = retrieval.build_image_index(clip, processor, images, metadata=captions)
print(index)

# %% [markdown]
# ## Text -> image
#
# The query is embedded by the *same* model's text encoder; the hits are the images whose
# vectors point the most in the same direction. Scores are cosine similarities.

# %%
query = "a pink star on the left"
hits = retrieval.search_text(index, clip, processor, query, k=5)[0]
fig = plotting.show_hits(hits, images, query=query)

# %%
query = "a red circle on the left"
fig = plotting.show_hits(retrieval.search_text(index, clip, processor, query, k=5)[0], images, query=query)

# %% [markdown]
# Read the captions under the hits, and compare the colour, the shape and the position with
# the query. Dual encoders are better at *what* than at *where* (the `swap` hard negatives of
# notebook 02 measured the same weakness), and a short query tends to match an image that
# holds only that object before a crowded image that also holds it.

# %% [markdown]
# ## Image -> image
#
# The query can be an image too: embed it with the image encoder and search the same index.
# This one is a new scene, not in the gallery.

# %%
query_image = shapes.make_scenes("val", 1, seed=7)[0].render()
hits = retrieval.search_image(index, clip, processor, query_image, k=5)[0]
fig = plotting.show_hits(hits, images, query=query_image)

# %% [markdown]
# ## How good is the search?
#
# Use every gallery caption as a query: is the image it describes the top hit (recall@1), or
# among the top 5 (recall@5)? Several scenes can share a caption (the size of a shape is not
# in it), and any of them counts.

# %%
recall_1 = retrieval.caption_recall(index, clip, processor, k=1)
recall_5 = retrieval.caption_recall(index, clip, processor, k=5)
# Random guessing, with the duplicates counted: a caption shared by m of the N images is found by a
# random top-k with probability 1 - C(N-m, k) / C(N, k).
from collections import Counter
from math import comb

shared = Counter(captions)
chance = {k: sum(1 - comb(len(index) - shared[c], k) / comb(len(index), k) for c in captions) / len(captions)
          for k in (1, 5)}
print(f"{len(shared)} distinct captions for {len(index)} images")
print(f"recall@1 {recall_1:.3f}   recall@5 {recall_5:.3f}   (random guessing: {chance[1]:.3f} and {chance[5]:.3f}; "
      f"{1 / len(index):.3f} and {5 / len(index):.3f} if every caption were unique)")

# %% [markdown]
# ## Exact search and approximate search (faiss)
#
# The exact search scores the query against *every* vector: one matrix product, fine for
# thousands or a few million images. Beyond that, an approximate index saves time: faiss's
# inverted-file index (IVF) clusters the vectors into `nlist` cells with k-means, and a query
# scans only the `nprobe` cells nearest to it. `with_backend` rebuilds the same vectors as a
# faiss index, without embedding anything again. With its automatic settings on 300 vectors it
# scans every cell, so it must agree with the exact search:

# %%
queries = contrastive.embed_texts(clip, processor, captions[:20])
approx = retrieval.with_backend(index, "faiss")
exact_top = index.search(queries, k=5).positions
approx_top = approx.search(queries, k=5).positions
print(approx)
print("top-5 positions identical for all 20 queries:", torch.equal(exact_top, approx_top))

# %% [markdown]
# Scanning fewer cells is where it becomes approximate: with 6 cells and only 1 scanned, some
# true neighbours sit in cells that were not looked at. `recall` measures the share of the exact
# top-k that the approximate search still finds. On a gallery this small, speed is no reason to
# do this; on 100 million images it is the only way.

# %%
rough = retrieval.with_backend(index, "faiss", nlist=6, nprobe=1)
print(f"nprobe=1 of 6 cells: recall@5 against the exact search = {rough.recall(queries, k=5):.3f}")

# %% [markdown]
# ## Save and load
#
# An index is two files in a folder: the vectors in `safetensors` and the settings and metadata
# in JSON (never pickle, so loading a file from someone else cannot run code).

# %%
with tempfile.TemporaryDirectory() as folder:
    index.save(folder)
    reloaded = retrieval.ImageIndex.load(folder)
print(reloaded)
same = reloaded.search(queries, k=5)
print("same hits after the round trip:", torch.equal(same.positions, exact_top))

# %% [markdown]
# ## Retrieve, then answer
#
# A dual encoder can find an image but cannot say anything about it; a visual question
# answering model can answer about an image but cannot search. Chained, they answer questions
# about a collection: first **retrieve** the image that best matches a description, then
# **answer** a question about that image with a generative model. This is the image version of
# retrieval-augmented generation (RAG). Here the generator is the BLIP VQA stand-in
# (notebook 05 explains how it works, and `vlmstudy.tasks.answer`, the second step);
# `retrieve_then_answer` does both steps.

# %%
vqa = vlmstudy.load("Salesforce/blip-vqa-base")
found = retrieval.retrieve_then_answer(index, "an orange circle at the top", "how many shapes are there?",
                                       retriever=(clip, processor), generator=vqa, images=images)
print(found)
fig = vlmstudy.show_images([found.image], [f"{found.question} -> {found.answer}"], scale=2.5)

# %% [markdown]
# Each answer can be checked, because every gallery scene knows its own answers (`?` when the
# question does not apply to the image that was retrieved):

# %%
asks = [("a pink star on the left", "what colour is the shape on the left?"),
        ("a blue square", "where is the blue square?"),
        ("a green circle at the top", "what colour is the shape at the top?")]
for query, question in asks:
    found = retrieval.retrieve_then_answer(index, query, question, (clip, processor), vqa, images=images)
    truth = {qa.question: qa.answer for qa in shapes.questions(gallery[found.hit.position])}.get(question, "?")
    print(f"search {query!r} -> found {gallery[found.hit.position].caption!r}")
    print(f"    Q: {question}  A: {found.answer!r}  (true: {truth!r})")

# %% [markdown]
# Two things can go wrong, and they are worth telling apart: the search can return the wrong
# image (then even a perfect answer is about the wrong picture), or the answer can be wrong
# about the right image. The print-out above shows both steps so that you can see which.

# %% [markdown]
# ## On a real photo
#
# A gallery of five real photographs (`vlmstudy.real_photos()`, the ones notebooks 02 and 03
# ended with), indexed as above, with the caption a person wrote about each as its metadata.
# Each caption is then a query: does it find its own photo? With five photos, a search that
# picks at random ranks the right one first a fifth of the time.
#
# In `tiny` mode the stand-in's vocabulary is ShapesWorld's (a caption about a cat or a rocket is
# mostly unknown words to it) and its encoder has only seen shapes, so the ranking says little
# about the photos, even though every hit comes with a score: that is what a search model
# returns outside its training world. With `VLMSTUDY_MODE=hub` the real CLIP searches the same
# gallery with the same code.

# %%
real_photos = vlmstudy.real_photos()
photo_captions = [p.caption for p in real_photos]
photo_index = retrieval.build_image_index(clip, processor, [p.image for p in real_photos], metadata=photo_captions)
photo_result = retrieval.search_text(photo_index, clip, processor, photo_captions, k=len(real_photos))
for p, row in zip(real_photos, photo_result.metadata):
    print(f"{p.name:10} its caption ranks its own photo {row.index(p.caption) + 1} of {len(real_photos)}; "
          f"first hit: {real_photos[photo_captions.index(row[0])].name}")
print(f"recall@1 {retrieval.caption_recall(photo_index, clip, processor, k=1):.2f} (random: {1 / len(real_photos):.2f})")
assert photo_result.positions.shape == (len(real_photos), len(real_photos))
assert all(sorted(row) == sorted(photo_captions) for row in photo_result.metadata), "k = 5 ranks every photo"

# %%
photo_query = "a cup of coffee on a wooden table"
photo_hits = retrieval.search_text(photo_index, clip, processor, photo_query, k=3)[0]
fig = plotting.show_hits(photo_hits, [p.image for p in real_photos], query=photo_query,
                         titles=[real_photos[h.position].name for h in photo_hits])

# %% [markdown]
# ## Checks

# %%
text_query = contrastive.embed_texts(clip, processor, ["a red circle on the left"])
brute_force = torch.topk(text_query @ index.vectors.T, k=5).indices
assert torch.equal(index.search(text_query, k=5).positions, brute_force), "the index must agree with brute force"
assert torch.equal(exact_top, approx_top), "faiss scanning every cell must agree with the exact search"
assert torch.equal(same.positions, exact_top) and reloaded.metadata == index.metadata
# recall against the exact search, recomputed by brute force: the share of the true top 5 found
true_top = torch.topk(queries @ index.vectors.T, k=5).indices.tolist()
rough_top = rough.search(queries, k=5).positions.tolist()
by_hand = sum(len(set(a) & set(t)) for a, t in zip(rough_top, true_top)) / (5 * len(true_top))
assert abs(rough.recall(queries, k=5) - by_hand) < 1e-9, "recall = share of the exact top-5 that faiss found"
# retrieve-then-answer answers about the image the search ranks first, and with the VQA model's own answer
query_vector = contrastive.embed_texts(clip, processor, [found.query], progress=False)
assert found.hit.position == int((query_vector @ index.vectors.T).argmax()), "the retrieved image is the best match"
assert found.image is images[found.hit.position], "the answer is about the retrieved image"
assert found.answer == vlmstudy.tasks.answer(found.image, found.question, model=vqa), "the answer is the VQA model's"
# caption_recall@1 by hand: a query counts as found when its top image has the same caption (duplicates count)
top_1 = (contrastive.embed_texts(clip, processor, captions, progress=False) @ index.vectors.T).argmax(dim=1).tolist()
assert abs(recall_1 - sum(captions[t] == c for t, c in zip(top_1, captions)) / len(captions)) < 1e-9
print("mechanics: all checks passed")

# Quality: the stand-in must reach the floor its model card sets; a real checkpoint is printed.
evaluation.check_quality(clip, "text_to_image_recall@1", recall_1, n=len(index))
print("On to 05, BLIP.")

# %% [markdown]
# ## Summary
#
# * An image index is the gallery embedded **once** by the image encoder (unit vectors) plus one piece of metadata per image; a text or an image query is embedded by the same model and the hits are its nearest neighbours by cosine similarity.
# * Recall@1 and recall@5, with every gallery caption as a query (any image with that caption counts), measure how good the search is.
# * faiss's IVF index clusters the vectors into `nlist` cells and scans only the `nprobe` nearest ones: scanning every cell gives the exact result, scanning fewer is faster and approximate, and `recall` measures what it misses.
# * An index is saved as safetensors and JSON, never pickle, so loading one cannot run code.
# * Retrieve, then answer: a dual encoder finds the image, a VQA model answers about it; each step can fail on its own, and the print-out shows which.

# %% [markdown]
# ## Check yourself
#
# Answer each question for yourself first, then open the answer.
#
# **1. Why is the gallery embedded once, while every query is embedded when it comes?**
#
# <details><summary>Answer</summary>
#
# In a dual encoder the image embeddings do not depend on the query: each encoder works on its own. So the slow part, encoding every image, is done once, and a query costs one encoding plus one matrix product with the stored vectors.
#
# </details>
#
# **2. What makes an IVF index approximate, and how do you make it exact again?**
#
# <details><summary>Answer</summary>
#
# A query scans only the `nprobe` cells (k-means clusters) nearest to it, so a true neighbour that sits in another cell is missed. With `nprobe` equal to `nlist` every cell is scanned and the result equals the exact search, as the first faiss check shows.
#
# </details>
#
# **3. Why does the index store its vectors in safetensors and its metadata in JSON rather than in a pickle?**
#
# <details><summary>Answer</summary>
#
# Unpickling a file can run arbitrary code, so loading an index someone sent you would be a risk. safetensors and JSON hold data only.
#
# </details>
#
# **4. A retrieve-then-answer result is wrong. Which two things can have gone wrong, and how do you tell them apart?**
#
# <details><summary>Answer</summary>
#
# The search can have returned the wrong image (then even a perfect answer is about the wrong picture), or the answer can be wrong about the right image. Compare the retrieved image with the description first, then the answer with that image's truth; the print-out shows both steps.
#
# </details>

# %% [markdown]
# ## References
#
# * Radford et al., CLIP (2021): [arXiv:2103.00020](https://arxiv.org/abs/2103.00020).
# * Johnson, Douze and Jégou, *Billion-scale similarity search with GPUs* (faiss, 2017): [arXiv:1702.08734](https://arxiv.org/abs/1702.08734); Douze et al., *The Faiss library* (2024): [arXiv:2401.08281](https://arxiv.org/abs/2401.08281).
# * Lewis et al., *Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks* (RAG, 2020): [arXiv:2005.11401](https://arxiv.org/abs/2005.11401).
# * Model cards: [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32), [Salesforce/blip-vqa-base](https://huggingface.co/Salesforce/blip-vqa-base).
# * Docs: [transformers CLIP](https://huggingface.co/docs/transformers/model_doc/clip), [safetensors](https://huggingface.co/docs/safetensors), [the faiss wiki](https://github.com/facebookresearch/faiss/wiki).
