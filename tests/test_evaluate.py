import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import REPO, python_environment, set_params
from sklearn import metrics
from test_stats import assert_close

from fraudflow import costs, curves, predictions, summary
from fraudflow.common import (
    COSTS_DIR,
    IMPORTANCE_FILE,
    PREDICTIONS_DIR,
    RULES_DIR,
    SCALED_DIR,
    load_params,
    write_parquet,
)
from fraudflow.operating import cost_threshold, prior_shift, shift_probabilities
from fraudflow.strategies import BLEND, REGISTRY, evaluated
from stages import evaluate, report

SUMMARY_KEYS = {"ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper"}


def test_thin_keeps_endpoints_and_caps_points():
    curve = pd.DataFrame({"x": np.arange(1000)})
    thinned = curves.thin(curve, 300)
    assert len(thinned) == 300
    assert thinned["x"].iloc[0] == 0 and thinned["x"].iloc[-1] == 999


def test_pr_points_keep_every_recall_level():
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.01).astype(int)
    probabilities = np.clip(rng.normal(0.2 + 0.5 * labels, 0.15), 0, 1)
    points = curves.pr_points(labels, probabilities, max_points=10_000)
    assert len(points) <= 2 * (labels.sum() + 1)
    _, full_recall, _ = metrics.precision_recall_curve(labels, probabilities)
    assert set(points["recall"]) == set(full_recall)


def names() -> list[str]:
    """The strategies evaluate compares (params.yaml's in the working directory), in order."""
    return [entry.name for entry in evaluated()]


def write_costs(labels: dict, seed: int, test_amounts=None, column: str | None = "Amount") -> dict:
    """data/costs/ as scale writes it: costs.json (the cost column's name and the mean value of the training split's
    positives) and the val and test rows' values of the cost column Amount (positives larger, lognormal); or with
    column None, a flat cost (costs.json alone). Returns the amounts."""
    rng = np.random.default_rng([seed, 1])
    amounts = {split: rng.lognormal(3 + y, 1.5).round(2) for split, y in labels.items()}
    if test_amounts is not None:
        amounts["test"] = test_amounts
    COSTS_DIR.mkdir(parents=True, exist_ok=True)
    mean = float(amounts["train"][labels["train"] == 1].mean()) if column else None
    (COSTS_DIR / "costs.json").write_text(json.dumps({"column": column, "train_positive_mean": mean}))
    for split in ("val", "test"):
        if column:
            np.save(COSTS_DIR / f"{split}.npy", amounts[split].astype(np.float64))
    return amounts


def write_predictions(
    members: int,
    rows: int = 2000,
    seed: int = 0,
    test_labels=None,
    val_positives: bool = True,
    test_amounts=None,
    column: str | None = "Amount",
):
    """Validation and test predictions of every strategy evaluated (logistic: one member), each member's column
    alone (member_<i>, as trained), training labels at 1 % positives, and the cost column's values (write_costs).
    Returns the labels, probabilities and amounts.

    Strategy k is noisier than strategy k - 1; those that train at balanced odds (weighted, resampled) predict at
    them, as trained.
    """
    rng = np.random.default_rng(seed)
    SCALED_DIR.mkdir(parents=True, exist_ok=True)
    train_labels = (np.arange(10_000) < 100).astype(np.int8)
    np.save(SCALED_DIR / "train_labels.npy", train_labels)
    labels = {split: (rng.random(rows) < 0.05).astype(int) for split in ("val", "test")}
    if not val_positives:
        labels["val"][:] = 0
    if test_labels is not None:
        labels["test"] = test_labels
    amounts = write_costs({"train": train_labels} | labels, seed, test_amounts, column)
    probabilities = {}
    for noise, strategy in enumerate(names(), start=1):
        count = members if REGISTRY[strategy].has_members else 1
        inflation = np.log(99) if REGISTRY[strategy].balanced_odds else 0.0
        frames = []
        for split, y in labels.items():
            logits = rng.normal(3 * y - 4.5 + inflation, noise, size=(count, rows)).T
            p = 1 / (1 + np.exp(-logits))
            frame = pd.DataFrame({"split": split, "label": y})
            for member in range(count):
                frame[f"member_{member}"] = p[:, member]
            frames.append(frame)
            probabilities[strategy, split] = p
        write_parquet(pa.Table.from_pandas(pd.concat(frames)), REGISTRY[strategy].predictions)
    return labels, probabilities, amounts


