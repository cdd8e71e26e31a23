import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import python_environment, set_params
from sklearn import metrics
from test_stats import assert_close

from fraudflow import costs, predictions, summary
from fraudflow.common import EVALUATED, PREDICTIONS_DIR, SCALED_DIR, SPLIT_DIR, write_parquet
from fraudflow.operating import cost_threshold, prior_shift, shift_probabilities
from fraudflow.schema import with_roles
from stages import evaluate, report

SUMMARY_KEYS = {"ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper"}


def test_thin_keeps_endpoints_and_caps_points():
    curve = pd.DataFrame({"x": np.arange(1000)})
    thinned = evaluate.thin(curve, 300)
    assert len(thinned) == 300
    assert thinned["x"].iloc[0] == 0 and thinned["x"].iloc[-1] == 999


def test_pr_points_keep_every_recall_level():
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.01).astype(int)
    probabilities = np.clip(rng.normal(0.2 + 0.5 * labels, 0.15), 0, 1)
    points = evaluate.pr_points(labels, probabilities, max_points=10_000)
    assert len(points) <= 2 * (labels.sum() + 1)
    _, full_recall, _ = metrics.precision_recall_curve(labels, probabilities)
    assert set(points["recall"]) == set(full_recall)


def write_split(labels: dict, seed: int, test_amounts=None) -> dict:
    """data/split/<split>.parquet as split writes them, with the cost column Amount (frauds larger, lognormal) and
    the label Class; returns the amounts."""
    rng = np.random.default_rng([seed, 1])
    amounts = {split: rng.lognormal(3 + y, 1.5).round(2) for split, y in labels.items()}
    if test_amounts is not None:
        amounts["test"] = test_amounts
    SPLIT_DIR.mkdir(parents=True, exist_ok=True)
    for split, y in labels.items():
        table = pa.table({"Amount": amounts[split], "Class": y.astype(np.int8)})
        roles = {"label": "Class", "time": None, "ids": [], "numeric": [], "categorical": [], "cost": "Amount"}
        write_parquet(table.cast(with_roles(table.schema, roles)), SPLIT_DIR / f"{split}.parquet")
    return amounts


def write_predictions(
    members: int, rows: int = 2000, seed: int = 0, test_labels=None, val_frauds: bool = True, test_amounts=None
):
    """Validation and test predictions of every strategy (logistic: one member), training labels at 1 % frauds,
    and the splits' Amount (write_split). Returns the labels, probabilities and amounts.

    Strategy k is noisier than strategy k - 1; weighted and resampled predict at balanced odds, as trained.
    """
    rng = np.random.default_rng(seed)
    SCALED_DIR.mkdir(parents=True, exist_ok=True)
    train_labels = (np.arange(10_000) < 100).astype(np.int8)
    np.save(SCALED_DIR / "train_labels.npy", train_labels)
    labels = {split: (rng.random(rows) < 0.05).astype(int) for split in ("val", "test")}
    if not val_frauds:
        labels["val"][:] = 0
    if test_labels is not None:
        labels["test"] = test_labels
    amounts = write_split({"train": train_labels} | labels, seed, test_amounts)
    probabilities = {}
    for noise, strategy in enumerate(EVALUATED, start=1):
        count = 1 if strategy == "logistic" else members
        inflation = np.log(99) if strategy in ("weighted", "resampled") else 0.0
        frames = []
        for split, y in labels.items():
            logits = rng.normal(3 * y - 4.5 + inflation, noise, size=(count, rows)).T
            p = 1 / (1 + np.exp(-logits))
            frame = pd.DataFrame({"split": split, "label": y, "probability": p.mean(axis=1)})
            for member in range(count):
                frame[f"member_{member}"] = p[:, member]
            frames.append(frame)
            probabilities[strategy, split] = p
        write_parquet(pa.Table.from_pandas(pd.concat(frames)), PREDICTIONS_DIR / f"{strategy}.parquet")
    return labels, probabilities, amounts


