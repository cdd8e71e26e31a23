"""The table's description (params.yaml, section `data`) and the checks of its values: clean's, which score shares
(the label's: clean's alone).

clean records what each column is for (the roles) in the cleaned Parquet file's metadata, so split and scale
read them from the data rather than from params.
"""

import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudflow.common import CSV_SUFFIXES, PARAMS_FILE, StageError, is_int, is_number, load_params, require

SECTION = "data"
MISSING_POLICIES = ("error", "impute")
MISSING_LEVEL = "(missing)"  # a category column's missing values, with data.missing: impute
OTHER_LEVEL = "(other)"  # levels past data.max_categories and levels unseen in training
ROLES_KEY = b"fraudflow.roles"
# Columns that predictions and scores add: an id column must not take their names.
RESERVED = ("split", "label", "probability", "flagged")


@dataclass(frozen=True)
class Schema:
    label: str
    positive: object
    time: str | None
    ids: list
    columns: list | None  # the feature columns the table must have; None: every column without another role
    drop: list
    log: list
    categorical: list | str  # a list of names, or "auto"
    missing: str
    cost: str | None  # the column whose value a missed positive costs


def names(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def read_schema() -> Schema:
    """params.yaml's `data` section, every field checked; fails on a column named in two roles."""
    params = load_params(SECTION)

    def field(key, valid, description):
        return require(params, SECTION, key, valid, description)

    schema = Schema(
        label=field("label", lambda v: isinstance(v, str) and v, "a column name"),
        positive=field("positive", lambda v: isinstance(v, str) or is_number(v), "a number or a text"),
        time=field("time", lambda v: v is None or (isinstance(v, str) and v), "a column name or null"),
        ids=field("ids", names, "a list of column names"),
        columns=field("columns", lambda v: v is None or (names(v) and v), "a list of column names or null"),
        drop=field("drop", names, "a list of column names"),
        log=field("log", names, "a list of column names"),
        categorical=field("categorical", lambda v: v == "auto" or names(v), "a list of column names or 'auto'"),
        missing=field("missing", lambda v: v in MISSING_POLICIES, "'error' or 'impute'"),
        cost=field("cost", lambda v: v is None or (isinstance(v, str) and v), "a column name or null"),
    )
    roles = [("label", [schema.label]), ("time", [schema.time] if schema.time else []), ("ids", schema.ids)]
    roles += [("drop", schema.drop), ("log", schema.log)]
    roles += [("categorical", schema.categorical if schema.categorical != "auto" else [])]
    seen = {}
    for role, columns in roles:
        for column in columns:
            if column in seen:
                where = f"data.{seen[column]} and data.{role}" if seen[column] != role else f"data.{role} twice"
                raise StageError(f"{PARAMS_FILE}: column '{column}' is named in {where}; give each column one role")
            seen[column] = role
    for column in schema.columns or []:
        if seen.get(column) in ("label", "time", "ids", "drop"):
            raise StageError(
                f"{PARAMS_FILE}: column '{column}' is named in data.columns and data.{seen[column]}; "
                "data.columns lists features only"
            )
    if schema.columns is not None:  # a feature named elsewhere must be among the features
        features = [("log", schema.log), ("categorical", [] if schema.categorical == "auto" else schema.categorical)]
        features.append(("cost", [schema.cost] if schema.cost and schema.cost not in schema.drop else []))
        for role, columns in features:
            for column in columns:
                if column not in schema.columns:
                    raise StageError(
                        f"{PARAMS_FILE}: column '{column}' is named in data.{role} but not in data.columns; add it "
                        "there (a cost column that is no feature goes in data.drop)"
                    )
    for column in schema.ids:
        if column in RESERVED or column.startswith("member_"):
            raise StageError(f"{PARAMS_FILE}: data.ids: '{column}' is a name the predictions use; rename the column")
    return schema


def check_cost_role(schema: Schema, path):
    """Fails unless data.cost is a numeric feature, a data.log column or a data.drop column."""
    cost = schema.cost
    roles = {"label": [schema.label], "time": [schema.time], "ids": schema.ids}
    roles["categorical"] = schema.categorical if schema.categorical != "auto" else []
    for role, columns in roles.items():
        if cost in columns:
            raise StageError(
                f"{path}: column '{cost}' (data.cost) is data.{role}; the cost column must be a "
                "numeric column (a feature, a data.log column, or in data.drop to be the cost only)"
            )


def checked_costs(raw: pd.Series, path, name: str, first_row: int = 0) -> pd.Series:
    """The cost column as float64, or fail at its first row without a number >= 0 (the rule needs every row's)."""
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    absent = raw.isna()
    what = "the cost column (data.cost), which needs a number >= 0 in every row"
    checks = [
        (absent, f"missing value in {what}"),
        (~absent & values.isna(), f"text in {what}"),
        (np.isinf(values) | (values < 0), f"negative or non-finite value in {what}"),
    ]
    fail_at(path, name, raw, checks, first_row)
    return values


def max_categories() -> int:
    value = load_params(SECTION).get("max_categories")
    if not is_int(value) or value < 1:
        raise StageError(f"{PARAMS_FILE}: param 'data.max_categories' must be an integer >= 1, got {value!r}")
    return value


def roles_of(schema: pa.Schema, path) -> dict:
    """The roles clean recorded in a Parquet file's schema: label, time, ids, numeric, categorical, log
    ({new: raw}), missing."""
    metadata = schema.metadata or {}
    if ROLES_KEY not in metadata:
        raise StageError(f"{path}: no column roles in the file; run 'dvc repro clean'")
    return json.loads(metadata[ROLES_KEY])


def with_roles(schema: pa.Schema, roles: dict) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), ROLES_KEY: json.dumps(roles).encode()})