def read_metrics(project, strategy):
    return json.loads((project / "metrics" / "test" / f"{strategy}.json").read_text())


def read_rule(project, strategy):
    return json.loads((project / RULES_DIR / f"{strategy}.json").read_text())


def plot_rows(project, kind: str, strategy: str) -> pd.DataFrame:
    """One strategy's rows of plots/<kind>.csv, without its strategy and order columns."""
    table = pd.read_csv(project / "plots" / f"{kind}.csv")
    return table[table["strategy"] == strategy].drop(columns=["strategy", "order"]).reset_index(drop=True)


@pytest.mark.parametrize("members", [1, 4])
def test_stage_writes_intervals_operating_points_differences_and_figures(project, members):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=200)
    labels, probabilities, _ = write_predictions(members)
    evaluate.main()
    baseline = read_metrics(project, "baseline")
    assert set(baseline) == {
        "average_precision",
        "roc_auc",
        "recall_at_fpr",
        "log_loss",
        "brier",
        "chosen",
        "value_rule",
        "tutorial",
        "uncalibrated",
        "label_free",
    }
    assert set(baseline["chosen"]) == {"threshold", "tp", "fp", "tn", "fn", "precision", "recall", "cost_per_1000"}
    extra = {"savings", "caught", "k", "threshold_cost_per_1000", "saved_per_1000"}
    assert set(baseline["value_rule"]) == {*baseline["chosen"], *extra} - {"threshold"}
    assert set(baseline["tutorial"]) == {"tp", "fp", "tn", "fn", "precision", "recall"}
    assert set(baseline["uncalibrated"]) == {"log_loss", "brier"}
    assert set(baseline["roc_auc"]) == SUMMARY_KEYS and set(baseline["chosen"]["recall"]) == SUMMARY_KEYS
    ensemble = probabilities["baseline", "test"].mean(axis=1)  # the members' mean (the files hold members only)
    # estimated without labels at the deployed rule: the expected positives and the flagged rows' mean probability
    label_free, counted = baseline["label_free"], baseline["value_rule"]
    assert label_free["expected_positives"] == pytest.approx(ensemble.sum())
    assert label_free["flagged"] == counted["tp"]["ensemble"] + counted["fp"]["ensemble"] > 0
    top = np.sort(ensemble)[::-1][: label_free["flagged"]]  # not the flagged rows, but bounds their mean
    assert ensemble.mean() < label_free["precision"]["estimate"] <= top.mean() + 1e-12
    profile = read_rule(project, "baseline")["score_profile"]
    assert sum(profile["shares"]) == pytest.approx(1) and profile["edges"] == sorted(set(profile["edges"]))
    ap = baseline["average_precision"]
    assert ap["ensemble"] == pytest.approx(metrics.average_precision_score(labels["test"], ensemble))
    assert ap["ensemble_lower"] < ap["ensemble"] < ap["ensemble_upper"]
    member_aps = [metrics.average_precision_score(labels["test"], p) for p in probabilities["baseline", "test"].T]
    assert ap["mean"] == pytest.approx(np.mean(member_aps))
    if members == 1:
        assert ap["mean_lower"] is None and ap["mean_upper"] is None
    else:
        assert ap["mean_lower"] < ap["mean"] < ap["mean_upper"]
    assert baseline["tutorial"]["tp"]["ensemble"] == int(((ensemble > 0.5) & (labels["test"] == 1)).sum())

    # The weighted strategy's probabilities are corrected to the training split's 1 % positives before scoring:
    weighted = read_metrics(project, "weighted")
    raw = probabilities["weighted", "test"]
    assert weighted["uncalibrated"]["brier"]["ensemble"] > 4 * weighted["brier"]["ensemble"]
    assert weighted["tutorial"]["fp"]["ensemble"] == int(((raw.mean(axis=1) > 0.5) & (labels["test"] == 0)).sum())

    differences = json.loads((project / "metrics" / "differences.json").read_text())
    count = len(names())
    assert len(differences) == count * (count - 1) // 2
    assert "baseline-logistic" in differences and "logistic-gbdt" in differences and "focal-gbdt" in differences
    first = differences["baseline-logistic"]["roc_auc"]
    assert set(first) == SUMMARY_KEYS | {"verdict"}
    assert set(differences["baseline-logistic"]["value_rule"]) == {"cost_per_1000", "savings"}
    assert first["verdict"] == "baseline better"  # the least noisy against a noisier one

    # A CSV per kind of plot with every strategy's rows, each with its place among those evaluated (its colour)
    for kind in ("roc", "prc", "confusion", "costk"):
        table = pd.read_csv(project / "plots" / f"{kind}.csv")
        assert list(table.columns[:2]) == ["strategy", "order"], kind
        assert table.drop_duplicates("strategy")[["strategy", "order"]].values.tolist() == [
            [strategy, position] for position, strategy in enumerate(names())
        ], kind
    confusion = plot_rows(project, "confusion", "weighted")
    assert confusion["count"].sum() == len(labels["test"]) and len(confusion) == 4
    roc = plot_rows(project, "roc", "logistic")
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0, 1)
    assert not (project / "plots" / "calibration").exists()  # drawn in calibration.png only
    cost_k = plot_rows(project, "costk", "gbdt")
    assert list(cost_k.columns) == ["k", "cost_per_1000", "chosen"] and cost_k["k"].is_monotonic_increasing
    gbdt_k = read_metrics(project, "gbdt")["value_rule"]["k"]["ensemble"]
    assert cost_k.loc[cost_k["chosen"] == 1, "k"].tolist() == pytest.approx([gbdt_k], rel=1e-9)  # written to 10 digits
    for image in ("roc.png", "prc.png", "calibration.png"):
        assert (project / "plots" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Each strategy's calibration and rule, as chosen on validation, for export
    train_labels = np.load(SCALED_DIR / "train_labels.npy")
    for strategy in names():
        rule = read_rule(project, strategy)
        shift = prior_shift(REGISTRY[strategy].balanced_odds, train_labels, 1.0)
        assert rule["strategy"] == strategy and rule["calibration_logit_shift"] == pytest.approx(shift)
        assert rule["cost_column"] == "Amount" and rule["cost_false_positive"] == 5
        assert rule["k"] == read_metrics(project, strategy)["value_rule"]["k"]["ensemble"]
        assert rule["flagged"] == "probability / (1 - probability) * Amount > k * cost_false_positive"
    assert read_rule(project, "weighted")["calibration_logit_shift"] == pytest.approx(np.log(100 / 9900))


def test_evaluate_read_in_small_blocks_writes_what_it_writes_in_one_block(project, monkeypatch):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, rows=700)
    written = {}
    for block in (7, 700):
        monkeypatch.setattr(predictions, "BLOCK_ROWS", block)
        evaluate.main()
        written[block] = {path: path.read_text() for path in sorted((project / "metrics").rglob("*.json"))}
        written[block] |= {path: path.read_text() for path in sorted((project / RULES_DIR).glob("*.json"))}
        written[block] |= {path: path.read_text() for path in sorted((project / "plots").rglob("*.csv"))}
    # per strategy its test metrics, headline and rule; the differences, verdicts, recommendation; five plots' files
    assert written[7].keys() == written[700].keys() and len(written[7]) == 3 * len(names()) + 3 + 5
    for path, text in written[700].items():
        if path.suffix == ".json":  # the same sums, added in another order: equal to their last digits
            assert_close(json.loads(written[7][path]), json.loads(text))
        else:
            assert written[7][path] == text


