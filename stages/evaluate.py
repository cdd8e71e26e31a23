"""evaluate: every strategy's test metrics with 95 % intervals at three operating points, paired differences,
curves and PNG figures.

The weighted and resampled strategies' probabilities are first corrected to the real fraud rate (prior
correction); each model's cost-minimising threshold is chosen on the validation split and applied unchanged
to the test split.
"""

import numpy as np
import pandas as pd
from sklearn import metrics

from fraudflow import figures
from fraudflow.common import (
    PREDICTIONS_DIR,
    REFERENCE_STRATEGY,
    STRATEGIES,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_labels,
    load_params,
    log,
    read_parquet,
    require,
    run,
    write_json,
)
from fraudflow.compare import compare
from fraudflow.operating import cost_threshold, prior_shift, reliability, shift_probabilities

METRICS_DIR = "metrics/test"
DIFFERENCES_FILE = "metrics/differences.json"
PLOTS_DIR = "plots"
EVALUATED = (*STRATEGIES, REFERENCE_STRATEGY)


def read_settings() -> dict:
    params = load_params("evaluate")

    def number(v):
        return is_number(v) and v >= 0

    return {
        "threshold": require(
            params, "evaluate", "threshold", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
        ),
        "cost_false_negative": require(params, "evaluate", "cost_false_negative", number, "a number >= 0"),
        "cost_false_positive": require(params, "evaluate", "cost_false_positive", number, "a number >= 0"),
        "false_positive_rate": require(
            params, "evaluate", "false_positive_rate", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
        ),
        "curve_points": require(params, "evaluate", "curve_points", lambda v: is_int(v) and v >= 2, "an integer >= 2"),
        "resamples": require(
            params, "evaluate", "bootstrap_resamples", lambda v: is_int(v) and v >= 100, "an integer >= 100"
        ),
        "seed": require(params, "evaluate", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    }


def read_predictions(strategy: str) -> dict:
    """{split: (labels, (rows, members) probabilities as trained)} of one strategy, for val and test."""
    path = PREDICTIONS_DIR / f"{strategy}.parquet"
    frame = read_parquet(path).to_pandas()
    members = [column for column in frame.columns if column.startswith("member_")]
    if not members:
        raise StageError(f"{path}: no member_<i> columns; run 'dvc repro train_{strategy}'")
    parts = {split: frame[frame["split"] == split] for split in ("val", "test")}
    return {split: (part["label"].to_numpy(), part[members].to_numpy()) for split, part in parts.items()}


def operating_points(strategy: str, predictions: dict, shift: float, settings: dict) -> dict:
    """Calibrated and as-trained test probabilities, and the thresholds chosen on the validation split."""
    (val_labels, val_raw), (_, test_raw) = predictions["val"], predictions["test"]
    val = shift_probabilities(val_raw, shift)
    costs = settings["cost_false_negative"], settings["cost_false_positive"]
    try:
        thresholds = [cost_threshold(val_labels, column, *costs) for column in val.T]
        ensemble_threshold = cost_threshold(val_labels, val.mean(axis=1), *costs)
    except ValueError as error:
        raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: validation split: {error}") from error
    return {
        "calibrated": shift_probabilities(test_raw, shift),
        "uncalibrated": test_raw,
        "thresholds": thresholds,
        "ensemble_threshold": ensemble_threshold,
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
    """The ensemble's 2x2 confusion matrix at the chosen threshold as four rows of counts."""
    cells = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}
    chosen = result["chosen"]
    return pd.DataFrame(
        [{"actual": a, "predicted": p, "count": chosen[key]["ensemble"]} for (a, p), key in cells.items()]
    )


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def main():
    settings = read_settings()
    train_labels = load_labels("train")
    labels, strategies = None, {}
    for strategy in EVALUATED:
        predictions = read_predictions(strategy)
        if labels is not None and not np.array_equal(labels, predictions["test"][0]):
            raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: other test rows than baseline; rerun 'dvc repro'")
        labels = predictions["test"][0]
        strategies[strategy] = operating_points(strategy, predictions, prior_shift(strategy, train_labels), settings)
    counts = {s: len(p["thresholds"]) for s, p in strategies.items() if len(p["thresholds"]) > 1}
    if len(set(counts.values())) > 1:
        raise StageError(f"{PREDICTIONS_DIR}: strategies have different numbers of members {counts}; rerun 'dvc repro'")

    results, differences = compare(labels, strategies, settings)
    curves, calibration = {}, {}
    for strategy, points in strategies.items():
        result = results[strategy]
        write_json(f"{METRICS_DIR}/{strategy}.json", result)
        n = settings["curve_points"]
        ensemble = points["calibrated"].mean(axis=1)
        roc, pr = roc_points(labels, ensemble, n), pr_points(labels, ensemble, n)
        write_csv(roc, f"{PLOTS_DIR}/roc/{strategy}.csv")
        write_csv(pr, f"{PLOTS_DIR}/prc/{strategy}.csv")
        write_csv(confusion_cells(result), f"{PLOTS_DIR}/confusion/{strategy}.csv")
        calibration[strategy] = {
            "as trained": reliability(labels, points["uncalibrated"].mean(axis=1)),
            "calibrated": reliability(labels, ensemble),
        }
        write_csv(pd.DataFrame(calibration[strategy]["calibrated"]), f"{PLOTS_DIR}/calibration/{strategy}.csv")
        members = [(roc_points(labels, p, n), pr_points(labels, p, n)) for p in points["calibrated"].T]
        curves[strategy] = (roc, pr), (members if len(members) > 1 else [])
        chosen = result["chosen"]
        log.info(
            "evaluate: %-9s test AP %.4f [%.4f, %.4f]; recall at FPR %g: %.4f; at the threshold chosen on "
            "validation, %.4f: test recall %.4f, precision %.4f, cost per 1,000 %.2f",
            strategy,
            *(result["average_precision"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
            settings["false_positive_rate"],
            result["recall_at_fpr"]["ensemble"],
            chosen["threshold"]["ensemble"],
            chosen["recall"]["ensemble"],
            chosen["precision"]["ensemble"],
            chosen["cost_per_1000"]["ensemble"],
        )
    write_json(DIFFERENCES_FILE, differences)
    for pair, difference in differences.items():
        ap = difference["average_precision"]
        log.info(
            "evaluate: %s AP difference %+.4f [%+.4f, %+.4f] (members %+.4f [%+.4f, %+.4f]): %s",
            pair,
            *(ap[k] for k in ("ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper")),
            ap["verdict"],
        )
    figures.draw_roc({s: (c[0][0], [m[0] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/roc.png")
    figures.draw_prc({s: (c[0][1], [m[1] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/prc.png")
    figures.draw_confusion(results, f"{PLOTS_DIR}/confusion.png")
    figures.draw_reliability(calibration, f"{PLOTS_DIR}/calibration.png")


if __name__ == "__main__":
    run(main)
