"""The widget demos (vlmstudy.widgets) driven from Python: set the widgets' values, click the
buttons / fire the observers and the Enter message, read the output widgets. No browser and no
kernel needed (tests/test_browser.py drives them in Chromium through Voila)."""

import datetime
import io

import pytest

W = pytest.importorskip("ipywidgets")

from vlmstudy import shapes, widgets  # noqa: E402
from vlmstudy.plotting import image_png  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _upload(picker, content: bytes, name: str) -> None:
    """What the browser does: set the FileUpload's value (the observer decodes it)."""
    picker.upload.value = ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                            "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def _enter(text: W.Text) -> None:
    """What pressing Enter in a Text box sends to the kernel."""
    text._handle_custom_msg({"event": "submit"}, [])


@pytest.fixture(scope="module")
def scene_png() -> bytes:
    return image_png(shapes.make_scenes("test", 1, seed=5, n_objects=3)[0].render(), 128)


@pytest.fixture(scope="module")
def examples():
    return widgets.example_images(3)


# ----------------------------------------------------------------------------- shared parts

def test_example_images_and_status():
    ex = widgets.example_images(4)
    assert len(ex) == 4 and all(isinstance(c, str) and im.size == (64, 64) for c, im in ex)
    status = widgets.Status("hello <b>")
    assert status.kind == "info" and "&lt;b&gt;" in status.value
    status.error("broken")
    assert status.kind == "error" and "error: broken" in status.value and "#c62828" in status.value


def test_image_picker_pick_good_upload_and_bad_uploads(examples, scene_png):
    changes = []
    picker = widgets.ImagePicker(examples, on_change=lambda p: changes.append(p.source))
    assert bytes(picker.preview.value).startswith(PNG_MAGIC) and picker.source.startswith("example 1")
    picker.dropdown.value = 2
    assert changes == [picker.source] and picker.source.startswith("example 3")
    before = (picker.image, picker.version)
    for bad, name in ((b"not a picture", "notes.png"), (b"", "empty.png"),
                      (b"%!PS-Adobe-3.0 EPSF-3.0\n", "drawing.eps"), (PNG_MAGIC + b"\x00" * 40, "<broken>.png")):
        _upload(picker, bad, name)
        assert "could not use" in picker.message.value and "vlm-status-error" in picker.message.value, name
        assert (picker.image, picker.version) == before, "a bad upload keeps the current picture"
        assert picker.upload.value == (), "the bytes are dropped after handling"
    assert "&lt;broken&gt;.png" in picker.message.value, "the file name is shown escaped"
    _upload(picker, scene_png, "three.png")
    assert "using your upload three.png (128 x 128 px)" in picker.message.value
    assert picker.source == "upload: three.png" and picker.image.size == (128, 128) and picker.version == before[1] + 1
    assert changes[-1] == "upload: three.png"


def test_image_picker_refuses_an_oversized_upload(monkeypatch, examples):
    monkeypatch.setattr(widgets, "MAX_UPLOAD_BYTES", 100)
    picker = widgets.ImagePicker(examples)
    assert not picker.handle_upload(image_png(examples[0][1], 64), "big.png")
    assert "more than the 100 allowed" in picker.message.value


