"""Plotting helpers: each returns a Figure off-screen (Agg) and refuses bad input clearly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from vlmstudy import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _img(color=(200, 30, 30), size=(48, 32)):
    return Image.new("RGB", size, color)


def test_show_images_and_set_figsize():
    plotting.set_figsize(5, 3)
    assert tuple(plt.rcParams["figure.figsize"]) == (5, 3)
    assert isinstance(plotting.show_images([_img(), _img()], titles=["a", "b"]), Figure)


def test_similarity_heatmap():
    m = torch.rand(3, 4)
    fig = plotting.similarity_heatmap(m, ["img 0", "img 1", "img 2"], ["a cat", "a dog", "a red circle", "x"],
                                      title="cosine")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "cosine"
    assert len(fig.axes[0].texts) == 12  # small: every cell written in
    big = plotting.similarity_heatmap(np.random.rand(20, 30), None, None)
    assert isinstance(big, Figure) and not big.axes[0].texts
    with pytest.raises(ValueError, match=r"row_labels has 2 entries but there are 3 rows"):
        plotting.similarity_heatmap(m, ["a", "b"], list("abcd"))
    with pytest.raises(ValueError, match=r"col_labels has 5 entries but there are 4 columns"):
        plotting.similarity_heatmap(m, list("abc"), list("abcde"))
    with pytest.raises(ValueError, match="2-dimensional"):
        plotting.similarity_heatmap(np.ones(3), list("abc"), ["x"])
    with pytest.raises(ValueError, match="NaN"):
        plotting.similarity_heatmap(np.array([[np.nan]]), ["a"], ["b"])


def test_probability_bars():
    probs = torch.tensor([0.1, 0.6, 0.05, 0.25])
    fig = plotting.probability_bars(probs, ["cat", "dog", "car", "cow"], title="zero-shot", top=3)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dog", "cow", "cat"]  # best first, top 3
    assert isinstance(plotting.probability_bars(probs[None], list("abcd")), Figure)  # a (1, n) row is fine
    with pytest.raises(ValueError, match=r"labels has 3 entries but there are 4 probabilities"):
        plotting.probability_bars(probs, ["a", "b", "c"])
    with pytest.raises(ValueError, match="top"):
        plotting.probability_bars(probs, list("abcd"), top=0)
    with pytest.raises(ValueError, match="one row"):
        plotting.probability_bars(torch.rand(2, 4), list("abcd"))


def test_search_strip(tmp_path):
    path = tmp_path / "blue.png"
    _img((30, 30, 200)).save(path)
    images = [_img(), str(path), np.full((20, 20, 3), 128, dtype=np.uint8)]
    fig = plotting.search_strip(images, torch.tensor([0.9, 0.8, 0.7]), titles=["a", "b", "c"], query="a red square")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert fig.axes[0].get_title().startswith("#1  0.900")
    with_query = plotting.search_strip(images[:2], [0.5, 0.4], query=_img((0, 200, 0)))
    assert len(with_query.axes) == 3 and with_query.axes[0].get_title() == "query"
    with pytest.raises(ValueError, match=r"scores has 2 entries but there are 3 images"):
        plotting.search_strip(images, [0.9, 0.8])
    with pytest.raises(ValueError, match=r"titles has 1 entries but there are 3 images"):
        plotting.search_strip(images, [0.9, 0.8, 0.7], titles=["only one"])
    with pytest.raises(ValueError, match="at least one"):
        plotting.search_strip([], [])


def test_training_curve():
    history = [{"step": s, "loss": 2.0 / (1 + s), "seconds": s * 0.1} for s in range(0, 200, 10)]
    history[5]["val_loss"] = 1.0
    history[15]["val_loss"] = 0.5
    fig = plotting.training_curve(history)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "step"
    both = plotting.training_curve(history, key=["loss", "val_loss"], smooth=3, log=True)
    assert len(both.axes[0].get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match=r"No history entry has 'acc'.*loss, seconds, val_loss"):
        plotting.training_curve(history, key="acc")
    with pytest.raises(ValueError, match="empty"):
        plotting.training_curve([])
    with pytest.raises(ValueError, match="'step'"):
        plotting.training_curve([{"loss": 1.0}])


def test_overlay_heatmap_and_upsampling():
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    up = plotting.upsample_heatmap(heat, (32, 48))
    assert up.shape == (32, 48)
    assert up[0, 0] == pytest.approx(1.0) and up[-1, -1] == pytest.approx(0.0)
    assert 0 < up[6, 8] < 1  # bilinear: smooth, not blocky
    assert np.allclose(plotting.upsample_heatmap(np.full((2, 3), 0.3), (10, 10)), 0.3, atol=1e-6)
    fig = plotting.overlay_heatmap(_img(size=(48, 32)), torch.rand(4, 6), alpha=0.4, title="attention")
    assert isinstance(fig, Figure)
    layers = fig.axes[0].get_images()
    assert len(layers) == 2 and layers[1].get_array().shape == (32, 48) and layers[1].get_alpha() == 0.4
    assert isinstance(plotting.overlay_heatmap(np.zeros((16, 16, 3), np.uint8), np.ones((2, 2))), Figure)  # flat map
    with pytest.raises(ValueError, match="alpha"):
        plotting.overlay_heatmap(_img(), heat, alpha=1.5)
    with pytest.raises(ValueError, match="2-dimensional"):
        plotting.overlay_heatmap(_img(), np.ones((1, 4, 4)))
