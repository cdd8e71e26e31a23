"""The training split's profile, what a scored file is later compared with (fraudflow/monitor.py): each column's
shares of rows in its training decile bins (a category column's: per training level), and the features' means,
the reference row of the reason codes (fraudflow/onnx_reasons.py). scale makes it while it transforms the training
split; export writes it into model.json.
"""

import numpy as np

from fraudflow.monitoring import category_counts, number_counts
from fraudflow.preprocess import values_at_ranks

QUANTILES = np.arange(1, 10) / 10  # decile edges


def decile_edges(read, numeric: list[str], present: np.ndarray) -> dict[str, list[float]]:
    """Each numeric column's distinct training deciles (the values at ranks floor(q * (present - 1))), exactly."""
    ranks = np.floor(np.outer(QUANTILES, np.maximum(present - 1, 0))).astype(np.int64)
    values = values_at_ranks(read, numeric, ranks)
    return {name: np.unique(values[:, column]).tolist() for column, name in enumerate(numeric)}


def present_counts(read, numeric: list[str]) -> np.ndarray:
    """How many rows of each numeric column have a value (neither null nor NaN, as values_at_ranks counts them)."""
    present = np.zeros(len(numeric), dtype=np.int64)
    for table in read(numeric):
        for column, name in enumerate(numeric):
            values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            present[column] += int((~np.isnan(values)).sum())
    return present


class Profiler:
    """Counts the training rows, batch by batch, into each column's bins and sums their features."""

    def __init__(self, edges: dict[str, list[float]], prep: dict):
        self.edges, self.levels = edges, prep["categories"]
        self.counts = {name: 0 for name in [*edges, *self.levels]}
        self.feature_sums, self.rows = np.zeros(len(prep["features"])), 0

    def add(self, frame, features: np.ndarray):
        for name, edges in self.edges.items():
            self.counts[name] += number_counts(frame[name].to_numpy(np.float64, na_value=np.nan), edges)
        for name, levels in self.levels.items():
            self.counts[name] += category_counts(frame[name].to_numpy(object), levels)
        self.feature_sums += features.sum(axis=0, dtype=np.float64)
        self.rows += len(frame)

    def result(self) -> dict:
        """{"rows", "columns": {name: {"type", "edges" or "levels", "shares"}}, "feature_means"} (clean's column
        names: a data.log column by its log name)."""
        columns = {}
        for name, counts in self.counts.items():
            bins = {"type": "number", "edges": self.edges[name]} if name in self.edges else {}
            bins = bins or {"type": "category", "levels": self.levels[name]}
            columns[name] = bins | {"shares": (counts / max(self.rows, 1)).tolist()}
        means = self.feature_sums / max(self.rows, 1)
        return {"rows": self.rows, "columns": columns, "feature_means": means.tolist()}
