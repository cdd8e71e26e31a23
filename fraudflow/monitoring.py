"""Watching scored rows without their labels: the drift of a column from its training bins (population stability
index) and a flagging rule's precision, share of the positives' cost caught and cost per 1,000 rows, estimated
from calibrated probabilities alone. Arrays in, numbers out, no IO: fraudflow/monitor.py reads the scored file,
and the training split's profile (fraudflow/profile.py) bins with the same functions.
"""

import math
from collections import defaultdict

import numpy as np

from fraudflow.schema import MISSING_LEVEL

Z95 = 1.959964  # the standard normal's 97.5 % quantile: 95 % intervals
CHANCE = 0.999  # chance_psi's quantile: a file of unchanged rows passes it in 1 column of 1,000
CHANCE_DRAWS, CHANCE_SEED = 10_000, 0
SHARE_FLOOR = 1e-4  # a bin's least share, on either side, in psi: an empty bin adds a finite term (ln 0 is not)


class LabelFree:
    """A rule's precision, caught share and cost per 1,000 rows, each label taken as an independent
    Bernoulli(probability): estimates and 95 % normal intervals from sums streamed over batches (add, then
    result). The intervals are the labels' randomness given the probabilities, which they assume calibrated."""

    def __init__(self):
        self.rows = self.flagged = 0
        self.sums = defaultdict(float)

    def add(self, probability: np.ndarray, flagged: np.ndarray, missed_cost: np.ndarray):
        """One batch: each row's probability, whether the rule flags it and what it costs if it is a positive the
        rule misses (its cost column's value, or a flat cost: a number broadcasts)."""
        p = np.asarray(probability, dtype=np.float64)
        flagged = np.asarray(flagged, dtype=bool)
        cost = np.broadcast_to(np.asarray(missed_cost, dtype=np.float64), p.shape)
        variance = p * (1 - p)
        value, value_variance = p * cost, variance * cost**2
        self.rows += p.size
        self.flagged += int(flagged.sum())
        terms = {
            "p": p,
            "p_flagged": p[flagged],
            "var_flagged": variance[flagged],
            "value_caught": value[flagged],
            "var_caught": value_variance[flagged],
            "value_missed": value[~flagged],
            "var_missed": value_variance[~flagged],
        }
        for name, values in terms.items():
            self.sums[name] += float(values.sum())

    def result(self, cost_false_positive: float) -> dict:
        """Rows, flagged rows, expected positives, and precision, caught (the share of the positives' cost in
        flagged rows) and cost_per_1000 (missed positives' cost plus cost_false_positive per flagged negative),
        each {estimate, lower, upper}; None where undefined (no flagged rows, no expected positives' cost, no
        rows)."""
        s, flagged = self.sums, self.flagged
        precision = caught = cost = None
        if flagged:
            precision = interval(s["p_flagged"] / flagged, s["var_flagged"] / flagged**2, high=1.0)
        caught_value, missed_value = s["value_caught"], s["value_missed"]
        total = caught_value + missed_value
        if total > 0:
            variance = (missed_value**2 * s["var_caught"] + caught_value**2 * s["var_missed"]) / total**4
            caught = interval(caught_value / total, variance, high=1.0)
        if self.rows:
            scale = 1000 / self.rows
            mean = scale * (missed_value + cost_false_positive * (flagged - s["p_flagged"]))
            cost = interval(mean, scale**2 * (s["var_missed"] + cost_false_positive**2 * s["var_flagged"]))
        undefined = dict.fromkeys(["estimate", "lower", "upper"])
        return {
            "rows": self.rows,
            "flagged": flagged,
            "expected_positives": s["p"],
            "precision": precision or undefined,
            "caught": caught or undefined,
            "cost_per_1000": cost or undefined,
        }


def interval(estimate: float, variance: float, high: float = math.inf) -> dict:
    """The estimate and its 95 % normal interval, within [0, high]."""
    half = Z95 * math.sqrt(max(variance, 0.0))
    return {"estimate": estimate, "lower": max(estimate - half, 0.0), "upper": min(estimate + half, high)}


def psi(expected_shares: list[float], actual_counts: np.ndarray) -> float:
    """Population stability index of counts in bins against the expected shares of the same bins:
    sum (a - e) ln(a / e), both shares at least SHARE_FLOOR. 0 for identical shares; < 0.1 is usually read as
    stable, 0.1 to 0.25 as a moderate shift, > 0.25 as a major one."""
    counts = np.asarray(actual_counts, dtype=np.float64)
    actual = np.maximum(counts / counts.sum(), SHARE_FLOOR)
    expected = np.maximum(np.asarray(expected_shares, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def chance_psi(expected_shares: list[float], rows: int) -> float:
    """The PSI that `rows` rows drawn from the expected shares exceed by chance with probability 1 - CHANCE, from
    CHANCE_DRAWS seeded draws (the same every run). A small file's PSI is large by chance alone (its empty bins
    count at SHARE_FLOOR), so drift is flagged only above this."""
    expected = np.asarray(expected_shares, dtype=np.float64)
    draws = np.random.default_rng(CHANCE_SEED).multinomial(max(rows, 1), expected / expected.sum(), CHANCE_DRAWS)
    actual = np.maximum(draws / max(rows, 1), SHARE_FLOOR)
    floored = np.maximum(expected, SHARE_FLOOR)
    return float(np.quantile(((actual - floored) * np.log(actual / floored)).sum(axis=1), CHANCE))


def number_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of numbers (NaN: missing) in the bins (-inf, e1], (e1, e2], ..., (ek, inf), then of missing values:
    len(edges) + 2 counts."""
    missing = np.isnan(values)
    bins = np.searchsorted(edges, values[~missing], side="left")
    return np.append(np.bincount(bins, minlength=len(edges) + 1), missing.sum()).astype(np.int64)


def category_counts(values: np.ndarray, levels: list[str]) -> np.ndarray:
    """Counts of texts (None, NaN or MISSING_LEVEL: missing) at each level, then at any other level, then
    missing: len(levels) + 2 counts."""
    values = np.asarray(values, dtype=object)
    missing = np.equal(values, None) | (values != values) | (values == MISSING_LEVEL)  # NaN != NaN
    counts = np.zeros(len(levels) + 2, dtype=np.int64)
    position = {level: i for i, level in enumerate(levels)}
    for level, count in zip(*np.unique(values[~missing].astype(str), return_counts=True), strict=True):
        counts[position.get(str(level), len(levels))] += count
    counts[-1] = missing.sum()
    return counts


SCORE_QUANTILES = [*(np.arange(1, 10) / 10), 0.99, 0.999]  # the top bins hold the few rows a rule flags


def score_profile(probabilities: np.ndarray) -> dict:
    """The validation split's calibrated probabilities in bins at their SCORE_QUANTILES, as model.json's profile
    keeps them (each edge the value at rank floor(q * (n - 1)), as fraudflow/profile.py's deciles)."""
    edges = np.unique(np.quantile(probabilities, SCORE_QUANTILES, method="lower")).tolist()
    shares = number_counts(probabilities, edges) / len(probabilities)
    return {"edges": edges, "shares": shares.tolist(), "split": "validation"}
