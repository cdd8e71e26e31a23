import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import make_creditcard, python_environment, set_cell

from fraudflow import monitor
from fraudflow.common import StageError
from fraudflow.monitoring import Z95, LabelFree, category_counts, number_counts, psi
from stages import score


def test_number_counts_bins_right_closed_then_missing():
    values = np.array([-5.0, 0.0, 0.5, 1.0, 1.0001, 7.0, np.inf, -np.inf, np.nan, np.nan])
    np.testing.assert_array_equal(number_counts(values, [0.0, 1.0]), [3, 2, 3, 2])
    assert number_counts(np.array([]), [0.0]).tolist() == [0, 0, 0]


def test_category_counts_levels_then_other_then_missing():
    values = np.array(["b", "a", "z", None, np.nan, "(missing)", "b", "y"], dtype=object)
    assert category_counts(values, ["a", "b"]).tolist() == [1, 2, 2, 3]
    assert category_counts(np.array([], dtype=object), ["a"]).tolist() == [0, 0, 0]


def test_psi():
    assert psi([0.25, 0.25, 0.5, 0.0], np.array([1, 1, 2, 0])) == 0.0
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5)
    assert psi([0.5, 0.5], np.array([3, 1])) == pytest.approx(0.25 * np.log(1.5) + 0.25 * np.log(2))
    assert psi([0.5, 0.5], np.array([3, 1])) == psi([0.5, 0.5], np.array([300, 100]))
    empty = psi([1.0, 0.0], np.array([0, 5]))  # every row in a bin that training left empty
    assert np.isfinite(empty) and empty > 10


def flat(data: dict, prefix: str = "") -> dict:
    """A nested dict as one level, keys joined by '.' (pytest.approx compares one level)."""
    items = {}
    for key, value in data.items():
        items |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return items


def random_rule(seed: int, rule: str, rows: int = 4000):
    """A fraud-like table's probabilities, flags, each row's cost if it is a missed positive and the cost of a false
    positive, under the value rule (amounts) or a threshold with flat costs; and labels drawn from the
    probabilities (which are then calibrated)."""
    rng = np.random.default_rng(seed)
    probability = rng.beta(0.3, 10, rows)
    positive = rng.random(rows) < probability
    if rule == "value":
        amount = rng.lognormal(3, 1.5, rows).round(2)
        return probability, probability / (1 - probability) * amount > 4 * 5.0, amount, 5.0, positive
    return probability, probability > 0.05, 100.0, 50.0, positive


def realised(positive: np.ndarray, flagged: np.ndarray, missed_cost, cost_fp: float) -> dict:
    """The rule's precision, caught share and cost per 1,000 rows given the labels (rows along the last axis)."""
    value = positive * missed_cost
    missed, false_positives = (value * ~flagged).sum(-1), (flagged & ~positive).sum(-1)
    return {
        "precision": (positive & flagged).sum(-1) / flagged.sum(),
        "caught": (value * flagged).sum(-1) / value.sum(-1),
        "cost_per_1000": 1000 / flagged.size * (missed + cost_fp * false_positives),
    }


def estimated(probability, flagged, missed_cost, cost_fp: float, batches: int = 1) -> dict:
    label_free = LabelFree()
    for part in np.array_split(np.arange(len(probability)), batches):
        label_free.add(probability[part], flagged[part], np.broadcast_to(missed_cost, probability.shape)[part])
    return label_free.result(cost_fp)


@pytest.mark.parametrize("rule", ["value", "flat"])
def test_label_free_intervals_cover_the_realised_values_in_about_95_percent_of_seeds(rule):
    covered = {"precision": [], "caught": [], "cost_per_1000": []}
    for seed in range(200):
        probability, flagged, missed_cost, cost_fp, positive = random_rule(seed, rule)
        estimates = estimated(probability, flagged, missed_cost, cost_fp, batches=3)
        for name, truth in realised(positive, flagged, missed_cost, cost_fp).items():
            covered[name].append(estimates[name]["lower"] <= truth <= estimates[name]["upper"])
    for name, hits in covered.items():
        assert 0.88 <= np.mean(hits) <= 0.99, (name, np.mean(hits))


@pytest.mark.parametrize("rule", ["value", "flat"])
def test_label_free_estimates_are_the_mean_and_spread_of_the_realised_values(rule):
    """Probabilities, costs and flags fixed, labels drawn from the probabilities again and again: the realised
    values average to the estimate, and their standard deviation is the interval's half-width / 1.96 (within what
    the delta method's approximation of the caught share, a ratio, is off by on heavy-tailed amounts)."""
    probability, flagged, missed_cost, cost_fp, _ = random_rule(0, rule)
    estimates = estimated(probability, flagged, missed_cost, cost_fp)
    draws = np.random.default_rng(1).random((2000, len(probability))) < probability
    for name, values in realised(draws, flagged, missed_cost, cost_fp).items():
        entry = estimates[name]
        spread = (entry["upper"] - entry["lower"]) / 2 / Z95  # no interval here reaches a bound
        assert values.std() == pytest.approx(spread, rel=0.15), name
        assert values.mean() == pytest.approx(entry["estimate"], abs=0.25 * spread), name


