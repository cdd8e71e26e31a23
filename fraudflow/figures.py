"""The PNG figures evaluate writes: ROC (the tutorial's zoomed view), precision-recall and reliability.

Each strategy's ensemble is a thick line; its members are thin lines of the same colour, showing the spread. Every
function takes dicts keyed by strategy in the order evaluated, which gives their colours (fraudflow/strategies.py).
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from fraudflow.common import atomic_output  # noqa: E402
from fraudflow.strategies import colour  # noqa: E402


def save_figure(figure, path):
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def curve_figure(curves: dict, x: str, y: str, label: str, scale: float = 1.0, drawstyle: str = "default"):
    """One axes: per strategy, its members thin and its ensemble thick; `label(strategy)` names the ensemble."""
    figure, axes = plt.subplots(figsize=(6, 6))
    for position, (strategy, (ensemble, members)) in enumerate(curves.items()):
        style = {"color": colour(position), "drawstyle": drawstyle}
        for member in members:
            axes.plot(scale * member[x], scale * member[y], linewidth=0.6, alpha=0.45, **style)
        axes.plot(scale * ensemble[x], scale * ensemble[y], linewidth=2.2, label=label(strategy), **style)
    axes.grid(True)
    return figure, axes


def draw_roc(curves: dict, results: dict, path):
    """The tutorial's zoomed ROC view: false positives up to 20 %, true positives from 80 %."""

    def label(s):
        return f"{s} (AUC {results[s]['roc_auc']['ensemble']:.4f})"

    figure, axes = curve_figure(curves, "fpr", "tpr", label, scale=100)
    axes.set(
        xlabel="False positives [%]",
        ylabel="True positives [%]",
        xlim=(-0.5, 20),
        ylim=(80, 100.5),
        title="ROC on the test split (zoomed; thin lines: members)",
        aspect="equal",
    )
    axes.legend(loc="lower right")
    save_figure(figure, path)


def draw_prc(curves: dict, results: dict, path):
    def label(s):
        return f"{s} (AP {results[s]['average_precision']['ensemble']:.4f})"

    # Steps, as average precision sums them: the points come by falling recall, and each precision holds from its
    # recall down to the next point's.
    figure, axes = curve_figure(curves, "recall", "precision", label, drawstyle="steps-post")
    axes.set(
        xlabel="Recall",
        ylabel="Precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="Precision-recall on the test split (thin lines: members)",
    )
    axes.legend(loc="lower left")
    save_figure(figure, path)


def draw_reliability(calibration: dict, path):
    """Predicted against observed positive rate per bin, log-log, before and after the prior correction."""
    figure, all_axes = plt.subplots(1, 2, figsize=(12, 6), sharey=True)
    for axes, kind in zip(all_axes, ("as trained", "calibrated"), strict=True):
        axes.plot([1e-5, 1], [1e-5, 1], color="black", linewidth=0.8, linestyle=":", label="perfect calibration")
        for position, (strategy, bins) in enumerate(calibration.items()):
            shown = bins[kind]["observed"] > 0  # a bin without positives has no place on a log scale
            axes.plot(
                bins[kind]["predicted"][shown],
                bins[kind]["observed"][shown],
                marker="o",
                color=colour(position),
                label=strategy,
            )
        axes.set(
            xscale="log",
            yscale="log",
            xlim=(1e-5, 1.2),
            ylim=(1e-5, 1.2),
            xlabel="Mean predicted probability in the bin",
            title=f"Reliability on the test split: {kind}",
        )
        axes.grid(True, which="major")
    all_axes[0].set_ylabel("Observed positive rate in the bin")
    all_axes[1].legend(loc="lower right")
    save_figure(figure, path)
