"""Operating points (pure numpy): prior correction of probabilities, the least-cost cut of scores, reliability.

Prior correction (Dal Pozzolo et al. 2015, "Calibrating Probability with Undersampling for Unbalanced
Classification"): a model trained as if positives were a share pi' of the data predicts odds inflated by
odds(pi') / odds(pi); shifting its logit by log(odds(pi) / odds(pi')) gives probabilities for the real share pi.
"""

import numpy as np

# Reliability bins: log-spaced edges, so the few transactions with high predicted probability get bins of their own.
RELIABILITY_EDGES = np.array([0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])


def prior_shift(balanced_odds: bool, train_labels: np.ndarray, negative_rate: float) -> float:
    """The logit shift from the class odds a model trains with to the real odds of the training split.

    A strategy that trains at balanced odds (class weights, each class carrying half of the weight, or balanced
    batches; fraudflow/strategies.py) does so with or without negative sampling. The others train at the real odds,
    or at odds divided by negative_rate on a negative sample: shift log(negative_rate), which is He et al.'s (2014)
    correction q = p / (p + (1 - p) / negative_rate); 0 without sampling.
    """
    if not balanced_odds:
        return float(np.log(negative_rate))
    positives = int(train_labels.sum())
    return float(np.log(positives / (len(train_labels) - positives)))


# logit() clips probabilities to [LOGIT_CLIP, 1 - LOGIT_CLIP], so every logit the blend combines is finite and at
# most about 16.6 in size: one strategy's near-certain rows cannot outweigh the others' without bound.
LOGIT_CLIP = 2.0**-24


def logit(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of p clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP]: finite, as the blend needs it."""
    p = np.clip(probabilities, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(p) - np.log(1 - p)


def shift_probabilities(probabilities: np.ndarray, shift: float) -> np.ndarray:
    """sigmoid(logit(p) + shift), computed without overflow at p = 0 or 1."""
    if shift == 0:
        return probabilities
    with np.errstate(divide="ignore"):
        logit = np.log(probabilities) - np.log1p(-probabilities)
    return 1 / (1 + np.exp(-(logit + shift)))


def cost_threshold(labels: np.ndarray, probabilities: np.ndarray, cost_fn: float, cost_fp: float) -> float:
    """The threshold (flag p > threshold) with the least total cost cost_fn * FN + cost_fp * FP on these rows.

    Every distinct cut between two neighbouring probabilities is tried; the threshold is the midpoint of the
    best cut (on ties, the one flagging fewest rows).
    """
    above, below = least_cost_cut(labels, probabilities, cost_fn, cost_fp)
    return float(((1.0 if above is None else above) + below) / 2)


def least_cost_cut(labels: np.ndarray, scores: np.ndarray, cost_fn, cost_fp: float) -> tuple[float | None, float]:
    """The cut (flag score > a threshold between the two scores returned) with the least cost on these rows:
    cost_fn per missed positive (a number, or one per row) plus cost_fp per false alarm; on ties, the cut flagging
    fewest rows. (None, highest score): flag nothing; (lowest score, 0.0): flag everything."""
    if not labels.any():
        raise ValueError("no positives among them, so a missed positive costs nothing and no threshold can be chosen")
    order = np.argsort(-scores, kind="stable")
    ranked, positive = scores[order], labels[order].astype(bool)
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last row of each group of equal values
    fp = np.r_[0, np.cumsum(~positive)[ends]]  # flagging the first k groups, k = 0 .. groups
    if np.ndim(cost_fn) == 0:
        tp = np.r_[0, np.cumsum(positive)[ends]]
        missed = cost_fn * (positive.sum() - tp)
    else:
        caught = np.r_[0, np.cumsum(np.where(positive, cost_fn[order], 0))[ends]]
        missed = caught[-1] - caught
    best = int(np.argmin(missed + cost_fp * fp))
    values = [None, *ranked[ends].tolist(), 0.0]  # cut k lies between values[k] and values[k + 1]
    return values[best], values[best + 1]


def reliability(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Per non-empty bin of predicted probability: mean predicted, observed positive rate, rows."""
    bins = np.clip(np.searchsorted(RELIABILITY_EDGES, probabilities, side="right") - 1, 0, len(RELIABILITY_EDGES) - 2)
    rows = np.bincount(bins, minlength=len(RELIABILITY_EDGES) - 1)
    filled = rows > 0
    predicted = np.bincount(bins, weights=probabilities, minlength=len(rows))[filled] / rows[filled]
    observed = np.bincount(bins, weights=labels, minlength=len(rows))[filled] / rows[filled]
    return {"predicted": predicted, "observed": observed, "rows": rows[filled]}
