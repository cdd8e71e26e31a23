"""The headline numbers: a file per strategy with the few numbers that `dvc metrics show`, `dvc metrics diff` and
`dvc exp show` display (metrics/headline/<strategy>.json, a row each), rounded to what their intervals justify,
so a change in the last bits of a score is no change at all; the strategy to deploy (metrics/recommended.json,
also a metrics file); and the paired verdicts (metrics/verdicts.json, an output).

The full detail stays in metrics/test/, metrics/differences.json, metrics/train/ and metrics/split.json; the
report stage writes it all as docs/results.md.
"""

import math

HEADLINE_DIR = "metrics/headline"
RECOMMENDED_FILE = "metrics/recommended.json"
VERDICTS_FILE = "metrics/verdicts.json"
RATE_DECIMALS = 3  # AP, ROC AUC, recall, precision, value caught: test intervals are several hundredths wide


def cost_decimals(width: float) -> int:
    """Decimals that keep two significant digits of an interval's width: a width of 37 gives whole units; none for
    a cost that no resample changes (no errors, or zero costs)."""
    return max(0, 1 - math.floor(math.log10(width))) if width > 0 else 0


def with_interval(summary: dict, decimals: int, sign: str = "") -> str:
    """'value [lower, upper]' of the ensemble, as the headline files and docs/results.md print it (sign "+": with
    the sign, for differences)."""
    low, value, high = (f"{summary[k]:{sign}.{decimals}f}" for k in ("ensemble_lower", "ensemble", "ensemble_upper"))
    return f"{value} [{low}, {high}]"


def deployed_cost(result: dict) -> dict:
    """The cost per 1,000 rows under the rule export applies: the value rule's with a cost column, else the flat
    threshold's (a metrics/test/<strategy>.json or a pair of metrics/differences.json)."""
    return result["value_rule"]["cost_per_1000"] if "value_rule" in result else result["chosen"]["cost_per_1000"]


def deployed_rule(result: dict) -> str:
    """The name of the rule export applies, whose cost deployed_cost gives."""
    return "value rule" if "value_rule" in result else "flat threshold"


def beaten_by(differences: dict) -> dict:
    """{strategy: the strategies that beat it on the test split}, by the paired verdict on the deployed rule's cost."""
    beaten = {}
    for pair, difference in differences.items():
        first, second = pair.split("-")
        verdict = deployed_cost(difference)["verdict"]
        if verdict != "not distinguishable":
            winner, loser = (first, second) if verdict == f"{first} better" else (second, first)
            beaten.setdefault(loser, []).append(winner)
    return beaten


def recommend(differences: dict, validation_costs: dict) -> str:
    """The strategy to deploy: among those that no other beats on the test split (the paired verdict on the cost
    under the deployed rule, deployed_cost), the one of least cost on the validation split, where its rule was
    chosen (on ties, the first evaluated). validation_costs: {strategy: its validation cost per 1,000}, in the
    order evaluated."""
    beaten = beaten_by(differences)
    candidates = [s for s in validation_costs if s not in beaten] or list(validation_costs)  # a cycle: every one
    return min(candidates, key=lambda s: validation_costs[s])


def headline(result: dict) -> dict:
    """A strategy's headline numbers, from its metrics/test/<strategy>.json. Each key means one thing: cost,
    precision and recall are the flat cost's threshold's; with a cost column, value_cost and value_caught are the
    value rule's (cost per 1,000 rows, share of the positives' value flagged)."""
    chosen = result["chosen"]
    numbers = {
        "ap": with_interval(result["average_precision"], RATE_DECIMALS),
        "roc_auc": round(result["roc_auc"]["ensemble"], RATE_DECIMALS),
        "recall_at_fpr": round(result["recall_at_fpr"]["ensemble"], RATE_DECIMALS),
        "cost": cost_interval(chosen["cost_per_1000"]),
        "precision": round(chosen["precision"]["ensemble"], RATE_DECIMALS),
        "recall": round(chosen["recall"]["ensemble"], RATE_DECIMALS),
    }
    if "value_rule" in result:
        numbers["value_cost"] = cost_interval(result["value_rule"]["cost_per_1000"])
        numbers["value_caught"] = with_interval(result["value_rule"]["caught"], RATE_DECIMALS)
    return numbers


def verdicts(differences: dict) -> dict:
    """{'first-second': the paired verdicts on AP, the flat cost and (with a cost column) the value rule's cost}."""
    found = {}
    for pair, difference in differences.items():
        found[pair] = {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference["chosen"]["cost_per_1000"]["verdict"],
        }
        if "value_rule" in difference:
            found[pair]["value_cost"] = difference["value_rule"]["cost_per_1000"]["verdict"]
    return found


def cost_interval(summary: dict) -> str:
    """A cost per 1,000 with its interval, to two significant digits of the interval's width."""
    return with_interval(summary, cost_decimals(summary["ensemble_upper"] - summary["ensemble_lower"]))


def headline_points(result: dict, recommended: bool) -> list[dict]:
    """A strategy's rows of plots/headline.csv, the plots page's first chart: its test AP and its cost per 1,000
    rows under the rule export applies, each with its interval and as the headline files print it."""
    cost = deployed_cost(result)
    rows = [
        ("average precision", result["average_precision"], with_interval(result["average_precision"], RATE_DECIMALS)),
        (f"cost per 1,000 test rows ({deployed_rule(result)})", cost, cost_interval(cost)),
    ]
    return [
        {
            "metric": metric,
            "value": entry["ensemble"],
            "lower": entry["ensemble_lower"],
            "upper": entry["ensemble_upper"],
            "label": label,
            "recommended": int(recommended),
        }
        for metric, entry, label in rows
    ]
