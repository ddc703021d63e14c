"""Graded exercises (vlmstudy.grading): the build from one master, the checks, the grader.

For every exercise and part: the stub scores 0, the solution full marks, plausible wrong
solutions something in between, and a looping or crashing one 0 within the time limit. The
scores are computed as the grader computes them (every check, hidden ones included, on new
data); a few tests run the real grader (a fresh, confined process per submission) end to end.
Submissions that try to fake their grade: tests/test_grading_hostile.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from dataclasses import asdict

import nbformat
import pytest

from vlmstudy import cli
from vlmstudy.grading import build, grader, hidden_checks, registry
from vlmstudy.grading.core import Env

pytestmark = pytest.mark.slow  # test tier (issue 23; pyproject.toml, CONTRIBUTING.md)

EXERCISES = list(registry.EXERCISES)
PARTS = [(ex.name, p.name) for ex in registry.EXERCISES.values() for p in ex.parts]


def _code_cells(path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _namespace(path, marker: str, replace: dict | None = None) -> dict:
    """Run a built notebook's imports and the cells that define the learner's code (those that
    hold ``marker``), with ``replace`` = {target: source} swapped in after them."""
    cells = _code_cells(path)
    ns: dict = {}
    exec(cells[0], ns)
    for source in cells[1:]:
        if marker in source:
            exec(source, ns)
    for source in (replace or {}).values():
        exec(source, ns)
    return ns


def _solution(exercise):
    return _namespace(build.SOLUTIONS_DIR / f"{exercise}.ipynb", "### BEGIN SOLUTION")


def _stub(exercise):
    return _namespace(build.EXERCISES_DIR / f"{exercise}.ipynb", "raise NotImplementedError()")


def _score(target, exercise: str, part: str, seed: int = 11) -> grader.PartScore:
    """The score the grader gives: every check on new data, points from the grader's table."""
    report = hidden_checks(target, exercise, part, seed=seed)
    return grader._score(registry.get_part(exercise, part),
                         {"status": "ran", "outcomes": [asdict(o) for o in report.outcomes]})


@pytest.fixture(scope="module", autouse=True)
def _models():
    """Load the two models the checks use once, before any time limit runs."""
    Env(0).model("clip")
    Env(0).model("llava")


# ----------------------------------------------------------------------------- build

def test_every_exercise_has_a_master_and_two_notebooks():
    assert [m.stem for m in build.masters()] == EXERCISES
    assert len(EXERCISES) >= 5 and {"01_clip_search", "02_chatbot"} <= set(EXERCISES)


def test_committed_notebooks_are_what_the_build_gives():
    assert build.stale() == [], "run: vlmstudy exercises build"


def test_student_notebooks_have_stubs_and_no_solution_or_hidden_test(repo):
    for exercise in EXERCISES:
        path = build.EXERCISES_DIR / f"{exercise}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.vlmstudy.exercise == exercise
        text = path.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "hidden_checks"):
            assert marker not in text, (exercise, marker)
        code = _code_cells(path)
        for source in code:
            ast.parse(source)  # a stub keeps the indentation of the code it replaces
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
        assert sum(s.count("raise NotImplementedError()") for s in code) >= len(registry.get_exercise(exercise).parts)
        solution = "\n".join(_code_cells(repo / "solutions" / f"{exercise}.ipynb"))
        assert "### BEGIN SOLUTION" in solution and "### BEGIN HIDDEN TESTS" in solution
        assert "raise NotImplementedError" not in solution