def test_a_negative_sample_is_corrected_for_the_baseline_logistic_regression_and_the_trees(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(2)
    evaluate.main()
    whole = {s: read_metrics(project, s) for s in names()}
    set_params(project / "params.yaml", train__negative_rate=0.1)
    evaluate.main()
    sampled = {s: read_metrics(project, s) for s in names()}
    at_real_odds = [s for s in names() if not REGISTRY[s].balanced_odds and REGISTRY[s].kind != BLEND]
    assert at_real_odds == ["baseline", "focal", "logistic", "gbdt"]
    # the blend, fitted on the validation split at the real odds, is not shifted
    assert sampled["blend"]["brier"]["ensemble"] == whole["blend"]["brier"]["ensemble"]
    for strategy in at_real_odds:  # odds divided by 10: fewer flagged at the same threshold
        assert sampled[strategy]["brier"]["ensemble"] != whole[strategy]["brier"]["ensemble"]
        # Each member ranks the rows as before (the ensemble averages shifted probabilities: it may not)
        assert sampled[strategy]["roc_auc"]["mean"] == pytest.approx(whole[strategy]["roc_auc"]["mean"], rel=1e-9)
        assert read_rule(project, strategy)["calibration_logit_shift"] == pytest.approx(np.log(0.1))
    for strategy in ("weighted", "resampled"):  # trained at 1:1 either way
        assert sampled[strategy] == whole[strategy]


def test_report_writes_every_results_table_and_a_changed_metric_changes_it(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3)
    evaluate.main()
    weights = {"baseline": 0.25, "gbdt": 0.75}  # what train_blend would have written
    (project / "metrics" / "train").mkdir(parents=True)
    (project / "metrics" / "train" / "blend.json").write_text(json.dumps({"weights": weights, "intercept": -0.5}))
    split = {
        name: dict.fromkeys(("rows", "positives", "duplicate_groups", "rows_with_twin_in_other_split"), 1234)
        for name in ("train", "val", "test")
    }  # what split would have written
    (project / "metrics" / "split.json").write_text(json.dumps(split))
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "raw.json").write_text(json.dumps({"sha256": "f" * 64}))
    columns = [f"V{i}" for i in range(1, 12)]  # what explain would have written: V11 matters most, then V10 ...
    found = {s: {c: (i + 1) * (j + 1) / 100 for j, c in enumerate(columns)} for i, s in enumerate(names())}
    order = [f"V{i}" for i in range(11, 0, -1)]
    importance = {"split": "validation", "rows": 4321, "ranked": order, "strategies": found}
    (project / IMPORTANCE_FILE).write_text(json.dumps(importance))
    report.main()
    written = (project / report.RESULTS_FILE).read_text()
    importance = written[written.index("## Which columns matter") :].split("\n\n")[2].splitlines()
    assert importance[0] == "| column | " + " | ".join(names()) + " |" and "4,321 validation rows" in written
    assert [line.split(" | ")[0] for line in importance[2:]] == [f"| V{i}" for i in range(11, 1, -1)]  # top 10
    assert importance[2].endswith(f" | {len(names()) * 11 / 100:.3f} |")
    # the estimates without labels beside the measured numbers, a row per strategy
    estimated = read_metrics(project, "gbdt")["label_free"]["precision"]
    assert f"| gbdt | {estimated['estimate']:.3f} [{estimated['lower']:.3f}, {estimated['upper']:.3f}] | " in written
    assert "| gbdt | 0.7500 |" in written and "| (intercept) | -0.5000 |" in written
    assert "| train | 1,234 | 1,234 |" in written and f"sha256 `{'f' * 64}`" in written
    recommended = json.loads((project / summary.RECOMMENDED_FILE).read_text())["strategy"]
    assert f"**Deploy `{recommended}`**" in written and f"| **{recommended}** |" in written
    baseline = read_metrics(project, "baseline")["chosen"]["cost_per_1000"]
    row = f"| baseline | {read_metrics(project, 'baseline')['chosen']['threshold']['ensemble']:.3f} | "
    assert (
        row + f"{baseline['ensemble']:.1f} [{baseline['ensemble_lower']:.1f}, {baseline['ensemble_upper']:.1f}]"
        in written
    )
    by_value = read_metrics(project, "gbdt")["value_rule"]
    savings = by_value["savings"]
    row = f"| gbdt | {by_value['k']['ensemble']:.3g} | "
    assert row in written and f"| {savings['ensemble']:.3f} [{savings['ensemble_lower']:.3f}, " in written
    # summary, flat, scores, value, calibration, estimated without labels, and the importance table's header
    assert written.count("| logistic |") == 7 and "one model" in written
    assert written.count("| baseline − weighted |") == 2
    assert "bootstrap_resamples: 100" in written  # the params the results came from
    # a changed metric changes the document, and only where it is shown
    detail = read_metrics(project, "baseline")
    detail["average_precision"]["ensemble"] = 0.123456
    (project / "metrics" / "test" / "baseline.json").write_text(json.dumps(detail))
    report.main()
    rewritten = (project / report.RESULTS_FILE).read_text()
    assert rewritten != written and "| baseline | 0.123 [" in rewritten and "| baseline | 0.123 [" not in written


