"""Example-dependent costs (pure numpy): a missed positive costs its own row's value (data.cost naming a column, such
as Amount), a false alarm cost_false_positive.

Flagging a row costs (1 - p) * cost_false_positive in expectation, letting it pass p * value, so with calibrated
probabilities the least expected cost flags it when p / (1 - p) * value > k * cost_false_positive with k = 1 (the
Bayes minimum-risk rule; Bahnsen et al. 2014, "Improving credit card fraud detection with calibrated
probabilities"). k is chosen on the validation split, which also absorbs calibration errors.
Savings (Bahnsen et al.'s costcla): 1 - cost / the cost of the cheaper trivial policy, flag nothing or everything.
"""

import math

import numpy as np

from fraudflow.operating import least_cost_cut

MAX_PROBABILITY = 1 - 2**-53  # odds stay finite at p = 1
K_DECADES = (-3, 3)  # the chart's k from 10^-3 to 10^3 (wider when the chosen k lies outside)
K_STEPS_PER_DECADE = 20


def value_at_risk(probabilities: np.ndarray, values: np.ndarray, cost_fp: float) -> np.ndarray:
    """p / (1 - p) * value / cost_fp, in units of k: a row is flagged when this exceeds k."""
    p = np.minimum(probabilities, MAX_PROBABILITY)
    return p / (1 - p) * values / cost_fp


def flagged(probabilities: np.ndarray, values: np.ndarray, k: float, cost_fp: float) -> np.ndarray:
    """The rule, as evaluate scores it and the exported model's `flagged` applies it."""
    return value_at_risk(probabilities, values, cost_fp) > k


def chosen_k(labels: np.ndarray, probabilities: np.ndarray, values: np.ndarray, cost_fp: float) -> float:
    """The k of least cost (sum of missed positives' values + cost_fp per false alarm) on these rows: the
    geometric midpoint of the best cut between neighbouring values at risk (they span decades, as the chart's
    axis does); flagging nothing is the highest value at risk itself, flagging everything half the lowest."""
    if labels.any() and not values[labels.astype(bool)].any():
        raise ValueError("every positive row's cost is 0, so a missed positive costs nothing and no k can be chosen")
    above, below = least_cost_cut(labels, value_at_risk(probabilities, values, cost_fp), values, cost_fp)
    if above is None:
        return below
    return math.sqrt(above * below) if below > 0 else above / 2


def k_grid(k: float) -> np.ndarray:
    """The ks the chart shows: K_STEPS_PER_DECADE per decade over K_DECADES, widened to hold k, and k itself."""
    low = min(K_DECADES[0], math.floor(math.log10(k))) if k > 0 else K_DECADES[0]
    high = max(K_DECADES[1], math.ceil(math.log10(k))) if k > 0 else K_DECADES[1]
    grid = np.logspace(low, high, (high - low) * K_STEPS_PER_DECADE + 1)
    return np.unique(np.r_[grid, k])


def cost_curve(labels: np.ndarray, probabilities: np.ndarray, values: np.ndarray, cost_fp: float, ks) -> np.ndarray:
    """Cost per 1,000 rows of the rule at each k: (missed positives' values + cost_fp * false alarms) / rows."""
    at_risk = value_at_risk(probabilities, values, cost_fp)
    order = np.argsort(at_risk, kind="stable")
    ascending, positive = at_risk[order], labels[order].astype(bool)
    missed = np.r_[0, np.cumsum(np.where(positive, values[order], 0))]  # the first i rows pass: their cost
    negatives = np.r_[0, np.cumsum(~positive)]
    passed = np.searchsorted(ascending, ks, side="right")  # value at risk <= k: not flagged
    false_alarms = negatives[-1] - negatives[passed]
    return 1000 * (missed[passed] + cost_fp * false_alarms) / len(labels)


def value_scores(tp, fp, tn, fn, tp_value, fn_value, cost_fp: float) -> dict:
    """The rule's cost per 1,000 rows, savings and share of the positives' value caught, from (weighted) counts
    and the positives' value sums, flagged (tp_value) or missed (fn_value); one value per weighting."""
    cost = fn_value + cost_fp * fp
    at_stake = tp_value + fn_value  # flagging nothing costs this; flagging everything cost_fp * (fp + tn)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "cost_per_1000": 1000 * cost / (tp + fp + tn + fn),
            "savings": 1 - cost / np.minimum(at_stake, cost_fp * (fp + tn)),
            "caught": tp_value / at_stake,
        }
