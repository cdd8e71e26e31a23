"""What plots/ holds of the test split, as tables: thinned ROC and precision-recall curves, confusion cells, and
one plot's rows of every strategy in one table (evaluate writes them; the templates in .dvc/plots/ draw them)."""

import numpy as np
import pandas as pd
from sklearn import metrics


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
    """The ensemble's 2x2 confusion matrix under the rule that flags rows (with a cost column the value rule at
    its k, else the threshold), chosen on validation, as four rows of counts."""
    cells = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}
    rule = result.get("value_rule", result["chosen"])
    return pd.DataFrame(
        [{"actual": a, "predicted": p, "count": rule[key]["ensemble"]} for (a, p), key in cells.items()]
    )


def plot_table(frames: dict) -> pd.DataFrame:
    """One plot's data, {strategy: its rows} in the order evaluated, as one table with the strategy's name and
    place in that order (`order`, which gives its colour in the charts) first."""
    return pd.concat(
        [
            frame.assign(strategy=s, order=i)[["strategy", "order", *frame]]
            for i, (s, frame) in enumerate(frames.items())
        ],
        ignore_index=True,
    )