@pytest.mark.parametrize(("column", "cost"), [("Amount", None), (None, 133), ("Amount", 133)])
def test_the_headline_files_hold_each_strategys_numbers_rounded_the_verdicts_and_the_recommendation(
    project, column, cost
):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100, evaluate__cost_false_negative=cost)
    write_predictions(3, column=column)
    evaluate.main()
    differences = json.loads((project / "metrics" / "differences.json").read_text())
    assert sorted(path.stem for path in (project / summary.HEADLINE_DIR).iterdir()) == sorted(names())
    costs = {s: read_rule(project, s)["validation_cost_per_1000"] for s in names()}
    recommended = json.loads((project / summary.RECOMMENDED_FILE).read_text())
    assert recommended == {"strategy": summary.recommend(differences, costs)}
    for strategy in names():
        detail = read_metrics(project, strategy)
        by_value = {}
        if column:  # a cost column adds the value rule's cost and value caught
            by_value = {
                "value_cost": interval(detail["value_rule"]["cost_per_1000"]),
                "value_caught": interval(detail["value_rule"]["caught"], 3),
            }
        assert json.loads((project / summary.HEADLINE_DIR / f"{strategy}.json").read_text()) == {
            "ap": interval(detail["average_precision"], 3),
            "roc_auc": round(detail["roc_auc"]["ensemble"], 3),
            "recall_at_fpr": round(detail["recall_at_fpr"]["ensemble"], 3),
            "cost": interval(detail["chosen"]["cost_per_1000"]),
            "precision": round(detail["chosen"]["precision"]["ensemble"], 3),
            "recall": round(detail["chosen"]["recall"]["ensemble"], 3),
            **by_value,
        }
    written = json.loads((project / summary.VERDICTS_FILE).read_text())
    assert list(written) == list(differences)
    for pair, difference in differences.items():
        by_value = {"value_cost": difference["value_rule"]["cost_per_1000"]["verdict"]} if column else {}
        assert written[pair] == {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference["chosen"]["cost_per_1000"]["verdict"],
            **by_value,
        }


