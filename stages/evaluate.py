"""evaluate: every strategy's test metrics with 95 % intervals, paired differences, curves and PNG figures."""

import numpy as np
import pandas as pd
from sklearn import metrics

from stages import figures
from stages.common import (
    PREDICTIONS_DIR,
    STRATEGIES,
    StageError,
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
from stages.compare import compare

METRICS_DIR = "metrics/test"
DIFFERENCES_FILE = "metrics/differences.json"
PLOTS_DIR = "plots"


def test_predictions(strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """True labels and the members' predicted probabilities, (rows, members), of one strategy on the test split."""
    path = PREDICTIONS_DIR / f"{strategy}.parquet"
    frame = read_parquet(path).to_pandas()
    test = frame[frame["split"] == "test"]
    members = [column for column in test.columns if column.startswith("member_")]
    if not members:
        raise StageError(f"{path}: no member_<i> columns; run 'dvc repro train_{strategy}'")
    return test["label"].to_numpy(), test[members].to_numpy()


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
    """The ensemble's 2x2 confusion matrix as four rows of counts (the `confusion_counts` template sums them)."""
    cells = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}
    return pd.DataFrame(
        [{"actual": a, "predicted": p, "count": result[key]["ensemble"]} for (a, p), key in cells.items()]
    )


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_settings() -> dict:
    params = load_params("evaluate")
    return {
        "threshold": require(
            params, "evaluate", "threshold", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
        ),
        "curve_points": require(params, "evaluate", "curve_points", lambda v: is_int(v) and v >= 2, "an integer >= 2"),
        "resamples": require(
            params, "evaluate", "bootstrap_resamples", lambda v: is_int(v) and v >= 100, "an integer >= 100"
        ),
        "seed": require(params, "evaluate", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    }


def main():
    settings = read_settings()
    labels, probabilities = None, {}
    for strategy in STRATEGIES:
        strategy_labels, probabilities[strategy] = test_predictions(strategy)
        if labels is not None and not np.array_equal(labels, strategy_labels):
            raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: other test rows than baseline; rerun 'dvc repro'")
        labels = strategy_labels
    if len({p.shape[1] for p in probabilities.values()}) > 1:
        counts = {s: p.shape[1] for s, p in probabilities.items()}
        raise StageError(f"{PREDICTIONS_DIR}: strategies have different numbers of members {counts}; rerun 'dvc repro'")

    results, differences = compare(
        labels, probabilities, settings["threshold"], settings["resamples"], settings["seed"]
    )
    curves = {}
    for strategy, member_probabilities in probabilities.items():
        result, ensemble = results[strategy], member_probabilities.mean(axis=1)
        write_json(f"{METRICS_DIR}/{strategy}.json", result)
        points = settings["curve_points"]
        roc, pr = roc_points(labels, ensemble, points), pr_points(labels, ensemble, points)
        write_csv(roc, f"{PLOTS_DIR}/roc/{strategy}.csv")
        write_csv(pr, f"{PLOTS_DIR}/prc/{strategy}.csv")
        write_csv(confusion_cells(result), f"{PLOTS_DIR}/confusion/{strategy}.csv")
        members = [(roc_points(labels, p, points), pr_points(labels, p, points)) for p in member_probabilities.T]
        curves[strategy] = (roc, pr), members
        log.info(
            "evaluate: %-9s ensemble of %d: AP %.4f [%.4f, %.4f], ROC AUC %.4f [%.4f, %.4f], recall %.4f, precision %.4f",
            strategy,
            member_probabilities.shape[1],
            *(result["average_precision"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
            *(result["roc_auc"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
            result["recall"]["ensemble"],
            result["precision"]["ensemble"],
        )
    write_json(DIFFERENCES_FILE, differences)
    for pair, difference in differences.items():
        ap = difference["average_precision"]
        log.info(
            "evaluate: %s AP difference %+.4f [%+.4f, %+.4f] (members %+.4f [%+.4f, %+.4f]): %s",
            pair,
            *(ap[k] for k in ("ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper", "verdict")),
        )
    figures.draw_roc({s: (c[0][0], [m[0] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/roc.png")
    figures.draw_prc({s: (c[0][1], [m[1] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/prc.png")
    figures.draw_confusion(results, settings["threshold"], f"{PLOTS_DIR}/confusion.png")


if __name__ == "__main__":
    run(main)
