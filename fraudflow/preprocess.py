"""The preprocessing scale fits on the training split, as plain data (JSON), and its transform to model features.

Features, in order: the numeric columns, imputed (with data.missing: impute) then standardised and clipped to
[-clip, clip]; a 0/1 indicator per numeric column that had missing values in training; per category column, a
one-hot block [(other), level, ...] over its max_categories most frequent training levels (ties by name).
stages/export.py builds the same steps into the exported model from this data.
"""

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from fraudflow.common import SPLIT_DIR, StageError
from fraudflow.inputs import exact_batches
from fraudflow.schema import OTHER_LEVEL

TRAIN_SPLIT = SPLIT_DIR / "train.parquet"
# The scaler's statistics are summed over blocks of this many values (rows x numeric columns), the same whatever
# the batch size, so they do not depend on it; 2**23 values are 289,262 rows of creditcard.csv's 29 numeric columns.
FIT_BLOCK_VALUES = 1 << 23


def fit(read, roles: dict, clip: float, max_categories: int) -> dict:
    """The preprocessing of the training rows that read(columns) streams (an iterable of Arrow tables with those
    columns; each call starts again from the first row). Two passes, six with data.missing: impute."""
    numeric, categorical = roles["numeric"], roles["categorical"]
    rows, present, levels = 0, np.zeros(len(numeric), dtype=np.int64), {name: Counter() for name in categorical}
    for table in read(numeric + categorical):
        frame = table.to_pandas()
        rows += len(frame)
        present += frame[numeric].notna().sum().to_numpy(np.int64)
        for name in categorical:
            levels[name].update(frame[name].value_counts().to_dict())
    empty = [name for name, count in zip(numeric, present, strict=True) if count == 0]
    if empty:
        raise StageError(f"{TRAIN_SPLIT}: column '{empty[0]}' has no value in the training split; list it in data.drop")
    indicators = [name for name, count in zip(numeric, present, strict=True) if count < rows]
    # Under data.missing: impute, every numeric column gets its median: a gap may come later (validation, scoring).
    impute = dict(zip(numeric, medians(read, numeric, present), strict=True)) if roles["missing"] == "impute" else {}
    scaler = StandardScaler()
    block_rows = max(1, FIT_BLOCK_VALUES // max(1, len(numeric)))
    for block in exact_batches(read(numeric), block_rows) if numeric else []:
        scaler.partial_fit(block.to_pandas().fillna(impute).to_numpy(np.float64))
    ranked = {name: ranked_levels(counts) for name, counts in levels.items()}
    categories = {name: levels[:max_categories] for name, levels in ranked.items()}
    features = [*numeric, *(f"{name}_missing" for name in indicators)]
    for name, levels in categories.items():
        features += [f"{name}={level}" for level in (OTHER_LEVEL, *levels)]
    return {
        "features": features,
        "numeric": numeric,
        "mean": scaler.mean_.tolist() if numeric else [],
        "scale": scaler.scale_.tolist() if numeric else [],
        "clip": clip,
        "impute": impute,
        "indicators": indicators,
        "categories": categories,
        "folded": {name: sorted(levels[max_categories:]) for name, levels in ranked.items()},  # seen, as (other)
        "log": roles["log"],
        "missing": roles["missing"],
    }


def medians(read, numeric: list[str], present: np.ndarray) -> list[float]:
    """Each column's exact median, as pandas computes it: the mean of the two middle values for an even count."""
    low, high = values_at_ranks(read, numeric, np.stack([(present - 1) // 2, present // 2]))
    return [float((a + b) / 2) for a, b in zip(low, high, strict=True)]


def values_at_ranks(read, numeric: list[str], ranks: np.ndarray) -> np.ndarray:
    """The values at these 0-based ranks (rows: ranks, columns: the numeric columns) among each column's present
    values in ascending order, exactly, by radix selection over the values' sortable 64-bit keys: four streaming
    passes, each fixing 16 more bits of every wanted value, holding 65,536 counts per rank and column."""
    ranks = np.array(ranks, dtype=np.int64)
    prefix = np.zeros(ranks.shape, dtype=np.uint64)  # the key bits fixed so far
    for shift in (48, 32, 16, 0):
        counts = np.zeros((*ranks.shape, 1 << 16), dtype=np.int64)
        for table in read(numeric):
            for column, name in enumerate(numeric):
                values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
                keys = sortable(values[~np.isnan(values)])
                for rank in range(len(ranks)):
                    chosen = keys if shift == 48 else keys[(keys >> np.uint64(shift + 16)) == prefix[rank, column]]
                    digits = ((chosen >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
                    counts[rank, column] += np.bincount(digits, minlength=1 << 16)
        below = counts.cumsum(axis=2)
        for rank, column in np.ndindex(ranks.shape):
            digit = int(np.searchsorted(below[rank, column], ranks[rank, column], side="right"))
            ranks[rank, column] -= below[rank, column, digit - 1] if digit else 0
            prefix[rank, column] = (prefix[rank, column] << np.uint64(16)) | np.uint64(digit)
    return unsortable(prefix)


SIGN = np.uint64(1 << 63)


def sortable(values: np.ndarray) -> np.ndarray:
    """float64 values as uint64 keys in the same order (negative values' bits inverted, positives' sign set)."""
    bits = values.view(np.uint64)
    return np.where(bits & SIGN, ~bits, bits | SIGN)


def unsortable(keys: np.ndarray) -> np.ndarray:
    return np.where(keys & SIGN, keys & ~SIGN, ~keys).view(np.float64)


def ranked_levels(counts: dict) -> list[str]:
    """Levels by their counts, most frequent first, ties broken by name."""
    return [level for level, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def transform(frame: pd.DataFrame, prep: dict) -> np.ndarray:
    """The model features (float32) of cleaned rows."""
    numeric = frame[prep["numeric"]]
    scaled = (numeric.fillna(prep["impute"]).to_numpy(np.float64) - prep["mean"]) / prep["scale"]
    parts = [np.clip(scaled, -prep["clip"], prep["clip"])]
    parts += [numeric[prep["indicators"]].isna().to_numpy(np.float64)]
    for name, levels in prep["categories"].items():
        code = pd.Index(levels).get_indexer(frame[name]) + 1  # 0: (other), any level not in `levels`
        parts.append(np.eye(len(levels) + 1)[code])
    return np.concatenate(parts, axis=1).astype(np.float32)