def interval(detail: dict, decimals: int | None = None) -> str:
    """'value [lower, upper]'; by default to two significant digits of the interval's width."""
    if decimals is None:
        decimals = summary.cost_decimals(detail["ensemble_upper"] - detail["ensemble_lower"])
    low, value, high = (detail[key] for key in ("ensemble_lower", "ensemble", "ensemble_upper"))
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def test_last_bit_changes_do_not_reach_the_summary(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, rows=1999)  # 2,000 rows would put costs per 1,000 on halves, where rounding ties
    evaluate.main()
    results = {s: read_metrics(project, s) for s in names()}

    def nudged(data, factor):  # every number moved in its last bits, as another processor moves them
        if isinstance(data, dict):
            return {key: nudged(value, factor) for key, value in data.items()}
        return data * factor if isinstance(data, float) else data

    def headlines(results):
        return {s: summary.headline(result) for s, result in results.items()}

    written = {s: json.loads((project / summary.HEADLINE_DIR / f"{s}.json").read_text()) for s in names()}
    assert headlines(results) == written
    assert headlines(nudged(results, 1 + 1e-12)) == written
    assert headlines(nudged(results, 1 - 1e-12)) == written
    assert headlines(nudged(results, 1.01)) != written  # a real change does reach it


@pytest.mark.parametrize(("width", "decimals"), [(37.1, 0), (99.9, 0), (100.0, 0), (3.7, 1), (0.37, 2), (0.0, 0)])
def test_cost_decimals_keep_two_significant_digits_of_the_interval(width, decimals):
    assert summary.cost_decimals(width) == decimals


