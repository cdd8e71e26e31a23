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


def summarise(results: dict, differences: dict) -> dict:
    """{strategy: its headline numbers} and {'first-second': the verdicts on AP and cost}, from evaluate's
    results and differences (metrics/test/<strategy>.json, metrics/differences.json). The cost, precision and
    recall are those of the rule that flags rows (the one export packs): with a cost column the value rule
    ("amount", with the share of the positives' value caught), else the threshold of least flat cost."""
    summary = {}
    for strategy, result in results.items():
        rule = result.get("amount", result["chosen"])
        cost = rule["cost_per_1000"]
        summary[strategy] = {
            "ap": with_interval(result["average_precision"], RATE_DECIMALS),
            "roc_auc": round(result["roc_auc"]["ensemble"], RATE_DECIMALS),
            "recall_at_fpr": round(result["recall_at_fpr"]["ensemble"], RATE_DECIMALS),
            "cost": with_interval(cost, cost_decimals(cost["ensemble_upper"] - cost["ensemble_lower"])),
            **({"caught": with_interval(rule["caught"], RATE_DECIMALS)} if "caught" in rule else {}),
            "precision": round(rule["precision"]["ensemble"], RATE_DECIMALS),
            "recall": round(rule["recall"]["ensemble"], RATE_DECIMALS),
        }
    for pair, difference in differences.items():
        summary[pair] = {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference.get("amount", difference["chosen"])["cost_per_1000"]["verdict"],
        }
    return summary