def test_solution_notebooks_store_their_outputs():
    for exercise in EXERCISES:
        nb = nbformat.read(build.SOLUTIONS_DIR / f"{exercise}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), exercise
        shown = json.dumps([c.outputs for c in code])
        assert "(hidden checks)" in shown and "(visible checks)" in shown and "✗" not in shown, exercise
        assert "Loading weights" not in shown and "0x7f" not in shown, exercise  # nothing that varies


def test_each_solution_runs_the_hidden_checks_of_every_part():
    for exercise in EXERCISES:
        code = "\n".join(_code_cells(build.SOLUTIONS_DIR / f"{exercise}.ipynb"))
        hidden = code[code.index("### BEGIN HIDDEN TESTS"):code.rindex("### END HIDDEN TESTS")]
        for part in registry.get_exercise(exercise).parts:
            assert f"hidden_checks({part.target}, {exercise!r}, {part.name!r})".replace("'", '"') in hidden


def test_master_markers_must_pair(tmp_path):
    master = tmp_path / "tools" / "exercises" / "99_demo.py"
    master.parent.mkdir(parents=True)
    master.write_text("# %%\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n")
    with pytest.raises(build.MasterError, match="never closed"):
        build.student_notebook(master)
    master.write_text("# %%\ndef f(x):\n    if x:\n        ### BEGIN SOLUTION\n        return 1\n"
                      "        ### END SOLUTION\n    return 0\n\n# %%\n### BEGIN HIDDEN TESTS\nf(1)\n"
                      "### END HIDDEN TESTS\n")
    nb = json.loads(build.student_notebook(master))
    assert len(nb["cells"]) == 1
    assert "".join(nb["cells"][0]["source"]) == ("def f(x):\n    if x:\n        # YOUR CODE HERE\n"
                                                 "        raise NotImplementedError()\n    return 0")


def test_build_check_command(capsys):
    assert cli.main(["exercises", "build", "--check"]) == 0
    assert "match" in capsys.readouterr().out


# ----------------------------------------------------------------------------- checks, as graded

@pytest.mark.parametrize("exercise, part", PARTS)
def test_stub_scores_zero_and_solution_full_marks(exercise, part):
    target = registry.get_part(exercise, part).target
    stub = _score(_stub(exercise)[target], exercise, part)
    assert stub.points == 0 and not stub.passed and stub.status == "not done"
    solution = _score(_solution(exercise)[target], exercise, part)
    assert solution.passed and solution.points == solution.max_points, solution.checks


def test_visible_check_of_a_stub_says_not_done_yet():
    from vlmstudy.grading import check_search

    report = check_search(_stub("01_clip_search")["CLIPImageSearch"])
    text = str(report)
    assert report.points == 0 and report.todo
    assert "not done yet" in text and "Traceback" not in text and "hidden checks worth 1 more" in text


WRONG = {
    ("01_clip_search", "search"): {
        "unsorted results": '''
class CLIPImageSearch(CLIPImageSearch):
    def search(self, query, top_k=5):
        q = F.normalize(self.embed_text(query), dim=-1)
        scores = self.image_embeddings @ q
        return [(i, float(scores[i])) for i in range(min(top_k, len(scores)))]
''',
        "dot product": '''
class CLIPImageSearch(CLIPImageSearch):
    def index_images(self, images):
        self.image_embeddings = self.embed_images(images)

    def search(self, query, top_k=5):
        scores = self.image_embeddings @ self.embed_text(query)
        order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
        return [(int(i), float(scores[i])) for i in order]
''',
        "topk, gallery embedded per search": '''
class CLIPImageSearch(CLIPImageSearch):
    def index_images(self, images):
        self.images = images

    def search(self, query, top_k=5):
        gallery = F.normalize(self.embed_images(self.images), dim=-1)
        scores = gallery @ F.normalize(self.embed_text(query), dim=-1)
        values, indices = torch.topk(scores, top_k)
        return list(zip(indices.tolist(), values.tolist()))
''',
    },
    ("02_chatbot", "chatbot"): {
        "ignores the history": '''
class MultimodalChatbot(MultimodalChatbot):
    def chat(self, message):
        reply = self.generate(chat_prompt(self.processor, [(message, None)]))
        self.history.append((message, reply))
        return reply
''',
        "clear does not clear": '''
class MultimodalChatbot(MultimodalChatbot):
    def clear_history(self):
        self.history = list(self.history)
''',
    },
    ("03_zero_shot_ensemble", "class_embeddings"): {
        "averages raw embeddings": '''
def class_embeddings(labels, templates, embed_texts):
    prompts = [t.format(label) for label in labels for t in templates]
    return F.normalize(embed_texts(prompts).reshape(len(labels), len(templates), -1).mean(1), dim=-1)
''',
    },
    ("03_zero_shot_ensemble", "zero_shot_probs"): {
        "raw dot product": '''
def zero_shot_probs(image_embeds, class_embeds, scale=100.0):
    return (scale * image_embeds @ class_embeds.T).softmax(dim=-1)
''',
    },
    ("04_contrastive_loss", "clip_loss"): {
        "one direction only": '''
def clip_loss(image_embeds, text_embeds, logit_scale):
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    return F.cross_entropy(logits, torch.arange(len(logits)))
''',
        "hand-written softmax": '''
def clip_loss(image_embeds, text_embeds, logit_scale):
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    rows = -(logits.exp() / logits.exp().sum(1, keepdim=True)).diag().log().mean()
    cols = -(logits.exp() / logits.exp().sum(0, keepdim=True)).diag().log().mean()
    return (rows + cols) / 2
''',
    },
    ("05_attention_rollout", "rollout"): {
        "layers in the wrong order": '''
def attention_rollout(attentions, residual=0.5):
    eye = torch.eye(attentions.shape[-1])
    rollout = eye.expand(attentions.shape[1], -1, -1)
    for layer in attentions:
        a = residual * eye + (1 - residual) * layer.mean(dim=1)
        rollout = rollout @ (a / a.sum(dim=-1, keepdim=True))
    return rollout
''',
        "last layer only": '''
def attention_rollout(attentions, residual=0.5):
    a = residual * torch.eye(attentions.shape[-1]) + (1 - residual) * attentions[-1].mean(dim=1)
    return a / a.sum(dim=-1, keepdim=True)
''',
    },
    ("06_vqa_normalisation", "normalize_answer"): {
        "no number words": '''
def normalize_answer(text):
    text = ("" if text is None else str(text)).lower()
    text = re.sub(r"(\\d),(\\d)", r"\\1\\2", text)
    for ch in PUNCTUATION:
        text = text.replace(ch, "" if ch == "'" else " ")
    text = re.sub(r"\\.(?!\\d)", " ", text)
    return " ".join(CONTRACTIONS.get(w, w) for w in text.split() if w not in ARTICLES)
''',
        "every full stop goes": '''
def normalize_answer(text):
    text = ("" if text is None else str(text)).lower()
    text = re.sub(r"(\\d),(\\d)", r"\\1\\2", text)
    for ch in PUNCTUATION + ".":
        text = text.replace(ch, "" if ch == "'" else " ")
    words = [NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)
''',
    },
    ("06_vqa_normalisation", "answer_matches"): {
        "substring of the text": '''
def answer_matches(answer, truth):
    return normalize_answer(truth) in normalize_answer(answer)
''',
        "exact match only": '''
def answer_matches(answer, truth):
    return normalize_answer(answer) == normalize_answer(truth)
''',
    },
    ("07_memory_footprint", "footprint"): {
        "nf4 without its scales": '''
def footprint_bytes(tensors, precision, dtype="fp16"):
    if precision not in PRECISIONS:
        raise ValueError(precision)
    total = 0
    for shape, quantized in tensors:
        n = math.prod(shape)
        if precision in FLOAT_BYTES:
            total += n * FLOAT_BYTES[precision]
        elif not quantized:
            total += n * FLOAT_BYTES[dtype]
        else:
            total += n + 4 * shape[0] if precision == "int8" else (n + 1) // 2
    return total
''',
        "everything unquantized in fp16, no precision check": '''
def footprint_bytes(tensors, precision, dtype="fp16"):
    total = 0
    for shape, quantized in tensors:
        n = math.prod(shape)
        if precision in FLOAT_BYTES:
            total += n * FLOAT_BYTES[precision]
        elif not quantized:
            total += n * 2
        elif precision == "int8":
            total += n + 4 * shape[0]
        else:
            blocks = math.ceil(n / 64)
            total += (n + 1) // 2 + (4 * blocks + 64 if precision == "nf4" else
                                     blocks + 4 * math.ceil(blocks / 256) + 1024 + 64 + 4)
    return total
''',
    },
    ("08_chat_prompt", "prompt"): {
        "images where they stand": '''
def build_prompt(messages, add_generation_prompt=True):
    out = ""
    for message in messages:
        if message["role"] != "system":
            out += message["role"].upper() + ": "
        for item in message["content"]:
            out += "<image>\\n" if item["type"] == "image" else item["text"] + " "
    return out + ("ASSISTANT:" if add_generation_prompt else "")
''',
        "always a generation prompt, system as a role": '''
def build_prompt(messages, add_generation_prompt=True):
    out = ""
    for message in messages:
        out += message["role"].upper() + ": "
        out += "".join("<image>\\n" for item in message["content"] if item["type"] == "image")
        out += "".join(item["text"] + " " for item in message["content"] if item["type"] == "text")
    return out + "ASSISTANT:"
''',
    },
    ("09_anyres_tokens", "best_resolution"): {
        "upscaling counts as kept pixels": '''
def best_resolution(image_hw, pinpoints):
    height, width = image_hw
    def key(p):
        scale = min(p[1] / width, p[0] / height)
        kept = int(width * scale) * int(height * scale)
        return (kept, -(p[0] * p[1] - kept))
    return tuple(max(pinpoints, key=key))
''',
        "no tie-break on padding": '''
def best_resolution(image_hw, pinpoints):
    height, width = image_hw
    def kept(p):
        scale = min(p[1] / width, p[0] / height)
        return min(int(width * scale) * int(height * scale), width * height)
    return tuple(max(pinpoints, key=kept))
''',
    },
    ("09_anyres_tokens", "image_tokens"): {
        "padding kept": '''
def image_tokens(image_hw, pinpoints, tile, patch):
    best_h, best_w = best_resolution(image_hw, pinpoints)
    side = tile // patch
    rows, cols = side * (best_h // tile), side * (best_w // tile)
    return side * side + rows * cols + rows
''',
        "unpadding the wrong way round": '''
def image_tokens(image_hw, pinpoints, tile, patch):
    height, width = image_hw
    best_h, best_w = best_resolution(image_hw, pinpoints)
    side = tile // patch
    rows, cols = side * (best_h // tile), side * (best_w // tile)
    if width / height < cols / rows:
        kept = int(round(height * (cols / width), 7))
        rows -= 2 * ((rows - kept) // 2)
    else:
        kept = int(round(width * (rows / height), 7))
        cols -= 2 * ((cols - kept) // 2)
    return side * side + rows * cols + rows
''',
    },
    ("10_qformer_shapes", "shapes"): {
        "no class token, one cross-attention per frequency": '''
def qformer_shapes(config, batch):
    queries = (batch, config["num_query_tokens"], config["qformer_hidden"])
    return {"vision": (batch, (config["image_size"] // config["patch_size"]) ** 2, config["vision_hidden"]),
            "queries": queries, "qformer": queries,
            "language": (batch, config["num_query_tokens"], config["text_hidden"]),
            "cross_attention_layers": config["qformer_layers"] // config["cross_attention_frequency"]}
''',
        "the Q-Former keeps the image's tokens": '''
def qformer_shapes(config, batch):
    tokens = 1 + (config["image_size"] // config["patch_size"]) ** 2
    return {"vision": (batch, tokens, config["vision_hidden"]),
            "queries": (batch, config["num_query_tokens"], config["qformer_hidden"]),
            "qformer": (batch, tokens, config["qformer_hidden"]), "language": (batch, tokens, config["text_hidden"]),
            "cross_attention_layers": math.ceil(config["qformer_layers"] / config["cross_attention_frequency"])}
''',
    },
    ("11_lora_budget", "lora_params"): {
        "substring match": '''
def lora_params(layers, r, targets):
    return sum(r * (i + o) for name, (i, o) in layers.items() if any(t in name for t in targets))
''',
        "only the decoder layers": '''
def lora_params(layers, r, targets):
    return sum(r * (i + o) for name, (i, o) in layers.items()
               if name.startswith("model.layers.") and name.split(".")[-1] in targets)
''',
    },
    ("11_lora_budget", "lora_for_budget"): {
        "strictly below the budget": '''
def lora_for_budget(layers, targets, budget):
    for r in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        params = lora_params(layers, r, targets)
        if 0 < params < budget:
            return {"r": r, "lora_alpha": 2 * r, "target_modules": sorted(targets), "params": params}
    raise ValueError("too small")
''',
        "alpha = r, targets as given": '''
def lora_for_budget(layers, targets, budget):
    for r in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        params = lora_params(layers, r, targets)
        if 0 < params <= budget:
            return {"r": r, "lora_alpha": r, "target_modules": list(targets)[::-1], "params": params}
    raise ValueError("too small")
''',
    },
    ("12_image_preprocessing", "resize_and_crop"): {
        "bilinear": '''
def resize_and_crop(image, shortest_edge, crop_size):
    width, height = image.size
    size = ((shortest_edge, int(shortest_edge * height / width)) if width <= height
            else (int(shortest_edge * width / height), shortest_edge))
    image = image.convert("RGB").resize(size, resample=Image.BILINEAR)
    left, top = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
    return image.crop((left, top, left + crop_size, top + crop_size))
''',
        "the long side rounded to the nearest": '''
def resize_and_crop(image, shortest_edge, crop_size):
    width, height = image.size
    size = ((shortest_edge, round(shortest_edge * height / width)) if width <= height
            else (round(shortest_edge * width / height), shortest_edge))
    image = image.convert("RGB").resize(size, resample=Image.BICUBIC)
    left, top = (size[0] - crop_size) // 2, (size[1] - crop_size) // 2
    return image.crop((left, top, left + crop_size, top + crop_size))
''',
    },
    ("12_image_preprocessing", "pixel_values"): {
        "a fixed 1/255": '''
def pixel_values(image, config):
    crop = resize_and_crop(image, config["shortest_edge"], config["crop_size"])
    x = np.asarray(crop).astype(np.float32) / 255
    x = (x - np.array(config["image_mean"], dtype=np.float32)) / np.array(config["image_std"], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
''',
        "reshaped, not transposed": '''
def pixel_values(image, config):
    crop = resize_and_crop(image, config["shortest_edge"], config["crop_size"])
    x = np.asarray(crop).astype(np.float32) * config["rescale_factor"]
    x = (x - np.array(config["image_mean"], dtype=np.float32)) / np.array(config["image_std"], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)).reshape(3, *x.shape[:2])
''',
    },
    ("13_vit_parameters", "vit"): {
        "no class token": '''
def vit_params(config):
    h, i = config["hidden_size"], config["intermediate_size"]
    patches = (config["image_size"] // config["patch_size"]) ** 2
    embeddings = h * config["num_channels"] * config["patch_size"] ** 2 + patches * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
    return {"embeddings": embeddings, "layer": layer, "encoder": config["num_hidden_layers"] * layer, "norms": 4 * h,
            "total": embeddings + config["num_hidden_layers"] * layer + 4 * h}
''',
        "no biases, three channels": '''
def vit_params(config):
    h, i = config["hidden_size"], config["intermediate_size"]
    patches = (config["image_size"] // config["patch_size"]) ** 2
    embeddings = h * 3 * config["patch_size"] ** 2 + h + (patches + 1) * h
    layer = 4 * h * h + 2 * h * i + 4 * h
    return {"embeddings": embeddings, "layer": layer, "encoder": config["num_hidden_layers"] * layer, "norms": 4 * h,
            "total": embeddings + config["num_hidden_layers"] * layer + 4 * h}
''',
    },
    ("14_siglip_loss", "siglip_loss"): {
        "mean over every pair": '''
def siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias):
    logits = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias
    return -F.logsigmoid((2 * torch.eye(len(text_embeds)) - 1) * logits).mean()
''',
        "log of a sigmoid": '''
def siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias):
    logits = logit_scale.exp() * text_embeds @ image_embeds.T + logit_bias
    return -torch.log(torch.sigmoid((2 * torch.eye(len(text_embeds)) - 1) * logits)).sum() / len(text_embeds)
''',
    },
    ("14_siglip_loss", "siglip_loss_chunked"): {
        "labels on each block's own diagonal": '''
def siglip_loss_chunked(image_embeds, text_embeds, logit_scale, logit_bias, chunk_size):
    if chunk_size < 1:
        raise ValueError(chunk_size)
    total = 0
    for start in range(0, len(image_embeds), chunk_size):
        block = logit_scale.exp() * text_embeds @ image_embeds[start:start + chunk_size].T + logit_bias
        labels = 2 * torch.eye(*block.shape) - 1
        total = total - F.logsigmoid(labels * block).sum()
    return total / len(text_embeds)
''',
        "a mean per block": '''
def siglip_loss_chunked(image_embeds, text_embeds, logit_scale, logit_bias, chunk_size):
    blocks = []
    for start in range(0, len(image_embeds), max(chunk_size, 1)):
        img = image_embeds[start:start + chunk_size]
        blocks.append(siglip_loss(img, text_embeds[start:start + chunk_size], logit_scale, logit_bias))
    return torch.stack(blocks).mean()
''',
    },
    ("15_accuracy_intervals", "wilson_interval"): {
        "Wald's interval": '''
def wilson_interval(correct, n, z=1.96):
    if n < 1 or not 0 <= correct <= n:
        raise ValueError("bad counts")
    p = correct / n
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)
''',
        "z fixed at 1.96, no input check": '''
def wilson_interval(correct, n, z=1.96):
    z, p = 1.96, correct / max(n, 1)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
''',
    },
    ("15_accuracy_intervals", "accuracy_table"): {
        "rows in the order met": '''
def accuracy_table(kinds, correct):
    if len(kinds) != len(correct) or not kinds:
        raise ValueError("one flag per question")
    rows = {}
    for kind in dict.fromkeys(kinds):
        flags = [bool(c) for k, c in zip(kinds, correct) if k == kind]
        low, high = wilson_interval(sum(flags), len(flags))
        rows[kind] = {"n": len(flags), "correct": sum(flags), "accuracy": sum(flags) / len(flags), "low": low, "high": high}
    return rows
''',
        "one interval for the whole table": '''
def accuracy_table(kinds, correct):
    low, high = wilson_interval(sum(map(bool, correct)), len(correct))
    rows = {}
    for kind in sorted(set(kinds)):
        flags = [bool(c) for k, c in zip(kinds, correct) if k == kind]
        rows[kind] = {"n": len(flags), "correct": sum(flags), "accuracy": sum(flags) / len(flags), "low": low, "high": high}
    return rows
''',
    },
}


@pytest.mark.parametrize("exercise, part", PARTS)
def test_plausible_wrong_solutions_score_in_between(exercise, part):
    assert (exercise, part) in WRONG, "every part needs at least one plausible wrong solution"
    target = registry.get_part(exercise, part).target
    for name, source in WRONG[exercise, part].items():
        score = _score(_namespace(build.SOLUTIONS_DIR / f"{exercise}.ipynb", "### BEGIN SOLUTION",
                                  {target: source})[target], exercise, part)
        assert 0 < score.points < score.max_points and not score.passed, (name, score.points, score.checks)


LOOP = "\n    while True:\n        pass\n"
BROKEN = {  # one looping member per part; crashing ones raise instead
    "CLIPImageSearch": "class CLIPImageSearch(CLIPImageSearch):\n  def search(self, query, top_k=5):{body}",
    "MultimodalChatbot": "class MultimodalChatbot(MultimodalChatbot):\n  def chat(self, message):{body}",
    "class_embeddings": "def class_embeddings(labels, templates, embed_texts):{body}",
    "zero_shot_probs": "def zero_shot_probs(image_embeds, class_embeds, scale=100.0):{body}",
    "clip_loss": "def clip_loss(image_embeds, text_embeds, logit_scale):{body}",
    "attention_rollout": "def attention_rollout(attentions, residual=0.5):{body}",
    "normalize_answer": "def normalize_answer(text):{body}",
    "answer_matches": "def answer_matches(answer, truth):{body}",
    "footprint_bytes": "def footprint_bytes(tensors, precision, dtype='fp16'):{body}",
    "build_prompt": "def build_prompt(messages, add_generation_prompt=True):{body}",
    "best_resolution": "def best_resolution(image_hw, pinpoints):{body}",
    "image_tokens": "def image_tokens(image_hw, pinpoints, tile, patch):{body}",
    "qformer_shapes": "def qformer_shapes(config, batch):{body}",
    "lora_params": "def lora_params(layers, r, targets):{body}",
    "lora_for_budget": "def lora_for_budget(layers, targets, budget):{body}",
    "resize_and_crop": "def resize_and_crop(image, shortest_edge, crop_size):{body}",
    "pixel_values": "def pixel_values(image, config):{body}",
    "vit_params": "def vit_params(config):{body}",
    "siglip_loss": "def siglip_loss(image_embeds, text_embeds, logit_scale, logit_bias):{body}",
    "siglip_loss_chunked": "def siglip_loss_chunked(image_embeds, text_embeds, logit_scale, logit_bias, chunk_size):{body}",
    "wilson_interval": "def wilson_interval(correct, n, z=1.96):{body}",
    "accuracy_table": "def accuracy_table(kinds, correct):{body}",
}


@pytest.mark.parametrize("exercise, part", PARTS)
def test_looping_or_crashing_code_scores_zero_within_the_limit(exercise, part, monkeypatch):
    target = registry.get_part(exercise, part).target
    for kind, body in (("loop", LOOP), ("crash", "\n    raise RuntimeError('boom')\n")):
        if kind == "loop":  # the grader's kernel gets the limit the same way (a third of --timeout)
            monkeypatch.setenv("VLMSTUDY_CHECK_TIME_LIMIT", "1")
        else:
            monkeypatch.delenv("VLMSTUDY_CHECK_TIME_LIMIT", raising=False)
        source = BROKEN[target].format(body=body)
        ns = _namespace(build.SOLUTIONS_DIR / f"{exercise}.ipynb", "### BEGIN SOLUTION", {target: source})
        start = time.monotonic()
        score = _score(ns[target], exercise, part)
        assert score.points == 0 and not score.passed, (kind, score.checks)
        assert time.monotonic() - start < 10, kind
        if kind == "loop":
            assert score.status == "timeout"
        else:
            assert {c["status"] for c in score.checks} == {"error"}
            assert all("RuntimeError: boom" in c["message"] for c in score.checks)


def test_the_grader_scores_only_from_its_own_table():
    part = registry.get_part("01_clip_search", "search")
    forged = {"status": "ran", "outcomes": [
        {"name": "ranking", "status": "passed", "points": 99},
        {"name": "made_up", "status": "passed", "points": 50},
    ]}
    score = grader._score(part, forged)
    assert score.points == part.check("ranking").points and not score.passed


# ----------------------------------------------------------------------------- the grader, end to end

def _submission(tmp_path, exercise: str, cells: list[str]) -> str:
    """A learner's notebook: the exercise's imports, then ``cells``."""
    imports = _code_cells(build.EXERCISES_DIR / f"{exercise}.ipynb")[0]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [imports, *cells]])
    nb.metadata["vlmstudy"] = {"exercise": exercise}
    path = tmp_path / f"{exercise}_submission.ipynb"
    nbformat.write(nb, path)
    return str(path)


