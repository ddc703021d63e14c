"""Interactive demos (ipywidgets): one line each in a notebook, all five together in the Voila app.

::

    from vlmstudy import widgets
    widgets.zero_shot_playground()   # pick or upload an image, edit the labels, see the probabilities
    widgets.search_gallery()         # type a query, see the top-k thumbnails with their scores
    widgets.ask_image()              # upload or pick an image, choose a model, ask; answer and time taken
    widgets.chat_demo()              # a multi-turn chat about an image, history shown, a clear button
    widgets.attention_explorer()     # pick a word or a generated token, see where the model looked
    widgets.demo_app()               # the five in tabs (what ``vlmstudy demo`` serves with Voila)

Each function returns the demo itself, an ipywidgets container (a ``VBox`` subclass): leave it
as the last expression of a cell to show it. The work is done by plain methods
(:meth:`ZeroShotPlayground.classify`, :meth:`SearchGallery.search`, :meth:`AskImage.ask`,
:meth:`ChatDemo.send` / :meth:`ChatDemo.clear`, :meth:`AttentionExplorer.explain` /
:meth:`AttentionExplorer.show_token`), which the buttons and change observers call and which
Python code (the tests) can call the same way: set the widgets' values, call the method, read
the output widgets (``W.HTML.value``, ``W.Image.value``) or the result attributes.

Feedback, never a silent page: every action writes what it is doing into its status line and
disables its button until it is done (loading a model the first time, or a real checkpoint in
hub mode, can take a while); long loops move a progress bar. Any error (an upload that is not
an image, an empty question, a model that cannot do the task) is shown in red inside the
widget: an exception raised in a widget callback would otherwise only reach the kernel's log,
which a learner never sees.

Uploads are decoded in memory by :func:`vlmstudy.images.load_image_bytes` (a byte limit, a
pixel limit checked before decoding, only common raster formats, recognised by content): nothing
is written to disk, and the client's file name is only shown (HTML-escaped), never used as a path.
"""

from __future__ import annotations

import html
import io
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import ipywidgets as W

from . import shapes
from .errors import ConfigError, ImageError, VlmStudyError, check_positive_int
from .images import UPLOAD_FORMATS, load_image, load_image_bytes
from .plotting import figure_png, image_png, offscreen

__all__ = [
    "zero_shot_playground", "search_gallery", "ask_image", "chat_demo", "attention_explorer", "demo_app",
    "ZeroShotPlayground", "SearchGallery", "AskImage", "ChatDemo", "AttentionExplorer", "ImagePicker", "Status",
    "example_images", "MAX_UPLOAD_BYTES",
]

log = logging.getLogger(__name__)

#: Uploads larger than this are refused before decoding (the models see a few hundred pixels).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Models that answer a question about one image (:func:`vlmstudy.tasks.answer`).
ANSWER_MODELS = ("blip-vqa", "blip2", "instructblip", "llava", "llava-next")
CHAT_MODELS = ("llava", "llava-next")
#: Pixels of the previews and overlays (the stand-ins' pictures are 64 px: shown larger).
PREVIEW_PX = 160
#: Resolution of the charts and attention maps drawn in the demos; each is then shown at exactly
#: its own pixel size (an attention map about 370 x 390 px, a bar chart 530 px wide).
CHART_DPI = 90
MAP_DPI = 100


# ----------------------------------------------------------------------------- shared parts

#: Seed of the example pictures: the first one has its object on the left, so the default
#: questions ("what shape is on the left?") make sense for it.
EXAMPLE_SEED = 2


def example_images(n: int = 8, split: str = "test", seed: int = EXAMPLE_SEED) -> list[tuple[str, object]]:
    """``n`` ShapesWorld scenes of ``split`` as ``(caption, PIL image)`` pairs: the pictures the
    demos offer before anyone uploads one. The first two hold one object each (zero-shot
    labels name one object), the others up to three."""
    single = shapes.make_scenes(split, min(2, n), seed=seed, n_objects=1)
    mixed = shapes.make_scenes(split, max(0, n - len(single)), seed=seed + 1)
    return [(s.caption, s.render()) for s in single + mixed]