def test_label_free_estimates_are_the_expected_values_whatever_the_batches():
    probability, flagged, amount, cost_fp, _ = random_rule(0, "value")
    result = estimated(probability, flagged, amount, cost_fp)
    assert result["rows"] == 4000 and result["flagged"] == flagged.sum()
    assert result["expected_positives"] == pytest.approx(probability.sum())
    assert result["precision"]["estimate"] == pytest.approx(probability[flagged].mean())
    value = probability * amount
    assert result["caught"]["estimate"] == pytest.approx(value[flagged].sum() / value.sum())
    cost = value[~flagged].sum() + cost_fp * (1 - probability[flagged]).sum()
    assert result["cost_per_1000"]["estimate"] == pytest.approx(cost / 4)
    assert flat(estimated(probability, flagged, amount, cost_fp, batches=13)) == pytest.approx(flat(result), rel=1e-12)


def test_label_free_undefined_values_are_none():
    nothing_flagged = LabelFree()
    nothing_flagged.add(np.array([0.1, 0.2]), np.array([False, False]), 10.0)  # a flat cost
    result = nothing_flagged.result(5.0)
    assert result["precision"] == {"estimate": None, "lower": None, "upper": None}
    assert result["caught"]["estimate"] == 0.0
    assert result["cost_per_1000"]["estimate"] == pytest.approx(1000 / 2 * (0.1 + 0.2) * 10)
    empty = LabelFree().result(5.0)
    assert empty["rows"] == 0 and empty["caught"]["estimate"] is None and empty["cost_per_1000"]["upper"] is None


def scored(frame: pd.DataFrame, folder) -> pd.DataFrame:
    """The rows as `stages.score` writes them: every column, then the exported model's probability and flagged."""
    source, destination = folder / "rows.csv", folder / "scores.csv"
    frame.to_csv(source, index=False)
    score.score(source, destination, score.load_card())
    return pd.read_csv(destination)


