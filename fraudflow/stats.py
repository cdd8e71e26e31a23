"""Exact scores for many weightings of the same rows at once, summed chunk by chunk of rows; Poisson bootstrap
weights; 95 % intervals (pure numpy and scipy).

A bootstrap resample of the test rows is a vector of weights (how often each row was drawn), so every score is a
weighted score of the original rows: one pass over the rows serves every resample of every model, and the same
weights pair the models. The weights are Poisson(1) counts, drawn per block of DRAW_ROWS rows from a generator
seeded by (seed, block) (the Poisson bootstrap of Chamandy et al. 2012, "Estimating uncertainty for massive data
streams"), so a block's weights need no other block's and memory holds one block. Weights are (rows, k) arrays:
one weighting per column; column 0 is all ones, the rows as they are.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse, special, stats

LEVEL = 0.95
DRAW_ROWS = 4096  # Poisson counts are drawn for blocks of this many rows, each block from a generator of its own
BOUND_MARGIN = 1e-9  # mean_interval's distance from 0 and 1 on the logit scale
SCORE_COLUMNS = 64  # Ranking.scores computes this many weightings at a time; no result depends on it


def bootstrap_weights(seed: int, start: int, rows: int, resamples: int) -> np.ndarray:
    """(rows, 1 + resamples) for rows start .. start + rows - 1: ones, then how often each row is drawn in each
    resample. The same whatever rows are asked for together: each block of DRAW_ROWS rows is drawn whole."""
    weights = np.empty((rows, 1 + resamples))
    weights[:, 0] = 1
    for block in range(start // DRAW_ROWS, (start + rows - 1) // DRAW_ROWS + 1):
        low, high = max(start, block * DRAW_ROWS), min(start + rows, (block + 1) * DRAW_ROWS)
        counts = np.random.default_rng([seed, block]).poisson(1.0, (DRAW_ROWS, resamples))
        weights[low - start : high - start, 1:] = counts[low - block * DRAW_ROWS : high - block * DRAW_ROWS]
    return weights


class WeightStream:
    """bootstrap_weights of consecutive rows, as many at a time as asked for. While the caller scores one block,
    a background thread draws the next one of the same size (numpy draws without holding the GIL), so on two
    cores the drawing costs almost no time. Use it in a `with` block."""

    def __init__(self, seed: int, resamples: int):
        self.seed, self.resamples, self.start, self.ahead = seed, resamples, 0, None
        self.pool = ThreadPoolExecutor(max_workers=1)

    def next(self, rows: int) -> np.ndarray:
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == rows:
            weights = ahead[1].result()
        else:
            weights = bootstrap_weights(self.seed, self.start, rows, self.resamples)
        self.start += rows
        self.ahead = rows, self.pool.submit(bootstrap_weights, self.seed, self.start, rows, self.resamples)
        return weights

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.pool.shutdown(cancel_futures=True)


def group_sums(groups: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct groups (small integers) and, per group, the sum of weights[rows] over its rows (rows
    ascending, each once). One sparse product with a column per row of weights, added in row order, no BLAS:
    the same bits on every processor."""
    present = np.bincount(groups) > 0
    position = np.cumsum(present) - 1
    starts = np.zeros(len(weights) + 1, np.int64)
    starts[rows + 1] = 1
    shape = (int(present.sum()), len(weights))
    by_group = sparse.csc_array((np.ones(len(rows), weights.dtype), position[groups], np.cumsum(starts)), shape=shape)
    return np.flatnonzero(present), by_group @ weights


def column_sums(values: np.ndarray) -> np.ndarray:
    """Each column's sum, its rows added in order (numpy's sum adds a narrow array's rows in another order), so
    no bit depends on how many columns are summed together."""
    return np.cumsum(values, axis=0)[-1] if len(values) else np.zeros(values.shape[1])