def is_dates(raw: pd.Series) -> bool:
    """Whether Arrow read the column as dates or times (datetime64, or datetime.date objects)."""
    values = raw.dropna()
    return pd.api.types.is_datetime64_any_dtype(raw) or (len(values) > 0 and isinstance(values.iloc[0], date))


def numeric_problems(raw: pd.Series, log: bool, missing: str) -> list[tuple[pd.Series, str]]:
    """(rows that fail, description) for each check of a numeric column's values (read as numbers or text)."""
    absent = raw.isna()
    if is_dates(raw):  # Arrow read dates or times: not a feature as they are
        return [(~absent, "a date in a numeric column (name the column in data.time or data.drop)")]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    checks = [(absent & (missing == "error"), "missing value (set data.missing: impute to fill it)")]
    where = "a data.log column (its values must be numbers >= 0)" if log else "a numeric column"
    hint = "" if log else " (list the column in data.categorical)"
    checks.append((~absent & values.isna(), f"text in {where}{hint}"))
    checks.append((np.isinf(values), "non-finite value"))
    if log:
        checks.append((values < 0, "negative value in a data.log column (its values must be >= 0)"))
    return checks


def fail_at(path, name: str, raw: pd.Series, checks, first_row: int = 0):
    """Fail naming the first row that a check catches: its column, row (and CSV line), problem and value."""
    found = [(int(bad.to_numpy().argmax()), description) for bad, description in checks if bad.any()]
    if not found:
        return
    row, description = min(found, key=lambda problem: problem[0])
    value = raw.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value  # -5.0, not np.float64(-5.0)
    row += first_row
    raise RowError(f"{path}: column '{name}', {row_name(path, row)}: {description} ({value!r})", row)


class RowError(StageError):
    """A bad value, at `row` of the whole input (from 0)."""

    def __init__(self, message: str, row: int):
        super().__init__(message)
        self.row = row


def row_name(path, row: int) -> str:
    """'row 7 (line 8)' for a CSV (data rows count from 1, after a header), 'row 7' otherwise."""
    return f"row {row + 1} (line {row + 2})" if str(path).endswith(CSV_SUFFIXES) else f"row {row + 1}"


def checked_numbers(raw: pd.Series, path, name: str, log: bool, missing: str, first_row: int = 0) -> pd.Series:
    """A numeric column as float64 (missing values NaN), or fail at its first invalid row."""
    fail_at(path, name, raw, numeric_problems(raw, log, missing), first_row)
    return raw if raw.dtype == "float64" else pd.to_numeric(raw).astype("float64")


def checked_categories(raw: pd.Series, path, name: str, missing: str, first_row: int = 0) -> pd.Series:
    """A category column as text, missing values as MISSING_LEVEL, or fail at the first missing value under
    data.missing: error."""
    text = raw.astype("string").replace("", pd.NA)  # an empty text is missing, as an empty CSV cell is
    if missing == "error":
        fail_at(path, name, raw, [(text.isna(), "missing value (set data.missing: impute to fill it)")], first_row)
    return text.fillna(MISSING_LEVEL).astype(object)


class Label:
    """The label of each batch as int8, 1 where it equals data.positive; fails, naming the row, at a third value.
    A numeric data.positive matches numbers written either way (1, 1.0)."""

    def __init__(self, path, schema: Schema):
        self.path, self.name, self.positive = path, schema.label, schema.positive
        self.levels = []  # in order of appearance
        self.numeric = None  # decided by the first batch

    def __call__(self, raw: pd.Series, first_row: int) -> pd.Series:
        fail_at(self.path, self.name, raw, [(raw.isna(), "missing label value")], first_row)
        numbers = pd.to_numeric(raw, errors="coerce")
        if self.numeric is None:
            self.numeric = is_number(self.positive) and bool(numbers.notna().all())
        if self.numeric and numbers.isna().any():
            text = int(np.flatnonzero(numbers.isna())[0])
            raise RowError(
                f"{self.path}: column '{self.name}', {row_name(self.path, first_row + text)}: a text label value "
                f"({raw.iloc[text]!r}) where the rows before it have numbers; data.label must name a column with "
                "exactly two values",
                first_row + text,
            )
        values = numbers if self.numeric else raw.astype("string").str.strip()
        for level in pd.unique(values).tolist():
            if level not in self.levels:
                self.levels.append(level)
        if len(self.levels) > 2:
            third = int(np.flatnonzero(~values.isin(self.levels[:2]))[0])
            raise RowError(
                f"{self.path}: column '{self.name}', {row_name(self.path, first_row + third)}: a third label value "
                f"({self.levels[2]!r}, after {self.levels[0]!r} and {self.levels[1]!r}); data.label must name a "
                "column with exactly two values",
                first_row + third,
            )
        return (values == self.target()).astype("int8")

    def target(self):
        return self.positive if self.numeric else str(self.positive)

    def check_two_levels(self):
        """Fail unless the whole column had two values, one of them data.positive."""
        if self.target() not in self.levels:
            raise StageError(
                f"{self.path}: column '{self.name}': no row has data.positive {self.positive!r} (its values: "
                f"{', '.join(repr(v) for v in sorted(self.levels))}); set data.positive to the rare class's value"
            )
        if len(self.levels) < 2:
            raise StageError(f"{self.path}: column '{self.name}': every row is {self.positive!r}; the label needs two")