def read_metrics(project, strategy):
    return json.loads((project / "metrics" / "test" / f"{strategy}.json").read_text())


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
        "amount",
        "tutorial",
        "uncalibrated",
    }
    assert set(baseline["chosen"]) == {"threshold", "tp", "fp", "tn", "fn", "precision", "recall", "cost_per_1000"}
    extra = {"savings", "caught", "k", "threshold_cost_per_1000", "saved_per_1000"}
    assert set(baseline["amount"]) == {*baseline["chosen"], *extra} - {"threshold"}
    assert set(baseline["tutorial"]) == {"tp", "fp", "tn", "fn", "precision", "recall"}
    assert set(baseline["uncalibrated"]) == {"log_loss", "brier"}
    assert set(baseline["roc_auc"]) == SUMMARY_KEYS and set(baseline["chosen"]["recall"]) == SUMMARY_KEYS
    ensemble = probabilities["baseline", "test"].mean(axis=1)
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

    # The weighted strategy's probabilities are corrected to the training split's 1 % frauds before scoring:
    weighted = read_metrics(project, "weighted")
    raw = probabilities["weighted", "test"]
    assert weighted["uncalibrated"]["brier"]["ensemble"] > 4 * weighted["brier"]["ensemble"]
    assert weighted["tutorial"]["fp"]["ensemble"] == int(((raw.mean(axis=1) > 0.5) & (labels["test"] == 0)).sum())

    differences = json.loads((project / "metrics" / "differences.json").read_text())
    assert len(differences) == 10 and "baseline-logistic" in differences and "logistic-gbdt" in differences
    first = differences["baseline-logistic"]["roc_auc"]
    assert set(first) == SUMMARY_KEYS | {"verdict"}
    assert set(differences["baseline-logistic"]["amount"]) == {"cost_per_1000", "savings"}
    assert first["verdict"] == "baseline better"  # the least noisy against the noisiest

    confusion = pd.read_csv(project / "plots" / "confusion" / "weighted.csv")
    assert confusion["count"].sum() == len(labels["test"]) and len(confusion) == 4
    roc = pd.read_csv(project / "plots" / "roc" / "logistic.csv")
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0, 1)
    calibration = pd.read_csv(project / "plots" / "calibration" / "resampled.csv")
    assert calibration["rows"].sum() == len(labels["test"])
    cost_k = pd.read_csv(project / "plots" / "costk" / "gbdt.csv")
    assert list(cost_k.columns) == ["k", "cost_per_1000", "chosen"] and cost_k["k"].is_monotonic_increasing
    assert cost_k.loc[cost_k["chosen"] == 1, "k"].tolist() == [read_metrics(project, "gbdt")["amount"]["k"]["ensemble"]]
    for image in ("roc.png", "prc.png", "confusion.png", "calibration.png"):
        assert (project / "plots" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_read_in_small_blocks_writes_what_it_writes_in_one_block(project, monkeypatch):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, rows=700)
    written = {}
    for block in (7, 700):
        monkeypatch.setattr(predictions, "BLOCK_ROWS", block)
        evaluate.main()
        written[block] = {path: path.read_text() for path in sorted((project / "metrics").rglob("*.json"))}
        written[block] |= {path: path.read_text() for path in sorted((project / "plots").rglob("*.csv"))}
    # per strategy its test metrics and five curves; the differences and the summary
    assert written[7].keys() == written[700].keys() and len(written[7]) == 6 * len(EVALUATED) + 2
    for path, text in written[700].items():
        if path.suffix == ".json":  # the same sums, added in another order: equal to their last digits
            assert_close(json.loads(written[7][path]), json.loads(text))
        else:
            assert written[7][path] == text