def test_upload_decoding_and_png_helpers(scene_png):
    """What the widgets rely on: uploads decoded in memory by content, pictures as PNG bytes."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from vlmstudy.errors import ImageError, ImageTooLargeError, NotAnImageError
    from vlmstudy.images import UPLOAD_FORMATS, load_image_bytes
    from vlmstudy.plotting import figure_png

    img = load_image_bytes(scene_png, max_bytes=10_000_000, formats=UPLOAD_FORMATS)
    assert img.mode == "RGB" and img.size == (128, 128)
    with pytest.raises(NotAnImageError):
        load_image_bytes(b"GIF87a but not really", formats=("PNG",))
    with pytest.raises(ImageTooLargeError):
        load_image_bytes(scene_png, max_bytes=100)
    with pytest.raises(ImageTooLargeError):
        load_image_bytes(scene_png, max_pixels=64 * 64)
    with pytest.raises(ImageError):
        load_image_bytes(b"")
    with Image.open(io.BytesIO(image_png(img, 40))) as small:
        assert small.format == "PNG" and max(small.size) == 40
    fig = plt.figure()
    assert figure_png(fig).startswith(PNG_MAGIC) and not plt.fignum_exists(fig.number), "closed after saving"


def test_labels_from_text():
    assert widgets._labels_from_text("red circle\n blue square, red circle\n\n,green star ") == [
        "red circle", "blue square", "green star"]


# ----------------------------------------------------------------------------- zero-shot playground

def test_zero_shot_playground_updates_on_every_change(examples, scene_png):
    demo = widgets.ZeroShotPlayground(examples=examples)
    assert demo.status.kind == "ok", demo.last_error
    labels = widgets._labels_from_text(demo.labels.value)
    assert list(demo.probabilities) == labels and abs(sum(demo.probabilities.values()) - 1) < 1e-4  # CLIP: softmax
    assert bytes(demo.chart.value).startswith(PNG_MAGIC) and "<table>" in demo.table.value
    first_chart = demo.chart.value

    demo.labels.value = "red circle\nblue square\ngreen star"  # the observer re-runs it
    assert list(demo.probabilities) == ["red circle", "blue square", "green star"] and demo.chart.value != first_chart
    demo.template.value = list(demo.TEMPLATES)[1]
    assert demo.status.kind == "ok"
    demo.model.value = "siglip"  # sigmoid per label: need not sum to 1
    assert demo.status.kind == "ok" and "best label" in demo.status.text
    assert all(0 <= p <= 1 for p in demo.probabilities.values())

    version = demo.picker.version
    _upload(demo.picker, scene_png, "mine.png")  # a new picture re-runs it too
    assert demo.picker.version == version + 1 and demo.status.kind == "ok"

    demo.labels.value = "only one"
    assert demo.status.kind == "error" and "at least two labels" in demo.status.text
    assert not demo.button.disabled, "the button is enabled again after an error"
    demo.labels.value = "red circle\nblue square"
    demo.button.click()
    assert demo.status.kind == "ok" and set(demo.probabilities) == {"red circle", "blue square"}


def test_zero_shot_playground_waits_with_run_false():
    demo = widgets.zero_shot_playground(run=False)
    assert demo.probabilities == {} and demo.status.kind == "info" and demo.chart.value == b""
    # no data yet: the image is hidden (an empty <img> draws the browser's broken-image icon)
    assert demo.chart.layout.display == "none"


def _png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as shown:
        return shown.size


def test_zero_shot_chart_has_its_bars_and_its_own_size(examples):
    from chart_check import check_probability_chart

    demo = widgets.ZeroShotPlayground(examples=examples, run=False)
    demo.labels.value = "red circle\nblue square\ngreen star\nyellow triangle"
    demo.button.click()
    assert demo.status.kind == "ok", demo.last_error
    check_probability_chart(bytes(demo.chart.value), demo.probabilities, x_max=1.12)
    width, height = _png_size(demo.chart.value)
    layout = demo.chart.layout
    assert (layout.width, layout.height, layout.display) == (f"{width}px", f"{height}px", None)


#: Run in a fresh kernel (the inline backend, as JupyterLab and Voila start it): build the
#: playground, then print its model ids for the comm messages the browser would send.
_KERNEL_SETUP = """
from vlmstudy.widgets import ZeroShotPlayground
demo = ZeroShotPlayground(run=False)
print(demo.labels.model_id, demo.button.model_id)
"""
_KERNEL_RESULT = """
import base64, json, matplotlib
print(json.dumps({"backend": matplotlib.get_backend(), "status": demo.status.text, "kind": demo.status.kind,
                  "probabilities": demo.probabilities, "chart": base64.b64encode(bytes(demo.chart.value)).decode()}))
"""


@pytest.mark.slow  # a fresh kernel
def test_first_classify_in_a_fresh_kernel_draws_the_chart(subprocess_env):
    """What a learner does first in a new kernel (issue: a chart without bars, blank, or a lone
    bar): edit the labels and press Classify. The kernel gets what the browser sends, the new
    text box value (the box's blur) and then the click, through its comm channel."""
    import base64
    import json

    from chart_check import check_probability_chart

    jupyter_client = pytest.importorskip("jupyter_client")
    env = {k: v for k, v in subprocess_env.items() if k != "MPLBACKEND"}  # the kernel picks inline, as in Jupyter
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)

        def run(code: str) -> str:
            reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: out.append(msg))
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")

        out: list = []
        labels_id, button_id = run(_KERNEL_SETUP).split()
        for comm_id, data in ((labels_id, {"method": "update", "state": {"value": "red circle\nblue square\ngreen star"},
                                           "buffer_paths": []}),
                              (button_id, {"method": "custom", "content": {"event": "click"}})):
            client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))
        out = []
        result = json.loads(run(_KERNEL_RESULT))  # queued behind the two comm messages
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "inline" in result["backend"], result["backend"]
    assert result["kind"] == "ok" and "best label" in result["status"], result["status"]
    assert list(result["probabilities"]) == ["red circle", "blue square", "green star"]
    check_probability_chart(base64.b64decode(result["chart"]), result["probabilities"], x_max=1.12)


