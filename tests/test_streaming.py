"""The streaming data stages: many tiny batches give the bytes one batch gives; Parquet files and partitioned
folders as input, through the real `dvc` pipeline; each input error by its message."""

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import MIXED_DATA, drop_networks, make_creditcard, make_mixed, project_repo, set_cell, set_params

from fraudflow import inputs, outputs, preprocess
from fraudflow.common import CLEAN_PARQUET, RAW_CSV, RAW_DIR, RAW_PARQUET, SPLIT_DIR, StageError, load_preprocessing
from stages import clean, download, scale, split

OUTPUTS = ["data/clean", "data/split", "data/scaled", "data/costs", "metrics/split.json"]


def output_bytes(root) -> dict:
    files = [path for name in OUTPUTS for path in sorted((root / name).rglob("*")) + [root / name] if path.is_file()]
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


@pytest.mark.parametrize("method", ["random", "time"])
def test_tiny_batches_give_the_same_bytes_as_one_batch(project, monkeypatch, method):
    set_params(project / "params.yaml", **MIXED_DATA, split__method=method)
    RAW_CSV.parent.mkdir(parents=True)
    make_mixed(rows=1500, positives=60).to_csv(RAW_CSV, index=False)  # event_time is not in file order
    monkeypatch.setattr(outputs, "ROW_GROUP_ROWS", 64)  # row groups and scaler blocks that batches straddle
    monkeypatch.setattr(preprocess, "FIT_BLOCK_VALUES", 400)
    runs = {}
    for rows in ("7", "100000"):
        monkeypatch.setenv(inputs.BATCH_ROWS_ENV, rows)
        for stage in (clean, split, scale):
            stage.main()
        runs[rows] = output_bytes(project)
    assert runs["7"].keys() == runs["100000"].keys() and len(runs["7"]) == 18
    assert [name for name in runs["7"] if runs["7"][name] != runs["100000"][name]] == []
    assert pq.ParquetFile(CLEAN_PARQUET).metadata.num_row_groups == 24  # 1500 rows in groups of 64


def test_the_streamed_fit_equals_the_whole_splits_statistics(project, monkeypatch):
    set_params(project / "params.yaml", **MIXED_DATA)
    RAW_CSV.parent.mkdir(parents=True)
    make_mixed(rows=1500, positives=60).to_csv(RAW_CSV, index=False)
    monkeypatch.setenv(inputs.BATCH_ROWS_ENV, "10")
    monkeypatch.setattr(preprocess, "FIT_BLOCK_VALUES", 40)  # 10 rows of 4 numeric columns per scaler block
    for stage in (clean, split, scale):
        stage.main()
    train, prep = pd.read_parquet(SPLIT_DIR / "train.parquet"), load_preprocessing()
    numeric = train[prep["numeric"]]
    assert prep["impute"] == {name: float(numeric[name].median()) for name in prep["numeric"]}  # exact
    filled = numeric.fillna(prep["impute"])
    np.testing.assert_allclose(prep["mean"], filled.mean(), rtol=1e-13)
    np.testing.assert_allclose(prep["scale"], filled.std(ddof=0), rtol=1e-12)
    assert prep["categories"]["merchant"] == train["merchant"].value_counts().index[:5].tolist()


def test_a_parquet_file_cleans_as_the_csv_does(project):
    set_params(project / "params.yaml", **MIXED_DATA)
    frame = make_mixed(rows=600, positives=20)
    RAW_CSV.parent.mkdir(parents=True)
    frame.to_csv(RAW_CSV, index=False)
    clean.main()
    from_csv = pq.read_table(CLEAN_PARQUET)
    RAW_CSV.unlink()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), RAW_PARQUET)
    clean.main()
    from_parquet = pq.read_table(CLEAN_PARQUET)
    assert from_parquet.schema.field("tx_id").type == pa.large_string()  # ids keep the file's type (pandas' text)
    assert from_parquet.cast(from_csv.schema).equals(from_csv, check_metadata=True)


