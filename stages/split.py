"""split: train / validation / test (test_size of all rows, then val_size of the rest), random or in time order.

By default rows identical in every feature (all columns but the label and ids) go to the same split, so no
validation or test row has a twin in training. metrics/split.json counts, per split, its duplicate groups and
rows with a twin elsewhere.
"""

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

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
    read_parquet,
    require,
    run,
    write_json,
)
from fraudflow.schema import roles_of

METRICS_FILE = "metrics/split.json"
METHODS = ("random", "time")


def duplicate_groups(features: pd.DataFrame) -> np.ndarray:
    """A group id per row: rows equal in every feature share one, whatever their label."""
    # One 64-bit hash per row; a collision (odds about 1e-9 for this data) would only merge two groups.
    return pd.factorize(pd.util.hash_pandas_object(features, index=False))[0]


def positions(part: np.ndarray) -> dict:
    """Row positions of each split, in row order, from each row's index into SPLITS."""
    return {name: np.flatnonzero(part == index) for index, name in enumerate(SPLITS)}


def random_split(labels: np.ndarray, test_size: float, val_size: float, stratify: bool, seed: int) -> dict:
    """Row positions of each split as in the tutorial: train_test_split twice, stratified by Class if asked."""
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
    return {"train": train, "val": val, "test": test}


def fill(groups: np.ndarray, sizes: np.ndarray, target: int) -> list:
    """The groups, taken in order, each only if the rows taken so far plus its own stay within target."""
    taken, total = [], 0
    for group, size in zip(groups.tolist(), sizes[groups].tolist(), strict=True):
        if total + size <= target:
            taken.append(group)
            total += size
            if total == target:
                break
    return taken


def grouped_random_split(
    labels: np.ndarray, groups: np.ndarray, test_size: float, val_size: float, stratify: bool, seed: int
) -> dict:
    """Row positions of each split, whole duplicate groups at a time.

    Stratified by whether a group holds a fraud: within each stratum the groups are shuffled (seeded) and each
    joins the test split while it fits in test_size of the stratum's rows, then likewise validation from the rest.
    """
    sizes = np.bincount(groups)
    strata = np.bincount(groups, weights=labels) > 0 if stratify else np.zeros(len(sizes), dtype=bool)
    rng = np.random.default_rng(seed)
    part = np.zeros(len(sizes), dtype=np.int8)  # index into SPLITS, per group; 0 is train
    for stratum in np.unique(strata):
        order = rng.permutation(np.flatnonzero(strata == stratum))
        for name, size in (("test", test_size), ("val", val_size)):
            left = order[part[order] == 0]
            part[fill(left, sizes, round(size * sizes[left].sum()))] = SPLITS.index(name)
    return positions(part[groups])


def time_split(groups: np.ndarray, test_size: float, val_size: float) -> dict:
    """Row positions of each split; row order is time order (clean sorts by Time).

    The latest test_size of rows are test, the latest val_size of the rest validation. A group goes to the latest
    split any of its rows falls in, so training holds no row from the validation or test period.
    """
    n_test = math.ceil(test_size * len(groups))
    n_val = math.ceil(val_size * (len(groups) - n_test))
    period = np.repeat(np.arange(len(SPLITS), dtype=np.int8), [len(groups) - n_test - n_val, n_val, n_test])
    latest = np.zeros(groups.max() + 1, dtype=np.int8)
    np.maximum.at(latest, groups, period)
    return positions(latest[groups])


def counts(labels: np.ndarray, groups: np.ndarray, parts: dict) -> dict:
    """Per split: rows, frauds, duplicate groups (2+ equal rows) with a row in it, rows with a twin in another split."""
    part = np.empty(len(groups), dtype=np.int64)
    for index, name in enumerate(SPLITS):
        part[parts[name]] = index
    n_groups = groups.max() + 1
    per_group = np.bincount(groups * len(SPLITS) + part, minlength=n_groups * len(SPLITS)).reshape(n_groups, -1)
    duplicate = per_group.sum(axis=1) > 1
    result = {}
    for index, name in enumerate(SPLITS):
        rows = parts[name]
        own_group = per_group[groups[rows]]
        result[name] = {
            "rows": len(rows),
            "frauds": int(labels[rows].sum()),
            "duplicate_groups": int((duplicate & (per_group[:, index] > 0)).sum()),
            "rows_with_twin_in_other_split": int((own_group.sum(axis=1) > own_group[:, index]).sum()),
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


def split_rows(labels: np.ndarray, groups: np.ndarray, s: dict) -> dict:
    """Row positions of each split, as the settings ask."""
    if s["method"] == "time":
        return time_split(groups if s["group"] else np.arange(len(labels)), s["test_size"], s["val_size"])
    if s["group"]:
        return grouped_random_split(labels, groups, s["test_size"], s["val_size"], s["stratify"], s["seed"])
    return random_split(labels, s["test_size"], s["val_size"], s["stratify"], s["seed"])


def main():
    settings = read_settings()
    table = read_parquet(CLEAN_PARQUET)
    roles = roles_of(table, CLEAN_PARQUET)
    labels = table[roles["label"]].to_numpy()
    groups = duplicate_groups(table.select(roles["numeric"] + roles["categorical"]).to_pandas())
    parts = split_rows(labels, groups, settings)
    method = settings["method"]
    for name, rows in parts.items():
        if not labels[rows].any():
            raise StageError(
                f"{CLEAN_PARQUET}: split.method '{method}' leaves the {name} split without a positive row "
                f"({len(rows)} rows); use data with more positives or other split.test_size / split.val_size"
            )

    with atomic_output(SPLIT_DIR) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            pq.write_table(table.take(parts[name]), tmp / f"{name}.parquet")
    summary = counts(labels, groups, parts)
    write_json(METRICS_FILE, summary)
    for name, count in summary.items():
        log.info(
            "split: %-5s %7d rows, %4d positive, %5d duplicate groups, %5d rows with a twin in another split",
            name,
            *count.values(),
        )


if __name__ == "__main__":
    run(main)
