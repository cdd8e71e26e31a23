"""The headline numbers: the few per strategy that `dvc metrics show`, `dvc metrics diff` and `dvc exp show`
display (metrics/summary.json, the only file dvc.yaml declares as metrics), rounded to what their intervals
justify, so a change in the last bits of a score is no change at all; and the paired verdicts.

The full detail stays in metrics/test/, metrics/differences.json, metrics/train/ and metrics/split.json
(`python -m stages.report` prints it as tables).
"""

import math

SUMMARY_FILE = "metrics/summary.json"
RATE_DECIMALS = 3  # AP, ROC AUC, recall, precision, value caught: test intervals are several hundredths wide


def cost_decimals(width: float) -> int:
    """Decimals that keep two significant digits of an interval's width: a width of 37 gives whole units; none for
    a cost that no resample changes (no errors, or zero costs)."""
    return max(0, 1 - math.floor(math.log10(width))) if width > 0 else 0


def with_interval(summary: dict, decimals: int) -> str:
    """'value [lower, upper]' of the ensemble, as the README and stages.report print it."""
    low, value, high = (summary[key] for key in ("ensemble_lower", "ensemble", "ensemble_upper"))
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def deployed_cost(result: dict) -> dict:
    """The cost per 1,000 rows under the rule export applies: the value rule's with a cost column, else the flat
    threshold's (a metrics/test/<strategy>.json or a pair of metrics/differences.json)."""
    return result["value_rule"]["cost_per_1000"] if "value_rule" in result else result["chosen"]["cost_per_1000"]


def recommend(differences: dict, validation_costs: dict) -> str:
    """The strategy to deploy: among those that no other beats on the test split (the paired verdict on the cost
    under the deployed rule, deployed_cost), the one of least cost on the validation split, where its rule was
    chosen (on ties, the first evaluated). validation_costs: {strategy: its validation cost per 1,000}, in the
    order evaluated."""
    beaten = set()
    for pair, difference in differences.items():
        first, second = pair.split("-")
        verdict = deployed_cost(difference)["verdict"]
        if verdict != "not distinguishable":
            beaten.add(second if verdict == f"{first} better" else first)
    candidates = [s for s in validation_costs if s not in beaten] or list(validation_costs)  # a cycle: every one
    return min(candidates, key=lambda s: validation_costs[s])


def summarise(results: dict, differences: dict, validation_costs: dict) -> dict:
    """{strategy: its headline numbers}, {'first-second': the verdicts on AP and cost} and {'recommended': the
    strategy to deploy (recommend)}, from evaluate's results and differences (metrics/test/<strategy>.json,
    metrics/differences.json) and the validation costs. Each key means one thing: cost, precision and recall are
    the flat cost's threshold's; with a cost column, value_cost and value_caught are the value rule's (cost per
    1,000, share of the positives' value flagged), with the verdict on value_cost."""
    summary = {}
    for strategy, result in results.items():
        chosen = result["chosen"]
        summary[strategy] = {
            "ap": with_interval(result["average_precision"], RATE_DECIMALS),
            "roc_auc": round(result["roc_auc"]["ensemble"], RATE_DECIMALS),
            "recall_at_fpr": round(result["recall_at_fpr"]["ensemble"], RATE_DECIMALS),
            "cost": cost_interval(chosen["cost_per_1000"]),
            "precision": round(chosen["precision"]["ensemble"], RATE_DECIMALS),
            "recall": round(chosen["recall"]["ensemble"], RATE_DECIMALS),
        }
        if "value_rule" in result:
            by_value = result["value_rule"]
            summary[strategy] |= {
                "value_cost": cost_interval(by_value["cost_per_1000"]),
                "value_caught": with_interval(by_value["caught"], RATE_DECIMALS),
            }
    for pair, difference in differences.items():
        summary[pair] = {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference["chosen"]["cost_per_1000"]["verdict"],
        }
        if "value_rule" in difference:
            summary[pair]["value_cost"] = difference["value_rule"]["cost_per_1000"]["verdict"]
    summary["recommended"] = {"strategy": recommend(differences, validation_costs)}
    return summary


def cost_interval(summary: dict) -> str:
    """A cost per 1,000 with its interval, to two significant digits of the interval's width."""
    return with_interval(summary, cost_decimals(summary["ensemble_upper"] - summary["ensemble_lower"]))
