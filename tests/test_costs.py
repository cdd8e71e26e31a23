"""The value rule (fraudflow/costs.py) against brute force: every row flagged or not under every k of a grid."""

import numpy as np
import pytest

from fraudflow import costs

COST_FP = 5.0


def made_up(seed: int, rows: int = 80, fraud_amounts: float = 3.0):
    """Labels, probabilities (rounded: ties, 0s and 1s) and amounts (some 0; frauds' around e^fraud_amounts)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.2).astype(int)
    probabilities = np.round(np.clip(rng.normal(0.2 + 0.4 * labels, 0.25), 0, 1), 2)
    amounts = np.where(rng.random(rows) < 0.1, 0.0, rng.lognormal(np.where(labels, fraud_amounts, 3), 1.5).round(2))
    return labels, probabilities, amounts


def brute_cost(labels, probabilities, amounts, k):
    """Total cost of the rule at k, deciding row by row."""
    total = 0.0
    for y, p, v in zip(labels, probabilities, amounts, strict=True):
        p = min(p, costs.MAX_PROBABILITY)  # the rule's odds at p = 1: finite, the largest there are
        odds = p / (1 - p)
        flag = v > 0 and odds * v / COST_FP > k
        total += v if (y == 1 and not flag) else (COST_FP if (y == 0 and flag) else 0.0)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_chosen_k_has_the_least_cost_of_every_k_on_a_grid(seed):
    labels, probabilities, amounts = made_up(seed, fraud_amounts=4.0)
    at_risk = costs.value_at_risk(probabilities, amounts, COST_FP)  # in units of k: every cut lies next to one
    grid = np.r_[0.0, np.logspace(-6, 8, 141), at_risk, at_risk * (1 - 1e-9), at_risk * (1 + 1e-9)]
    best = min(brute_cost(labels, probabilities, amounts, k) for k in grid)
    k = costs.chosen_k(labels, probabilities, amounts, COST_FP)
    assert brute_cost(labels, probabilities, amounts, k) == pytest.approx(best, rel=1e-12)
    # strictly between two rows' values at risk, so a last-bit change in a probability flips no row
    assert k not in set(at_risk) and 0 < costs.flagged(probabilities, amounts, k, COST_FP).sum() < len(labels)


def test_where_flagging_nothing_costs_least_nothing_is_flagged():
    """Frauds of a few cents against reviews of 5: on most draws no flag pays; the chosen k then flags nothing,
    whatever the rounding (it is the highest value at risk itself)."""
    nothing = 0
    for seed in range(200):
        labels, probabilities, amounts = made_up(seed, rows=40, fraud_amounts=-3.0)
        probabilities = np.minimum(probabilities, 0.99)
        at_risk = costs.value_at_risk(probabilities, amounts, COST_FP)
        k = costs.chosen_k(labels, probabilities, amounts, COST_FP)
        best = min(brute_cost(labels, probabilities, amounts, x) for x in np.r_[0.0, at_risk, at_risk * (1 + 1e-9)])
        assert brute_cost(labels, probabilities, amounts, k) == pytest.approx(best, rel=1e-12)
        if k == at_risk.max():
            nothing += 1
            assert not costs.flagged(probabilities, amounts, k, COST_FP).any()
    assert nothing > 100


@pytest.mark.parametrize("seed", range(3))
def test_cost_curve_is_the_brute_force_cost_at_each_k(seed):
    labels, probabilities, amounts = made_up(seed)
    at_risk = costs.value_at_risk(probabilities, amounts, COST_FP)  # and at k equal to a row's: it is not flagged
    ks = np.r_[costs.k_grid(costs.chosen_k(labels, probabilities, amounts, COST_FP)), np.sort(at_risk)]
    expected = [1000 * brute_cost(labels, probabilities, amounts, k) / len(labels) for k in ks]
    np.testing.assert_allclose(costs.cost_curve(labels, probabilities, amounts, COST_FP, ks), expected, rtol=1e-12)


def test_k_is_one_for_calibrated_probabilities_on_many_rows():
    """With probabilities that are the true ones, the Bayes rule (k = 1) is the best: the chosen k is near it."""
    rng = np.random.default_rng(0)
    probabilities = rng.beta(0.3, 8, 400_000)
    labels = (rng.random(len(probabilities)) < probabilities).astype(int)
    amounts = rng.lognormal(3, 1.5, len(probabilities))
    k = costs.chosen_k(labels, probabilities, amounts, COST_FP)
    at = {x: costs.cost_curve(labels, probabilities, amounts, COST_FP, [x])[0] for x in (k, 1.0, 0.25, 4.0)}
    assert 0.5 < k < 2
    assert at[1.0] < at[0.25] and at[1.0] < at[4.0]  # farther from 1 costs more


def test_large_amounts_are_flagged_at_lower_probabilities():
    probabilities, amounts = np.array([0.01, 0.01, 0.2]), np.array([5000.0, 10.0, 10.0])
    np.testing.assert_array_equal(costs.flagged(probabilities, amounts, 1.0, COST_FP), [True, False, False])
    assert costs.value_at_risk(np.array([1.0]), np.array([2.0]), COST_FP)[0] < np.inf  # p = 1: finite odds


def test_value_scores_match_a_direct_computation():
    labels, probabilities, amounts = made_up(7, rows=500)
    flag = costs.flagged(probabilities, amounts, 1.0, COST_FP)
    positive = labels == 1
    counts = [(flag & positive).sum(), (flag & ~positive).sum(), (~flag & ~positive).sum(), (~flag & positive).sum()]
    scores = costs.value_scores(*counts, amounts[flag & positive].sum(), amounts[~flag & positive].sum(), COST_FP)
    cost = amounts[~flag & positive].sum() + COST_FP * (flag & ~positive).sum()
    flag_nothing, flag_everything = amounts[positive].sum(), COST_FP * (~positive).sum()
    assert scores["cost_per_1000"] == pytest.approx(1000 * cost / 500)
    assert scores["savings"] == pytest.approx(1 - cost / min(flag_nothing, flag_everything))
    assert scores["caught"] == pytest.approx(amounts[flag & positive].sum() / flag_nothing)


def test_a_cost_column_of_zeros_in_every_positive_is_refused():
    labels, probabilities = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    with pytest.raises(ValueError, match="every positive row's cost is 0"):
        costs.chosen_k(labels, probabilities, np.array([3.0, 0.0, 4.0, 0.0]), COST_FP)