def test_thresholds_are_chosen_on_validation_without_reading_test_labels(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, seed=2)
    evaluate.main()
    before = {s: chosen_on_validation(read_metrics(project, s)) for s in names()}
    flipped = np.random.default_rng(9).permutation((np.arange(2000) < 300).astype(int))  # other test labels only
    write_predictions(3, seed=2, test_labels=flipped, test_amounts=np.full(2000, 1e4))  # and test amounts
    evaluate.main()
    after = {s: read_metrics(project, s) for s in names()}
    assert {s: chosen_on_validation(m) for s, m in after.items()} == before
    assert after["baseline"]["chosen"]["tp"]["ensemble"] + after["baseline"]["chosen"]["fn"]["ensemble"] == 300


def chosen_on_validation(result: dict) -> tuple:
    return result["chosen"]["threshold"], result["value_rule"]["k"]


def calibrated_ensemble(strategy: str, probabilities: np.ndarray) -> np.ndarray:
    """The ensemble of write_predictions' members as evaluate scores it: the mean of the members, those trained at
    balanced odds (weighted, resampled) prior-corrected to the training split's 1 % positives."""
    shift = prior_shift(REGISTRY[strategy].balanced_odds, (np.arange(10_000) < 100).astype(np.int8), 1.0)
    return shift_probabilities(probabilities, shift).mean(axis=1)


def test_value_rule_is_scored_on_test_as_a_direct_computation_at_the_k_least_costly_on_validation(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=200)
    labels, probabilities, amounts = write_predictions(3, seed=4)
    evaluate.main()
    flat = amounts["train"][:100].mean()  # the training split's positives' mean Amount
    for strategy in names():
        result = read_metrics(project, strategy)
        k = result["value_rule"]["k"]["ensemble"]
        val = calibrated_ensemble(strategy, probabilities[strategy, "val"])
        threshold = cost_threshold(labels["val"], val, flat, 5)
        assert result["chosen"]["threshold"]["ensemble"] == pytest.approx(threshold)
        ks = costs.k_grid(k)
        assert costs.cost_curve(labels["val"], val, amounts["val"], 5, [k])[0] == pytest.approx(
            costs.cost_curve(labels["val"], val, amounts["val"], 5, ks).min()
        )
        y, v = labels["test"] == 1, amounts["test"]
        p = calibrated_ensemble(strategy, probabilities[strategy, "test"])
        flag = p / (1 - p) * v > k * 5
        cost = v[y & ~flag].sum() + 5 * (~y & flag).sum()
        by_threshold = p > result["chosen"]["threshold"]["ensemble"]  # the flat threshold's flags at these costs
        threshold_cost = 1000 * (v[y & ~by_threshold].sum() + 5 * (~y & by_threshold).sum()) / len(y)
        by_value = result["value_rule"]
        expected = {
            "tp": (y & flag).sum(),
            "fp": (~y & flag).sum(),
            "fn": (y & ~flag).sum(),
            "cost_per_1000": 1000 * cost / len(y),
            "savings": 1 - cost / min(v[y].sum(), 5 * (~y).sum()),
            "caught": v[y & flag].sum() / v[y].sum(),
            "threshold_cost_per_1000": threshold_cost,
            "saved_per_1000": threshold_cost - 1000 * cost / len(y),
        }
        assert {key: by_value[key]["ensemble"] for key in expected} == pytest.approx(expected, rel=1e-9)
        for key in ("cost_per_1000", "savings", "caught"):
            assert by_value[key]["ensemble_lower"] < by_value[key]["ensemble"] < by_value[key]["ensemble_upper"]
            if strategy != "logistic":  # one model: no interval over members
                assert by_value[key]["mean_lower"] < by_value[key]["mean"] < by_value[key]["mean_upper"]


