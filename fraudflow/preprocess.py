"""The preprocessing scale fits on the training split, as plain data (JSON), and its transform to model features.

Features, in order: the numeric columns, imputed (with data.missing: impute) then standardised and clipped to
[-clip, clip]; a 0/1 indicator per numeric column that had missing values in training; per category column, a
one-hot block [(other), level, ...] over its max_categories most frequent training levels (ties by name).
stages/export.py builds the same steps into the exported model from this data.
"""

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from fraudflow.common import SPLIT_DIR, StageError
from fraudflow.schema import OTHER_LEVEL

TRAIN_SPLIT = SPLIT_DIR / "train.parquet"


def fit(train: pd.DataFrame, roles: dict, clip: float, max_categories: int) -> dict:
    numeric, categorical = roles["numeric"], roles["categorical"]
    values = train[numeric]
    empty = [name for name in numeric if values[name].isna().all()]
    if empty:
        raise StageError(f"{TRAIN_SPLIT}: column '{empty[0]}' has no value in the training split; list it in data.drop")
    indicators = [name for name in numeric if values[name].isna().any()]
    # Under data.missing: impute, every numeric column gets its median: a gap may come later (validation, scoring).
    impute = {name: float(values[name].median()) for name in numeric} if roles["missing"] == "impute" else {}
    scaler = StandardScaler().fit(values.fillna(impute).to_numpy()) if numeric else None
    ranked = {name: ranked_levels(train[name]) for name in categorical}
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


def ranked_levels(column: pd.Series) -> list[str]:
    """The column's levels, most frequent first, ties broken by name."""
    return [level for level, _ in sorted(column.value_counts().items(), key=lambda item: (-item[1], item[0]))]


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
