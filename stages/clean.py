"""clean: validate the raw table against params.yaml's `data` section, batch by batch; write it as Parquet.

The raw table is data/raw/table.csv (a CSV) or data/raw/table.parquet (a Parquet file or folder), as download
wrote it. Rows keep their order; data.drop columns go, and with data.columns every column it does not list (and
that has no other role); each data.log column becomes Log<name> = log(value + clean.eps) in its place; the cost
column (data.cost) keeps its raw values, also beside Log<name> or when in data.drop (a cost then, not a feature);
the time column becomes float64 (numbers as they are, dates as seconds since 1970), split orders rows by it; the
label becomes 0/1 (1 for data.positive), last. The roles of the columns go into the file's metadata
(fraudflow/schema.py). Memory does not grow with the rows.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudflow import inputs
from fraudflow.common import (
    CLEAN_PARQUET,
    RAW_CSV,
    StageError,
    atomic_output,
    is_number,
    load_params,
    log,
    require,
    run,
)
from fraudflow.outputs import RowGroupWriter
from fraudflow.schema import (
    Label,
    RowError,
    Schema,
    check_cost_role,
    checked_categories,
    checked_costs,
    checked_numbers,
    fail_at,
    is_dates,
    read_schema,
    with_roles,
)


@dataclass
class Plan:
    """What clean does with each column of the input, decided from its header (and types) before any batch."""

    path: Path
    schema: Schema
    categorical: list
    numeric: list  # output names (Log<name> for data.log columns)
    cost: str | None  # data.cost, kept with its raw values
    output: pa.Schema
    ignored: list  # columns data.columns does not list (and that have no other role)

    @property
    def dropped(self) -> list:
        """The columns that go: data.drop's (all but the cost column) and the ignored ones."""
        return [name for name in self.schema.drop if name != self.cost] + self.ignored

    def roles(self) -> dict:
        return {
            "label": self.schema.label,
            "time": self.schema.time,
            "ids": self.schema.ids,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "log": {f"Log{name}": name for name in self.schema.log},
            "missing": self.schema.missing,
            "cost": self.cost,
        }


def plan(path: Path, schema: Schema, types: pa.Schema) -> Plan:
    """The plan for an input whose columns have these (inferred or stored) types; fails on a declared column that
    is absent, a repeated column name, a Log<name> that exists, a cost column that is not numeric, or no feature
    left."""
    names, cost = types.names, schema.cost
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise StageError(f"{path}: column '{repeated[0]}' appears twice in the header; rename one")
    declared = {
        "label": [schema.label],
        "time": [schema.time] if schema.time else [],
        "ids": schema.ids,
        "columns": schema.columns or [],
        "drop": schema.drop,
        "log": schema.log,
        "categorical": schema.categorical if schema.categorical != "auto" else [],
        "cost": [cost] if cost else [],
    }
    for role, columns in declared.items():
        inputs.require_columns(names, path, columns, f" (named in data.{role})")
    if cost:
        check_cost_role(schema, path)
    roles = {schema.label, schema.time, *schema.ids, *schema.drop, cost}
    ignored = [] if schema.columns is None else [n for n in names if n not in roles and n not in schema.columns]
    not_features = {*roles, *schema.log, *ignored} - {None}
    features = [field for field in types if field.name not in not_features]
    if schema.categorical == "auto":  # every column that is not numbers (in a CSV: in its first block)
        categorical = [field.name for field in features if not is_numbers(field) and field.name != cost]
    else:
        categorical = schema.categorical
    output, numeric = [], []
    for field in types:
        name = field.name
        if name in (schema.label, *schema.drop, *ignored):
            continue
        if name == schema.time:
            output.append(pa.field(name, pa.float64()))
        elif name in schema.ids:
            output.append(field)
        elif name in categorical:
            output.append(pa.field(name, pa.string()))
        else:
            new = f"Log{name}" if name in schema.log else name
            if new != name and new in names and new not in schema.drop:
                raise StageError(f"{path}: column '{new}' exists; data.log names '{name}', which becomes '{new}'")
            output.append(pa.field(new, pa.float64()))
            numeric.append(new)
    if not numeric and not categorical:
        raise StageError(f"{path}: no feature columns are left (all are data.label, time, ids or drop)")
    if cost in (*schema.log, *schema.drop):
        output.append(pa.field(cost, pa.float64()))
    output.append(pa.field(schema.label, pa.int8()))
    return Plan(path, schema, categorical, numeric, cost, pa.schema(output), ignored)


def times(raw: pd.Series, path, name: str, first_row: int) -> np.ndarray:
    """The time column as float64: numbers as they are, dates and ISO date texts as seconds since 1970 (UTC where
    they carry no time zone)."""
    fail_at(path, name, raw, [(raw.isna(), "missing time value")], first_row)
    if is_dates(raw):
        return seconds(pd.to_datetime(raw, utc=True))
    numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
    if numbers.isna().any() and not pd.api.types.is_numeric_dtype(raw):  # text: ISO dates?
        dates = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce")
        if dates.notna().all():
            return seconds(dates)
    bad = numbers.isna() | np.isinf(numbers)
    fail_at(path, name, raw, [(bad, "time value that is neither a number nor an ISO date")], first_row)
    return numbers.to_numpy()


