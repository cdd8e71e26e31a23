import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import python_environment, set_params
from sklearn import metrics
from test_stats import assert_close

from fraudflow import summary
from fraudflow.common import EVALUATED, PREDICTIONS_DIR, SCALED_DIR, write_parquet
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


def write_predictions(members: int, rows: int = 2000, seed: int = 0, test_labels=None, val_frauds: bool = True):
    """Validation and test predictions of every strategy (logistic: one member), training labels at 1 % frauds.

    Strategy k is noisier than strategy k - 1; weighted and resampled predict at balanced odds, as trained.
    """
    rng = np.random.default_rng(seed)
    SCALED_DIR.mkdir(parents=True, exist_ok=True)
    np.save(SCALED_DIR / "train_labels.npy", (np.arange(10_000) < 100).astype(np.int8))
    labels = {split: (rng.random(rows) < 0.05).astype(int) for split in ("val", "test")}
    if not val_frauds:
        labels["val"][:] = 0
    if test_labels is not None:
        labels["test"] = test_labels
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
    return labels, probabilities


def read_metrics(project, strategy):
    return json.loads((project / "metrics" / "test" / f"{strategy}.json").read_text())


@pytest.mark.parametrize("members", [1, 4])
def test_stage_writes_intervals_operating_points_differences_and_figures(project, members):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=200)
    labels, probabilities = write_predictions(members)
    evaluate.main()
    baseline = read_metrics(project, "baseline")
    assert set(baseline) == {
        "average_precision",
        "roc_auc",
        "recall_at_fpr",
        "log_loss",
        "brier",
        "chosen",
        "tutorial",
        "uncalibrated",
    }
    assert set(baseline["chosen"]) == {"threshold", "tp", "fp", "tn", "fn", "precision", "recall", "cost_per_1000"}
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
    assert first["verdict"] == "baseline better"  # the least noisy against the noisiest

    confusion = pd.read_csv(project / "plots" / "confusion" / "weighted.csv")
    assert confusion["count"].sum() == len(labels["test"]) and len(confusion) == 4
    roc = pd.read_csv(project / "plots" / "roc" / "logistic.csv")
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0, 1)
    calibration = pd.read_csv(project / "plots" / "calibration" / "resampled.csv")
    assert calibration["rows"].sum() == len(labels["test"])
    for image in ("roc.png", "prc.png", "confusion.png", "calibration.png"):
        assert (project / "plots" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_read_in_small_blocks_writes_what_it_writes_in_one_block(project, monkeypatch):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3, rows=700)
    written = {}
    for block in (7, 700):
        monkeypatch.setattr(evaluate, "BLOCK_ROWS", block)
        evaluate.main()
        written[block] = {path: path.read_text() for path in sorted((project / "metrics").rglob("*.json"))}
        written[block] |= {path: path.read_text() for path in sorted((project / "plots").rglob("*.csv"))}
    # per strategy its test metrics and four curves; the differences and the summary
    assert written[7].keys() == written[700].keys() and len(written[7]) == 5 * len(EVALUATED) + 2
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
    assert printed.count("| logistic |") == 3 and "one model" in printed
    assert "| baseline − weighted |" in printed


def test_summary_holds_each_strategys_headline_numbers_rounded_and_the_verdicts(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3)
    evaluate.main()
    headline = json.loads((project / summary.SUMMARY_FILE).read_text())
    differences = json.loads((project / "metrics" / "differences.json").read_text())
    assert list(headline) == [*EVALUATED, *differences]
    for strategy in EVALUATED:
        detail = read_metrics(project, strategy)
        ap, cost = detail["average_precision"], detail["chosen"]["cost_per_1000"]
        decimals = summary.cost_decimals(cost["ensemble_upper"] - cost["ensemble_lower"])
        assert headline[strategy] == {
            "ap": f"{ap['ensemble']:.3f} [{ap['ensemble_lower']:.3f}, {ap['ensemble_upper']:.3f}]",
            "roc_auc": round(detail["roc_auc"]["ensemble"], 3),
            "recall_at_fpr": round(detail["recall_at_fpr"]["ensemble"], 3),
            "cost": f"{cost['ensemble']:.{decimals}f} [{cost['ensemble_lower']:.{decimals}f}, "
            f"{cost['ensemble_upper']:.{decimals}f}]",
            "precision": round(detail["chosen"]["precision"]["ensemble"], 3),
            "recall": round(detail["chosen"]["recall"]["ensemble"], 3),
        }
    for pair, difference in differences.items():
        assert headline[pair] == {
            "ap": difference["average_precision"]["verdict"],
            "cost": difference["chosen"]["cost_per_1000"]["verdict"],
        }


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
    before = {s: read_metrics(project, s)["chosen"]["threshold"] for s in EVALUATED}
    flipped = np.random.default_rng(9).permutation((np.arange(2000) < 300).astype(int))  # other test labels only
    write_predictions(3, seed=2, test_labels=flipped)
    evaluate.main()
    after = {s: read_metrics(project, s) for s in EVALUATED}
    assert {s: m["chosen"]["threshold"] for s, m in after.items()} == before
    assert after["baseline"]["chosen"]["tp"]["ensemble"] + after["baseline"]["chosen"]["fn"]["ensemble"] == 300


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
    ("cost_false_positive", "cheap"),
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
        "cost_false_negative": "a number >= 0",
        "cost_false_positive": "a number >= 0",
        "false_positive_rate": "a number between 0 and 1",
    }[key]


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
