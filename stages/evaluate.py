"""evaluate: every strategy's test metrics with 95 % intervals at three operating points (four with a cost
column), paired differences, their headline numbers (metrics/summary.json), curves and PNG figures.

Probabilities are first corrected to the real fraud rate wherever a model trained at other odds (prior
correction: the weighted and resampled strategies, and any model trained on a negative sample); each model's
cost-minimising threshold is chosen on the validation split and applied unchanged to the test split. When
evaluate.cost_false_negative names a column (Amount), each missed positive costs its own row's value there: the
flat cost is then the mean value of the training split's positives, and each model's k of the rule
p / (1 - p) * value > k * cost_false_positive (fraudflow/costs.py) is chosen on validation too.
"""

import numpy as np
import pandas as pd
from sklearn import metrics

from fraudflow import figures, inputs
from fraudflow.common import (
    EVALUATED,
    PREDICTIONS_DIR,
    SPLIT_DIR,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    require,
    run,
    write_json,
)
from fraudflow.compare import compare
from fraudflow.costs import chosen_k, cost_curve, k_grid
from fraudflow.operating import cost_threshold, prior_shift, reliability
from fraudflow.predictions import MemberColumns, test_blocks
from fraudflow.scaled import load_labels, negative_rate
from fraudflow.schema import cost_column, cost_false_negative, roles_of
from fraudflow.summary import SUMMARY_FILE, summarise

METRICS_DIR = "metrics/test"
DIFFERENCES_FILE = "metrics/differences.json"
PLOTS_DIR = "plots"


def read_settings() -> dict:
    params = load_params("evaluate")

    def rate(v):
        return is_number(v) and 0 < v < 1

    return {
        "threshold": require(params, "evaluate", "threshold", rate, "a number between 0 and 1"),
        "cost_false_negative": cost_false_negative(),  # a number, or with a cost column its mean (row_costs)
        "cost_column": cost_column(),
        "cost_false_positive": require(
            params, "evaluate", "cost_false_positive", lambda v: is_number(v) and v > 0, "a number > 0"
        ),
        "false_positive_rate": require(params, "evaluate", "false_positive_rate", rate, "a number between 0 and 1"),
        "curve_points": require(params, "evaluate", "curve_points", lambda v: is_int(v) and v >= 2, "an integer >= 2"),
        "resamples": require(
            params, "evaluate", "bootstrap_resamples", lambda v: is_int(v) and v >= 100, "an integer >= 100"
        ),
        "seed": require(params, "evaluate", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    }


def cost_groups(split: str, column: str):
    """The cost column (float64) and the labels of one split, data/split/<split>.parquet, a row group at a time;
    rows in the order of the scaled split and of the predictions."""
    path = SPLIT_DIR / f"{split}.parquet"
    file = inputs.parquet_file(path, "split")
    roles = roles_of(file.schema_arrow, path)
    if roles.get("cost") != column:
        raise StageError(f"{path}: no cost column '{column}' (evaluate.cost_false_negative); run 'dvc repro clean'")
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=[column, roles["label"]])
        yield table[column].to_numpy().astype(np.float64), table[roles["label"]].to_numpy()


def row_costs(settings: dict) -> dict:
    """What a missed positive costs: "flat", evaluate.cost_false_negative or with a cost column the mean value of
    the training split's positives (read group by group, keeping only theirs); with a cost column also the val
    and test splits' values per row, and their labels ("<split>_labels") to check them against the predictions."""
    column = settings["cost_column"]
    if column is None:
        return {"flat": settings["cost_false_negative"]}
    positives = [values[labels == 1] for values, labels in cost_groups("train", column)]
    costs = {"flat": float(np.concatenate(positives).mean())}
    for split in ("val", "test"):
        values, labels = zip(*cost_groups(split, column), strict=True)
        costs |= {split: np.concatenate(values), f"{split}_labels": np.concatenate(labels)}
    return costs


def check_rows(costs: dict, split: str, labels: np.ndarray, strategy: str):
    """Fails unless the cost column's split has the predictions' rows (compared by their labels)."""
    if f"{split}_labels" in costs and not np.array_equal(costs[f"{split}_labels"], labels):
        raise StageError(
            f"{SPLIT_DIR}/{split}.parquet: other rows than {PREDICTIONS_DIR}/{strategy}.parquet's {split} split; "
            "rerun 'dvc repro'"
        )


