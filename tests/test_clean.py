import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_creditcard, set_cell, set_params

from fraudflow.common import CLEAN_PARQUET, RAW_CSV, RAW_PARQUET, StageError
from fraudflow.schema import roles_of
from stages import clean

# clean names where the table came from after every problem it finds in it
FROM_URL = r" \(data/raw/table\.csv is download\.url '[^']*'\)$"


def write_raw(frame: pd.DataFrame):
    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RAW_CSV, index=False)


def test_logs_amount_and_keeps_rows_and_time_in_file_order(project):
    raw = make_creditcard(rows=100, frauds=3).sample(frac=1, random_state=0)  # Time out of order
    write_raw(raw)
    clean.main()
    cleaned = pd.read_parquet(CLEAN_PARQUET)
    # Amount, the cost column (params.yaml), keeps its raw values beside the feature LogAmount
    assert list(cleaned.columns) == ["Time", *(f"V{i}" for i in range(1, 29)), "LogAmount", "Amount", "Class"]
    np.testing.assert_allclose(cleaned["LogAmount"], np.log(raw["Amount"] + 0.001))
    np.testing.assert_array_equal(cleaned["Amount"], raw["Amount"])
    roles = roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)
    assert roles["cost"] == "Amount" and "Amount" not in roles["numeric"] and "LogAmount" in roles["numeric"]
    np.testing.assert_array_equal(cleaned["Class"], raw["Class"])
    np.testing.assert_array_equal(cleaned["Time"], raw["Time"])


def test_columns_in_another_order_are_accepted(project):
    raw = make_creditcard(rows=50, frauds=2)
    write_raw(raw[list(reversed(raw.columns))])
    clean.main()
    np.testing.assert_allclose(pd.read_parquet(CLEAN_PARQUET)["V1"], raw["V1"])


BAD_INPUTS = {
    "missing label": (
        lambda f: f.drop(columns=["Class"]),
        r"missing column 'Class' \(named in data.label\)" + FROM_URL,
    ),
    "missing log column": (
        lambda f: f.drop(columns=["Amount"]),
        r"missing column 'Amount' \(named in data.log\)" + FROM_URL,
        {"data__columns": None, "data__cost": None},  # Amount named in data.log only
    ),
    "text": (
        lambda f: set_cell(f, "V3", 6, "abc"),
        r"column 'V3', row 7 \(line 8\): text in a numeric column \(list the column in data.categorical\) \('abc'\)"
        + FROM_URL,
    ),
    "NaN": (
        lambda f: set_cell(f, "V12", 4, np.nan),
        r"column 'V12', row 5 \(line 6\): missing value \(set data.missing: impute to fill it\) \(nan\)" + FROM_URL,
    ),
    "Class 2": (
        lambda f: set_cell(f.assign(Class=0), "Class", [3, 9], [1, 2]),
        r"column 'Class', row 10 \(line 11\): a third label value \(2, after 0 and 1\); data.label must name",
    ),
    "no positive": (
        lambda f: f.assign(Class=f["Class"].map({0: "legit", 1: "fraud"})),
        r"column 'Class': no row has data.positive 1 \(its values: 'fraud', 'legit'\); set data.positive",
    ),
    "negative Amount": (
        lambda f: set_cell(f, "Amount", 3, -5.0),
        r"column 'Amount', row 4 \(line 5\): negative or non-finite value in the cost column \(data.cost\), which "
        r"needs a number >= 0 in every row \(-5.0\)" + FROM_URL,
    ),
    "header only": (lambda f: f.iloc[:0], r"header only"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_the_problem_and_writes_nothing(project, case):
    damage, message, *params = BAD_INPUTS[case]
    if params:
        set_params(project / "params.yaml", **params[0])
    write_raw(damage(make_creditcard(rows=40, frauds=2)))
    with pytest.raises(StageError, match=message) as error:
        clean.main()
    assert str(RAW_CSV) in str(error.value)
    assert not CLEAN_PARQUET.exists()


def test_a_negative_data_log_value_is_named_as_such_when_the_column_is_no_cost(project):
    write_raw(set_cell(make_creditcard(rows=40, frauds=2), "Amount", 3, -5.0))
    set_params(project / "params.yaml", data__cost=None)
    message = r"column 'Amount', row 4 \(line 5\): negative value in a data.log column \(its values must be >= 0\)"
    with pytest.raises(StageError, match=message):
        clean.main()
    assert not CLEAN_PARQUET.exists()


def test_a_cost_column_in_data_drop_is_kept_as_a_cost_not_a_feature(project):
    raw = make_creditcard(rows=60, frauds=3).assign(Price=lambda f: f["Amount"] * 2)
    write_raw(raw)
    set_params(project / "params.yaml", data__drop=["Price"], data__cost="Price")
    clean.main()
    cleaned = pd.read_parquet(CLEAN_PARQUET)
    roles = roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)
    assert roles["cost"] == "Price" and "Price" not in roles["numeric"]
    np.testing.assert_array_equal(cleaned["Price"], raw["Price"])
    assert "Amount" not in cleaned.columns  # a number cost or another column: no raw Amount kept


def test_a_parquet_input_keeps_its_cost_column_too(project):
    raw = make_creditcard(rows=60, frauds=3).assign(Price=lambda f: f["Amount"] * 2)
    RAW_PARQUET.parent.mkdir(parents=True, exist_ok=True)
    raw.to_parquet(RAW_PARQUET, index=False)
    set_params(project / "params.yaml", data__drop=["Price"], data__cost="Price")
    clean.main()
    np.testing.assert_array_equal(pd.read_parquet(CLEAN_PARQUET)["Price"], raw["Price"])
    set_params(project / "params.yaml", data__drop=[], data__cost="V2")  # a plain feature
    raw.assign(V2=raw["V2"].abs()).to_parquet(RAW_PARQUET, index=False)
    clean.main()
    roles = roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)
    assert roles["cost"] == "V2" and "V2" in roles["numeric"]


