"""evaluate: every strategy's test metrics side by side, curves for `dvc plots show`, and PNG figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics  # noqa: E402

from stages.common import (  # noqa: E402
    PREDICTIONS_DIR,
    STRATEGIES,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    read_parquet,
    require,
    run,
    write_json,
)

METRICS_DIR = "metrics/test"
PLOTS_DIR = "plots"


def test_predictions(strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """True labels and predicted fraud probabilities of one strategy on the test split."""
    frame = read_parquet(PREDICTIONS_DIR / f"{strategy}.parquet").to_pandas()
    test = frame[frame["split"] == "test"]
    return test["label"].to_numpy(), test["probability"].to_numpy()


def scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Counts and rates at the threshold (predicted fraud: probability > threshold), and exact threshold-free scores."""
    predicted = probabilities > threshold
    tn, fp, fn, tp = metrics.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
        "accuracy": metrics.accuracy_score(labels, predicted),
        "precision": metrics.precision_score(labels, predicted, zero_division=0),
        "recall": metrics.recall_score(labels, predicted, zero_division=0),
        "roc_auc": metrics.roc_auc_score(labels, probabilities),
        "average_precision": metrics.average_precision_score(labels, probabilities),
        "log_loss": metrics.log_loss(labels, probabilities, labels=[0, 1]),
    }


def thin(curve: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most max_points rows, evenly spaced, always keeping the first and the last."""
    if len(curve) <= max_points:
        return curve
    return curve.iloc[np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))]


def roc_points(labels, probabilities, max_points: int) -> pd.DataFrame:
    fpr, tpr, _ = metrics.roc_curve(labels, probabilities, drop_intermediate=True)
    return thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}), max_points)


def pr_points(labels, probabilities, max_points: int) -> pd.DataFrame:
    """The precision-recall curve reduced to its corners: the first and last point of every recall level."""
    precision, recall, _ = metrics.precision_recall_curve(labels, probabilities)
    curve = pd.DataFrame({"recall": recall, "precision": precision})
    corners = curve[~curve["recall"].duplicated(keep="first") | ~curve["recall"].duplicated(keep="last")]
    return thin(corners, max_points)


def confusion_cells(result: dict) -> pd.DataFrame:
    """The 2x2 confusion matrix as four rows of counts (the `confusion_counts` plot template sums them)."""
    cells = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}
    return pd.DataFrame([{"actual": a, "predicted": p, "count": result[key]} for (a, p), key in cells.items()])


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(figure, path):
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)


def draw_figures(curves: dict, results: dict, threshold: float):
    """The tutorial's zoomed ROC view, the precision-recall curves and the confusion matrices, as PNG."""
    figure, axes = plt.subplots(figsize=(6, 6))
    for strategy, (roc, _) in curves.items():
        axes.plot(
            100 * roc["fpr"],
            100 * roc["tpr"],
            linewidth=2,
            label=f"{strategy} (AUC {results[strategy]['roc_auc']:.4f})",
        )
    axes.set(
        xlabel="False positives [%]",
        ylabel="True positives [%]",
        xlim=(-0.5, 20),
        ylim=(80, 100.5),
        title="ROC on the test split (zoomed)",
        aspect="equal",
    )
    axes.grid(True)
    axes.legend(loc="lower right")
    save_figure(figure, f"{PLOTS_DIR}/roc.png")

    figure, axes = plt.subplots(figsize=(6, 6))
    for strategy, (_, pr) in curves.items():
        axes.plot(
            pr["recall"],
            pr["precision"],
            linewidth=2,
            label=f"{strategy} (AP {results[strategy]['average_precision']:.4f})",
        )
    axes.set(
        xlabel="Recall", ylabel="Precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall on the test split"
    )
    axes.grid(True)
    axes.legend(loc="lower left")
    save_figure(figure, f"{PLOTS_DIR}/prc.png")

    figure, all_axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4))
    for axes, (strategy, result) in zip(np.atleast_1d(all_axes), results.items()):
        counts = np.array([[result["tn"], result["fp"]], [result["fn"], result["tp"]]])
        axes.imshow(np.log1p(counts), cmap="Blues")
        for (row, column), count in np.ndenumerate(counts):
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=14,
                color="white" if count > counts.max() / 10 else "black",
            )
        axes.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xlabel="Predicted label",
            ylabel="Actual label",
            title=f"{strategy} @ {threshold:g}",
        )
    save_figure(figure, f"{PLOTS_DIR}/confusion.png")


def main():
    params = load_params("evaluate")
    threshold = require(
        params, "evaluate", "threshold", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
    )
    max_points = require(params, "evaluate", "curve_points", lambda v: is_int(v) and v >= 2, "an integer >= 2")

    results, curves = {}, {}
    for strategy in STRATEGIES:
        labels, probabilities = test_predictions(strategy)
        results[strategy] = scores(labels, probabilities, threshold)
        curves[strategy] = roc_points(labels, probabilities, max_points), pr_points(labels, probabilities, max_points)
        write_json(f"{METRICS_DIR}/{strategy}.json", results[strategy])
        write_csv(curves[strategy][0], f"{PLOTS_DIR}/roc/{strategy}.csv")
        write_csv(curves[strategy][1], f"{PLOTS_DIR}/prc/{strategy}.csv")
        write_csv(confusion_cells(results[strategy]), f"{PLOTS_DIR}/confusion/{strategy}.csv")
        result = results[strategy]
        log.info(
            "evaluate: %-9s tp %d fp %d tn %d fn %d, precision %.4f, recall %.4f, ROC AUC %.4f, AP %.4f",
            strategy,
            result["tp"],
            result["fp"],
            result["tn"],
            result["fn"],
            result["precision"],
            result["recall"],
            result["roc_auc"],
            result["average_precision"],
        )
    draw_figures(curves, results, threshold)


if __name__ == "__main__":
    run(main)
