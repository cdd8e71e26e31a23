"""evaluate: every strategy's test metrics with 95 % intervals at three operating points (four with a cost
column), paired differences, headline numbers (metrics/headline/), verdicts, the recommendation, curves, figures.

Probabilities are first corrected to the real positive rate wherever a model trained at other odds (prior
correction: the strategies that train at balanced odds, fraudflow/strategies.py, and any model trained on a negative
sample); each model's cost-minimising threshold is chosen on the validation split and applied unchanged to the test
split. With a cost column (data.cost; scale passes its values in data/costs/), each missed positive costs its own
row's value: each model's k of the value rule p / (1 - p) * value > k * cost_false_positive (fraudflow/costs.py) is
chosen on validation too. Each strategy's calibration and rule go to models/rules/<strategy>.json for export, with
the validation probabilities' bins (fraudflow/monitoring.py's score_profile, for monitoring); and the deployed
rule's precision, caught share and cost on the test split estimated from the probabilities alone (label_free in
metrics/test/<strategy>.json), beside what the labels measure.
"""

import json

import numpy as np
import pandas as pd

from fraudflow import figures
from fraudflow.common import (
    COSTS_DIR,
    PREDICTIONS_DIR,
    RULES_DIR,
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
from fraudflow.costs import chosen_k, cost_curve, flagged, k_grid
from fraudflow.curves import confusion_cells, plot_table, pr_points, roc_points
from fraudflow.monitoring import LabelFree, score_profile
from fraudflow.operating import cost_threshold, prior_shift, reliability
from fraudflow.predictions import MemberColumns, test_blocks
from fraudflow.scaled import load_labels, negative_rate
from fraudflow.strategies import BLEND, REGISTRY, evaluated
from fraudflow.summary import (
    HEADLINE_DIR,
    RECOMMENDED_FILE,
    VERDICTS_FILE,
    headline,
    headline_points,
    recommend,
    verdicts,
)

METRICS_DIR = "metrics/test"
DIFFERENCES_FILE = "metrics/differences.json"
PLOTS_DIR = "plots"


def read_settings() -> dict:
    params = load_params("evaluate")

    def rate(v):
        return is_number(v) and 0 < v < 1

    return {
        "threshold": require(params, "evaluate", "threshold", rate, "a number between 0 and 1"),
        "cost_false_negative": require(
            params,
            "evaluate",
            "cost_false_negative",
            lambda v: v is None or (is_number(v) and v > 0),
            "a number > 0, or null for the mean of data.cost over the training split's positives",
        ),
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


def read_costs(settings: dict) -> dict:
    """What scale passed on of the cost column (data/costs/): its name ("column", None for a flat cost) and, with
    one, the val and test rows' values; and the flat cost of a missed positive ("flat"): evaluate.cost_false_negative,
    or when that is null the mean value of the training split's positives."""
    try:
        summary = json.loads((COSTS_DIR / "costs.json").read_text())
        costs = {"column": summary["column"]}
        if costs["column"]:
            costs |= {split: np.load(COSTS_DIR / f"{split}.npy") for split in ("val", "test")}
    except (OSError, ValueError, KeyError) as error:
        raise StageError(f"{COSTS_DIR}: cannot read ({error}); run 'dvc repro scale'") from error
    flat = settings["cost_false_negative"]
    if flat is None and costs["column"] is None:
        raise StageError(
            "params.yaml: param 'evaluate.cost_false_negative' is null, which means the mean of data.cost, but "
            "data.cost is null too; give a number"
        )
    return costs | {"flat": summary["train_positive_mean"] if flat is None else flat}


def check_rows(costs: dict, split: str, labels: np.ndarray, strategy: str):
    """Fails unless the cost column's split has as many rows as the predictions'."""
    if split in costs and len(costs[split]) != len(labels):
        raise StageError(
            f"{COSTS_DIR}/{split}.npy: {len(costs[split])} rows, {REGISTRY[strategy].predictions}'s {split} "
            f"split {len(labels)}; rerun 'dvc repro'"
        )


def operating_points(strategy: str, shift: float, settings: dict, costs: dict) -> dict:
    """What is chosen on the validation split, per model ("ensemble" and each member i): the threshold of least
    flat cost and, with a cost column, the k of least cost under the rule; and the rule's validation cost as k
    varies for the ensemble (without a cost column, the flat cost's rule, at the k its threshold stands for)."""
    val = MemberColumns(strategy, "val", shift)
    check_rows(costs, "val", val.labels, strategy)
    flat, cost_fp, by_value = costs["flat"], settings["cost_false_positive"], costs["column"] is not None
    values = costs["val"] if by_value else np.full(len(val.labels), float(flat))

    def chosen(probabilities):
        point = {"chosen.threshold": cost_threshold(val.labels, probabilities, flat, cost_fp)}
        return point | ({"value_rule.k": chosen_k(val.labels, probabilities, values, cost_fp)} if by_value else {})

    try:
        members = dict(enumerate(chosen(column) for column in val))
        ensemble = val.calibrated.value()
        point = chosen(ensemble)
    except ValueError as error:
        raise StageError(f"{REGISTRY[strategy].predictions}: validation split: {error}") from error
    threshold = point["chosen.threshold"]
    k = point["value_rule.k"] if by_value else threshold / (1 - threshold) * flat / cost_fp
    ks = k_grid(k)
    curve = pd.DataFrame(
        {"k": ks, "cost_per_1000": cost_curve(val.labels, ensemble, values, cost_fp, ks), "chosen": (ks == k) * 1}
    )
    return {"chosen": {"ensemble": point} | members, "curve": curve, "scores": score_profile(ensemble)}


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def curves_and_positives(strategy: str, shift: float, n: int) -> dict:
    """What evaluate draws of one strategy's test split, its labels, its positives' scores for compare, and its
    calibrated probabilities."""
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
        "probabilities": mean,
    }


def estimated_without_labels(probabilities: np.ndarray, point: dict, costs: dict, settings: dict) -> dict:
    """The deployed rule's precision, share of the positives' cost caught and cost per 1,000 test rows estimated
    from the calibrated probabilities alone, with intervals, as fraudflow/monitor.py estimates a scored file's."""
    cost_fp = settings["cost_false_positive"]
    if costs["column"]:
        values = costs["test"]
        flags = flagged(probabilities, values, point["value_rule.k"], cost_fp)
    else:
        values = np.full(len(probabilities), float(costs["flat"]))
        flags = probabilities > point["chosen.threshold"]
    estimate = LabelFree()
    estimate.add(probabilities, flags, values)
    return estimate.result(cost_fp)


def validation_cost(curve: pd.DataFrame) -> float:
    """The validation cost per 1,000 rows at the chosen operating point (the row of the cost curve marked chosen)."""
    return float(curve.loc[curve["chosen"] == 1, "cost_per_1000"].iloc[0])


def rule_card(
    strategy: str, result: dict, shift: float, settings: dict, column: str | None, cost: float, scores: dict
) -> dict:
    """models/rules/<strategy>.json: how the strategy's ensemble is calibrated, which rows it flags, as chosen on the
    validation split, that rule's cost there, and the validation probabilities' decile shares (export writes it all
    into model.json)."""
    card = {"strategy": strategy, "calibration_logit_shift": shift, "validation_cost_per_1000": cost}
    if column is None:
        return card | {
            "threshold": result["chosen"]["threshold"]["ensemble"],
            "cost_false_negative": settings["cost_false_negative"],
            "cost_false_positive": settings["cost_false_positive"],
            "threshold_chosen": "on the validation split, least cost_false_negative * FN + cost_false_positive * FP",
            "flagged": "probability > threshold",
            "score_profile": scores,
        }
    return card | {
        "cost_column": column,
        "k": result["value_rule"]["k"]["ensemble"],
        "cost_false_positive": settings["cost_false_positive"],
        "k_chosen": f"on the validation split, least sum of the missed positives' {column} + cost_false_positive * FP",
        "flagged": f"probability / (1 - probability) * {column} > k * cost_false_positive",
        "score_profile": scores,
    }


def main():
    settings = read_settings()
    costs = read_costs(settings)
    column = settings["cost_column"] = costs["column"]
    settings["cost_false_negative"] = costs["flat"]
    if column:
        log.info("evaluate: a missed positive costs its row's %s (flat cost: %.2f)", column, costs["flat"])
    train_labels, rate = load_labels("train"), negative_rate()
    labels, strategies, drawn, shifts, estimates = None, {}, {}, {}, {}
    entries = {s.name: s for s in evaluated()}
    for name, entry in entries.items():  # a few columns of one strategy's splits in memory at a time
        # the blend is fitted on the validation split, at the real odds: no shift
        shifts[name] = 0.0 if entry.kind == BLEND else prior_shift(entry.balanced_odds, train_labels, rate)
        strategies[name] = operating_points(name, shifts[name], settings, costs)
        drawn[name] = curves_and_positives(name, shifts[name], settings["curve_points"])
        if labels is not None and not np.array_equal(labels, drawn[name]["labels"]):
            raise StageError(f"{entry.predictions}: other test rows than the others; rerun 'dvc repro'")
        labels = drawn[name].pop("labels")
        check_rows(costs, "test", labels, name)
        point = strategies[name]["chosen"]["ensemble"]
        estimates[name] = estimated_without_labels(drawn[name].pop("probabilities"), point, costs, settings)
        strategies[name]["positives"] = drawn[name]["positives"]
    counts = {s: len(p["chosen"]) - 1 for s, p in strategies.items() if entries[s].has_members}
    if len(set(counts.values())) > 1:
        raise StageError(f"{PREDICTIONS_DIR}: strategies have different numbers of members {counts}; rerun 'dvc repro'")

    results, differences = compare(test_blocks(shifts, costs.get("test")), strategies, len(labels), settings)
    validation_costs = {s: validation_cost(p["curve"]) for s, p in strategies.items()}
    for name, result in results.items():
        result["label_free"] = estimates[name]
        write_json(f"{METRICS_DIR}/{name}.json", result)
        scores = strategies[name]["scores"]
        card = rule_card(name, result, shifts[name], settings, column, validation_costs[name], scores)
        write_json(RULES_DIR / f"{name}.json", card)
        write_json(f"{HEADLINE_DIR}/{name}.json", headline(result))
        log_result(name, result, settings)
    recommended = recommend(differences, validation_costs)
    for kind, frames in {
        "headline": {s: pd.DataFrame(headline_points(r, s == recommended)) for s, r in results.items()},
        "roc": {s: d["curves"][0][0] for s, d in drawn.items()},
        "prc": {s: d["curves"][0][1] for s, d in drawn.items()},
        "confusion": {s: confusion_cells(result) for s, result in results.items()},
        "costk": {s: p["curve"] for s, p in strategies.items()},
    }.items():
        write_csv(plot_table(frames), f"{PLOTS_DIR}/{kind}.csv")
    write_json(DIFFERENCES_FILE, differences)
    write_json(VERDICTS_FILE, verdicts(differences))
    write_json(RECOMMENDED_FILE, {"strategy": recommended})
    log.info("evaluate: recommended strategy %s (summary.py's recommend)", recommended)
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
    figures.draw_reliability({s: d["calibration"] for s, d in drawn.items()}, f"{PLOTS_DIR}/calibration.png")


def log_result(strategy: str, result: dict, settings: dict):
    chosen, column = result["chosen"], settings["cost_column"]
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
        by_value = result["value_rule"]
        log.info(
            "evaluate: %-9s by %s, at k %.3g chosen on validation: test cost per 1,000 %.2f [%.2f, %.2f], "
            "savings %.3f, %s caught %.3f, recall %.4f, precision %.4f",
            strategy,
            column,
            by_value["k"]["ensemble"],
            *(by_value["cost_per_1000"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
            by_value["savings"]["ensemble"],
            column,
            by_value["caught"]["ensemble"],
            by_value["recall"]["ensemble"],
            by_value["precision"]["ensemble"],
        )


if __name__ == "__main__":
    run(main)
