"""clean: validate the raw CSV against params.yaml's `data` section; write it as Parquet, ready to split.

Rows are sorted by the time column (stable: ties keep file order), which is then dropped, as are data.drop
columns. Each data.log column becomes Log<name> = log(value + clean.eps) in its place; the label becomes 0/1
(1 for data.positive), last. The roles of the columns go into the file's metadata (fraudflow/schema.py).
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fraudflow.common import (
    CLEAN_PARQUET,
    RAW_CSV,
    StageError,
    is_number,
    load_params,
    log,
    require,
    run,
    write_parquet,
)
from fraudflow.schema import (
    CSV_SUFFIXES,
    Schema,
    checked_categories,
    checked_numbers,
    fail_at,
    is_dates,
    read_schema,
    with_roles,
)

__all__ = ["CSV_SUFFIXES", "csv_error", "header_only", "require_columns"]


def read_csv(path, schema: Schema) -> pd.DataFrame:
    """The CSV as a DataFrame: declared category, id and label columns as text, others as Arrow infers them."""
    text = [schema.label, *schema.ids, *(schema.categorical if schema.categorical != "auto" else [])]
    table = arrow_csv(path, text)
    repeated = [name for i, name in enumerate(table.column_names) if name in table.column_names[:i]]
    if repeated:
        raise StageError(f"{path}: column '{repeated[0]}' appears twice in the header; rename one")
    if schema.categorical == "auto":  # read again with every non-numeric column as its text ("true", dates ...)
        others = {schema.label, schema.time, *schema.ids, *schema.drop, *schema.log}
        auto = [f.name for f in table.schema if f.name not in others and not pa.types.is_integer(f.type)]
        auto = [name for name in auto if not pa.types.is_floating(table.schema.field(name).type)]
        if any(table.schema.field(name).type != pa.string() for name in auto):
            table = arrow_csv(path, [*text, *auto])
    declared = {
        "label": [schema.label],
        "time": [schema.time] if schema.time else [],
        "ids": schema.ids,
        "drop": schema.drop,
        "log": schema.log,
        "categorical": schema.categorical if schema.categorical != "auto" else [],
    }
    for role, columns in declared.items():
        require_columns(table.column_names, path, columns, f" (named in data.{role})")
    if table.num_rows == 0:
        raise header_only(path)
    return table.to_pandas()


def arrow_csv(path, text: list[str]) -> pa.Table:
    """The CSV as Arrow reads it, the `text` columns as strings. Empty cells and NaN/NA spellings are missing."""
    options = pacsv.ConvertOptions(column_types=dict.fromkeys(text, pa.string()), strings_can_be_null=True)
    try:
        return pacsv.read_csv(path, convert_options=options)
    except FileNotFoundError as error:
        raise StageError(f"{path}: file not found; run 'dvc repro download'") from error
    except pa.ArrowInvalid as error:
        raise csv_error(path, error) from error


def csv_error(path, error: Exception) -> StageError:
    reason = "file is empty" if "Empty CSV file" in str(error) else str(error).splitlines()[0]
    return StageError(f"{path}: cannot parse CSV ({reason})")


def header_only(path) -> StageError:
    return StageError(f"{path}: header only, no data rows")


def require_columns(names: list[str], path, required: list[str], why: str = ""):
    """Fail naming the first required column that is missing."""
    missing = [name for name in required if name not in names]
    if missing:
        raise StageError(f"{path}: missing column '{missing[0]}'{why}")


def categorical_columns(df: pd.DataFrame, schema: Schema, features: list[str]) -> list[str]:
    """data.categorical, or with "auto" every feature column that read_csv kept as text."""
    if schema.categorical != "auto":
        return schema.categorical
    return [name for name in features if not pd.api.types.is_numeric_dtype(df[name])]


def binary_label(raw: pd.Series, path, schema: Schema) -> pd.Series:
    """The label as int8, 1 where it equals data.positive; fails unless it has exactly two values, one of them
    data.positive. A numeric data.positive matches numbers written either way (1, 1.0)."""
    name, positive = schema.label, schema.positive
    fail_at(path, name, raw, [(raw.isna(), "missing label value")])
    numbers = pd.to_numeric(raw, errors="coerce")
    values = numbers if is_number(positive) and numbers.notna().all() else raw.str.strip()
    levels = pd.unique(values).tolist()  # in order of appearance
    if len(levels) > 2:
        third = int(np.flatnonzero(~values.isin(levels[:2]))[0])
        raise StageError(
            f"{path}: column '{name}', row {third + 1} (line {third + 2}): a third label value ({levels[2]!r}, "
            f"after {levels[0]!r} and {levels[1]!r}); data.label must name a column with exactly two values"
        )
    target = positive if values is numbers else str(positive)
    if target not in levels:
        raise StageError(
            f"{path}: column '{name}': no row has data.positive {positive!r} (its values: "
            f"{', '.join(repr(v) for v in sorted(levels))}); set data.positive to the rare class's value"
        )
    if len(levels) < 2:
        raise StageError(f"{path}: column '{name}': every row is {positive!r}; the label needs two values")
    return (values == target).astype("int8")


def clean(df: pd.DataFrame, schema: Schema, eps: float, path) -> tuple[pd.DataFrame, dict]:
    """The validated, cleaned table and the roles of its columns."""
    not_features = {schema.label, schema.time, *schema.ids, *schema.drop}
    candidates = [name for name in df.columns if name not in not_features | set(schema.log)]
    categorical = categorical_columns(df, schema, candidates)
    columns, numeric, logged = {}, [], {}
    for name in [name for name in df.columns if name not in {schema.label, schema.time, *schema.drop}]:
        raw = df[name]
        if name in schema.ids:
            columns[name] = raw
        elif name in categorical:
            columns[name] = checked_categories(raw, path, name, schema.missing)
        else:
            values = checked_numbers(raw, path, name, name in schema.log, schema.missing)
            if name in schema.log:
                new = f"Log{name}"
                if new in df.columns and new not in schema.drop:
                    raise StageError(f"{path}: column '{new}' exists; data.log names '{name}', which becomes '{new}'")
                logged[new], name, values = name, new, np.log(values + eps)
            columns[name] = values
            numeric.append(name)
    if not columns.keys() - set(schema.ids):
        raise StageError(f"{path}: no feature columns are left (all are data.label, time, ids or drop)")
    columns[schema.label] = binary_label(df[schema.label], path, schema)
    cleaned = pd.DataFrame(columns)
    if schema.time:
        times = df[schema.time]
        fail_at(path, schema.time, times, [(times.isna(), "missing time value")])
        if not is_dates(times):  # numbers, or text: named at its first non-number
            numbers = pd.to_numeric(times, errors="coerce").astype("float64")
            bad = numbers.isna() | np.isinf(numbers)
            fail_at(path, schema.time, times, [(bad, "time value that is neither a number nor an ISO date")])
            times = numbers
        cleaned = cleaned.iloc[np.argsort(times.to_numpy(), kind="stable")]
    roles = {
        "label": schema.label,
        "ids": schema.ids,
        "numeric": numeric,
        "categorical": categorical,
        "log": logged,
        "missing": schema.missing,
    }
    return cleaned.reset_index(drop=True), roles


def main():
    params = load_params("clean")
    eps = require(params, "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    schema = read_schema()
    cleaned, roles = clean(read_csv(RAW_CSV, schema), schema, eps, RAW_CSV)
    write_parquet(with_roles(pa.Table.from_pandas(cleaned, preserve_index=False), roles), CLEAN_PARQUET)
    log.info(
        "clean: wrote %s (%d rows, %d positive, %d numeric and %d category features, %d ids)",
        CLEAN_PARQUET,
        len(cleaned),
        cleaned[schema.label].sum(),
        len(roles["numeric"]),
        len(roles["categorical"]),
        len(roles["ids"]),
    )


if __name__ == "__main__":
    run(main)
