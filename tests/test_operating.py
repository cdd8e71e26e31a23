"""Prior correction, the cost-minimising threshold and reliability bins, against direct computations."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fraudflow import operating
from fraudflow.strategies import REGISTRY


def shift(strategy: str, labels, negative_rate: float = 1.0) -> float:
    """The prior shift of a registered strategy (fraudflow/strategies.py says whether it trains at balanced odds)."""
    return operating.prior_shift(REGISTRY[strategy].balanced_odds, labels, negative_rate)


def test_prior_correction_recovers_the_real_probabilities():
    # Known truth: P(positive | x) = sigmoid(2x - 6), about 1 % positives.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 1))
    truth = 1 / (1 + np.exp(-(2 * x[:, 0] - 6)))
    labels = (rng.random(len(truth)) < truth).astype(int)
    # A model fitted as the weighted strategy is (each class carries half of the weight) predicts inflated odds.
    weights = np.where(labels == 1, len(labels) / (2 * labels.sum()), len(labels) / (2 * (1 - labels).sum()))
    balanced = LogisticRegression().fit(x, labels, sample_weight=weights).predict_proba(x)[:, 1]
    corrected = operating.shift_probabilities(balanced, shift("weighted", labels))
    assert np.abs(balanced - truth).mean() > 0.2
    assert np.abs(corrected - truth).mean() < 0.002
    assert corrected.mean() == pytest.approx(labels.mean(), rel=0.05)


def test_baseline_and_logistic_are_not_shifted():
    labels = np.array([0] * 99 + [1])
    assert shift("baseline", labels) == shift("logistic", labels) == shift("focal", labels) == shift("gbdt", labels)
    assert shift("baseline", labels) == 0.0
    assert shift("resampled", labels) == shift("weighted", labels) == pytest.approx(np.log(1 / 99))
    assert shift("baseline", labels, 0.25) == pytest.approx(np.log(0.25))  # trained on a negative sample
    p = np.array([0.0, 0.2, 1.0])
    np.testing.assert_array_equal(operating.shift_probabilities(p, 0.0), p)
    np.testing.assert_allclose(
        operating.shift_probabilities(p, np.log(1 / 99)), [0.0, 0.25 / 99 / (1 + 0.25 / 99), 1.0]
    )


@pytest.mark.parametrize("seed", range(5))
def test_cost_threshold_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(60) < 0.2).astype(int)
    probabilities = np.round(np.clip(rng.normal(0.3 + 0.3 * labels, 0.2), 0, 1), 2)  # with ties
    cost_fn, cost_fp = 10.0, 1.0

    def cost(t):
        return (
            cost_fn * ((probabilities <= t) & (labels == 1)).sum()
            + cost_fp * ((probabilities > t) & (labels == 0)).sum()
        )

    candidates = np.r_[np.unique(probabilities), 1.0, probabilities.min() / 2]
    best = min(cost(t) for t in candidates)
    chosen = operating.cost_threshold(labels, probabilities, cost_fn, cost_fp)
    assert cost(chosen) == best
    # The threshold lies strictly between the last flagged and the first unflagged value.
    assert chosen not in set(probabilities) or chosen == 1.0


def test_cost_threshold_on_ties_flags_the_fewest_rows():
    labels = np.array([1, 0, 1])
    probabilities = np.array([0.9, 0.8, 0.1])
    # Costs: flag none 2, the top row 1, the top two 2, all three 1: the top row alone wins the tie.
    assert operating.cost_threshold(labels, probabilities, 1.0, 1.0) == pytest.approx(0.85)


def test_cost_threshold_needs_positives():
    with pytest.raises(ValueError, match="no positives"):
        operating.cost_threshold(np.zeros(5, dtype=int), np.linspace(0, 1, 5), 1.0, 1.0)


def test_reliability_bins_match_a_direct_count():
    rng = np.random.default_rng(1)
    probabilities = rng.beta(0.2, 5, 5000)
    labels = (rng.random(5000) < probabilities).astype(int)
    bins = operating.reliability(labels, probabilities)
    edges = operating.RELIABILITY_EDGES
    expected = [
        (probabilities[m].mean(), labels[m].mean(), m.sum())
        for low, high in itertools.pairwise(edges)
        if (m := (probabilities >= low) & ((probabilities < high) | (high == 1.0))).any()
    ]
    np.testing.assert_allclose(np.c_[bins["predicted"], bins["observed"], bins["rows"]], expected)