def test_a_negative_sample_is_corrected_for_the_baseline_logistic_regression_and_the_trees(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(2)
    evaluate.main()
    whole = {s: read_metrics(project, s) for s in EVALUATED}
    set_params(project / "params.yaml", train__negative_rate=0.1)
    evaluate.main()
    sampled = {s: read_metrics(project, s) for s in EVALUATED}
    for strategy in ("baseline", "logistic", "gbdt"):  # odds divided by 10: fewer flagged at the same threshold
        assert sampled[strategy]["brier"]["ensemble"] != whole[strategy]["brier"]["ensemble"]
        # Each member ranks the rows as before (the ensemble averages shifted probabilities: it may not)
        assert sampled[strategy]["roc_auc"]["mean"] == pytest.approx(whole[strategy]["roc_auc"]["mean"], rel=1e-9)
    for strategy in ("weighted", "resampled"):  # trained at 1:1 either way
        assert sampled[strategy] == whole[strategy]


def test_report_prints_the_readme_tables_from_the_metrics(project, capsys):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3)
    evaluate.main()
    capsys.readouterr()
    report.main()
    printed = capsys.readouterr().out
    baseline = read_metrics(project, "baseline")["chosen"]["cost_per_1000"]
    row = f"| baseline | {read_metrics(project, 'baseline')['chosen']['threshold']['ensemble']:.3f} | "
    assert (
        row + f"{baseline['ensemble']:.1f} [{baseline['ensemble_lower']:.1f}, {baseline['ensemble_upper']:.1f}]"
        in printed
    )
    amount = read_metrics(project, "gbdt")["amount"]
    savings = amount["savings"]
    row = f"| gbdt | {amount['k']['ensemble']:.3g} | "
    assert row in printed and f"| {savings['ensemble']:.3f} [{savings['ensemble_lower']:.3f}, " in printed
    assert printed.count("| logistic |") == 4 and "one model" in printed
    assert printed.count("| baseline − weighted |") == 2