def new_rows(rows: int = 2000) -> pd.DataFrame:
    """New transactions drawn as the training rows were (at their positive rate), with an id."""
    frame = make_creditcard(rows=rows, frauds=rows // 50, seed=5)
    frame.insert(0, "id", [f"tx-{i:05d}" for i in range(rows)])
    return frame


def run_monitor(cwd, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fraudflow.monitor", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=python_environment(), capture_output=True, text=True)


def test_a_column_shifted_on_purpose_drifts_most_and_exits_3(exported, tmp_path):
    rows = new_rows()
    steady, shifted = tmp_path / "steady.csv", tmp_path / "shifted.parquet"
    scored(rows, tmp_path).to_csv(steady, index=False)
    scored(rows.assign(V14=rows["V14"] + 3 * rows["V14"].std()), tmp_path).to_parquet(shifted, index=False)

    result = run_monitor(exported, steady, tmp_path / "steady.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "steady.json").read_text())
    assert report["rows"] == 2000 and report["drifted"] == []
    assert max(report["drift"]["columns"].values()) < 0.1 and report["drift"]["scores"] < 0.1
    assert result.stdout.splitlines()[-1] == "no drift: no PSI above 0.25 beyond chance"

    result = run_monitor(exported, shifted, tmp_path / "shifted.json")
    assert result.returncode == monitor.DRIFT_STATUS, result.stderr
    report = json.loads((tmp_path / "shifted.json").read_text())
    drift = report["drift"]["columns"]
    assert report["drifted"][0] == "V14" and drift["V14"] > 0.25
    assert drift["V14"] == max(drift.values())
    summary = result.stdout.splitlines()
    assert summary[2].split() == ["V14", f"{drift['V14']:.3f}", "*"]  # first, marked
    assert summary[-1].startswith("drift: V14")
    assert len(summary) <= 24


def test_a_small_file_is_not_called_drifted_for_what_chance_gives_its_few_rows(exported, tmp_path):
    """40 unchanged rows: their PSIs are large by chance alone, under the chi-squared level for 40 rows; the same
    rows shifted by 3 standard deviations in V14 are still flagged."""
    rows = new_rows(40)
    steady, shifted = tmp_path / "small.csv", tmp_path / "small_shifted.csv"
    scored(rows, tmp_path).to_csv(steady, index=False)
    scored(rows.assign(V14=rows["V14"] + 3 * rows["V14"].std()), tmp_path).to_csv(shifted, index=False)
    result = run_monitor(exported, steady, tmp_path / "small.json")
    report = json.loads((tmp_path / "small.json").read_text())
    assert max(report["drift"]["columns"].values()) > 0.25  # by chance, in 40 rows
    assert result.returncode == 0 and report["drifted"] == [], result.stdout
    assert all(report["drift"]["columns"][c] <= report["chance"][c] for c in report["drift"]["columns"])
    assert "arises by chance" in result.stdout
    result = run_monitor(exported, shifted, tmp_path / "small_shifted.json")
    assert result.returncode == monitor.DRIFT_STATUS, result.stdout
    assert json.loads((tmp_path / "small_shifted.json").read_text())["drifted"][0] == "V14"


def test_the_estimates_are_sums_of_the_scored_probabilities_under_either_rule(exported, tmp_path):
    frame = scored(new_rows(500), tmp_path)
    frame.to_csv(tmp_path / "scores.csv", index=False)
    card = monitor.load_card()
    estimates, flagged = monitor.make_report(tmp_path / "scores.csv", card, 0.25)["estimates"], frame["flagged"] == 1
    assert estimates["rows"] == 500 and estimates["flagged"] == flagged.sum() > 0
    assert estimates["precision"]["estimate"] == pytest.approx(frame.loc[flagged, "probability"].mean())
    value = frame["probability"] * frame["Amount"]  # the exported rule's cost column
    assert estimates["caught"]["estimate"] == pytest.approx(value[flagged].sum() / value.sum())
    flat_costs = {key: value for key, value in card.items() if key not in ("cost_column", "k")}
    flat_costs |= {"threshold": 0.5, "cost_false_negative": 100.0}  # flagged stays the file's
    estimates = monitor.make_report(tmp_path / "scores.csv", flat_costs, 0.25)["estimates"]
    probability = frame["probability"]
    assert estimates["caught"]["estimate"] == pytest.approx(probability[flagged].sum() / probability.sum())
    missed, false_positives = probability[~flagged].sum() * 100, (1 - probability[flagged]).sum() * 5
    assert estimates["cost_per_1000"]["estimate"] == pytest.approx((missed + false_positives) * 2)


def test_csv_and_a_parquet_folder_give_the_same_report(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "64")
    frame = scored(new_rows(300), tmp_path)
    frame.to_csv(tmp_path / "scores.csv.gz", index=False)
    (tmp_path / "folder").mkdir()
    frame.iloc[:100].to_parquet(tmp_path / "folder" / "a.parquet", index=False)
    frame.iloc[100:].to_parquet(tmp_path / "folder" / "b.parquet", index=False)
    card = monitor.load_card()
    from_csv = monitor.make_report(tmp_path / "scores.csv.gz", card, 0.25)
    from_folder = monitor.make_report(tmp_path / "folder", card, 0.25)
    assert from_csv["rows"] == 300
    assert from_csv | {"scored_file": ""} == from_folder | {"scored_file": ""}  # the same batches: the same sums


BAD_FILES = {
    "no probability": (lambda f: f.drop(columns="probability"), "missing column 'probability'"),
    "text in a column": (
        lambda f: set_cell(f, "V3", 6, "abc"),
        "column 'V3', row 7 (line 8): text in a numeric column (list the column in data.categorical) ('abc')",
    ),
    "text in a later block": (
        lambda f: set_cell(f, "V5", 157, "1,5"),
        "column 'V5', row 158 (line 159): text in a numeric column (list the column in data.categorical) ('1,5')",
    ),
    "probability above 1": (
        lambda f: set_cell(f, "probability", 20, 1.5),
        "column 'probability', row 21 (line 22): not a number in [0, 1] (1.5)",
    ),
    "flagged not 0 or 1": (lambda f: set_cell(f, "flagged", 30, 2), "column 'flagged', row 31 (line 32): not 0 or 1"),
    "negative cost": (
        lambda f: set_cell(f, "Amount", 3, -5.0),
        "column 'Amount', row 4 (line 5): negative or non-finite value in the cost column",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_scored_file_is_named_by_column_and_row(exported, tmp_path, monkeypatch, case):
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "64")  # the later block is in the third batch
    spoil, message = BAD_FILES[case]
    spoil(scored(new_rows(200), tmp_path)).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(StageError) as error:
        monitor.make_report(tmp_path / "bad.csv", monitor.load_card(), 0.25)
    assert str(error.value).startswith(f"{tmp_path / 'bad.csv'}: {message}")


def test_the_command_fails_with_one_line_and_no_report(exported, tmp_path):
    bad = set_cell(scored(new_rows(200), tmp_path), "V3", 6, "abc").astype({"V3": str})  # a text column
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    result = run_monitor(exported, tmp_path / "bad.parquet", tmp_path / "report.json")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'bad.parquet'}: column 'V3', row 7: "
        "text in a numeric column (list the column in data.categorical) ('abc')"
    )
    assert result.stdout == "" and not (tmp_path / "report.json").exists()


def test_without_an_export_it_says_what_to_run(project, tmp_path):
    new_rows(10).to_csv(tmp_path / "scores.csv", index=False)
    result = run_monitor(project, tmp_path / "scores.csv", tmp_path / "report.json")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "error: export/model.json: not found; run 'dvc repro export' to make it"
    (project / "export").mkdir()
    (project / "export" / "model.json").write_text(json.dumps({"strategy": "baseline"}))  # an export before profiles
    with pytest.raises(StageError, match=r"^export/model.json: no training profile to compare with; run 'dvc repro"):
        monitor.load_card()