def seconds(dates: pd.Series) -> np.ndarray:
    return ((dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def clean_batch(batch: pa.Table, plan: Plan, label: Label, eps: float, first_row: int) -> pa.Table:
    """One batch of input rows (data.drop columns gone), validated (errors name the row in the whole input) and
    cleaned; ids pass through untouched."""
    schema, columns, problems = plan.schema, {}, []
    for name in batch.column_names:
        if name in schema.ids:
            columns[name] = batch.column(name)
            continue
        try:
            columns.update(clean_column(batch.column(name).to_pandas(), name, plan, label, eps, first_row))
        except RowError as problem:
            problems.append(problem)
    if problems:  # the first bad row, whichever column it is in
        raise min(problems, key=lambda problem: problem.row)
    arrays = [as_arrow(columns[field.name], field) for field in plan.output]
    return pa.Table.from_arrays(arrays, schema=plan.output)


def clean_column(raw: pd.Series, name: str, plan: Plan, label: Label, eps: float, first_row: int) -> dict:
    """{output name: values} of one input column of a batch; RowError at its first bad row."""
    schema, path = plan.schema, plan.path
    if name == schema.label:
        return {name: label(raw, first_row)}
    if name == schema.time:
        return {name: times(raw, path, name, first_row)}
    if name in plan.categorical:
        return {name: checked_categories(raw, path, name, schema.missing, first_row)}
    result = {}
    if name == plan.cost:  # its raw values (a plain feature's too), checked first: its rules are the stricter
        result[name] = checked_costs(raw, path, name, first_row)
    if name in schema.log:
        result[f"Log{name}"] = np.log(checked_numbers(raw, path, name, True, schema.missing, first_row) + eps)
    elif name not in (*schema.drop, plan.cost):
        result[name] = checked_numbers(raw, path, name, False, schema.missing, first_row)
    return result


def as_arrow(values, field: pa.Field):
    """A cleaned column as Arrow; ids already are (the input's own column)."""
    return values if isinstance(values, pa.ChunkedArray) else pa.array(values, type=field.type)


def csv_plan(path: Path, schema: Schema) -> tuple[Plan, object]:
    """The plan for a CSV and its batches. Types come from the first block as Arrow infers them: the label, ids,
    category and data.drop columns are read as text, the time column as numbers if it holds numbers there (else
    as text), every other column as float64."""
    first = inputs.csv_first_block(path)
    text = {schema.label, *schema.ids, *schema.drop, *plan(path, schema, first.schema).categorical} - {schema.cost}
    types = pa.schema(
        (f.name, pa.string() if f.name in text or (f.name == schema.time and not is_numbers(f)) else pa.float64())
        for f in first.schema
    )
    typed = plan(path, schema, types)

    def name_bad_value(path, first_row):
        """Read the block that Arrow could not convert again, each column as Arrow infers it, and clean it: that
        names the column, row and value."""
        block = inputs.csv_block_at(path, first_row, None)
        if block is not None:
            block = pa.Table.from_batches([block]).drop_columns(typed.dropped)
            clean_batch(block, typed, Label(path, schema), 1.0, first_row)

    return typed, inputs.csv_batches(path, types, "clean", name_bad_value)


def is_numbers(field: pa.Field) -> bool:
    """Numbers, or no value at all (a CSV column empty in its first block)."""
    kind = field.type
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or kind == pa.null()


def parquet_plan(path: Path, schema: Schema) -> tuple[Plan, object]:
    dataset = inputs.parquet_dataset(path)
    return plan(path, schema, dataset.schema), inputs.parquet_batches(dataset, "clean")


def main():
    params = load_params("clean")
    eps = require(params, "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    schema = read_schema()
    source = inputs.raw_input()
    try:
        rows, positives, the_plan = clean(source, schema, eps)
    except StageError as error:  # name where the table came from: download.url (a mirror holds the same bytes)
        raise StageError(f"{error} ({source} is download.url {load_params('download').get('url')!r})") from error
    if the_plan.ignored:
        log.info(
            "clean: ignored %d columns not in data.columns: %s", len(the_plan.ignored), ", ".join(the_plan.ignored)
        )
    log.info(
        "clean: wrote %s (%d rows, %d positive, %d numeric and %d category features, %d ids)",
        CLEAN_PARQUET,
        rows,
        positives,
        len(the_plan.numeric),
        len(the_plan.categorical),
        len(schema.ids),
    )


def clean(source: Path, schema: Schema, eps: float) -> tuple[int, int, Plan]:
    """Write the cleaned table; return its rows, positives and the plan."""
    the_plan, batches = (csv_plan if source == RAW_CSV else parquet_plan)(source, schema)
    label = Label(source, schema)
    rows = positives = 0
    with atomic_output(CLEAN_PARQUET) as tmp:
        with RowGroupWriter(tmp, with_roles(the_plan.output, the_plan.roles())) as writer:
            for table in inputs.exact_batches(batches, inputs.batch_rows()):
                cleaned = clean_batch(table.drop_columns(the_plan.dropped), the_plan, label, eps, rows)
                writer.write(cleaned)
                rows += table.num_rows
                positives += int(cleaned[schema.label].to_numpy().sum())
        if rows == 0:
            raise inputs.header_only(source)
        label.check_two_levels()
    return rows, positives, the_plan


if __name__ == "__main__":
    run(main)