def operating_points(strategy: str, shift: float, settings: dict, costs: dict) -> dict:
    """What is chosen on the validation split, per model ("ensemble" and each member i): the threshold of least
    flat cost and, with a cost column, the k of least cost under the rule; and the rule's validation cost as k
    varies for the ensemble (without a cost column, the flat cost's rule, at the k its threshold stands for)."""
    val = MemberColumns(strategy, "val", shift)
    check_rows(costs, "val", val.labels, strategy)
    flat, cost_fp, by_value = costs["flat"], settings["cost_false_positive"], settings["cost_column"] is not None
    values = costs["val"] if by_value else np.full(len(val.labels), float(flat))

    def chosen(probabilities):
        point = {"chosen.threshold": cost_threshold(val.labels, probabilities, flat, cost_fp)}
        return point | ({"amount.k": chosen_k(val.labels, probabilities, values, cost_fp)} if by_value else {})

    try:
        members = dict(enumerate(chosen(column) for column in val))
        ensemble = val.calibrated.value()
        point = chosen(ensemble)
    except ValueError as error:
        raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: validation split: {error}") from error
    threshold = point["chosen.threshold"]
    k = point["amount.k"] if by_value else threshold / (1 - threshold) * flat / cost_fp
    ks = k_grid(k)
    curve = pd.DataFrame(
        {"k": ks, "cost_per_1000": cost_curve(val.labels, ensemble, values, cost_fp, ks), "chosen": (ks == k) * 1}
    )
    return {"chosen": {"ensemble": point} | members, "curve": curve}


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
    rule = result.get("amount", result["chosen"])
    return pd.DataFrame(
        [{"actual": a, "predicted": p, "count": rule[key]["ensemble"]} for (a, p), key in cells.items()]
    )


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def curves_and_positives(strategy: str, shift: float, n: int) -> dict:
    """What evaluate draws of one strategy's test split, its labels, and its positives' scores for compare."""
    test = MemberColumns(strategy, "test", shift)
    labels, members, positives = test.labels, [], {}
    positive = labels == 1
    for i, column in enumerate(test):
        members.append((roc_points(labels, column, n), pr_points(labels, column, n)))
        positives[i] = column[positive]
    mean = test.calibrated.value()
    return {
        "labels": labels,
        "curves": ((roc_points(labels, mean, n), pr_points(labels, mean, n)), members if len(members) > 1 else []),
        "calibration": {
            "as trained": reliability(labels, test.as_trained.value()),
            "calibrated": reliability(labels, mean),
        },
        "positives": {"ensemble": mean[positive]} | positives,
    }


def main():
    settings = read_settings()
    column = settings["cost_column"]
    costs = row_costs(settings)
    settings["cost_false_negative"] = costs["flat"]
    if column:
        log.info("evaluate: a missed positive costs its row's %s (flat cost: their mean, %.2f)", column, costs["flat"])
    train_labels, rate = load_labels("train"), negative_rate()
    labels, strategies, drawn, shifts = None, {}, {}, {}
    for strategy in EVALUATED:  # a few columns of one strategy's splits in memory at a time
        shifts[strategy] = prior_shift(strategy, train_labels, rate)
        strategies[strategy] = operating_points(strategy, shifts[strategy], settings, costs)
        drawn[strategy] = curves_and_positives(strategy, shifts[strategy], settings["curve_points"])
        if labels is not None and not np.array_equal(labels, drawn[strategy]["labels"]):
            raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: other test rows than baseline; rerun 'dvc repro'")
        labels = drawn[strategy].pop("labels")
        check_rows(costs, "test", labels, strategy)
        strategies[strategy]["positives"] = drawn[strategy]["positives"]
    counts = {s: len(p["chosen"]) - 1 for s, p in strategies.items() if len(p["chosen"]) > 2}
    if len(set(counts.values())) > 1:
        raise StageError(f"{PREDICTIONS_DIR}: strategies have different numbers of members {counts}; rerun 'dvc repro'")

    results, differences = compare(test_blocks(shifts, costs.get("test")), strategies, len(labels), settings)
    for strategy, result in results.items():
        write_json(f"{METRICS_DIR}/{strategy}.json", result)
        (roc, pr), _ = drawn[strategy]["curves"]
        write_csv(roc, f"{PLOTS_DIR}/roc/{strategy}.csv")
        write_csv(pr, f"{PLOTS_DIR}/prc/{strategy}.csv")
        write_csv(confusion_cells(result), f"{PLOTS_DIR}/confusion/{strategy}.csv")
        write_csv(pd.DataFrame(drawn[strategy]["calibration"]["calibrated"]), f"{PLOTS_DIR}/calibration/{strategy}.csv")
        write_csv(strategies[strategy]["curve"], f"{PLOTS_DIR}/costk/{strategy}.csv")
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
        if column:
            amount = result["amount"]
            log.info(
                "evaluate: %-9s by %s, at k %.3g chosen on validation: test cost per 1,000 %.2f [%.2f, %.2f], "
                "savings %.3f, %s caught %.3f, recall %.4f, precision %.4f",
                strategy,
                column,
                amount["k"]["ensemble"],
                *(amount["cost_per_1000"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
                amount["savings"]["ensemble"],
                column,
                amount["caught"]["ensemble"],
                amount["recall"]["ensemble"],
                amount["precision"]["ensemble"],
            )
    write_json(DIFFERENCES_FILE, differences)
    write_json(SUMMARY_FILE, summarise(results, differences))
    for pair, difference in differences.items():
        ap = difference["average_precision"]
        log.info(
            "evaluate: %s AP difference %+.4f [%+.4f, %+.4f] (members %+.4f [%+.4f, %+.4f]): %s",
            pair,
            *(ap[k] for k in ("ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper")),
            ap["verdict"],
        )
    curves = {s: d["curves"] for s, d in drawn.items()}
    figures.draw_roc({s: (c[0][0], [m[0] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/roc.png")
    figures.draw_prc({s: (c[0][1], [m[1] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/prc.png")
    figures.draw_confusion(results, f"{PLOTS_DIR}/confusion.png")
    figures.draw_reliability({s: d["calibration"] for s, d in drawn.items()}, f"{PLOTS_DIR}/calibration.png")


if __name__ == "__main__":
    run(main)