# ----------------------------------------------------------------------------- search gallery

def test_search_gallery_enter_click_and_k(monkeypatch):
    demo = widgets.SearchGallery(n_images=24, k=3, run=False)
    assert demo.index is None and demo.results.children == ()
    progress = []
    demo.progress.observe(lambda change: progress.append(change["new"]), names="value")
    demo.query.value = "a blue star at the top"
    _enter(demo.query)
    assert demo.status.kind == "ok", demo.last_error
    assert progress[-1] == 24 and len(progress) >= 1, "indexing moves the progress bar"
    assert demo.progress.layout.visibility == "hidden"
    assert len(demo.hits) == 3 and len(demo.results.children) == 3
    scores = [h.score for h in demo.hits]
    assert scores == sorted(scores, reverse=True)
    card_text = demo.results.children[0].children[1].value
    assert "score" in card_text and demo.hits[0].metadata in card_text
    assert "top 3 for 'a blue star at the top'" in demo.status.text
    index = demo.index
    demo.k.value = 5  # the slider re-runs the search, without re-indexing
    assert len(demo.results.children) == 5 and demo.index is index
    demo.query.value = "   "
    demo.button.click()
    assert demo.status.kind == "error" and "Type a query" in demo.status.text
    assert len(demo.results.children) == 5, "an error keeps the last results"


def test_search_gallery_rejects_a_bad_size():
    with pytest.raises(widgets.ConfigError):
        widgets.SearchGallery(n_images=0, run=False)


# ----------------------------------------------------------------------------- ask an image

def test_ask_image_answers_with_the_time_taken(examples, scene_png):
    demo = widgets.AskImage(examples=examples, run=False)
    assert demo.answers == []
    _upload(demo.picker, scene_png, "three.png")
    demo.model.value = "llava"
    demo.question.value = "how many shapes are there?"
    demo.button.click()
    assert demo.status.kind == "ok", demo.last_error
    result = demo.answers[-1]
    assert result["model"] == "llava" and result["question"] == "how many shapes are there?"
    assert isinstance(result["answer"], str) and result["seconds"] > 0
    assert "answered in" in demo.answer.value and "upload: three.png" in demo.answer.value
    for name in widgets.ANSWER_MODELS:  # every model in the dropdown can answer
        demo.model.value = name
        _enter(demo.question)
        assert demo.status.kind == "ok" and demo.answers[-1]["model"] == name, (name, demo.last_error)
    demo.question.value = ""
    demo.ask()
    assert demo.status.kind == "error" and "Type a question" in demo.status.text
    assert len(demo.answers) == 1 + len(widgets.ANSWER_MODELS)


def test_ask_image_shows_progress_and_errors_inside_the_widget(monkeypatch, examples):
    from vlmstudy import tasks

    demo = widgets.AskImage(examples=examples, run=False)
    seen = {}

    def slow_answer(image, question, model):
        seen["disabled"], seen["status"] = demo.button.disabled, demo.status.kind
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(tasks, "answer", slow_answer)
    demo.button.click()  # must not raise: the error is shown in the widget
    assert seen == {"disabled": True, "status": "busy"}, "busy and the button disabled while it works"
    assert demo.status.kind == "error" and "RuntimeError: the model fell over" in demo.status.text
    assert demo.last_error and not demo.button.disabled and demo.answers == []


def test_ask_image_default_runs_at_once():
    demo = widgets.ask_image()
    assert demo.status.kind == "ok" and len(demo.answers) == 1, demo.last_error


# ----------------------------------------------------------------------------- chat

def test_chat_demo_history_clear_and_new_picture(examples):
    demo = widgets.ChatDemo(examples=examples)
    assert "no messages yet" in demo.history.value and demo.session is None
    demo.message.value = "what shape is on the left?"
    demo.send_button.click()
    assert demo.status.kind == "ok", demo.last_error
    assert demo.message.value == "" and demo.history.value.count('class="vlm-turn"') == 1
    reply = demo.send("and what colour is it?")
    assert isinstance(reply, str) and len(demo.session.history) == 2
    assert "and what colour is it?" in demo.history.value and "2 turn(s)" in demo.status.text
    demo.message.value = "how many shapes are there?"
    _enter(demo.message)
    assert len(demo.session.history) == 3

    assert demo.send("   ") is None and demo.status.kind == "error" and "Type a message" in demo.status.text
    demo.clear_button.click()
    assert demo.session.history == [] and "no messages yet" in demo.history.value
    assert demo.status.text == "conversation cleared"

    demo.send("what shape is on the left?")
    demo.picker.dropdown.value = 1  # a new picture: a new conversation
    assert demo.session is None and "no messages yet" in demo.history.value and "new conversation" in demo.status.text
    demo.send("what shape is on the left?")
    demo.model.value = "llava-next"
    assert demo.session is None
    assert demo.send("what shape is on the left?") is not None and demo.session.history


