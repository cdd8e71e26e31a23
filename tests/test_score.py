import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import (
    CHOSEN_K,
    MODEL_COLUMNS,
    make_creditcard,
    model_feed,
    python_environment,
    raw_test_rows,
    set_cell,
)

from fraudflow.common import PREDICTIONS_DIR, RAW_CSV, StageError, load_params
from fraudflow.costs import flagged
from stages import clean, score


def score_file(source, destination):
    return score.score(source, destination, score.load_card())[0]


def read_any(path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.name.endswith(".parquet") else pd.read_csv(path)


def write_any(frame: pd.DataFrame, path):
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)  # pandas compresses a .gz name


def transactions(rows: int = 200) -> pd.DataFrame:
    """New transactions: an id first, the columns in another order, Time and Class present, rows shuffled."""
    frame = make_creditcard(rows=rows, frauds=10, seed=5).sample(frac=1, random_state=1, ignore_index=True)
    frame.insert(0, "id", [f"tx-{i:05d}" for i in range(rows)])
    return frame[["id", "Amount", *reversed(MODEL_COLUMNS[:-1]), "Time", "Class"]]


def test_scoring_the_raw_test_rows_reproduces_the_pipelines_test_predictions(exported, tmp_path):
    source, destination = tmp_path / "test_rows.csv", tmp_path / "scores.csv"
    raw_test_rows().to_csv(source, index=False)
    assert score_file(source, destination) == 600
    predictions = pd.read_parquet(PREDICTIONS_DIR / "baseline.parquet")
    members = predictions.loc[predictions["split"] == "test", [f"member_{i}" for i in range(3)]]
    expected = members.mean(axis=1).to_numpy()  # the ensemble: the members' mean (baseline: trained at the real odds)
    scores = pd.read_csv(destination)
    np.testing.assert_allclose(scores["probability"], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores["flagged"], amount_rule(scores["probability"], raw_test_rows()["Amount"]))


def amount_rule(probability, amount) -> np.ndarray:
    """model.json's rule, written out: p / (1 - p) * Amount > k * cost_false_positive (5)."""
    probability, amount = np.asarray(probability), np.asarray(amount)
    return (probability / (1 - probability) * amount > CHOSEN_K * 5).astype(int)


@pytest.mark.parametrize(
    "source_name, destination_name",
    [("in.csv", "out.csv"), ("in.csv.gz", "out.parquet"), ("in.parquet", "out.csv.gz"), ("in.parquet", "out.parquet")],
)
def test_ids_order_and_other_columns_are_kept(exported, tmp_path, monkeypatch, source_name, destination_name):
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "64")  # several batches, in several CSV blocks
    frame = transactions()
    source, destination = tmp_path / source_name, tmp_path / destination_name
    write_any(frame, source)
    assert score_file(source, destination) == 200
    scores = read_any(destination)
    assert list(scores.columns) == [*frame.columns, "probability", "flagged"]
    assert scores["id"].tolist() == frame["id"].tolist()
    # From a CSV the others are carried as text (read back into Parquet as text), from Parquet with their types;
    # the model's columns as the numbers it read.
    np.testing.assert_array_equal(scores[["Time", "Class"]].astype(float), frame[["Time", "Class"]])
    model_columns = [column for column in frame.columns if column not in ("id", "Time", "Class")]
    np.testing.assert_array_equal(scores[model_columns].to_numpy(float), frame[model_columns].to_numpy(float))
    expected = score.load_predictor(score.load_card())(model_feed(frame)).ravel()  # every row at once
    np.testing.assert_allclose(scores["probability"], expected, rtol=0, atol=1e-12)
    assert scores["flagged"].tolist() == amount_rule(scores["probability"], frame["Amount"]).tolist()
    assert 0 < scores["flagged"].sum() < 200


def test_flag_uses_the_rule_in_model_json(exported, tmp_path):
    source, frame = tmp_path / "in.csv", transactions()
    frame.to_csv(source, index=False)
    card = score.load_card()
    score.score(source, tmp_path / "default.csv", card)
    probability = pd.read_csv(tmp_path / "default.csv")["probability"].to_numpy()
    k = float(np.median(probability / (1 - probability) * frame["Amount"] / 5))
    score.score(source, tmp_path / "other_k.csv", {**card, "k": k})
    other_k = pd.read_csv(tmp_path / "other_k.csv")["flagged"]
    assert other_k.tolist() == flagged(probability, frame["Amount"].to_numpy(), k, 5).astype(int).tolist()
    assert other_k.sum() == 100 != pd.read_csv(tmp_path / "default.csv")["flagged"].sum()
    # Without a cost column (data.cost null), model.json's rule: a threshold on the probability
    threshold = float(np.median(probability))
    flat = {key: value for key, value in card.items() if key not in ("cost_column", "k")} | {"threshold": threshold}
    score.score(source, tmp_path / "threshold.csv", flat)
    by_threshold = pd.read_csv(tmp_path / "threshold.csv")["flagged"]
    assert by_threshold.tolist() == (probability > threshold).astype(int).tolist()


