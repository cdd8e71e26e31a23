"""`python -m stages.score --engine spark` (fraudflow/spark_scoring.py) in Spark's local mode, against the same
command on one machine. Skipped where pyspark is not installed (.ci/run installs requirements-spark.txt)."""

import sys

import numpy as np
import pandas as pd
import pytest
from test_score import partitioned, transactions, with_a_bad_row

from fraudflow.common import StageError
from stages import score

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -r requirements-spark.txt)")


def run_score(monkeypatch, *arguments):
    monkeypatch.setattr(sys, "argv", ["score", *map(str, arguments)])
    score.main()


def read_folder(folder) -> pd.DataFrame:
    files = sorted(path for path in folder.rglob("*.parquet") if not path.name.startswith((".", "_")))
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)


def test_spark_gives_the_scores_reasons_and_flags_of_the_one_machine_command(exported, tmp_path, monkeypatch):
    frame, folder = transactions(), tmp_path / "rows"
    partitioned(frame, folder)  # two partitions and an empty file
    run_score(monkeypatch, folder, tmp_path / "local", "--reasons", "2")
    run_score(monkeypatch, folder, tmp_path / "spark", "--reasons", "2", "--engine", "spark", "--master", "local[2]")
    local = read_folder(tmp_path / "local").sort_values("id", ignore_index=True)
    spark = read_folder(tmp_path / "spark").sort_values("id", ignore_index=True)
    assert len(spark) == len(frame) and set(spark.columns) == set(local.columns) | {"day"}
    np.testing.assert_allclose(spark["probability"], local["probability"], rtol=0, atol=1e-12)
    assert spark["flagged"].tolist() == local["flagged"].tolist() and spark["flagged"].sum() > 0
    pd.testing.assert_frame_equal(spark[local.columns], local, check_dtype=False)
    assert sorted(spark["day"].unique()) == [1, 2]


def test_a_bad_row_in_one_file_names_that_file_and_row_and_writes_no_folder(exported, tmp_path, monkeypatch):
    error = with_a_bad_row(tmp_path / "rows")
    with pytest.raises(StageError, match=error):
        run_score(monkeypatch, tmp_path / "rows", tmp_path / "spark", "--engine", "spark", "--master", "local[2]")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rows"]
