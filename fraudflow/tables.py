"""The results as Markdown tables, from evaluate's metrics (metrics/test/<strategy>.json, metrics/differences.json)
and the training stages' (metrics/split.json, metrics/train/blend.json): pure functions of those dicts, each table
under its title with a sentence saying what it shows. stages/report.py puts them together as docs/results.md."""

from fraudflow.summary import (
    RATE_DECIMALS,
    beaten_by,
    cost_decimals,
    cost_interval,
    deployed_cost,
    deployed_rule,
    with_interval,
)


def value(summary: dict, digits: int = 3, sign: str = "") -> str:
    """The ensemble's value and its bootstrap interval."""
    return with_interval(summary, digits, sign)


def spread(summary: dict, digits: int = 3, sign: str = "") -> str:
    """The members' mean and its interval ('one model' without one)."""
    if summary["mean_lower"] is None:
        return "one model"
    f = f"{{:{sign}.{digits}f}}"
    return f"{f.format(summary['mean'])} [{f.format(summary['mean_lower'])}, {f.format(summary['mean_upper'])}]"


def table(title: str, says: str, header: list[str], rows: list[list[str]]) -> str:
    """A titled Markdown table with the sentence that says what it shows."""
    lines = [f"## {title}", "", says, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def headline(test: dict, differences: dict, validation_costs: dict, recommended: str) -> str:
    """The recommendation and the table it comes from."""
    beaten = beaten_by(differences)
    rule = f"the {deployed_rule(next(iter(test.values())))}"  # every strategy has the same
    rows = [
        [
            f"**{s}**" if s == recommended else s,
            value(m["average_precision"]),
            cost_interval(deployed_cost(m)),
            f"{validation_costs[s]:.1f}",
            ", ".join(beaten.get(s, [])) or "none",
        ]
        for s, m in test.items()
    ]
    header = [
        "strategy",
        "average precision",
        f"test cost per 1,000 rows ({rule})",
        "validation cost per 1,000 rows",
        "beaten on test cost by",
    ]
    says = (
        f"**Deploy `{recommended}`**: of the strategies that no other beats on the test split (paired verdict on the "
        f"cost under {rule}, which export applies), the one of least cost on the validation split, where its rule "
        "was chosen. Intervals: 95 %, over resampled test rows; test costs to two significant digits of their "
        "interval's width, as `dvc metrics show` gives them."
    )
    return table("Summary: the strategy to deploy", says, header, rows)


def split_table(split: dict, sha256: str) -> str:
    rows = [
        [name, *(f"{s[key]:,}" for key in ("rows", "positives", "duplicate_groups", "rows_with_twin_in_other_split"))]
        for name, s in split.items()
    ]
    header = ["split", "rows", "positives", "groups of identical rows", "rows with a twin in another split"]
    says = f"The table (sha256 `{sha256}`) as split divided it; identical rows stay in one split."
    return table("The data and its split", says, header, rows)


def operating_table(test: dict) -> str:
    rows = [
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
    says = "Every missed positive costs the same: the threshold of least cost, chosen on validation, on the test rows."
    return table("The flat cost: test split, at the threshold chosen on validation", says, header, rows)


def scores_table(test: dict, false_positive_rate: float) -> str:
    rows = [
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
    recall = f"recall at a false-positive rate of {false_positive_rate:g}"
    header = ["strategy", "average precision", "members", "ROC AUC", "members", recall, "members"]
    says = (
        "How well each strategy ranks the test rows, whatever the threshold: the ensemble with its interval over "
        "resampled rows, and the members' mean with its interval over members."
    )
    return table("Threshold-free scores: test split", says, header, rows)


def paired(title: str, says: str, differences: dict, columns: list) -> str:
    """A table of paired differences: per (name, where a pair's entry holds it, digits) the ensembles' and the
    members' difference with their intervals, then the verdicts."""
    rows = []
    for pair, difference in differences.items():
        found = [(find(difference), digits) for _, find, digits in columns]
        numbers = [text for entry, digits in found for text in (value(entry, digits, "+"), spread(entry, digits, "+"))]
        rows.append([pair.replace("-", " − "), *numbers, *(entry["verdict"] for entry, _ in found)])
    header = ["first − second"] + [f"{name}: {kind}" for name, _, _ in columns for kind in ("ensembles", "members")]
    return table(title, says, header + [f"verdict on {name}" for name, _, _ in columns], rows)


VERDICT = (
    "A verdict needs both intervals, the ensembles' (over resampled test rows) and the members' (over members), to "
    "exclude zero."
)


def differences_table(differences: dict) -> str:
    columns = [("AP", lambda d: d["average_precision"], 3), ("cost", lambda d: d["chosen"]["cost_per_1000"], 1)]
    title = "Paired differences: first − second, on the same test rows"
    return paired(title, f"Which strategy beats which on AP and on the flat cost. {VERDICT}", differences, columns)


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
    says = (
        "Each missed positive costs its own value (data.cost), a false alarm cost_false_positive: the rule "
        "p / (1 − p) × value > k × cost_false_positive with k chosen on validation, against the flat threshold."
    )
    title = "The value rule: test split, at the k chosen on validation"
    columns = [
        ("cost", lambda d: d["value_rule"]["cost_per_1000"], 1),
        ("savings", lambda d: d["value_rule"]["savings"], 3),
    ]
    pair_title = "Paired differences under the value rule: first − second, on the same test rows"
    pairs = paired(pair_title, f"Which strategy beats which under the value rule. {VERDICT}", differences, columns)
    return table(title, says, header, rows) + "\n\n" + pairs


def calibration_table(test: dict, threshold: float) -> str:
    rows = [
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
        f"at the tutorial's threshold {threshold:g}: tp / fp / fn, precision, recall",
    ]
    says = (
        "The prior correction of strategies trained at other odds (lower is better), and what the tutorial's fixed "
        "threshold would flag."
    )
    return table("Calibration, and the tutorial's fixed threshold: test split", says, header, rows)


def blend_table(blend: dict) -> str:
    rows = [[s, f"{w:.4f}"] for s, w in blend["weights"].items()] + [["(intercept)", f"{blend['intercept']:.4f}"]]
    says = "Non-negative weights on the strategies' logits, fitted on the validation split only (a weight 0: unused)."
    return table("The blend's weights", says, ["strategy", "weight"], rows)


def width(summary: dict) -> float:
    """An interval's width (of the ensemble's bootstrap interval)."""
    return summary["ensemble_upper"] - summary["ensemble_lower"]


def label_free_table(test: dict) -> str:
    """The deployed rule's precision, share of the positives' cost caught and cost per 1,000 test rows estimated
    from the probabilities alone beside the measured ones."""
    rows = []
    for s, m in test.items():
        measured, estimated = m.get("value_rule", m["chosen"]), m["label_free"]
        measured_caught = measured["caught"] if "value_rule" in m else measured["recall"]
        row = [s]
        for key, truth, digits in [
            ("precision", measured["precision"], RATE_DECIMALS),
            ("caught", measured_caught, RATE_DECIMALS),
            ("cost_per_1000", measured["cost_per_1000"], cost_decimals(width(measured["cost_per_1000"]))),
        ]:
            estimate = estimated[key]
            if estimate["estimate"] is None:
                row += ["none", value(truth, digits)]
                continue
            as_ensemble = {"ensemble": estimate["estimate"], "ensemble_lower": estimate["lower"]}
            as_ensemble["ensemble_upper"] = estimate["upper"]
            covered = estimate["lower"] <= truth["ensemble"] <= estimate["upper"]
            row += [with_interval(as_ensemble, digits), value(truth, digits) + ("" if covered else " (outside)")]
        rows.append(row)
    rule = deployed_rule(next(iter(test.values())))
    header = ["strategy"] + [
        f"{name}: {kind}"
        for name in ("precision", "caught", "cost per 1,000")
        for kind in ("estimated without labels", "measured")
    ]
    says = (
        f"At the {rule} chosen on validation: each number estimated from the test rows' calibrated probabilities "
        "alone (as `python -m fraudflow.monitor` estimates a scored file's; the interval is the labels' randomness "
        "given calibrated probabilities), beside the same number measured from the labels (the bootstrap interval); "
        "(outside): the measured value lies outside the estimate's interval. Caught: the share of the positives' "
        "cost in flagged rows (without a cost column, the recall)."
    )
    return table("Estimated without labels against measured: test split", says, header, rows)


def importance_table(importance: dict, top: int = 10) -> str:
    """The first `top` columns of stages/explain.py's ranking (the largest mean importance over the strategies), a
    column per strategy."""
    found, ranked = importance["strategies"], importance["ranked"][:top]
    rows = [[c, *(f"{found[s][c]:.3f}" for s in found)] for c in ranked]
    says = (
        f"Each column's mean absolute contribution to the strategy's logit over the {importance['rows']:,} validation "
        "rows (the reason codes' measure, `python -m stages.score --reasons`): how far it moves a typical row's "
        "score from the reference row's, in either direction; not a cause. The columns of largest mean over the "
        "strategies first."
    )
    return table(f"Which columns matter: the {len(ranked)} of largest contribution", says, ["column", *found], rows)
