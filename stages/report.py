"""report: the results tables of README.md, each under its title, printed as Markdown from the detailed metrics
(metrics/test/, metrics/differences.json): `python -m stages.report`.

`dvc metrics show` shows the headline numbers (metrics/summary.json); these tables give the detail behind them.
"""

import json
from pathlib import Path

from fraudflow.common import StageError, run
from fraudflow.strategies import BLEND, evaluated, the_kind

METRICS = Path("metrics")


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read metrics ({error}); run 'dvc repro evaluate'") from error


def value(summary: dict, digits: int = 3, sign: str = "") -> str:
    """The ensemble's value and its bootstrap interval."""
    low, value, high = (f"{summary[key]:{sign}.{digits}f}" for key in ("ensemble_lower", "ensemble", "ensemble_upper"))
    return f"{value} [{low}, {high}]"


def spread(summary: dict, digits: int = 3, sign: str = "") -> str:
    """The members' mean and its interval ('one model' without one)."""
    if summary["mean_lower"] is None:
        return "one model"
    f = f"{{:{sign}.{digits}f}}"
    return f"{f.format(summary['mean'])} [{f.format(summary['mean_lower'])}, {f.format(summary['mean_upper'])}]"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def value_rule_tables(test: dict, differences: dict) -> str:
    """With a cost column: the rule p / (1 - p) * value > k * cost_false_positive per strategy, and its pairs."""
    rows = [
        [
            s,
            f"{m['value_rule']['k']['ensemble']:.3g}",
            value(m["value_rule"]["cost_per_1000"], 1),
            value(m["value_rule"]["threshold_cost_per_1000"], 1),
            value(m["value_rule"]["saved_per_1000"], 1, "+"),
            value(m["value_rule"]["savings"]),
            value(m["value_rule"]["caught"]),
            value(m["value_rule"]["precision"]),
            value(m["value_rule"]["recall"]),
            " / ".join(str(m["value_rule"][k]["ensemble"]) for k in ("tp", "fp", "fn")),
        ]
        for s, m in test.items()
    ]
    header = [
        "strategy",
        "k",
        "cost per 1,000",
        "at the flat threshold",
        "saved by the rule",
        "savings",
        "value caught",
        "precision",
        "recall",
        "tp / fp / fn",
    ]
    title = "Each missed positive costs its own value: test split, at the k chosen on validation"
    columns = [
        ("cost", lambda d: d["value_rule"]["cost_per_1000"], 1),
        ("savings", lambda d: d["value_rule"]["savings"], 3),
    ]
    pair_title = "Paired differences under the value rule: first − second, on the same test rows"
    return table(title, header, rows) + "\n\n" + paired(pair_title, differences, columns)


def paired(title: str, differences: dict, columns: list) -> str:
    """A table of paired differences: per (name, where a pair's entry holds it, digits) the ensembles' and the
    members' difference with their intervals, then the verdicts."""
    rows = []
    for pair, difference in differences.items():
        found = [(find(difference), digits) for _, find, digits in columns]
        numbers = [text for entry, digits in found for text in (value(entry, digits, "+"), spread(entry, digits, "+"))]
        rows.append([pair.replace("-", " − "), *numbers, *(entry["verdict"] for entry, _ in found)])
    header = ["first − second"] + [f"{name}: {kind}" for name, _, _ in columns for kind in ("ensembles", "members")]
    return table(title, header + [f"verdict on {name}" for name, _, _ in columns], rows)


def main():
    test = {s: read(METRICS / "test" / f"{s}.json") for s in (entry.name for entry in evaluated())}
    differences = read(METRICS / "differences.json")
    operating = [
        [
            s,
            f"{m['chosen']['threshold']['ensemble']:.3f}",
            value(m["chosen"]["cost_per_1000"], 1),
            value(m["chosen"]["precision"]),
            value(m["chosen"]["recall"]),
            " / ".join(str(m["chosen"][k]["ensemble"]) for k in ("tp", "fp", "fn")),
        ]
        for s, m in test.items()
    ]
    header = ["strategy", "threshold", "cost per 1,000 rows", "precision", "recall", "tp / fp / fn"]
    print(table("The operating point: test split, at the threshold chosen on validation", header, operating))
    scores = [
        [
            s,
            value(m["average_precision"]),
            spread(m["average_precision"]),
            value(m["roc_auc"], 4),
            spread(m["roc_auc"], 4),
            value(m["recall_at_fpr"]),
            spread(m["recall_at_fpr"]),
        ]
        for s, m in test.items()
    ]
    header = [
        "strategy",
        "average precision",
        "members",
        "ROC AUC",
        "members",
        "recall at the false-positive rate",
        "members",
    ]
    print("\n" + table("Threshold-free scores: test split (ensemble; members: their mean)", header, scores))
    columns = [("AP", lambda d: d["average_precision"], 3), ("cost", lambda d: d["chosen"]["cost_per_1000"], 1)]
    print("\n" + paired("Paired differences: first − second, on the same test rows", differences, columns))
    if all("value_rule" in m for m in test.values()):
        print("\n" + value_rule_tables(test, differences))
    calibration = [
        [
            s,
            f"{m['uncalibrated']['log_loss']['ensemble']:.4f} → {m['log_loss']['ensemble']:.4f}",
            f"{m['uncalibrated']['brier']['ensemble']:.5f} → {m['brier']['ensemble']:.5f}",
            " / ".join(str(m["tutorial"][k]["ensemble"]) for k in ("tp", "fp", "fn"))
            + f", {m['tutorial']['precision']['ensemble']:.3f}, {m['tutorial']['recall']['ensemble']:.3f}",
        ]
        for s, m in test.items()
    ]
    header = [
        "strategy",
        "log loss as trained → calibrated",
        "Brier score as trained → calibrated",
        "at the tutorial's threshold: tp / fp / fn, precision, recall",
    ]
    print("\n" + table("Calibration, and the tutorial's fixed threshold: test split", header, calibration))
    blend = read(METRICS / "train" / f"{the_kind(BLEND).name}.json")
    rows = [[s, f"{w:.4f}"] for s, w in blend["weights"].items()] + [["(intercept)", f"{blend['intercept']:.4f}"]]
    print(
        "\n"
        + table(
            "The blend: its weights on the strategies' logits, fitted on the validation split",
            ["strategy", "weight"],
            rows,
        )
    )
    recommended = read(METRICS / "summary.json")["recommended"]["strategy"]
    print(
        f"\n### Recommended: {recommended}\n\nThe least cost on the validation split, under the rule export "
        "applies, among the strategies no other beats on the test split (paired verdicts above)."
    )


if __name__ == "__main__":
    run(main)