# ----------------------------------------------------------------------------- attention explorer

def test_attention_explorer_blip_words_and_llava_tokens(examples):
    demo = widgets.AttentionExplorer(examples=examples, run=False)
    assert demo.overlay.layout.display == "none"  # no map yet: hidden, no broken-image icon
    demo.show_token(0)
    assert demo.status.kind == "error" and "Explain first" in demo.status.text
    demo.button.click()
    assert demo.status.kind == "ok", demo.last_error
    n = len(demo.maps)
    assert n >= 1 and len(demo.token.options) == n and demo.token.value == 0
    assert bytes(demo.overlay.value).startswith(PNG_MAGIC) and "blip-caption wrote" in demo.text.value
    if n > 1:
        first = demo.overlay.value
        demo.token.value = n - 1  # picking a token redraws the overlay only
        assert demo.overlay.value != first
    demo.show_token(n + 5)
    assert demo.status.kind == "error" and "outside" in demo.status.text
    # shown at its own, fixed pixel size (not stretched to the cell's width)
    width, height = _png_size(demo.overlay.value)
    layout = demo.overlay.layout
    assert (layout.width, layout.height, layout.object_fit, layout.display) == (f"{width}px", f"{height}px", "contain", None)
    assert 300 <= width <= 450 and 300 <= height <= 450, (width, height)

    demo.source.value = "LLaVA answer: a generated token"
    demo.question.value = "what shape is on the left?"
    _enter(demo.question)
    assert demo.status.kind == "ok", demo.last_error
    assert "llava wrote" in demo.text.value and len(demo.token.options) == len(demo.maps) >= 1
    demo.question.value = ""
    demo.explain()
    assert demo.status.kind == "error" and "question for LLaVA" in demo.status.text


def test_attention_explorer_draws_a_large_upload_small(examples):
    from PIL import Image

    demo = widgets.AttentionExplorer(examples=examples, run=False)
    buffer = io.BytesIO()
    shapes.make_scenes("test", 1, seed=4)[0].render(64).resize((900, 600), Image.NEAREST).save(buffer, "PNG")
    assert demo.picker.handle_upload(buffer.getvalue(), "wide.png")
    demo.explain()
    assert demo.status.kind == "ok", demo.last_error
    with Image.open(io.BytesIO(demo.overlay.value)) as shown:
        assert max(shown.size) < 600


def test_attention_explorer_rejects_an_unknown_source():
    with pytest.raises(widgets.ConfigError):
        widgets.AttentionExplorer(source="GPT", run=False)


# ----------------------------------------------------------------------------- the app

def test_demo_app_has_the_five_demos_and_computes_nothing_up_front():
    app = widgets.demo_app()
    assert isinstance(app, W.Tab) and app.titles == tuple(widgets.DEMOS)
    assert [type(d).__name__ for d in app.children] == ["ZeroShotPlayground", "SearchGallery", "AskImage",
                                                        "ChatDemo", "AttentionExplorer"]
    assert all(d.status.kind == "info" for d in app.children)
    assert "vlm-demo-app" in app._dom_classes


def test_demo_command_and_voila_command(monkeypatch, capsys):
    import importlib.util
    import json

    from vlmstudy import apps, cli
    from vlmstudy.errors import ConfigError

    command = apps.voila_command(port=9999)
    assert "--Voila.ip=127.0.0.1" in command and "--port=9999" in command and "--no-browser" in command
    assert "--Voila.port_retries=0" in command and not any(
        part.lower().startswith("--token") or ".token=" in part.lower() for part in command), "the token stays out of argv"
    cells = json.loads(apps.DEMO_NOTEBOOK.read_text())["cells"]
    assert any("widgets.demo_app()" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert 1024 <= apps.free_port() <= 65535
    with monkeypatch.context() as patched:
        patched.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if Voila were installed
        with pytest.raises(ConfigError, match="--port"):
            apps.launch_demo(port=70000, headless=True)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0 and "--headless" in capsys.readouterr().out
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(apps.VlmStudyError, match="Voila is not installed"):
        apps.launch_demo(headless=True)
