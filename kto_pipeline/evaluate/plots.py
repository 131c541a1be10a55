"""The report's PNG plots, drawn on a bare Agg canvas so identical inputs give identical bytes.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kto_pipeline.evaluate.compare import EvalResult
from kto_pipeline.evaluate.constants import ROLE_BASE, ROLE_CANDIDATE, ROLE_CHAMPION, ROLES
from kto_pipeline.evaluate.formatting import role_label

_PNG_METADATA = {"Software": None}  # no matplotlib version string; Agg writes no timestamp
_ROLE_COLOURS = {ROLE_BASE: "#7f7f7f", ROLE_CHAMPION: "#1f77b4", ROLE_CANDIDATE: "#ff7f0e"}


def _new_figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot state, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> Path:
    fig.savefig(path, format="png", metadata=_PNG_METADATA)
    return path


def plot_reward_distributions(result: EvalResult, path: str | Path) -> Path:
    """Box plots of per-row rewards, per model, one panel per class."""
    roles = [r for r in ROLES if r in result.models]
    fig = _new_figure(9, 4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (label, want) in zip(axes, (("desirable", True), ("undesirable", False))):
        data = []
        for role in roles:
            m = result.models[role]
            data.append([r for r, y in zip(m.rewards, m.labels) if y == want] or [float("nan")])
        boxes = ax.boxplot(data, showmeans=True, patch_artist=True)
        for patch, role in zip(boxes["boxes"], roles):
            patch.set_facecolor(_ROLE_COLOURS[role])
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(roles) + 1), [role_label(result, r) for r in roles])
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        ax.set_title(f"{label} rows (n={result.n_desirable if want else result.n_undesirable})")
    axes[0].set_ylabel(f"reward β·log(π/π_base), β={result.beta:g}")
    fig.suptitle(f"Reward distributions, week {result.week or 'unknown'}")
    fig.tight_layout()
    return _save_png(fig, Path(path))


def plot_metric_bars(result: EvalResult, path: str | Path) -> Path:
    """Grouped bars of the main metrics per model: accuracies, rewards, loss and KL."""
    roles = [r for r in ROLES if r in result.models]
    panels = (
        (
            "accuracy",
            ("reward_accuracy", "desirable_accuracy", "undesirable_accuracy"),
            ("all", "desirable", "undesirable"),
        ),
        (
            "mean reward",
            ("reward_desirable_mean", "reward_undesirable_mean", "margin"),
            ("desirable", "undesirable", "margin"),
        ),
        ("loss / KL", ("loss", "kl"), ("KTO loss", "KL (z0)")),
    )
    fig = _new_figure(12, 4)
    axes = fig.subplots(1, len(panels))
    width = 0.8 / len(roles)
    for ax, (title, names, labels) in zip(axes, panels):
        x = np.arange(len(names))
        for i, role in enumerate(roles):
            values = [getattr(result.models[role], n) for n in names]
            ax.bar(
                x + (i - (len(roles) - 1) / 2) * width,
                values,
                width,
                label=role_label(result, role),
                color=_ROLE_COLOURS[role],
            )
        ax.set_xticks(x, labels)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(title)
    axes[0].axhline(0.5, color="black", linewidth=0.8, linestyle=":")  # the reference's accuracy
    axes[0].set_ylim(0.0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(roles), frameon=False)
    fig.suptitle(f"Held-out metrics, week {result.week or 'unknown'}")
    fig.tight_layout(rect=(0.0, 0.07, 1.0, 1.0))  # room for the legend below the panels
    return _save_png(fig, Path(path))