def test_grade_command_gives_the_solution_full_marks(capsys):
    start = time.monotonic()
    code = cli.main(["exercises", "grade", str(build.SOLUTIONS_DIR / "05_attention_rollout.ipynb"), "--seed", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "total 10/10 (100%)" in out and "seed 5" in out, out
    assert time.monotonic() - start < 120


def test_grade_scores_a_dead_kernel_zero_and_goes_on(tmp_path):
    """Part 1 kills the submission's process during the grader's checks (the learner's own check
    cell does nothing while graded: the checks run in the grader); part 2 is right, graded in a
    new process: 0 for part 1, full marks for part 2."""
    dies = "import os\n\ndef class_embeddings(labels, templates, embed_texts):\n    os._exit(3)\n"
    right = next(s for s in _code_cells(build.SOLUTIONS_DIR / "03_zero_shot_ensemble.ipynb")
                 if s.startswith("def zero_shot_probs"))
    path = _submission(tmp_path, "03_zero_shot_ensemble", [dies, "check_class_embeddings(class_embeddings)", right])
    result = grader.grade(path, timeout=60, seed=3)
    by_part = {p.part: p for p in result.parts}
    assert by_part["class_embeddings"].status == "dead kernel" and by_part["class_embeddings"].points == 0
    assert by_part["zero_shot_probs"].passed and by_part["zero_shot_probs"].points == 5
    assert not any("cell 3" in note for note in result.notes), result.notes
    assert result.points == 5 and not result.passed


def test_grade_scores_a_hang_zero_within_the_time_limit(tmp_path):
    """A loop that swallows every exception: the grader's time limit ends it (the checks run in
    the grader, the loop in the submission's process, which is killed), and the part scores 0,
    although the notebook edited the checks in memory to pass and printed a full score."""
    hangs = ("def clip_loss(image_embeds, text_embeds, logit_scale):\n    while True:\n        try:\n"
             "            sum(range(10 ** 5))\n        except BaseException:\n            pass\n")
    forge = ("# claim every check passed: edit the checks in memory, and print a fake score\n"
             "import vlmstudy.grading.core as core, vlmstudy.grading.loss as loss\n"
             "def fake(target, checks, seed, title, scope='visible', limit=None):\n"
             "    return core.Report(title, scope, [core.Outcome(c.name, c.what, c.points, c.points, 'passed')\n"
             "                                      for c in checks])\n"
             "core.run_checks = fake\nloss.CHECKS.clear()\nprint('clip_loss: 11/11 points')\n")
    start = time.monotonic()
    result = grader.grade(_submission(tmp_path, "04_contrastive_loss", [hangs, forge]), timeout=10,
                          total_timeout=100, seed=3)
    (part,) = result.parts
    assert part.points == 0 and part.status == "timeout" and not result.passed
    assert time.monotonic() - start < 100
    assert "timeout" in result.table()


def test_grade_refuses_what_is_not_a_notebook(tmp_path, capsys):
    bad = tmp_path / "01_clip_search.ipynb"
    bad.write_text("not json")
    assert cli.main(["exercises", "grade", str(bad)]) == 2
    assert "not a Jupyter notebook" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the notebooks run

def test_exercise_and_solution_notebooks_pass_nbval(repo):
    """Learner notebooks as shipped (no outputs: nothing to compare, nothing may raise) and the
    instructor's solutions, their stored outputs compared (strict ``--nbval``)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
           "exercises", "solutions"]
    run = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
