"""A loss plot that redraws itself while a training stage runs (in Jupyter; a no-op elsewhere)."""

from __future__ import annotations


class LiveLossPlot:
    """Call ``plot(step, loss)`` after each step; every ``every`` steps the figure is redrawn in
    place (one output, updated through an IPython display handle). ``plot.stage(name)`` starts a
    new curve, so stage 1 and stage 2 share one figure. ``plot.losses`` holds
    ``{stage: [(step, loss), ...]}`` (raw per-step losses)."""

    def __init__(self, every: int = 10, title: str = "training loss", display: bool | None = None):
        self.every, self.title = every, title
        self.losses: dict[str, list[tuple[int, float]]] = {}
        self._current = "training"
        self._handle = None
        self._display = _in_notebook() if display is None else display

    def stage(self, name: str) -> LiveLossPlot:
        self._current = name
        self.losses.setdefault(name, [])
        return self

    def __call__(self, step: int, loss: float) -> None:
        self.losses.setdefault(self._current, []).append((step, float(loss)))
        if self._display and step % self.every == 0:
            self.draw()

    def figure(self):
        """The figure: one raw (faint) and smoothed curve per stage, steps counted across stages."""
        from ..plotting import _subplots

        fig, ax = _subplots(figsize=(6, 3.2))
        offset = 0
        for name, points in self.losses.items():
            if not points:
                continue
            xs = [offset + s for s, _ in points]
            ys = [v for _, v in points]
            smooth, out = None, []
            for v in ys:
                smooth = v if smooth is None else 0.9 * smooth + 0.1 * v
                out.append(smooth)
            line = ax.plot(xs, ys, alpha=0.25)[0]
            ax.plot(xs, out, color=line.get_color(), label=name)
            offset = xs[-1] + 1
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(self.title)
        if self.losses:
            ax.legend()
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        from IPython.display import display

        from ..plotting import offscreen

        with offscreen():  # a bare Figure: pyplot never shows it a second time below the cell
            fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