class Status(W.HTML):
    """One line saying what a demo is doing: ``busy`` while it works, ``ok`` when done, ``error``
    (red) when something went wrong. ``kind`` and ``text`` keep the last state for tests."""

    _COLORS = {"info": "#555", "busy": "#a15c00", "ok": "#1a7f37", "error": "#c62828"}

    def __init__(self, text: str = "", **kwargs):
        super().__init__(**kwargs)
        self.add_class("vlm-status")
        self.kind, self.text = "info", ""
        self.show("info", text)

    def show(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, str(text)
        prefix = {"busy": "working: ", "error": "error: "}.get(kind, "")
        self.value = (f'<span class="vlm-status-{kind}" style="color:{self._COLORS[kind]}">'
                      f"{html.escape(prefix + self.text)}</span>")

    def busy(self, text: str) -> None:
        self.show("busy", text)

    def ok(self, text: str) -> None:
        self.show("ok", text)

    def error(self, text: str) -> None:
        self.show("error", text)


class _Demo(W.VBox):
    """Base of the demos: a status line and :meth:`_working`, which wraps every action."""

    def __init__(self, children: Sequence[W.Widget], buttons: Sequence[W.Button], status: Status, **kwargs):
        super().__init__(children=list(children), **kwargs)
        self.add_class("vlm-demo")
        self.status = status
        self._buttons = list(buttons)
        self.last_error: str | None = None

    @contextmanager
    def _working(self, message: str):
        """Show ``message`` and disable the buttons while the block runs; an exception in the
        block becomes a red message in the widget (and ``last_error``) instead of vanishing into
        the kernel log. Code after the block in the same method does not run after an error."""
        self.status.busy(message)
        self.last_error = None
        for b in self._buttons:
            b.disabled = True
        try:
            yield
        except VlmStudyError as err:  # the user can fix it: the message says how
            self.last_error = str(err)
            self.status.error(str(err))
        except Exception as err:  # a bug or an unexpected state: still shown, with the details in the log
            log.exception("demo action failed")
            self.last_error = f"{type(err).__name__}: {err}"
            self.status.error(f"{type(err).__name__}: {err}")
        finally:
            for b in self._buttons:
                b.disabled = False

    def _guard(self, action: Callable[[], None]) -> Callable:
        """An observer / click handler that ignores its argument and runs ``action``."""
        return lambda *_: action()


def _on_enter(text: W.Text, action: Callable[[], None]) -> None:
    """Run ``action`` when Enter is pressed in ``text``. The box keeps ``continuous_update=True``
    (its value is current when a button is clicked) and has no value observer, so typing and then
    clicking the button runs the action once, not once for the blur and again for the click."""
    def handler(widget, content, buffers):
        if isinstance(content, dict) and content.get("event") == "submit":
            action()
    text.on_msg(handler)


def _png_image(css: str) -> W.Image:
    """An empty image widget for a chart or a map: hidden until :func:`_show_png` gives it a
    picture (an ``<img>`` with no data draws the browser's broken-image icon)."""
    image = W.Image(format="png", layout=W.Layout(display="none"))
    image.add_class(css)
    return image


def _show_png(image: W.Image, png: bytes) -> None:
    """Show ``png`` at its own pixel size. Without a fixed width and height the image, a child of
    a flex box, is stretched to the cell's width (a 265 px map drawn 1330 px wide: blurry, and it
    pushes the rest of the demo off screen)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as decoded:
        width, height = decoded.size
    image.value = png
    layout = image.layout
    layout.width, layout.height = f"{width}px", f"{height}px"
    layout.object_fit, layout.flex, layout.display = "contain", "0 0 auto", None


def _button(description: str, css: str, style: str = "primary") -> W.Button:
    b = W.Button(description=description, button_style=style)
    b.add_class(css)
    return b


class ImagePicker(W.VBox):
    """The image a demo works on: one of the example scenes (dropdown) or an upload.

    ``image`` is the current picture (a PIL image), ``source`` says where it came from,
    ``version`` counts the changes.
    :meth:`handle_upload` decodes uploaded bytes in memory; a file that is not a readable image
    (or is over :data:`MAX_UPLOAD_BYTES`, or not one of :data:`vlmstudy.images.UPLOAD_FORMATS`) leaves the
    current picture as it was and shows why.
    ``on_change(picker)`` is called after every change of picture.
    """

    def __init__(self, examples: Sequence[tuple[str, object]] | None = None,
                 on_change: Callable[[ImagePicker], None] | None = None):
        self.examples = list(examples) if examples is not None else example_images()
        if not self.examples:
            raise ConfigError("ImagePicker needs at least one example image.")
        self.dropdown = W.Dropdown(options=[(f"{i + 1}: {label}", i) for i, (label, _) in enumerate(self.examples)],
                                   value=0, description="example", layout=W.Layout(width="380px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload an image")
        self.upload.add_class("vlm-upload")
        self.preview = W.Image(format="png", layout=W.Layout(width=f"{PREVIEW_PX}px", height=f"{PREVIEW_PX}px"))
        self.message = W.HTML()
        self.message.add_class("vlm-upload-message")
        self.on_change = on_change
        self.image = None
        self.source = ""
        self.version = 0  # counts the changes of picture
        super().__init__(children=[W.HBox([self.dropdown, self.upload]), self.preview, self.message])
        self._set(load_image(self.examples[0][1]), f"example 1: {self.examples[0][0]}", notify=False)
        self.dropdown.observe(lambda change: self.pick(change["new"]), names="value")
        self.upload.observe(self._on_upload, names="value")

    def _set(self, image, source: str, notify: bool = True) -> None:
        self.image, self.source = image, source
        self.version += 1
        self.preview.value = image_png(image, PREVIEW_PX)
        if notify and self.on_change is not None:
            self.on_change(self)

    def pick(self, index: int) -> None:
        """Use example number ``index`` (0-based)."""
        label, image = self.examples[index]
        self.message.value = ""
        self._set(load_image(image), f"example {index + 1}: {label}")

    def handle_upload(self, content: bytes, name: str = "upload") -> bool:
        """Decode uploaded ``content`` (the file's bytes) and use it; returns whether it worked.
        A bad file shows an error under the preview and keeps the current picture."""
        shown = html.escape(str(name)[:80])
        try:
            image = load_image_bytes(content, max_bytes=MAX_UPLOAD_BYTES, formats=UPLOAD_FORMATS)
        except ImageError as err:
            self.message.value = (f'<span class="vlm-status-error" style="color:#c62828">could not use '
                                  f'{shown}: {html.escape(str(err))}</span>')
            return False
        self.message.value = f'<span style="color:#555">using your upload {shown} ({image.width} x {image.height} px)</span>'
        self._set(image, f"upload: {name}")
        return True

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        first = files[0]
        self.handle_upload(first["content"], first.get("name", "upload"))
        self.upload.value = ()  # drop the bytes (and let the same file be chosen again)


def _labels_from_text(text: str) -> list[str]:
    """One label per line (or comma-separated), stripped, duplicates dropped, order kept."""
    parts = [p.strip() for line in str(text).splitlines() for p in line.split(",")]
    return list(dict.fromkeys(p for p in parts if p))


# ----------------------------------------------------------------------------- zero-shot playground

class ZeroShotPlayground(_Demo):
    """Zero-shot classification with a dual encoder: the image, a list of labels, a bar chart.

    Changing the picture, the labels (when the text box loses focus), the model or the prompt
    runs :meth:`classify` again. ``probabilities`` holds the last result, ``{label: p}``.
    """

    TEMPLATES = {"one prompt: 'a photo of a {}.'": ("a photo of a {}.",),
                 "prompt ensemble (6 templates)": shapes.PROMPT_TEMPLATES}

    def __init__(self, model: str = "clip", labels: Sequence[str] | None = None,
                 examples: Sequence[tuple[str, object]] | None = None, run: bool = True):
        self.picker = ImagePicker(examples, on_change=lambda _: self.classify())
        if labels is None:
            # the two single-object examples' classes, their colour / shape swaps (the hard
            # negatives of notebook 02) and two unrelated classes
            first, second = (s.objects[0] for s in shapes.make_scenes("test", 2, seed=EXAMPLE_SEED, n_objects=1))
            labels = list(dict.fromkeys([first.name, second.name, f"{first.color} {second.shape}",
                                         f"{second.color} {first.shape}", "red circle", "blue star"]))
        self.labels = W.Textarea(value="\n".join(labels), description="labels", continuous_update=False,
                                 layout=W.Layout(width="380px", height="150px"))
        self.labels.add_class("vlm-zero-shot-labels")
        self.model = W.Dropdown(options=["clip", "siglip"], value=model, description="model")
        self.template = W.Dropdown(options=list(self.TEMPLATES), description="prompt", layout=W.Layout(width="380px"))
        self.button = _button("Classify", "vlm-zero-shot-button")
        self.chart = _png_image("vlm-zero-shot-chart")
        self.table = W.HTML()
        self.table.add_class("vlm-zero-shot-result")
        self.probabilities: dict[str, float] = {}
        self._last_inputs: tuple | None = None
        status = Status("edit the labels (one per line) or pick a picture, then Classify")
        controls = W.VBox([self.model, self.template, self.labels, self.button])
        super().__init__([W.HTML("<b>Zero-shot playground</b>: which label fits the picture best?"),
                          W.HBox([self.picker, controls]), status, W.HBox([self.chart, self.table])],
                         [self.button], status)
        self.button.on_click(self._guard(self.classify))
        for w in (self.labels, self.model, self.template):
            w.observe(self._guard(self.classify), names="value")
        if run:
            self.classify()

    def classify(self) -> None:
        """Score the current picture against the labels and redraw the chart."""
        from .contrastive import is_siglip, zero_shot
        from .plotting import probability_bars
        from .tasks import get_model

        labels = _labels_from_text(self.labels.value)
        # editing the labels and then clicking Classify sends two events (the box's blur, the
        # click): the second finds nothing changed and costs nothing
        inputs = (self.picker.version, tuple(labels), self.model.value, self.template.value)
        if inputs == self._last_inputs and self.status.kind == "ok":
            return
        with self._working(f"loading {self.model.value} and scoring {len(labels)} labels"):
            if len(labels) < 2:
                raise ConfigError("Enter at least two labels, one per line (for example 'red circle' and 'blue square').")
            model, processor = get_model(self.model.value)
            probs = zero_shot(model, processor, [self.picker.image], labels,
                              templates=self.TEMPLATES[self.template.value], progress=False)[0].tolist()
            self.probabilities = dict(zip(labels, probs))
            self._last_inputs = inputs
            kind = "sigmoid per label" if is_siglip(model) else "softmax over the labels"
            with offscreen():  # never through pyplot: see vlmstudy.plotting.offscreen
                chart = probability_bars(probs, labels, title=f"{self.model.value} ({kind})", top=12)
            _show_png(self.chart, figure_png(chart, dpi=CHART_DPI))
            rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{p:.3f}</td></tr>"
                           for label, p in sorted(self.probabilities.items(), key=lambda kv: -kv[1]))
            self.table.value = f"<table><tr><th>label</th><th>probability</th></tr>{rows}</table>"
            best = max(self.probabilities, key=self.probabilities.get)
            self.status.ok(f"best label: {best} ({self.probabilities[best]:.3f})")


def zero_shot_playground(model: str = "clip", labels: Sequence[str] | None = None, run: bool = True) -> ZeroShotPlayground:
    """Zero-shot classification playground: pick or upload a picture, edit the labels, see the
    probabilities (``model``: ``"clip"`` or ``"siglip"``; ``run=False``: wait for the first click)."""
    return ZeroShotPlayground(model=model, labels=labels, run=run)


# ----------------------------------------------------------------------------- search gallery

class SearchGallery(_Demo):
    """Text-to-image search over a gallery of ShapesWorld scenes with a dual encoder.

    The gallery is embedded once, at the first search (with a progress bar); every query after
    that is one text embedding and a top-k lookup. ``hits`` holds the last results
    (:class:`vlmstudy.retrieval.Hit`: position, score, metadata = caption).
    """

    def __init__(self, model: str = "clip", n_images: int = 200, query: str = "a red circle on the left",
                 k: int = 5, seed: int = 3, run: bool = True):
        check_positive_int(n_images, "n_images")
        self.model_name = model
        self.scenes = shapes.make_scenes("test", n_images, seed=seed)
        self.index = None
        self.hits: list = []
        self.query = W.Text(value=query, description="query",
                            placeholder="describe a picture, e.g. a blue star at the top", layout=W.Layout(width="420px"))
        self.query.add_class("vlm-search-query")
        self.k = W.IntSlider(value=k, min=1, max=min(12, n_images), description="top k")
        self.button = _button("Search", "vlm-search-button")
        self.progress = W.IntProgress(value=0, min=0, max=n_images, description="indexing",
                                      layout=W.Layout(visibility="hidden"))
        self.results = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.results.add_class("vlm-search-results")
        status = Status(f"{n_images} pictures; type a query and press Enter or Search")
        super().__init__([W.HTML(f"<b>Search gallery</b>: {n_images} ShapesWorld pictures, searched by text "
                                 f"with {html.escape(model)}"),
                          W.HBox([self.query, self.k, self.button]), self.progress, status, self.results],
                         [self.button], status)
        self.button.on_click(self._guard(self.search))
        _on_enter(self.query, self.search)
        self.k.observe(self._guard(self.search), names="value")
        if run:
            self.search()

    def _build_index(self) -> None:
        from .contrastive import embed_images
        from .retrieval import ImageIndex
        from .tasks import get_model

        model, processor = get_model(self.model_name)
        self.progress.layout.visibility = "visible"
        index, batch = None, 32
        for start in range(0, len(self.scenes), batch):
            chunk = self.scenes[start:start + batch]
            emb = embed_images(model, processor, [s.render() for s in chunk], progress=False)
            index = index or ImageIndex(dim=emb.shape[1])
            index.add(emb, metadata=[s.caption for s in chunk])
            self.progress.value = start + len(chunk)
        self.index = index
        self.progress.layout.visibility = "hidden"

    def search(self) -> None:
        """Search the gallery for the query text and show the top-k thumbnails with scores."""
        from .retrieval import search_text
        from .tasks import get_model

        query = self.query.value.strip()
        first = self.index is None
        with self._working(f"embedding the {len(self.scenes)} pictures first" if first else f"searching for {query!r}"):
            if not query:
                raise ConfigError("Type a query first, for example 'a blue star at the top'.")
            if first:
                self._build_index()
            model, processor = get_model(self.model_name)
            started = time.perf_counter()
            self.hits = search_text(self.index, model, processor, query, k=self.k.value)[0]
            seconds = time.perf_counter() - started
            cards = []
            for rank, hit in enumerate(self.hits, start=1):
                thumb = W.Image(value=image_png(self.scenes[hit.position].render(), 112), format="png",
                                layout=W.Layout(width="112px", height="112px"))
                label = W.HTML(f'<div style="width:120px;font-size:12px"><b>#{rank}</b> '
                               f'<span class="vlm-score">score {hit.score:.3f}</span><br>{html.escape(hit.metadata)}</div>')
                card = W.VBox([thumb, label])
                card.add_class("vlm-hit")
                cards.append(card)
            self.results.children = cards
            self.status.ok(f"top {len(self.hits)} for {query!r} in {seconds * 1000:.0f} ms")


def search_gallery(model: str = "clip", n_images: int = 200, query: str = "a red circle on the left", k: int = 5,
                   run: bool = True) -> SearchGallery:
    """Search gallery: type a query, see the top-``k`` of ``n_images`` test scenes with their
    cosine scores (``run=False``: no search until the first query)."""
    return SearchGallery(model=model, n_images=n_images, query=query, k=k, run=run)


# ----------------------------------------------------------------------------- ask an image

class AskImage(_Demo):
    """One question about one picture, to any model that answers questions.

    ``answers`` lists every result, newest last: ``{"model", "question", "answer", "seconds",
    "load_seconds"}`` (``load_seconds``: loading the model, 0 when it was already loaded).
    """

    def __init__(self, model: str = "blip-vqa", question: str = "what shape is on the left?",
                 examples: Sequence[tuple[str, object]] | None = None, run: bool = True):
        self.picker = ImagePicker(examples)
        self.model = W.Dropdown(options=list(ANSWER_MODELS), value=model, description="model")
        self.question = W.Text(value=question, description="question", layout=W.Layout(width="380px"))
        self.question.add_class("vlm-ask-question")
        self.button = _button("Ask", "vlm-ask-button")
        self.answer = W.HTML()
        self.answer.add_class("vlm-ask-answer")
        self.answers: list[dict] = []
        status = Status("pick or upload a picture, choose a model, ask")
        super().__init__([W.HTML("<b>Ask an image</b>"),
                          W.HBox([self.picker, W.VBox([self.model, self.question, self.button])]),
                          status, self.answer], [self.button], status)
        self.button.on_click(self._guard(self.ask))
        _on_enter(self.question, self.ask)
        if run:
            self.ask()

    def ask(self) -> None:
        """Ask the question about the current picture with the chosen model; show the answer and
        how long it took."""
        from . import tasks

        name, question = self.model.value, self.question.value.strip()
        with self._working(f"loading {name} and answering"):
            if not question:
                raise ConfigError("Type a question first, for example 'what colour is the shape on the left?'.")
            started = time.perf_counter()
            pair = tasks.get_model(name)  # cached after the first call
            loaded = time.perf_counter()
            reply = tasks.answer(self.picker.image, question, model=pair)
            done = time.perf_counter()
            result = {"model": name, "question": question, "answer": reply, "seconds": done - loaded,
                      "load_seconds": loaded - started}
            self.answers.append(result)
            load = f", model loaded in {result['load_seconds']:.2f} s" if result["load_seconds"] > 0.05 else ""
            self.answer.value = (f'<div style="font-size:15px">{html.escape(question)} <b>&rarr; '
                                 f'<span class="vlm-answer">{html.escape(reply) or "(empty answer)"}</span></b></div>'
                                 f'<div style="color:#555">{html.escape(name)} on {html.escape(self.picker.source)}: '
                                 f'answered in {result["seconds"]:.2f} s{load}</div>')
            self.status.ok(f"{name} answered in {result['seconds']:.2f} s")


def ask_image(model: str = "blip-vqa", question: str = "what shape is on the left?", run: bool = True) -> AskImage:
    """Ask an image: upload (or pick) a picture, choose a model, ask; the answer comes with the
    time it took (``run=False``: wait for the first click)."""
    return AskImage(model=model, question=question, run=run)


# ----------------------------------------------------------------------------- chat

class ChatDemo(_Demo):
    """A multi-turn conversation about a picture with a chat model (:class:`vlmstudy.tasks.ChatSession`).

    The history is re-sent with every turn (that is how the model "remembers"); when it no
    longer fits the context, the oldest turns are dropped and the status says so. A new picture
    or model starts a new conversation; Clear forgets the conversation, keeping the picture.
    """

    def __init__(self, model: str = "llava", examples: Sequence[tuple[str, object]] | None = None):
        self.picker = ImagePicker(examples, on_change=lambda _: self._new_session())
        self.model = W.Dropdown(options=list(CHAT_MODELS), value=model, description="model")
        self.message = W.Text(description="you", placeholder="what shape is on the left?",
                              layout=W.Layout(width="380px"))
        self.message.add_class("vlm-chat-message")
        self.send_button = _button("Send", "vlm-chat-send")
        self.clear_button = _button("Clear", "vlm-chat-clear", style="warning")
        self.history = W.HTML()
        self.history.add_class("vlm-chat-history")
        self.session = None
        status = Status("ask a question; follow-ups like 'and what colour is it?' use the history")
        super().__init__([W.HTML("<b>Chat about an image</b>"),
                          W.HBox([self.picker, W.VBox([self.model, self.message,
                                                       W.HBox([self.send_button, self.clear_button])])]),
                          status, self.history], [self.send_button, self.clear_button], status)
        self.send_button.on_click(self._guard(self.send))
        self.clear_button.on_click(self._guard(self.clear))
        _on_enter(self.message, self.send)
        self.model.observe(self._guard(self._new_session), names="value")
        self._render()

    def _new_session(self) -> None:
        self.session = None
        self._render()
        self.status.show("info", f"new conversation about {self.picker.source}")

    def send(self, text: str | None = None) -> str | None:
        """Send ``text`` (default: the message box) as the next turn; returns the reply (None
        after an error, which the status line shows)."""
        from .tasks import ChatSession, ContextTrimmedWarning

        text = (self.message.value if text is None else text).strip()
        reply = None
        with self._working(f"{self.model.value} is answering"):
            if not text:
                raise ConfigError("Type a message first.")
            if self.session is None:
                self.session = ChatSession(self.model.value).set_image(self.picker.image)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ContextTrimmedWarning)
                reply = self.session.ask(text)
            self._render()
            trimmed = [w for w in caught if issubclass(w.category, ContextTrimmedWarning)]
            self.status.ok(f"{len(self.session.history)} turn(s)"
                           + (f"; {self.session.dropped_turns} oldest turn(s) dropped to fit the context" if trimmed else ""))
        if reply is not None:
            self.message.value = ""
        return reply

    def clear(self) -> None:
        """Forget the conversation (the picture and the model stay)."""
        if self.session is not None:
            self.session.clear()
        self._render()
        self.status.ok("conversation cleared")

    def _render(self) -> None:
        turns = self.session.history if self.session is not None else []
        if not turns:
            self.history.value = '<div style="color:#777">no messages yet</div>'
            return
        rows = "".join(f'<div class="vlm-turn"><b>you:</b> {html.escape(u)}<br><b>{html.escape(self.model.value)}:</b> '
                       f"{html.escape(a) or '(empty answer)'}</div>" for u, a in turns)
        self.history.value = f'<div style="line-height:1.5">{rows}</div>'


def chat_demo(model: str = "llava") -> ChatDemo:
    """Chat about a picture with a LLaVA model: the history is shown, Clear starts over."""
    return ChatDemo(model=model)


# ----------------------------------------------------------------------------- attention explorer

class AttentionExplorer(_Demo):
    """Where did the model look? Pick a word of BLIP's caption, or a token LLaVA generated, and
    see its attention map over the picture (:mod:`vlmstudy.attention`).

    :meth:`explain` runs the model once and keeps every token's map (``maps``, a
    :class:`vlmstudy.attention.TokenMaps`); :meth:`show_token` only redraws the overlay.
    """

    SOURCES = {"BLIP caption: a word": "blip-caption", "LLaVA answer: a generated token": "llava"}

    def __init__(self, source: str = "BLIP caption: a word", question: str = "describe the image.",
                 examples: Sequence[tuple[str, object]] | None = None, run: bool = True):
        if source not in self.SOURCES:
            raise ConfigError(f"source must be one of {list(self.SOURCES)}, not {source!r}.")
        self.picker = ImagePicker(examples)
        self.source = W.Dropdown(options=list(self.SOURCES), value=source, description="explain",
                                 layout=W.Layout(width="380px"))
        self.question = W.Text(value=question, description="question", layout=W.Layout(width="380px"))
        self.button = _button("Explain", "vlm-attention-button")
        self.token = W.Dropdown(options=[], description="token", layout=W.Layout(width="380px"))
        self.token.add_class("vlm-attention-token")
        self.overlay = _png_image("vlm-attention-map")
        self.text = W.HTML()
        self.maps = None
        self._image = None
        status = Status("choose what to explain, then Explain; then pick a token")
        super().__init__([W.HTML("<b>Attention explorer</b> (the question is used by LLaVA only)"),
                          W.HBox([self.picker, W.VBox([self.source, self.question, self.button, self.token])]),
                          status, self.text, self.overlay], [self.button], status)
        self.button.on_click(self._guard(self.explain))
        _on_enter(self.question, self.explain)
        self.token.observe(self._on_token, names="value")
        if run:
            self.explain()

    def explain(self) -> None:
        """Run the chosen model on the picture and keep one attention map per output token."""
        from . import attention
        from .tasks import get_model

        name = self.SOURCES[self.source.value]
        with self._working(f"running {name} with attention maps"):
            model, processor = get_model(name)
            image = self.picker.image
            if name == "llava":
                question = self.question.value.strip()
                if not question:
                    raise ConfigError("Type a question for LLaVA first, for example 'describe the image.'.")
                maps = attention.llava_token_attention(model, processor, image, question, max_new_tokens=12)
            else:
                maps = attention.blip_word_attention(model, processor, image)
            if len(maps) == 0:
                raise ConfigError("The model produced no tokens to explain; try another picture or question.")
            self.maps, self._image = maps, image
            self.text.value = (f"{html.escape(name)} wrote: <b>{html.escape(maps.text)}</b>"
                               f" ({len(maps)} tokens)")
            self.token.options = [(f"{i + 1}: {tok}", i) for i, tok in enumerate(maps.tokens)]
            self.token.value = 0
            self.show_token(0)
            self.status.ok(f"{len(maps)} tokens: pick one to see where the model looked")

    def _on_token(self, change) -> None:
        if change["new"] is not None and self.maps is not None:
            self.show_token(change["new"])

    def show_token(self, index: int) -> None:
        """Draw token number ``index``'s attention map over the picture."""
        from .plotting import overlay_heatmap

        if self.maps is None:
            self.status.error("Press Explain first.")
            return
        if not 0 <= index < len(self.maps):
            self.status.error(f"token index {index} is outside 0..{len(self.maps) - 1}.")
            return
        display = self._image.copy()
        display.thumbnail((256, 256))  # a large upload is drawn small: the map has only 8 x 8 cells
        title = f"'{self.maps.tokens[index]}'"
        with offscreen():  # never through pyplot: see vlmstudy.plotting.offscreen
            figure = overlay_heatmap(display, self.maps.maps[index], title=title)
        _show_png(self.overlay, figure_png(figure, dpi=MAP_DPI))


def attention_explorer(source: str = "BLIP caption: a word", question: str = "describe the image.",
                       run: bool = True) -> AttentionExplorer:
    """Attention explorer: pick a word of BLIP's caption or a token LLaVA generated, see the
    overlay (``run=False``: wait for the first click)."""
    return AttentionExplorer(source=source, question=question, run=run)


# ----------------------------------------------------------------------------- all of them

DEMOS = {
    "Zero-shot": zero_shot_playground,
    "Search": search_gallery,
    "Ask an image": ask_image,
    "Chat": chat_demo,
    "Attention": attention_explorer,
}


def demo_app(run: bool = False) -> W.Tab:
    """The five demos in tabs: the page ``vlmstudy demo`` serves. ``run=False`` (the default)
    computes nothing until a visitor acts, so the page appears quickly."""
    demos = [make(run=run) if make is not chat_demo else make() for make in DEMOS.values()]
    tabs = W.Tab(children=demos)
    tabs.titles = tuple(DEMOS)
    tabs.add_class("vlm-demo-app")
    return tabs