def test_a_cost_column_the_model_does_not_take_is_required_and_checked(exported, tmp_path):
    card = score.load_card() | {"cost_column": "Price"}
    source = tmp_path / "in.csv"
    transactions().to_csv(source, index=False)
    with pytest.raises(StageError, match=r"in.csv: missing column 'Price' \(model.json's cost_column\)$"):
        score.score(source, tmp_path / "out.csv", card)
    set_cell(transactions().assign(Price=2.0), "Price", 3, -1.0).to_csv(source, index=False)
    with pytest.raises(
        StageError, match=r"in.csv: column 'Price', row 4 \(line 5\): negative or non-finite value in the"
    ):
        score.score(source, tmp_path / "out.csv", card)
    assert not (tmp_path / "out.csv").exists()
    transactions().assign(Price=2.0).to_csv(source, index=False)
    score.score(source, tmp_path / "out.csv", card)
    assert "Price" in pd.read_csv(tmp_path / "out.csv").columns  # carried through, as every column it does not take


def clean_error(frame: pd.DataFrame) -> str:
    """clean's message for this raw file, with the file's name and where it came from (download.url) left out."""
    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RAW_CSV, index=False)
    with pytest.raises(StageError) as error:
        clean.main()
    origin = f" ({RAW_CSV} is download.url {load_params('download')['url']!r})"
    assert str(error.value).endswith(origin)
    return str(error.value).removeprefix(f"{RAW_CSV}: ").removesuffix(origin)


BAD_INPUTS = {
    "non-numeric": lambda f: set_cell(f, "V3", 6, "abc"),
    "NaN": lambda f: set_cell(f, "V12", 4, np.nan),
    "inf": lambda f: set_cell(f, "V20", 8, "inf"),
    "negative Amount": lambda f: set_cell(f, "Amount", 3, -5.0),
    "non-numeric in a later block": lambda f: set_cell(f, "V5", 157, "1,5"),
    "NaN in a later batch": lambda f: set_cell(f, "V9", 171, np.nan),
    "header only": lambda f: f.iloc[:0],
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_cleans_error_and_no_output(project, monkeypatch, case):
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "64")  # the "later" cases are in the third batch and a later block
    frame = BAD_INPUTS[case](make_creditcard(rows=200, frauds=4))
    expected = clean_error(frame)
    folder = project / "scoring"
    folder.mkdir()
    source, destination = folder / "new.csv", folder / "scores.csv"
    frame.to_csv(source, index=False)
    inputs = [{"column": name, "input": name, "type": "number"} for name in MODEL_COLUMNS]
    card = {"inputs": inputs, "log": ["Amount"], "missing": "error", "cost_column": "Amount", "k": 1.0}
    card["cost_false_positive"] = 5
    with pytest.raises(StageError) as error:  # earlier batches are scored, by a stand-in for the model
        score.score(source, destination, card, load_predict=lambda card: lambda x: np.zeros((len(x["V1"]), 1)))
    assert str(error.value) == f"{source}: {expected}"
    assert list(folder.iterdir()) == [source]


def test_a_missing_input_column_is_named(exported, tmp_path):
    transactions().drop(columns=["V7"]).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(StageError, match=r"new.csv: missing column 'V7'$"):
        score_file(tmp_path / "new.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_a_bad_row_in_parquet_is_named_by_row(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "64")
    source = tmp_path / "new.parquet"
    set_cell(transactions(), "Amount", 150, -1.0).to_parquet(source, index=False)
    with pytest.raises(
        StageError,
        match=r"new.parquet: column 'Amount', row 151: negative or non-finite value in the cost .* \(-1.0\)$",
    ):
        score_file(source, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_empty_file(exported, tmp_path):
    (tmp_path / "new.csv").write_bytes(b"")
    with pytest.raises(StageError, match=r"new.csv: cannot parse CSV \(file is empty\)"):
        score_file(tmp_path / "new.csv", tmp_path / "out.csv")


def test_truncated_gzip(exported, tmp_path):
    data = gzip.compress(transactions(2000).to_csv(index=False).encode())
    (tmp_path / "new.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(StageError, match=r"new.csv.gz: cannot parse CSV"):
        score_file(tmp_path / "new.csv.gz", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_a_column_the_output_would_repeat_is_refused(exported, tmp_path):
    transactions().assign(probability=0.5).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(StageError, match=r"new.csv: has a column 'probability', which the output would repeat"):
        score_file(tmp_path / "new.csv", tmp_path / "out.csv")


def run_command(cwd, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "stages.score", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=python_environment(), capture_output=True, text=True)


def test_command_scores_a_file(exported, tmp_path):
    transactions().to_csv(tmp_path / "new.csv", index=False)
    result = run_command(exported, tmp_path / "new.csv", tmp_path / "out.parquet")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 200


def test_command_fails_with_one_line_and_no_output(exported, tmp_path):
    set_cell(transactions(), "V3", 6, "abc").to_csv(tmp_path / "new.csv", index=False)
    result = run_command(exported, tmp_path / "new.csv", tmp_path / "out.csv")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'new.csv'}: column 'V3', row 7 (line 8): "
        "text in a numeric column (list the column in data.categorical) ('abc')"
    )
    assert not (tmp_path / "out.csv").exists()


def test_missing_exported_model_names_the_repro_target(project, tmp_path):
    transactions().to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(StageError, match=r"^export/model.json: not found; run 'dvc repro export' to make it$"):
        score.load_card()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["new.csv", "missing/out.csv"], r"missing/out.csv: folder 'missing' does not exist"),
        (["new.csv", "out.xlsx"], r"out.xlsx: expected a file name ending in .csv, .csv.gz, .parquet"),
        (["absent.csv", "out.csv"], r"absent.csv: file not found"),
    ],
)
def test_bad_paths_are_named_before_the_model_loads(project, monkeypatch, arguments, message):
    transactions().to_csv(project / "new.csv", index=False)
    monkeypatch.setattr(sys, "argv", ["score", *arguments])
    with pytest.raises(StageError, match=message):
        score.main()
    assert not (project / "missing").exists()