@pytest.mark.parametrize("cost", ["Amount", 133])
def test_summary_holds_each_strategys_headline_numbers_rounded_and_the_verdicts(project, cost):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100, evaluate__cost_false_negative=cost)
    write_predictions(3)
    evaluate.main()
    headline = json.loads((project / summary.SUMMARY_FILE).read_text())
    differences = json.loads((project / "metrics" / "differences.json").read_text())
    assert list(headline) == [*EVALUATED, *differences]
    for strategy in EVALUATED:
        detail = read_metrics(project, strategy)
        amount = {}
        if cost == "Amount":  # a cost column adds the value rule's cost and value caught
            amount = {
                "amount_cost": interval(detail["amount"]["cost_per_1000"]),
                "caught": interval(detail["amount"]["caught"], 3),
            }
        assert headline[strategy] == {
            "ap": interval(detail["average_precision"], 3),
            "roc_auc": round(detail["roc_auc"]["ensemble"], 3),
            "recall_at_fpr": round(detail["recall_at_fpr"]["ensemble"], 3),
            "cost": interval(detail["chosen"]["cost_per_1000"]),
            "precision": round(detail["chosen"]["precision"]["ensemble"], 3),
            "recall": round(detail["chosen"]["recall"]["ensemble"], 3),
            **amount,
        }
    for pair, difference in differences.items():
        verdicts = {"amount_cost": difference["amount"]["cost_per_1000"]["verdict"]} if cost == "Amount" else {}
        assert headline[pair] == {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference["chosen"]["cost_per_1000"]["verdict"],
            **verdicts,
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
    results = {s: read_metrics(project, s) for s in EVALUATED}
    differences = json.loads((project / "metrics" / "differences.json").read_text())

    def nudged(data, factor):  # every number moved in its last bits, as another processor moves them
        if isinstance(data, dict):
            return {key: nudged(value, factor) for key, value in data.items()}
        return data * factor if isinstance(data, float) else data

    headline = summary.summarise(results, differences)
    assert summary.summarise(nudged(results, 1 + 1e-12), differences) == headline
    assert summary.summarise(nudged(results, 1 - 1e-12), differences) == headline
    assert summary.summarise(nudged(results, 1.01), differences) != headline  # a real change does reach it


@pytest.mark.parametrize(("width", "decimals"), [(37.1, 0), (99.9, 0), (100.0, 0), (3.7, 1), (0.37, 2), (0.0, 0)])
def test_cost_decimals_keep_two_significant_digits_of_the_interval(width, decimals):
    assert summary.cost_decimals(width) == decimals


def test_thresholds_are_chosen_on_validation_without_reading_test_labels(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, seed=2)
    evaluate.main()
    before = {s: chosen_on_validation(read_metrics(project, s)) for s in EVALUATED}
    flipped = np.random.default_rng(9).permutation((np.arange(2000) < 300).astype(int))  # other test labels only
    write_predictions(3, seed=2, test_labels=flipped, test_amounts=np.full(2000, 1e4))  # and test amounts
    evaluate.main()
    after = {s: read_metrics(project, s) for s in EVALUATED}
    assert {s: chosen_on_validation(m) for s, m in after.items()} == before
    assert after["baseline"]["chosen"]["tp"]["ensemble"] + after["baseline"]["chosen"]["fn"]["ensemble"] == 300


def chosen_on_validation(result: dict) -> tuple:
    return result["chosen"]["threshold"], result["amount"]["k"]


def calibrated_ensemble(strategy: str, probabilities: np.ndarray) -> np.ndarray:
    """The ensemble of write_predictions' members as evaluate scores it: weighted and resampled prior-corrected
    to the training split's 1 % frauds."""
    shift = prior_shift(strategy, (np.arange(10_000) < 100).astype(np.int8), 1.0)
    return shift_probabilities(probabilities, shift).mean(axis=1)


def test_amount_rule_is_scored_on_test_as_a_direct_computation_at_the_k_least_costly_on_validation(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=200)
    labels, probabilities, amounts = write_predictions(3, seed=4)
    evaluate.main()
    flat = amounts["train"][:100].mean()  # the training split's positives' mean Amount
    for strategy in EVALUATED:
        result = read_metrics(project, strategy)
        k = result["amount"]["k"]["ensemble"]
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
        amount = result["amount"]
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
        assert {key: amount[key]["ensemble"] for key in expected} == pytest.approx(expected, rel=1e-9)
        for key in ("cost_per_1000", "savings", "caught"):
            assert amount[key]["ensemble_lower"] < amount[key]["ensemble"] < amount[key]["ensemble_upper"]
            if strategy != "logistic":  # one model: no interval over members
                assert amount[key]["mean_lower"] < amount[key]["mean"] < amount[key]["mean_upper"]


def test_a_number_cost_has_no_amount_results_and_draws_its_threshold_as_a_k(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100, evaluate__cost_false_negative=133)
    labels, probabilities, _ = write_predictions(2)
    shutil.rmtree(SPLIT_DIR)  # a number needs no cost column
    evaluate.main()
    result = read_metrics(project, "baseline")
    assert "amount" not in result
    val = calibrated_ensemble("baseline", probabilities["baseline", "val"])
    assert result["chosen"]["threshold"]["ensemble"] == pytest.approx(cost_threshold(labels["val"], val, 133, 5))
    cost_k = pd.read_csv(project / "plots" / "costk" / "baseline.csv")  # the flat rule p / (1 - p) * 133 > k * 5
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
    outputs = ["metrics/test/baseline.json", "metrics/differences.json", "plots/roc.png", "plots/roc/weighted.csv"]
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


def evaluate_description(key):
    return {
        "bootstrap_resamples": "an integer >= 100",
        "seed": "an integer >= 0",
        "threshold": "a number between 0 and 1",
        "cost_false_negative": "a number > 0 or the name of a numeric column",
        "cost_false_positive": "a number > 0",
        "false_positive_rate": "a number between 0 and 1",
    }[key]


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_cost_column_of_other_rows_than_the_predictions_is_refused(project, split):
    labels, _, _ = write_predictions(2)
    write_split({"train": np.load(SCALED_DIR / "train_labels.npy")} | labels | {split: labels[split][:-1]}, 0)
    with pytest.raises(evaluate.StageError, match=rf"^data/split/{split}.parquet: other rows than data/predictions/"):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_validation_without_frauds_is_a_clear_error(project):
    write_predictions(2, val_frauds=False)
    with pytest.raises(evaluate.StageError, match="baseline.parquet: validation split: no frauds among them"):
        evaluate.main()
    assert not (project / "metrics").exists()


def test_predictions_without_members_are_refused(project):
    write_predictions(2)
    frame = pd.DataFrame({"split": ["val", "test"], "label": [0, 1], "probability": [0.1, 0.9]})
    write_parquet(pa.Table.from_pandas(frame), PREDICTIONS_DIR / "weighted.parquet")
    with pytest.raises(evaluate.StageError, match="no member_<i> columns; run 'dvc repro train_weighted'"):
        evaluate.main()