def partitioned(frame: pd.DataFrame, folder):
    """The table as pyarrow writes a dataset partitioned by day (day=2026-11-28/ ...), with Spark's _SUCCESS."""
    days = pd.to_datetime("2026-11-28") + pd.to_timedelta(frame["event_time"] // 250_000, unit="D")
    table = pa.Table.from_pandas(frame.assign(day=days.dt.strftime("%Y-%m-%d")), preserve_index=False)
    pq.write_to_dataset(table, folder, partition_cols=["day"])
    (folder / "_SUCCESS").write_text("")
    return folder


def test_a_partitioned_parquet_folder_runs_through_the_pipeline(tmp_path):
    frame = make_mixed(rows=2000, positives=70)
    folder = partitioned(frame, tmp_path / "events")
    categorical = [*MIXED_DATA["data__categorical"], "day"]  # the partition column is a column like the others
    runner = project_repo(
        tmp_path, frame, **{**MIXED_DATA, "data__categorical": categorical, "download__url": str(folder)}
    )
    drop_networks(runner.cwd / "params.yaml", "weighted", "resampled", "focal")  # one network: the input is the point
    runner.commit("one network")
    runner.run("dvc", "repro")
    copied = sorted(path.relative_to(runner.cwd / RAW_PARQUET) for path in (runner.cwd / RAW_PARQUET).rglob("*.*"))
    assert {path.parent.name for path in copied} == {
        "day=2026-11-28",
        "day=2026-11-29",
        "day=2026-11-30",
        "day=2026-12-01",
    }
    assert pq.read_metadata(runner.cwd / CLEAN_PARQUET).num_rows == len(frame)
    prep = json.loads((runner.cwd / "data" / "scaled" / "preprocessing.json").read_text())
    assert set(prep["categories"]["day"]) == {"2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"}
    manifest = "".join(
        f"{hashlib.sha256((folder / path).read_bytes()).hexdigest()}  {path.as_posix()}\n" for path in copied
    )
    card = json.loads((runner.cwd / "export" / "model.json").read_text())
    assert card["data_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    assert runner.changed_stages() == set()


def folder_error(project, folder) -> str:
    set_params(project / "params.yaml", download__url=str(folder), download__mirrors=[], download__sha256="")
    with pytest.raises(StageError) as error:
        download.main()
    assert not RAW_DIR.exists()
    return str(error.value)


def test_a_folder_without_parquet_files_is_refused(project, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    assert (
        folder_error(project, tmp_path / "empty") == f"{tmp_path / 'empty'}: no Parquet file (*.parquet) in the folder"
    )


def test_files_whose_columns_disagree_are_named(project, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = make_mixed(rows=200, positives=10)
    pq.write_table(pa.Table.from_pandas(frame[:100], preserve_index=False), folder / "part-0.parquet")
    pq.write_table(
        pa.Table.from_pandas(frame[100:].astype({"x1": str}), preserve_index=False), folder / "part-1.parquet"
    )
    assert folder_error(project, folder) == (
        f"{folder / 'part-1.parquet'}: column 'x1' is large_string, but double in {folder / 'part-0.parquet'}"
    )
    pq.write_table(
        pa.Table.from_pandas(frame[100:].drop(columns="x3"), preserve_index=False), folder / "part-1.parquet"
    )
    assert folder_error(project, folder) == (
        f"{folder / 'part-1.parquet'}: no column 'x3', which other files of {folder} have"
    )


def test_a_subfolder_that_is_not_a_partition_is_named(project, tmp_path):
    folder = tmp_path / "parts"
    (folder / "2026-11-30").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1.0]}), folder / "2026-11-30" / "part-0.parquet")
    assert folder_error(project, folder) == f"{folder}: subfolder '2026-11-30' is not a hive partition (key=value)"


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_a_bad_value_in_a_later_batch_is_named_by_its_row_in_the_whole_input(project, monkeypatch, form):
    set_params(project / "params.yaml", **MIXED_DATA)
    frame = set_cell(make_mixed(rows=600, positives=20), "x3", 450, "abc" if form == "csv" else np.nan)
    frame = set_cell(frame, "amount_usd", 500, -2.0)
    monkeypatch.setenv(inputs.BATCH_ROWS_ENV, "16")  # CSV blocks of 4 KiB: about 40 rows
    RAW_CSV.parent.mkdir(parents=True)
    if form == "csv":
        frame.to_csv(RAW_CSV, index=False)
        message = r"table\.csv: column 'x3', row 451 \(line 452\): text in a numeric column"
    else:
        pq.write_table(pa.Table.from_pandas(frame.astype({"x3": float}), preserve_index=False), RAW_PARQUET)
        message = r"table\.parquet: column 'amount_usd', row 501: negative or non-finite value in the cost column"
    with pytest.raises(StageError, match=message):
        clean.main()
    assert not CLEAN_PARQUET.parent.exists()


@pytest.mark.parametrize("rows", ["16", "65536"])
def test_the_first_bad_row_is_reported_whatever_the_batch_size(project, monkeypatch, rows):
    frame = set_cell(make_creditcard(rows=600, frauds=20), "Amount", 10, -1.0)
    frame = set_cell(frame, "V1", 500, "abc")  # Arrow fails on this block, after reading row 10's
    monkeypatch.setenv(inputs.BATCH_ROWS_ENV, rows)
    RAW_CSV.parent.mkdir(parents=True)
    frame.to_csv(RAW_CSV, index=False)
    with pytest.raises(StageError, match=r"column 'Amount', row 11 \(line 12\): negative or non-finite value"):
        clean.main()


def test_times_with_time_zones_and_dates_become_seconds_since_1970(project):
    set_params(project / "params.yaml", **MIXED_DATA)
    frame = make_mixed(rows=300, positives=10)
    stamps = ["2026-11-30T10:00:00Z", "2026-11-30T10:00:00+01:00", "2026-11-30 10:00:00", "2026-11-30"]
    frame["event_time"] = [stamps[i % 4] for i in range(len(frame))]
    RAW_CSV.parent.mkdir(parents=True)
    frame.to_csv(RAW_CSV, index=False)
    clean.main()
    ten = pd.Timestamp("2026-11-30T10:00:00Z").timestamp()
    expected = [ten, ten - 3600, ten, ten - 36000]
    assert pd.read_parquet(CLEAN_PARQUET)["event_time"].tolist()[:4] == expected


def test_auto_keeps_a_numeric_column_empty_in_the_first_block_numeric(project, monkeypatch):
    set_params(project / "params.yaml", **{**MIXED_DATA, "data__categorical": "auto"})
    frame = make_mixed(rows=600, positives=20)
    frame.loc[:99, "x3"] = np.nan  # the first CSV blocks of 4 KiB hold no x3 value
    monkeypatch.setenv(inputs.BATCH_ROWS_ENV, "16")
    RAW_CSV.parent.mkdir(parents=True)
    frame.to_csv(RAW_CSV, index=False)
    clean.main()
    roles = json.loads(pq.read_schema(CLEAN_PARQUET).metadata[b"fraudflow.roles"])
    assert roles["categorical"] == ["merchant", "channel"] and "x3" in roles["numeric"]
