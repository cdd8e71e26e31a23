"""split: train / validation / test (test_size of all rows, then val_size of the rest), random or in time order.

By default rows identical in every feature (all columns but the label, ids and time) go to the same split, so no
validation or test row has a twin in training. metrics/split.json counts, per split, its duplicate groups and
rows with a twin elsewhere. Two streaming passes over the cleaned rows: the first keeps a few bytes per row (a
64-bit hash of its features, its label, its time) and decides every row's split; the second writes the splits,
rows in file order, without the time column.
"""

import math
from contextlib import ExitStack

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from fraudflow import inputs
from fraudflow.common import (
    CLEAN_PARQUET,
    SPLIT_DIR,
    SPLITS,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    require,
    run,
    write_json,
)
from fraudflow.outputs import RowGroupWriter
from fraudflow.schema import roles_of, with_roles

METRICS_FILE = "metrics/split.json"
METHODS = ("random", "time")


def row_state(clean: pq.ParquetFile, roles: dict, with_time: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, from one streaming pass: a 64-bit hash of its features (twins share it), its label and its time."""
    features = roles["numeric"] + roles["categorical"]
    columns = features + [roles["label"]] + ([roles["time"]] if with_time else [])
    rows = clean.metadata.num_rows
    hashes, labels = np.empty(rows, dtype=np.uint64), np.empty(rows, dtype=np.int8)
    times = np.empty(rows, dtype=np.float64) if with_time else None
    first = 0
    with inputs.progress(rows, "rows", "split") as bar:
        for batch in clean.iter_batches(inputs.batch_rows(), columns=columns):
            frame, end = batch.to_pandas(), first + batch.num_rows
            # A collision (odds about 1e-9 for 300,000 rows) would only merge two groups.
            hashes[first:end] = pd.util.hash_pandas_object(frame[features], index=False).to_numpy()
            labels[first:end] = frame[roles["label"]].to_numpy(np.int8)
            if with_time:
                times[first:end] = frame[roles["time"]].to_numpy(np.float64)
            bar.update(batch.num_rows)
            first = end
    return hashes, labels, times


def duplicate_groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A group id per row, numbered in order of first appearance (rows equal in every feature share one), and
    each group's size.

    The same numbers as pd.factorize(hashes), in less memory (factorize's hash table takes about 50 bytes a row):
    a sorted copy finds the repeated hashes, and only their rows are factorized."""
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    in_group = np.zeros(len(hashes), dtype=bool)
    if len(repeated):
        for start in range(0, len(hashes), 1 << 20):  # in chunks: searchsorted's positions take 8 bytes a row
            chunk = hashes[start : start + (1 << 20)]
            nearest = repeated[np.minimum(np.searchsorted(repeated, chunk), len(repeated) - 1)]
            in_group[start : start + len(chunk)] = nearest == chunk
    rows = np.flatnonzero(in_group)
    codes, _ = pd.factorize(hashes[rows])
    first = np.full(codes.max() + 1 if len(codes) else 0, len(hashes), dtype=np.int64)
    np.minimum.at(first, codes, rows)
    starts = ~in_group
    starts[first] = True  # each row that starts a group: a unique row, or the first of its twins
    groups = np.cumsum(starts, dtype=np.int32 if len(hashes) < 2**31 else np.int64) - 1
    groups[rows] = groups[first[codes]]
    sizes = np.ones(int(starts.sum()), dtype=np.int32)
    sizes[groups[first]] = np.bincount(codes)
    return groups, sizes


def random_split(labels: np.ndarray, test_size: float, val_size: float, stratify: bool, seed: int) -> np.ndarray:
    """Each row's split (index into SPLITS) as in the tutorial: train_test_split twice, stratified if asked."""
    rows = np.arange(len(labels))
    try:
        rest, test = train_test_split(
            rows, test_size=test_size, random_state=seed, stratify=labels if stratify else None
        )
        train, val = train_test_split(
            rest, test_size=val_size, random_state=seed, stratify=labels[rest] if stratify else None
        )
    except ValueError as error:
        raise StageError(f"{CLEAN_PARQUET}: cannot split {len(rows)} rows ({error})") from error
    part = np.zeros(len(labels), dtype=np.int8)
    part[val], part[test] = SPLITS.index("val"), SPLITS.index("test")
    return part


def fill(groups: np.ndarray, sizes: np.ndarray, target: int) -> np.ndarray:
    """The groups, taken in order, each only if the rows taken so far plus its own stay within target."""
    prefix, done = len(groups), 0  # the leading groups that all fit, and their rows
    for start in range(0, len(groups), 1 << 20):  # in chunks: a running total takes 8 bytes a group
        total = done + np.cumsum(sizes[groups[start : start + (1 << 20)]], dtype=np.int64)
        fitting = int(np.searchsorted(total, target, side="right"))
        done = int(total[fitting - 1]) if fitting else done
        if fitting < len(total):
            prefix = start + fitting
            break
    more = []
    for group in groups[prefix + 1 :]:  # past the first that does not fit, smaller groups may (rarely many)
        if done == target:
            break
        if done + sizes[group] <= target:
            more.append(group)
            done += int(sizes[group])
    return np.concatenate([groups[:prefix], np.asarray(more, dtype=groups.dtype)])


def grouped_random_split(
    labels: np.ndarray,
    groups: np.ndarray,
    sizes: np.ndarray,
    test_size: float,
    val_size: float,
    stratify: bool,
    seed: int,
) -> np.ndarray:
    """Each row's split, whole duplicate groups at a time.

    Stratified by whether a group holds a positive: within each stratum the groups are shuffled (seeded) and each
    joins the test split while it fits in test_size of the stratum's rows, then likewise validation from the rest.
    """
    strata = np.zeros(len(sizes), dtype=bool)
    if stratify:
        strata[groups[labels == 1]] = True
    rng = np.random.default_rng(seed)
    part = np.zeros(len(sizes), dtype=np.int8)  # index into SPLITS, per group; 0 is train
    for stratum in np.unique(strata):
        order = rng.permutation(np.flatnonzero(strata == stratum).astype(groups.dtype))
        for name, size in (("test", test_size), ("val", val_size)):
            left = order[part[order] == 0]
            part[fill(left, sizes, round(size * sizes[left].sum()))] = SPLITS.index(name)
    return part[groups]


def time_split(groups: np.ndarray, times: np.ndarray, test_size: float, val_size: float) -> np.ndarray:
    """Each row's split by time: the latest test_size of rows are test, the latest val_size of the rest validation
    (ties in file order). A group goes to the latest split any of its rows falls in, so training holds no row from
    the validation or test period."""
    n_test = math.ceil(test_size * len(groups))
    n_val = math.ceil(val_size * (len(groups) - n_test))
    period = np.empty(len(groups), dtype=np.int8)
    period[np.argsort(times, kind="stable")] = np.repeat(
        np.arange(len(SPLITS), dtype=np.int8), [len(groups) - n_test - n_val, n_val, n_test]
    )
    latest = np.zeros(groups.max() + 1, dtype=np.int8)
    np.maximum.at(latest, groups, period)
    return latest[groups]


def counts(labels: np.ndarray, groups: np.ndarray, sizes: np.ndarray, part: np.ndarray) -> dict:
    """Per split: rows, positives, duplicate groups (2+ equal rows) with a row in it, rows with a twin elsewhere."""
    duplicate = sizes > 1
    present = np.zeros((len(SPLITS), len(sizes)), dtype=bool)
    for index in range(len(SPLITS)):
        present[index, groups[part == index]] = True
    result = {}
    for index, name in enumerate(SPLITS):
        rows = part == index
        elsewhere = present[[other for other in range(len(SPLITS)) if other != index]].any(axis=0)
        result[name] = {
            "rows": int(rows.sum()),
            "positives": int(labels[rows].sum()),
            "duplicate_groups": int((duplicate & present[index]).sum()),
            "rows_with_twin_in_other_split": int(elsewhere[groups[rows]].sum()),
        }
    return result


def read_settings() -> dict:
    params = load_params("split")

    def fraction(v):
        return is_number(v) and 0 < v < 1

    return {
        "method": require(params, "split", "method", lambda v: v in METHODS, "'random' or 'time'"),
        "test_size": require(params, "split", "test_size", fraction, "a fraction between 0 and 1"),
        "val_size": require(params, "split", "val_size", fraction, "a fraction between 0 and 1"),
        "stratify": require(params, "split", "stratify", lambda v: isinstance(v, bool), "true or false"),
        "group": require(params, "split", "group_duplicates", lambda v: isinstance(v, bool), "true or false"),
        "seed": require(params, "split", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    }


def split_rows(labels: np.ndarray, groups: np.ndarray, sizes: np.ndarray, times: np.ndarray | None, s: dict):
    """Each row's split (index into SPLITS), as the settings ask."""
    if s["method"] == "time":
        return time_split(groups if s["group"] else np.arange(len(labels)), times, s["test_size"], s["val_size"])
    if s["group"]:
        return grouped_random_split(labels, groups, sizes, s["test_size"], s["val_size"], s["stratify"], s["seed"])
    return random_split(labels, s["test_size"], s["val_size"], s["stratify"], s["seed"])


def main():
    settings = read_settings()
    clean = inputs.parquet_file(CLEAN_PARQUET, "clean")
    roles = roles_of(clean.schema_arrow, CLEAN_PARQUET)
    by_time = settings["method"] == "time"
    if by_time and not roles["time"]:
        raise StageError(f"{CLEAN_PARQUET}: split.method 'time' needs a time column; set data.time")
    hashes, labels, times = row_state(clean, roles, by_time)
    groups, sizes = duplicate_groups(hashes)
    del hashes
    part = split_rows(labels, groups, sizes, times, settings)
    for index, name in enumerate(SPLITS):
        if not labels[part == index].any():
            raise StageError(
                f"{CLEAN_PARQUET}: split.method '{settings['method']}' leaves the {name} split without a positive "
                f"row ({int((part == index).sum())} rows); use data with more positives or other split.test_size / "
                "split.val_size"
            )
    schema = clean.schema_arrow
    if roles["time"]:
        schema = with_roles(schema.remove(schema.get_field_index(roles["time"])), {**roles, "time": None})
    with atomic_output(SPLIT_DIR) as tmp, ExitStack() as stack:
        tmp.mkdir()
        writers = [stack.enter_context(RowGroupWriter(tmp / f"{name}.parquet", schema)) for name in SPLITS]
        first_row = 0
        for batch in clean.iter_batches(inputs.batch_rows(), columns=schema.names):
            rows = part[first_row : first_row + batch.num_rows]
            for index, writer in enumerate(writers):
                writer.write(batch.filter(rows == index))
            first_row += batch.num_rows
    summary = counts(labels, groups, sizes, part)
    write_json(METRICS_FILE, summary)
    for name, count in summary.items():
        log.info(
            "split: %-5s %7d rows, %4d positive, %5d duplicate groups, %5d rows with a twin in another split",
            name,
            *count.values(),
        )


if __name__ == "__main__":
    run(main)