def test_a_number_cost_has_no_value_rule_results_and_draws_its_threshold_as_a_k(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100, evaluate__cost_false_negative=133)
    labels, probabilities, _ = write_predictions(2, column=None)  # no cost column: data/costs/costs.json alone
    evaluate.main()
    result = read_metrics(project, "baseline")
    assert "value_rule" not in result
    val = calibrated_ensemble("baseline", probabilities["baseline", "val"])
    assert result["chosen"]["threshold"]["ensemble"] == pytest.approx(cost_threshold(labels["val"], val, 133, 5))
    rule = read_rule(project, "baseline")
    assert rule["threshold"] == result["chosen"]["threshold"]["ensemble"] and "cost_column" not in rule
    assert rule["flagged"] == "probability > threshold"
    cost_k = plot_rows(project, "costk", "baseline")  # the flat rule p / (1 - p) * 133 > k * 5
    chosen = cost_k.loc[cost_k["chosen"] == 1].iloc[0]
    threshold = result["chosen"]["threshold"]["ensemble"]
    assert chosen["k"] == pytest.approx(threshold / (1 - threshold) * 133 / 5, rel=1e-9)  # the threshold's k
    assert chosen["cost_per_1000"] == pytest.approx(
        1000
        * (
            133 * ((val <= threshold) & (labels["val"] == 1)).sum()
            + 5 * ((val > threshold) & (labels["val"] == 0)).sum()
        )
        / len(val)
    )


def test_stage_output_is_the_same_bytes_run_after_run(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3)
    outputs = [
        "metrics/test/baseline.json",
        "metrics/differences.json",
        "models/rules/weighted.json",
        "plots/roc.png",
        "plots/roc.csv",
    ]
    evaluate.main()
    first = {path: (project / path).read_bytes() for path in outputs}
    evaluate.main()
    assert {path: (project / path).read_bytes() for path in outputs} == first


BAD_PARAMS = [
    ("bootstrap_resamples", 10),
    ("bootstrap_resamples", "many"),
    ("seed", -1),
    ("threshold", 1.5),
    ("cost_false_negative", -1),
    ("cost_false_negative", 0),
    ("cost_false_negative", "Amount"),  # the cost column is data.cost now
    ("cost_false_positive", "cheap"),
    ("cost_false_positive", 0),
    ("false_positive_rate", 0),
    ("false_positive_rate", 1.2),
]


@pytest.mark.parametrize("key, value", BAD_PARAMS)
def test_bad_params_give_one_line_and_write_nothing(project, key, value):
    set_params(project / "params.yaml", **{f"evaluate__{key}": value})
    write_predictions(2)
    result = subprocess.run(
        [sys.executable, "-m", "stages.evaluate"], capture_output=True, text=True, env=python_environment()
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: params.yaml: param 'evaluate.{key}' must be {evaluate_description(key)}, got {value!r}"
    ]
    assert not (project / "metrics").exists() and not (project / "plots").exists()
    assert not (project / RULES_DIR).exists()


def evaluate_description(key):
    return {
        "bootstrap_resamples": "an integer >= 100",
        "seed": "an integer >= 0",
        "threshold": "a number between 0 and 1",
        "cost_false_negative": "a number > 0, or null for the mean of data.cost over the training split's positives",
        "cost_false_positive": "a number > 0",
        "false_positive_rate": "a number between 0 and 1",
    }[key]


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_cost_column_of_other_rows_than_the_predictions_is_refused(project, split):
    labels, _, _ = write_predictions(2)
    write_costs({"train": np.load(SCALED_DIR / "train_labels.npy")} | labels | {split: labels[split][:-1]}, 0)
    message = rf"^data/costs/{split}.npy: 1999 rows, data/predictions/baseline.parquet's {split} split 2000; rerun"
    with pytest.raises(evaluate.StageError, match=message):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_a_number_cost_false_negative_is_the_flat_cost_beside_a_cost_column(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100, evaluate__cost_false_negative=133)
    labels, probabilities, amounts = write_predictions(2)
    evaluate.main()
    result = read_metrics(project, "baseline")
    val = calibrated_ensemble("baseline", probabilities["baseline", "val"])
    assert result["chosen"]["threshold"]["ensemble"] == pytest.approx(cost_threshold(labels["val"], val, 133, 5))
    k = result["value_rule"]["k"]["ensemble"]  # the value rule still costs each row its own Amount
    assert k == pytest.approx(costs.chosen_k(labels["val"], val, amounts["val"], 5), rel=1e-9)


