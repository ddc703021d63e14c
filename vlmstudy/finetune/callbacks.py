"""What a run shows while it trains: plain lines in a terminal, a live loss curve in a notebook.

A callback is any object with some of these methods (each optional)::

    on_train_begin(run)          run: the Trainer (its .config, .step, .total_steps, .history)
    on_step(run, record)         record: {"step", "loss", "lr", "epoch", "seconds"}
    on_evaluate(run, record)     record: {"step", "eval_loss", "eval_accuracy", "eval_examples"}
    on_save(run, path)           a checkpoint was written
    on_train_end(run, result)    result: the FinetuneResult
"""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be redrawn in place)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:  # pragma: no cover
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class PrintProgress:
    """One line per ``every`` steps and per evaluation, for terminals and log files."""

    def __init__(self, every: int = 10, stream=None):
        self.every = every
        self.stream = stream

    def _print(self, text: str) -> None:
        if self.stream is None:  # above the progress bar, not through it
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()
        else:
            print(text, file=self.stream, flush=True)

    def on_train_begin(self, run):
        start = f" (resumed at step {run.step})" if run.step else ""
        self._print(f"fine-tuning {run.config.model}: {run.total_steps} steps{start}, "
                    f"{run.params['trainable']:,} trainable of {run.params['total']:,} parameters")

    def on_step(self, run, record):
        if record["step"] % self.every == 0 or record["step"] == run.total_steps:
            self._print(f"step {record['step']:>5}/{run.total_steps}  loss {record['loss']:.4f}  "
                        f"lr {record['lr']:.2e}  {record['seconds']:.1f} s")

    def on_evaluate(self, run, record):
        acc = record.get("eval_accuracy")
        acc = f"  exact match {acc:.3f} on {record['eval_examples']}" if acc is not None else ""
        self._print(f"eval at step {record['step']}: loss {record['eval_loss']:.4f}{acc}")

    def on_save(self, run, path):
        self._print(f"checkpoint: {path}")

    def on_train_end(self, run, result):
        self._print(f"done in {result.seconds:.1f} s; adapter in {result.output_dir / 'adapter'}")


class LiveLossPlot:
    """Redraws one matplotlib figure in the notebook output as training goes: the training loss
    per step and, when the run evaluates, the eval loss and exact-match accuracy.

    every: redraw after this many steps (drawing takes a few tens of milliseconds).
    """

    def __init__(self, every: int = 10, title: str | None = None):
        self.every = every
        self.title = title
        self.handle = None
        self.fig = None

    def _draw(self, run) -> None:
        self.fig = loss_figure(run.history, title=self.title or f"fine-tuning {run.config.model}",
                               total_steps=run.total_steps, fig=self.fig)
        if in_notebook():
            from IPython.display import display

            if self.handle is None:
                self.handle = display(self.fig, display_id=True)
            else:
                self.handle.update(self.fig)

    def on_train_begin(self, run):
        import matplotlib.pyplot as plt

        self.fig = plt.figure(figsize=(8, 3))
        plt.close(self.fig)  # shown through the display handle only, not again at the end of the cell

    def on_step(self, run, record):
        if record["step"] % self.every == 0:
            self._draw(run)

    def on_evaluate(self, run, record):
        self._draw(run)

    def on_train_end(self, run, result):
        self._draw(run)


def loss_figure(history, title: str | None = None, total_steps: int | None = None, fig=None):
    """Training loss (left) and, if the run evaluated, eval loss and exact-match accuracy (right)
    from a run's ``history``; draws into ``fig`` when given (live updates), else a new figure."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(8, 3))
    fig.clf()
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    ax = fig.add_subplot(1, 2 if evals else 1, 1)
    if train:
        ax.plot([h["step"] for h in train], [h["loss"] for h in train], lw=1, label="train loss")
    if evals:
        ax.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", ms=3, label="eval loss")
    if total_steps:
        ax.set_xlim(0, total_steps)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "training loss", fontsize=10)
    acc = [h for h in evals if h.get("eval_accuracy") is not None]
    if evals:
        ax2 = fig.add_subplot(1, 2, 2)
        if acc:
            ax2.plot([h["step"] for h in acc], [h["eval_accuracy"] for h in acc], "o-", ms=3, color="tab:green")
        if total_steps:
            ax2.set_xlim(0, total_steps)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_xlabel("step")
        ax2.set_ylabel("exact match")
        ax2.grid(alpha=0.3)
        ax2.set_title("eval accuracy", fontsize=10)
    fig.tight_layout()
    return fig


def default_callbacks(progress: bool = True) -> list:
    """A live plot in a notebook, printed lines elsewhere (none when ``progress`` is False)."""
    if not progress:
        return []
    return [LiveLossPlot()] if in_notebook() else [PrintProgress()]