def test_no_cost_column_keeps_no_raw_column(project):
    write_raw(make_creditcard(rows=40, frauds=2))
    set_params(project / "params.yaml", data__cost=None)
    clean.main()
    assert "Amount" not in pd.read_parquet(CLEAN_PARQUET).columns
    assert roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)["cost"] is None


BAD_COSTS = {
    # data.columns null: with the default list, a cost column it does not hold is refused first (tested below)
    "absent": (
        {"data__cost": "Price", "data__columns": None},
        None,
        r"missing column 'Price' \(named in data.cost\)" + FROM_URL,
    ),
    "a category": (
        {"data__cost": "V3", "data__categorical": ["V3"]},
        None,
        r"column 'V3' \(data.cost\) is data.categorical; the cost column must be a numeric column",
    ),
    "a number": (
        {"data__cost": -5},
        None,
        r"^params.yaml: param 'data.cost' must be a column name or null, got -5$",
    ),
    "the label": (
        {"data__cost": "Class", "data__columns": None},
        None,
        r"column 'Class' \(data.cost\) is",
    ),
    "negative": (
        {"data__cost": "V3"},  # a feature with negative values
        None,
        r"column 'V3', row \d+ \(line \d+\): negative or non-finite value in the cost column \(data.cost\)",
    ),
    "missing": (
        {"data__missing": "impute"},  # Amount may miss as a feature, not as a cost
        lambda f: set_cell(f, "Amount", 5, np.nan),
        r"column 'Amount', row 6 \(line 7\): missing value in the cost column \(data.cost\), which",
    ),
    "text": (
        {"data__drop": ["Price"], "data__cost": "Price"},
        lambda f: set_cell(f.assign(Price=1.0), "Price", 8, "ten"),
        r"column 'Price', row 9 \(line 10\): text in the cost column",
    ),
}


@pytest.mark.parametrize("case", BAD_COSTS)
def test_a_bad_cost_column_is_named_on_one_line_and_nothing_is_written(project, case):
    params, damage, message = BAD_COSTS[case]
    frame = make_creditcard(rows=40, frauds=2)
    write_raw(damage(frame) if damage else frame)
    set_params(project / "params.yaml", **params)
    with pytest.raises(StageError, match=message) as error:
        clean.main()
    assert str(error.value).startswith((f"{RAW_CSV}: ", "params.yaml: ")) and "\n" not in str(error.value)
    assert not CLEAN_PARQUET.exists()


def test_the_first_bad_row_is_reported(project):
    frame = set_cell(make_creditcard(rows=40, frauds=2), "V3", 20, "abc")
    write_raw(set_cell(frame, "V3", 5, np.nan))
    with pytest.raises(StageError, match=r"row 6 \(line 7\): missing value"):
        clean.main()


def test_empty_file(project):
    RAW_CSV.parent.mkdir(parents=True)
    RAW_CSV.write_bytes(b"")
    with pytest.raises(StageError, match="file is empty"):
        clean.main()
    assert not CLEAN_PARQUET.exists()


def test_bad_eps_param_is_named(project):
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("eps: 0.001", "eps: -1"))
    with pytest.raises(StageError, match=r"'clean.eps' must be a number > 0"):
        clean.main()


def test_a_table_without_a_declared_column_is_refused_naming_it(project):
    """data.columns: a table that lost a feature upstream (here V7) does not train without a word."""
    write_raw(make_creditcard(rows=50, frauds=2).drop(columns="V7"))
    with pytest.raises(StageError, match=r"^data/raw/table\.csv: missing column 'V7' \(named in data\.columns\)"):
        clean.main()
    assert not CLEAN_PARQUET.exists()


def test_columns_data_columns_does_not_list_are_ignored_and_named(project, caplog):
    caplog.set_level(logging.INFO, logger="fraudflow")
    raw = make_creditcard(rows=50, frauds=2)
    raw.insert(3, "chargeback_flag", raw["Class"])  # a leak that appeared upstream
    write_raw(raw)
    clean.main()
    assert "chargeback_flag" not in pd.read_parquet(CLEAN_PARQUET).columns
    assert "ignored 1 columns not in data.columns: chargeback_flag" in caplog.text
    set_params(project / "params.yaml", data__columns=None)  # every column without another role is a feature
    clean.main()
    assert "chargeback_flag" in pd.read_parquet(CLEAN_PARQUET).columns


def test_a_declared_column_in_another_role_is_refused(project):
    set_params(project / "params.yaml", data__columns=["V1", "Class"])
    with pytest.raises(StageError, match=r"column 'Class' is named in data.columns and data.label"):
        clean.main()


@pytest.mark.parametrize(
    ("params", "role"),
    [
        ({"data__columns": [f"V{i}" for i in range(1, 29)]}, "log"),  # Amount, a data.log column, left out
        ({"data__columns": ["V1", "Amount"], "data__categorical": ["V3"]}, "categorical"),
        ({"data__columns": ["V1", "V2"], "data__log": [], "data__cost": "Amount"}, "cost"),
    ],
)
def test_a_feature_named_in_another_param_must_be_in_data_columns(project, params, role):
    set_params(project / "params.yaml", **params)
    with pytest.raises(StageError, match=rf"is named in data.{role} but not in data.columns; add it there"):
        clean.main()