def partitioned(frame: pd.DataFrame, folder) -> list:
    """The rows as a hive-partitioned Parquet folder, as Spark writes one: day=1/ and day=2/, a _SUCCESS marker, and
    an empty file in day=3/."""
    parts = [frame.iloc[:120], frame.iloc[120:], frame.iloc[:0]]
    for day, part in enumerate(parts, start=1):
        (folder / f"day={day}").mkdir(parents=True)
        part.to_parquet(folder / f"day={day}" / "part-0.parquet", index=False)
    (folder / "_SUCCESS").touch()
    return parts


def test_a_folder_is_scored_file_by_file_into_a_folder_or_as_one_table_into_a_file(exported, tmp_path, monkeypatch):
    frame, folder = transactions(), tmp_path / "rows"
    parts = partitioned(frame, folder)
    monkeypatch.setattr(sys, "argv", ["score", str(folder), str(tmp_path / "scores"), "--reasons", "2"])
    score.main()
    expected = score.load_predictor(score.load_card())(model_feed(frame)).ravel()
    written = sorted(str(p.relative_to(tmp_path / "scores")) for p in (tmp_path / "scores").rglob("*") if p.is_file())
    assert written == [f"day={day}/part-0.parquet" for day in (1, 2, 3)]  # no marker, no temporary file
    scored = [pd.read_parquet(tmp_path / "scores" / f"day={day}" / "part-0.parquet") for day in (1, 2, 3)]
    assert [len(s) for s in scored] == [len(p) for p in parts]  # the empty partition gives an empty file
    assert (
        list(scored[2].columns)
        == list(scored[0].columns)
        == [*frame.columns, "probability", "flagged"]
        + [f"reason_{i}{part}" for i in (1, 2) for part in ("", "_contribution")]
    )
    together = pd.concat(scored[:2], ignore_index=True)
    np.testing.assert_allclose(together["probability"], expected, rtol=0, atol=1e-12)
    assert together["id"].tolist() == frame["id"].tolist()
    # the folder as one table into one file: its partition column added, as clean reads a folder
    monkeypatch.setattr(sys, "argv", ["score", str(folder), str(tmp_path / "scores.csv")])
    score.main()
    one = pd.read_csv(tmp_path / "scores.csv")
    assert one["day"].tolist() == [1] * 120 + [2] * 80
    np.testing.assert_allclose(one["probability"], expected, rtol=0, atol=1e-12)


def with_a_bad_row(folder) -> str:
    """partitioned's folder of transactions, an infinite V3 in row 6 of day=2's file; the error that names it."""
    partitioned(transactions(), folder)
    bad = pd.read_parquet(folder / "day=2" / "part-0.parquet")
    bad.loc[5, "V3"] = np.inf
    bad.to_parquet(folder / "day=2" / "part-0.parquet", index=False)
    return rf"{folder.name}/day=2/part-0.parquet: column 'V3', row 6: non-finite value \(inf\)$"


def test_a_bad_row_in_one_file_of_a_folder_names_that_file_and_leaves_no_output(exported, tmp_path, monkeypatch):
    error = with_a_bad_row(tmp_path / "rows")
    monkeypatch.setattr(sys, "argv", ["score", str(tmp_path / "rows"), str(tmp_path / "scores")])
    with pytest.raises(StageError, match=error):
        score.main()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rows"]
