"""Exact scores for many weightings of the same rows at once, bootstrap weights and 95 % intervals (pure numpy).

A bootstrap resample of the test rows is a vector of counts (how often each row was drawn), so every score
is a weighted score of the original rows: one sort per model serves every resample, and the same counts
give paired resamples for every model. Weights are (rows, k) arrays: one weighting per column.
"""

import numpy as np
from scipy import sparse, stats

LEVEL = 0.95


def bootstrap_counts(rng: np.random.Generator, rows: int, resamples: int) -> np.ndarray:
    """(rows, resamples) counts: column j says how often each row was drawn in resample j (rows with replacement)."""
    drawn = rng.integers(0, rows, size=(resamples, rows)) * resamples + np.arange(resamples)[:, None]
    return np.bincount(drawn.ravel(), minlength=rows * resamples).reshape(rows, resamples).astype(np.float64)


class Ranking:
    """Average precision and ROC AUC of one model's scores, for any number of row weightings.

    Equal to scikit-learn's average_precision_score and roc_auc_score with the same sample weights (ties
    included): only the thresholds at the positives' scores matter, so a weighting reduces to three sums
    per threshold (positives first counted there, negatives first counted there, negatives tied with it),
    taken in one sparse product.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray):
        positive = labels.astype(bool)
        cuts = np.unique(scores[positive])[::-1]  # thresholds, highest first
        # Row j counts at every threshold <= its score, i.e. from threshold index first[j] on (len(cuts): none).
        first = np.searchsorted(-cuts, -scores, side="left")
        width = len(cuts) + 1
        tied = ~positive & (first < len(cuts)) & (cuts[np.minimum(first, len(cuts) - 1)] == scores)
        block = np.where(positive, 0, width)  # positives in the first block of sums, negatives in the second
        rows = np.r_[np.arange(len(scores)), np.flatnonzero(tied)]
        sums = np.r_[block + first, 2 * width + first[tied]]
        self.width = width
        self.sums = sparse.csr_array((np.ones(len(rows)), (sums, rows)), shape=(3 * width, len(scores)))

    def scores(self, weights: np.ndarray, fpr: float | None = None) -> dict:
        """Average precision, ROC AUC and (with `fpr`) the recall at false-positive rate <= fpr, one value per
        column of `weights` (rows, k)."""
        sums = self.sums @ weights
        pos, neg, tied_neg = sums[: self.width - 1], sums[self.width : 2 * self.width], sums[2 * self.width : -1]
        neg_total = neg.sum(axis=0)
        tp, fp = pos.cumsum(axis=0), neg[:-1].cumsum(axis=0)
        pos_total = tp[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            result = {
                "average_precision": (pos * precision).sum(axis=0) / pos_total,
                # A positive beats every negative below its threshold and ties half of those at it.
                "roc_auc": (pos * (neg_total - fp + 0.5 * tied_neg)).sum(axis=0) / (pos_total * neg_total),
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
    """tp, fp, tn, fn, precision, recall (predicted fraud: p > threshold), log loss and Brier score, for many row
    weightings. The sums go through a sparse product (fixed order, no BLAS), so they are the same bits on every
    processor."""

    def __init__(self, labels: np.ndarray, probabilities: np.ndarray, threshold: float):
        flagged, positive = probabilities > threshold, labels.astype(bool)
        cells = [flagged & positive, flagged & ~positive, ~flagged & ~positive, ~flagged & positive]
        columns = [*cells, log_loss_rows(labels, probabilities), (probabilities - labels) ** 2]
        self.columns = sparse.csr_array(np.stack(columns).astype(np.float64))

    def scores(self, weights: np.ndarray) -> dict:
        """Every metric, one value per column of `weights` (rows, k)."""
        tp, fp, tn, fn, loss, squared_error = self.columns @ weights
        total = tp + fp + tn + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
                "recall": tp / (tp + fn),
                "log_loss": loss / total,
                "brier": squared_error / total,
            }


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The central 95 % of bootstrap values."""
    low, high = np.percentile(values, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low), float(high)


def mean_interval(values) -> tuple[float, float | None, float | None]:
    """Mean of the members' values and its 95 % Student-t interval (None with a single member)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    half = stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)
