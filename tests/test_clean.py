import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_creditcard, set_cell, set_params

from fraudflow.common import CLEAN_PARQUET, RAW_CSV, RAW_PARQUET, StageError
from fraudflow.schema import roles_of
from stages import clean


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
    "missing label": (lambda f: f.drop(columns=["Class"]), r"missing column 'Class' \(named in data.label\)$"),
    "missing log column": (lambda f: f.drop(columns=["Amount"]), r"missing column 'Amount' \(named in data.log\)$"),
    "text": (
        lambda f: set_cell(f, "V3", 6, "abc"),
        r"column 'V3', row 7 \(line 8\): text in a numeric column \(list the column in data.categorical\) \('abc'\)$",
    ),
    "NaN": (
        lambda f: set_cell(f, "V12", 4, np.nan),
        r"column 'V12', row 5 \(line 6\): missing value \(set data.missing: impute to fill it\) \(nan\)$",
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
        r"column 'Amount', row 4 \(line 5\): negative or non-finite value in the cost column \(evaluate.cost_false_"
        r"negative\), which needs a number >= 0 in every row \(-5.0\)$",
    ),
    "header only": (lambda f: f.iloc[:0], r"header only"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_the_problem_and_writes_nothing(project, case):
    damage, message = BAD_INPUTS[case]
    write_raw(damage(make_creditcard(rows=40, frauds=2)))
    with pytest.raises(StageError, match=message) as error:
        clean.main()
    assert str(RAW_CSV) in str(error.value)
    assert not CLEAN_PARQUET.exists()


def test_a_negative_data_log_value_is_named_as_such_when_the_column_is_no_cost(project):
    write_raw(set_cell(make_creditcard(rows=40, frauds=2), "Amount", 3, -5.0))
    set_params(project / "params.yaml", evaluate__cost_false_negative=133)
    message = r"column 'Amount', row 4 \(line 5\): negative value in a data.log column \(its values must be >= 0\)"
    with pytest.raises(StageError, match=message):
        clean.main()
    assert not CLEAN_PARQUET.exists()


def test_a_cost_column_in_data_drop_is_kept_as_a_cost_not_a_feature(project):
    raw = make_creditcard(rows=60, frauds=3).assign(Price=lambda f: f["Amount"] * 2)
    write_raw(raw)
    set_params(project / "params.yaml", data__drop=["Price"], evaluate__cost_false_negative="Price")
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
    set_params(project / "params.yaml", data__drop=["Price"], evaluate__cost_false_negative="Price")
    clean.main()
    np.testing.assert_array_equal(pd.read_parquet(CLEAN_PARQUET)["Price"], raw["Price"])
    set_params(project / "params.yaml", data__drop=[], evaluate__cost_false_negative="V2")  # a plain feature
    raw.assign(V2=raw["V2"].abs()).to_parquet(RAW_PARQUET, index=False)
    clean.main()
    roles = roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)
    assert roles["cost"] == "V2" and "V2" in roles["numeric"]


def test_a_number_cost_keeps_no_raw_column(project):
    write_raw(make_creditcard(rows=40, frauds=2))
    set_params(project / "params.yaml", evaluate__cost_false_negative=133)
    clean.main()
    assert "Amount" not in pd.read_parquet(CLEAN_PARQUET).columns
    assert roles_of(pq.read_schema(CLEAN_PARQUET), CLEAN_PARQUET)["cost"] is None


BAD_COSTS = {
    "absent": ({"evaluate__cost_false_negative": "Price"}, None, r"missing column 'Price' \(named in evaluate.cost_"),
    "a category": (
        {"evaluate__cost_false_negative": "V3", "data__categorical": ["V3"]},
        None,
        r"column 'V3' \(evaluate.cost_false_negative\) is data.categorical; the cost column must be a numeric column",
    ),
    "a negative number": (
        {"evaluate__cost_false_negative": -5},
        None,
        r"^params.yaml: param 'evaluate.cost_false_negative' must be a number > 0 or the name of a numeric column, got",
    ),
    "the label": (
        {"evaluate__cost_false_negative": "Class"},
        None,
        r"column 'Class' \(evaluate.cost_false_negative\) is",
    ),
    "negative": (
        {"evaluate__cost_false_negative": "V3"},  # a feature with negative values
        None,
        r"column 'V3', row \d+ \(line \d+\): negative or non-finite value in the cost column \(evaluate.cost_false_",
    ),
    "missing": (
        {"data__missing": "impute"},  # Amount may miss as a feature, not as a cost
        lambda f: set_cell(f, "Amount", 5, np.nan),
        r"column 'Amount', row 6 \(line 7\): missing value in the cost column \(evaluate.cost_false_negative\), which",
    ),
    "text": (
        {"data__drop": ["Price"], "evaluate__cost_false_negative": "Price"},
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