def test_a_null_cost_false_negative_needs_a_cost_column(project):
    write_predictions(2, column=None)  # evaluate.cost_false_negative is null in params.yaml
    message = r"param 'evaluate.cost_false_negative' is null, which means the mean of data.cost, but data.cost is null"
    with pytest.raises(evaluate.StageError, match=message):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_missing_costs_ask_for_scale(project):
    write_predictions(2)
    shutil.rmtree(COSTS_DIR)
    with pytest.raises(evaluate.StageError, match=r"^data/costs: cannot read .*; run 'dvc repro scale'$"):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_validation_without_positives_is_a_clear_error(project):
    write_predictions(2, val_positives=False)
    with pytest.raises(evaluate.StageError, match="baseline.parquet: validation split: no positives among them"):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_predictions_without_members_are_refused(project):
    write_predictions(2)
    frame = pd.DataFrame({"split": ["val", "test"], "label": [0, 1], "probability": [0.1, 0.9]})  # an ensemble alone
    write_parquet(pa.Table.from_pandas(frame), PREDICTIONS_DIR / "weighted.parquet")
    with pytest.raises(evaluate.StageError, match="no member_<i> columns; run 'dvc repro train@weighted'"):
        evaluate.main()


def verdicts(**pairs) -> dict:
    """Hand-made metrics/differences.json entries: {'a-b': verdict on the value rule's cost}."""
    return {pair.replace("_", "-"): {"value_rule": {"cost_per_1000": {"verdict": v}}} for pair, v in pairs.items()}


@pytest.mark.parametrize(
    ("differences", "costs", "recommended"),
    [
        # nothing distinguishable: the least validation cost
        (verdicts(a_b="not distinguishable", a_c="not distinguishable", b_c="not distinguishable"), (30, 20, 25), "b"),
        # b is cheapest on validation, but c beats it on test: of the others, the cheaper
        (verdicts(a_b="not distinguishable", a_c="not distinguishable", b_c="c better"), (30, 20, 25), "c"),
        # a beats b (first named), b beats c: a, whatever its validation cost
        (verdicts(a_b="a better", a_c="not distinguishable", b_c="b better"), (30, 20, 25), "a"),
        # a tie on validation: the first evaluated
        (verdicts(a_b="not distinguishable", a_c="not distinguishable", b_c="not distinguishable"), (20, 20, 25), "a"),
    ],
)
def test_the_recommendation_is_the_least_validation_cost_among_those_no_other_beats_on_test(
    differences, costs, recommended
):
    assert summary.recommend(differences, dict(zip("abc", costs, strict=True))) == recommended


def test_the_recommendation_without_a_cost_column_follows_the_flat_cost():
    differences = {"a-b": {"chosen": {"cost_per_1000": {"verdict": "b better"}}}}
    assert summary.recommend(differences, {"a": 10, "b": 20}) == "b"


def test_the_committed_default_export_is_the_committed_recommendation(monkeypatch):
    """params.yaml's export.strategy follows the committed results: the strategy metrics/recommended.json names,
    which is recommend's choice from the committed differences and validation costs."""
    monkeypatch.chdir(REPO)
    committed = json.loads(Path(summary.RECOMMENDED_FILE).read_text())["strategy"]
    assert load_params("export")["strategy"] == committed
    costs = {s.name: json.loads((RULES_DIR / f"{s.name}.json").read_text()) for s in evaluated()}
    costs = {name: rule["validation_cost_per_1000"] for name, rule in costs.items()}
    assert summary.recommend(json.loads(Path("metrics/differences.json").read_text()), costs) == committed


def test_a_cycle_of_verdicts_leaves_the_least_validation_cost():
    differences = verdicts(a_b="a better", a_c="c better", b_c="b better")  # every strategy beaten by another
    assert summary.recommend(differences, {"a": 30, "b": 20, "c": 25}) == "b"
