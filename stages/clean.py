"""clean: validate the raw CSV, sort by `Time` and drop it, replace `Amount` by log(Amount + eps); write Parquet."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fraudflow.common import (
    CLEAN_PARQUET,
    LABEL,
    RAW_CSV,
    StageError,
    is_number,
    load_params,
    log,
    require,
    run,
    write_parquet,
)

FEATURES = [*(f"V{i}" for i in range(1, 29)), "Amount"]  # the raw columns a model scores
EXPECTED_COLUMNS = ["Time", *FEATURES, LABEL]
LOG_AMOUNT = "LogAmount"
CSV_SUFFIXES = (".csv", ".csv.gz")


def read_csv(path) -> pd.DataFrame:
    """The CSV as a DataFrame with exactly the expected columns, in the expected order."""
    try:
        # Empty cells and NaN/NA spellings are read as missing, in text columns too.
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except FileNotFoundError as error:
        raise StageError(f"{path}: file not found; run 'dvc repro download'") from error
    except pa.ArrowInvalid as error:
        raise csv_error(path, error) from error
    require_columns(table.column_names, path, EXPECTED_COLUMNS)
    extra = [name for name in table.column_names if name not in EXPECTED_COLUMNS]
    if extra:
        raise StageError(f"{path}: unexpected column '{extra[0]}'")
    if table.num_rows == 0:
        raise header_only(path)
    return table.select(EXPECTED_COLUMNS).to_pandas()


def csv_error(path, error: pa.ArrowInvalid) -> StageError:
    reason = "file is empty" if "Empty CSV file" in str(error) else str(error).splitlines()[0]
    return StageError(f"{path}: cannot parse CSV ({reason})")


def header_only(path) -> StageError:
    return StageError(f"{path}: header only, no data rows")


def require_columns(names: list[str], path, required: list[str]):
    """Fail naming the first required column that is missing."""
    missing = [name for name in required if name not in names]
    if missing:
        raise StageError(f"{path}: missing column '{missing[0]}'")


def first_problem(name: str, raw: pd.Series) -> tuple[int, str] | None:
    """(row position, description) of the first invalid value of a column, or None if all are valid."""
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    checks = [
        (raw.isna(), "missing value"),
        (values.isna(), "non-numeric value"),
        (~np.isfinite(values), "non-finite value"),
    ]
    if name == LABEL:
        checks.append((~values.isin([0, 1]), "value must be 0 or 1"))
    if name == "Amount":
        checks.append((values < 0, "negative amount"))
    found = [(int(bad.to_numpy().argmax()), description) for bad, description in checks if bad.any()]
    return min(found, key=lambda problem: problem[0], default=None)


def validate(df: pd.DataFrame, path, columns: list[str] = EXPECTED_COLUMNS, first_row: int = 0) -> pd.DataFrame:
    """The columns as float64 (Class as int8), or fail at the first invalid column and row.

    `df` may be a chunk of a file that has `first_row` data rows before it: errors name the row in the file
    (and, for a CSV file, its line).
    """
    for name in columns:
        problem = first_problem(name, df[name])
        if problem:
            row, description = problem
            value = df[name].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # -5.0, not np.float64(-5.0)
            row += first_row
            # Row numbers count data rows from 1; the file line adds the header.
            line = f" (line {row + 2})" if str(path).endswith(CSV_SUFFIXES) else ""
            raise StageError(f"{path}: column '{name}', row {row + 1}{line}: {description} ({value!r})")
        if df[name].dtype != "float64":  # setting a column costs more than checking it
            df[name] = pd.to_numeric(df[name]).astype("float64")
    if LABEL in columns:
        df[LABEL] = df[LABEL].astype("int8")
    return df


def clean(df: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The tutorial's cleaning: no `Time`, `Amount` replaced by log(Amount + eps) before `Class`.

    Rows are sorted by `Time` first (stable: ties keep file order), so row order is time order for the split.
    """
    df = df.sort_values("Time", kind="stable").drop(columns=["Time"])
    df.insert(df.columns.get_loc("Amount"), LOG_AMOUNT, np.log(df.pop("Amount") + eps))
    return df


def main():
    params = load_params("clean")
    eps = require(params, "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    df = validate(read_csv(RAW_CSV), RAW_CSV)
    cleaned = clean(df, eps)
    write_parquet(pa.Table.from_pandas(cleaned, preserve_index=False), CLEAN_PARQUET)
    log.info(
        "clean: wrote %s (%d rows, %d frauds, %d columns)",
        CLEAN_PARQUET,
        len(cleaned),
        cleaned[LABEL].sum(),
        cleaned.shape[1],
    )


if __name__ == "__main__":
    run(main)