class Ranking:
    """Average precision, ROC AUC and recall at a false-positive rate of one model's scores, for k weightings of
    rows that arrive chunk by chunk.

    Equal to scikit-learn's average_precision_score and roc_auc_score with the same sample weights (ties
    included): only the thresholds at the positives' scores (`positive_scores`, known before the rows) matter,
    so a weighting reduces to three sums per threshold: positives first counted there, negatives first counted
    there, negatives tied with it. The positives' sums are taken at the end from their weights, which every model
    shares (`scores`); the negatives' per chunk, into sums of `dtype` (float32 holds integer weights' sums
    exactly up to 2^24).
    """

    def __init__(self, positive_scores: np.ndarray, k: int, dtype=np.float64):
        self.cuts = np.unique(positive_scores)[::-1]  # thresholds, highest first
        self.width = len(self.cuts) + 1  # row j counts from threshold index first[j] on (len(cuts): none)
        self.negatives = np.zeros((self.width, k), dtype)
        self.tied, self.positive_first = {}, []

    def add(self, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray):
        positive = labels.astype(bool)
        first = np.searchsorted(-self.cuts, -scores, side="left")
        self.positive_first.append(first[positive])
        negative = np.flatnonzero(~positive)
        unique, sums = group_sums(first[negative], negative, weights)
        self.negatives[unique] += sums
        at = np.minimum(first[negative], len(self.cuts) - 1)
        tied = negative[(first[negative] < len(self.cuts)) & (self.cuts[at] == scores[negative])]
        for threshold, row in zip(*group_sums(first[tied], tied, weights), strict=True):
            self.tied[threshold] = self.tied.get(threshold, 0) + row

    def scores(self, positive_weights: np.ndarray, fpr: float | None = None) -> dict:
        """One value per weighting; positive_weights: the positive rows' weights, in the order they were added.
        Computed for SCORE_COLUMNS weightings at a time, so its temporaries stay small beside the sums."""
        first = np.concatenate(self.positive_first)
        columns = (slice(start, start + SCORE_COLUMNS) for start in range(0, positive_weights.shape[1], SCORE_COLUMNS))
        parts = [self._scores(first, positive_weights, part, fpr) for part in columns]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _scores(self, first: np.ndarray, positive_weights: np.ndarray, columns: slice, fpr: float | None) -> dict:
        """scores() of the weightings in `columns`."""
        positive_weights = positive_weights[:, columns]
        pos = np.zeros((self.width - 1, positive_weights.shape[1]))
        unique, sums = group_sums(first, np.arange(len(positive_weights)), positive_weights)
        pos[unique] = sums
        neg = self.negatives[:, columns].astype(np.float64)
        tied_neg = np.zeros_like(pos)
        for threshold, row in self.tied.items():
            tied_neg[threshold] = row[columns]
        neg_total = column_sums(neg)
        tp, fp = pos.cumsum(axis=0), neg[:-1].cumsum(axis=0)
        pos_total = tp[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            result = {
                "average_precision": column_sums(pos * precision) / pos_total,
                # A positive beats every negative below its threshold and ties half of those at it.
                "roc_auc": column_sums(pos * (neg_total - fp + 0.5 * tied_neg)) / (pos_total * neg_total),
            }
            if fpr is not None:  # the ROC point with the most recall among those within the false-positive budget
                result["recall_at_fpr"] = np.where(fp <= fpr * neg_total, tp, 0.0).max(axis=0) / pos_total
        return result


def log_loss_rows(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per-row binary cross-entropy, probabilities clipped as scikit-learn does."""
    eps = np.finfo(probabilities.dtype).eps
    p = np.clip(probabilities, eps, 1 - eps)
    return -(labels * np.log(p) + (1 - labels) * np.log1p(-p))


class Thresholded:
    """tp, fp, tn, fn, precision, recall (predicted fraud: score > threshold) for k row weightings; log loss and
    Brier score of the scores (probabilities) for the first loss_k of them; with `values`, the positives' value
    sums, flagged (tp_value) and missed (fn_value). Summed chunk by chunk (sparse products: the same bits on every
    processor)."""

    def __init__(self, threshold: float, k: int, loss_k: int | None = None, values: bool = False):
        self.threshold, self.k = threshold, k
        self.cells, self.losses = np.zeros((4, k)), np.zeros((2, k if loss_k is None else loss_k))
        self.value_cells = np.zeros((4, k)) if values else None

    def add(self, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, values: np.ndarray | None = None):
        flagged, positive = scores > self.threshold, labels.astype(bool)
        cell = np.where(flagged, np.where(positive, 0, 1), np.where(positive, 3, 2))  # tp, fp, tn, fn
        rows, factors, sum_rows = len(labels), [np.ones(len(labels), weights.dtype)], [cell]
        if self.value_cells is not None:  # each row's value beside its count: one pass over the weights for both
            factors, sum_rows = [*factors, values.astype(weights.dtype)], [cell, cell + 4]
        per_row = len(factors)  # the entries of each row (a column of the sparse matrix)
        sums = (
            sparse.csc_array(
                (
                    np.stack(factors, axis=1).ravel(),
                    np.stack(sum_rows, axis=1).ravel(),
                    np.arange(0, per_row * rows + 1, per_row),
                ),
                shape=(4 * per_row, rows),
            )
            @ weights[:, : self.k]
        )
        self.cells += sums[:4]
        if self.value_cells is not None:
            self.value_cells += sums[4:]
        if self.losses.shape[1]:
            row_losses = np.stack([log_loss_rows(labels, scores), (scores - labels) ** 2], axis=1)
            losses = sparse.csc_array(
                (row_losses.ravel(), np.tile([0, 1], rows), np.arange(0, 2 * rows + 1, 2)), (2, rows)
            )
            self.losses += losses @ weights[:, : self.losses.shape[1]]

    def scores(self) -> dict:
        """Every metric, one value per weighting (log loss and Brier score: per loss weighting)."""
        tp, fp, tn, fn = self.cells
        total = tp + fp + tn + fn
        loss, squared_error = self.losses / total[: self.losses.shape[1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            result = {
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
                "recall": tp / (tp + fn),
                "log_loss": loss,
                "brier": squared_error,
            }
        if self.value_cells is not None:
            result |= {"tp_value": self.value_cells[0], "fn_value": self.value_cells[3]}
        return result


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The central 95 % of bootstrap values."""
    low, high = np.percentile(values, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low), float(high)


def mean_interval(values, bounded: bool = False) -> tuple[float, float | None, float | None]:
    """Mean of the members' values and its 95 % Student-t interval (None with a single member). bounded: the values
    lie in [0, 1] (a rate, AP, ROC AUC), and the interval is taken on the logit scale and mapped back, so it stays
    inside [0, 1] (values of exactly 0 or 1 are taken as 1e-9 from them)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    if values.min() == values.max():
        return mean, mean, mean
    t = stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1) / np.sqrt(len(values))
    if not bounded:
        half = t * values.std(ddof=1)
        return mean, float(mean - half), float(mean + half)
    logits = special.logit(np.clip(values, BOUND_MARGIN, 1 - BOUND_MARGIN))
    centre, half = logits.mean(), t * logits.std(ddof=1)
    return mean, float(special.expit(centre - half)), float(special.expit(centre + half))
