"""The interval code against direct computations: scikit-learn on repeated rows, and explicit loops."""

import numpy as np
import pytest
from sklearn import metrics

from fraudflow import compare, stats

# Ten test rows: 4 positives. At threshold 0.5: tp 3 (0.9, 0.8, 0.6), fn 1 (0.3), fp 1 (0.7), tn 5.
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PROBABILITIES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05, 0.5])


def noisy_scores(rows=400, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.1).astype(int)
    scores = rng.normal(labels, 1.0)
    if ties:  # many exact ties, across classes too
        scores = np.round(scores, 1)
    return labels, scores


def ranking(labels, scores, weights, fpr=None, chunk=7):
    """Ranking's scores, its rows fed `chunk` at a time."""
    summed = stats.Ranking(scores[labels == 1], weights.shape[1])
    for start in range(0, len(labels), chunk):
        part = slice(start, start + chunk)
        summed.add(labels[part], scores[part], weights[part])
    return summed.scores(weights[labels == 1], fpr)


def thresholded(labels, probabilities, threshold, weights, chunk=7):
    """Thresholded's scores, its rows fed `chunk` at a time."""
    summed = stats.Thresholded(threshold, weights.shape[1])
    for start in range(0, len(labels), chunk):
        part = slice(start, start + chunk)
        summed.add(labels[part], probabilities[part], weights[part])
    return summed.scores()


def test_ranking_scores_on_a_hand_made_example():
    result = ranking(LABELS, PROBABILITIES, np.ones((10, 1)), fpr=0.2, chunk=3)
    # Of the 4 x 6 positive/negative pairs, four are misordered: 0.6 < 0.7, and 0.3 < 0.7, 0.4, 0.5.
    assert result["roc_auc"][0] == pytest.approx(20 / 24)
    # Ranked by probability: hits at ranks 1, 2, 4, 7 -> AP = (1 + 1 + 3/4 + 4/7) / 4.
    assert result["average_precision"][0] == pytest.approx((1 + 1 + 3 / 4 + 4 / 7) / 4)
    # At most 1 of the 6 negatives flagged (FPR <= 0.2): threshold at 0.6 catches 3 of 4 positives.
    assert result["recall_at_fpr"][0] == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_ranking_equals_scikit_learn_on_the_resampled_rows(seed):
    labels, scores = noisy_scores(seed=seed)
    weights = stats.bootstrap_weights(seed, 0, len(labels), 5)
    result = ranking(labels, scores, weights, fpr=0.05)
    whole = ranking(labels, scores, weights, fpr=0.05, chunk=len(labels))
    for name, values in result.items():  # the same in any chunks: the sums are of integer weights
        np.testing.assert_array_equal(values, whole[name])
    for column in range(weights.shape[1]):
        drawn = np.repeat(np.arange(len(labels)), weights[:, column].astype(int))  # the resample, as rows
        ap = metrics.average_precision_score(labels[drawn], scores[drawn])
        assert result["average_precision"][column] == pytest.approx(ap)
        assert result["roc_auc"][column] == pytest.approx(metrics.roc_auc_score(labels[drawn], scores[drawn]))
        fpr, tpr, _ = metrics.roc_curve(labels[drawn], scores[drawn])
        assert result["recall_at_fpr"][column] == pytest.approx(tpr[fpr <= 0.05].max())


def test_thresholded_scores_equal_scikit_learn_on_the_resampled_rows():
    labels, scores = noisy_scores(ties=False)
    probabilities = 1 / (1 + np.exp(-scores))
    weights = stats.bootstrap_weights(3, 0, len(labels), 4)
    result = thresholded(labels, probabilities, 0.6, weights)
    for column in range(weights.shape[1]):
        drawn = np.repeat(np.arange(len(labels)), weights[:, column].astype(int))
        flagged = probabilities[drawn] > 0.6
        tn, fp, fn, tp = metrics.confusion_matrix(labels[drawn], flagged).ravel()
        assert [result[k][column] for k in ("tp", "fp", "tn", "fn")] == [tp, fp, tn, fn]
        assert result["precision"][column] == pytest.approx(metrics.precision_score(labels[drawn], flagged))
        assert result["recall"][column] == pytest.approx(metrics.recall_score(labels[drawn], flagged))
        assert result["log_loss"][column] == pytest.approx(metrics.log_loss(labels[drawn], probabilities[drawn]))
        assert result["brier"][column] == pytest.approx(metrics.brier_score_loss(labels[drawn], probabilities[drawn]))


def test_thresholded_value_sums_are_each_rows_value_times_its_weight_added_in_row_order():
    labels, scores = noisy_scores(ties=False)
    values = np.random.default_rng(5).lognormal(3, 1.5, len(labels))
    weights = stats.bootstrap_weights(3, 0, len(labels), 6)
    summed = stats.Thresholded(0.0, weights.shape[1], 0, values=True)
    for start in range(0, len(labels), 7):
        part = slice(start, start + 7)
        summed.add(labels[part], scores[part], weights[part], values[part])
    result, flagged = summed.scores(), scores > 0.0
    for name, rows in (("tp_value", flagged & (labels == 1)), ("fn_value", ~flagged & (labels == 1))):
        expected = np.zeros(weights.shape[1])
        for start in range(0, len(labels), 7):  # each chunk's rows added in order, then the chunk to the total
            chunk = np.flatnonzero(rows[start : start + 7]) + start
            expected += stats.column_sums(values[chunk, None] * weights[chunk])
        assert np.array_equal(result[name], expected), name  # the same bits
    counts = [(weights[flagged & (labels == 1)]).sum(axis=0), (weights[~flagged & (labels == 1)]).sum(axis=0)]
    np.testing.assert_array_equal([result["tp"], result["fn"]], counts)  # counts beside the values, unmixed


def test_threshold_is_strict_like_keras():
    result = thresholded(LABELS, PROBABILITIES, 0.6, np.ones((10, 1)))
    assert (result["tp"][0], result["fp"][0]) == (2, 1)


def test_bootstrap_weights_are_seeded_poisson_counts_whatever_rows_are_asked_together(monkeypatch):
    monkeypatch.setattr(stats, "DRAW_ROWS", 16)
    weights = stats.bootstrap_weights(7, 0, 50, 400)
    assert weights.shape == (50, 401) and (weights[:, 0] == 1).all()
    counts = weights[:, 1:]
    assert counts.mean() == pytest.approx(1, abs=0.02) and counts.var() == pytest.approx(1, abs=0.05)  # Poisson(1)
    pieces = [stats.bootstrap_weights(7, start, 7, 400) for start in range(0, 50, 7)]
    np.testing.assert_array_equal(np.vstack(pieces)[:50], weights)
    assert not np.array_equal(weights, stats.bootstrap_weights(8, 0, 50, 400))
    assert len({tuple(column) for column in counts.T}) == 400


def test_weight_stream_gives_bootstrap_weights_block_after_block(monkeypatch):
    monkeypatch.setattr(stats, "DRAW_ROWS", 16)
    with stats.WeightStream(7, 30) as stream:  # blocks of 9 rows drawn ahead, then a shorter last one
        streamed = np.vstack([stream.next(rows) for rows in (9, 9, 9, 9, 5)])
    np.testing.assert_array_equal(streamed, stats.bootstrap_weights(7, 0, 41, 30))


def test_ranking_scores_the_same_bits_whatever_weightings_are_scored_together(monkeypatch):
    labels, scores = noisy_scores(rows=300, seed=4)
    weights = stats.bootstrap_weights(5, 0, len(labels), 8) * 0.37  # not integers: any order of sums would show
    whole = ranking(labels, scores, weights, fpr=0.05)
    monkeypatch.setattr(stats, "SCORE_COLUMNS", 2)  # parts of 2 weightings, the last of 1
    parts = ranking(labels, scores, weights, fpr=0.05)
    for name, values in whole.items():
        np.testing.assert_array_equal(parts[name], values)


def test_ensemble_of_a_block_has_the_bits_of_the_columns_added_one_by_one():
    columns = [np.random.default_rng(m).random(1000) ** 3 for m in range(9)]
    mean = compare.MemberMean()
    for column in columns:
        mean.add(column)
    block = np.stack(columns).T[200:300]
    np.testing.assert_array_equal(compare.ensemble(block), mean.value()[200:300])
    np.testing.assert_allclose(mean.value(), np.mean(columns, axis=0), rtol=1e-15)


def test_mean_interval_is_the_student_t_interval():
    values = [0.70, 0.74, 0.81, 0.66, 0.79]
    mean, low, high = stats.mean_interval(values)
    half = 2.7764451 * np.std(values, ddof=1) / np.sqrt(5)  # t(0.975, 4 degrees of freedom)
    assert (mean, low, high) == pytest.approx((np.mean(values), np.mean(values) - half, np.mean(values) + half))
    assert stats.mean_interval([0.7]) == (0.7, None, None)
    mean, low, high = stats.mean_interval([0.7, 0.7, 0.7])  # no spread: an interval of no width
    assert low == mean == high == pytest.approx(0.7)


def test_mean_interval_of_a_bounded_metric_is_taken_on_the_logit_scale():
    """A metric in [0, 1] (AP, ROC AUC, a rate): the Student-t interval of the logits, mapped back, so it stays
    inside [0, 1] where the plain one would not; the mean stays the plain mean."""
    values = np.array([0.97, 0.999, 0.93, 1.0, 0.99])
    mean, low, high = stats.mean_interval(values, bounded=True)
    logits = np.log(values.clip(1e-9, 1 - 1e-9) / (1 - values.clip(1e-9, 1 - 1e-9)))
    half = 2.7764451 * np.std(logits, ddof=1) / np.sqrt(5)
    expected = 1 / (1 + np.exp(-(logits.mean() + np.array([-half, half]))))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(expected))
    assert 0 < low < high < 1
    assert stats.mean_interval(values)[2] > 1  # the plain interval leaves [0, 1]
    zeros = stats.mean_interval([0.0, 0.0, 0.01, 0.0], bounded=True)
    assert 0 <= zeros[1] < zeros[2] < 1


def test_member_intervals_of_rates_and_scores_stay_inside_0_and_1():
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.1).astype(int)
    # Five members from nearly perfect to fair: their AP and ROC AUC spread up to next to 1.
    members = np.stack([1 / (1 + np.exp(-rng.normal(8 * labels - 4, sd))) for sd in (2, 2.5, 3, 3.5, 5)], axis=1)
    summaries, _ = compare_arrays(labels, {"a": strategy(members)}, SETTINGS | {"resamples": 100})
    a = summaries["a"]
    for name, interval in (
        ("average_precision", a["average_precision"]),
        ("roc_auc", a["roc_auc"]),
        ("recall_at_fpr", a["recall_at_fpr"]),
        ("chosen.recall", a["chosen"]["recall"]),
        ("chosen.precision", a["chosen"]["precision"]),
    ):
        assert 0 <= interval["mean_lower"] <= interval["mean"] <= interval["mean_upper"] <= 1, name
    ap = [metrics.average_precision_score(labels, members[:, m]) for m in range(5)]
    assert stats.mean_interval(ap)[2] > 1  # where the plain Student-t interval would leave [0, 1]
    assert (a["average_precision"]["mean_lower"], a["average_precision"]["mean_upper"]) == pytest.approx(
        stats.mean_interval(ap, bounded=True)[1:]
    )
    cost = a["chosen"]["cost_per_1000"]  # not a rate: the plain Student-t interval
    flagged = members > 0.5
    missed, alarms = (~flagged & (labels == 1)[:, None]).sum(axis=0), (flagged & (labels == 0)[:, None]).sum(axis=0)
    member_costs = 1000 * (20 * missed + 1 * alarms) / len(labels)
    assert (cost["mean_lower"], cost["mean_upper"]) == pytest.approx(stats.mean_interval(member_costs)[1:])


SETTINGS = {
    "threshold": 0.5,
    "cost_false_negative": 20.0,
    "cost_false_positive": 1.0,
    "false_positive_rate": 0.01,
    "resamples": 120,
    "seed": 11,
}


def strategy(probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """compare()'s input for a strategy whose members (columns) are already calibrated, all at one threshold."""
    chosen = {"chosen.threshold": threshold}
    models = ["ensemble", *range(probabilities.shape[1])]
    return {"calibrated": probabilities, "uncalibrated": probabilities, "chosen": dict.fromkeys(models, chosen)}


def assert_close(found, expected):
    """Nested dicts, tuples and lists of equal structure with numbers equal to 1e-12 (sums in another order)."""
    if isinstance(expected, dict):
        assert found.keys() == expected.keys()
        for key in expected:
            assert_close(found[key], expected[key])
    elif isinstance(expected, (tuple, list)):
        assert len(found) == len(expected)
        for f, e in zip(found, expected, strict=True):
            assert_close(f, e)
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12, abs=1e-15)
    else:
        assert found == expected


def compare_arrays(labels: np.ndarray, strategies: dict, settings: dict, block: int = 64):
    """compare() on probabilities in memory, fed `block` rows at a time."""
    positive, inputs = labels == 1, {}
    for name, s in strategies.items():
        members = {i: column[positive] for i, column in enumerate(s["calibrated"].T)}
        positives = {"ensemble": compare.ensemble(s["calibrated"])[positive]} | members
        inputs[name] = {"positives": positives, "chosen": s["chosen"]}
    rows = [slice(start, start + block) for start in range(0, len(labels), block)]
    chunks = (
        (labels[r], None, {n: (s["calibrated"][r], s["uncalibrated"][r]) for n, s in strategies.items()}) for r in rows
    )
    return compare.compare(chunks, inputs, len(labels), settings)


def test_paired_bootstrap_matches_an_explicit_loop():
    labels, first = noisy_scores(rows=300, seed=4, ties=False)
    second = first + np.random.default_rng(5).normal(0, 0.8, len(labels))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z[:, None]))

    strategies = {"a": strategy(sigmoid(first)), "b": strategy(sigmoid(second))}
    summaries, differences = compare_arrays(labels, strategies, SETTINGS)
    assert_close((summaries, differences), compare_arrays(labels, strategies, SETTINGS, block=len(labels)))

    explicit = []  # the same resamples, scored one by one
    for column in stats.bootstrap_weights(11, 0, len(labels), 120)[:, 1:].T:
        drawn = np.repeat(np.arange(len(labels)), column.astype(int))
        explicit.append(
            metrics.average_precision_score(labels[drawn], first[drawn])
            - metrics.average_precision_score(labels[drawn], second[drawn])
        )
    low, high = np.percentile(explicit, [2.5, 97.5])
    ap = differences["a-b"]["average_precision"]
    assert (ap["ensemble_lower"], ap["ensemble_upper"]) == pytest.approx((low, high))
    assert ap["ensemble"] == pytest.approx(
        metrics.average_precision_score(labels, first) - metrics.average_precision_score(labels, second)
    )
    # One member: the member-level interval resamples rows only, the same rows, so it is the same interval.
    assert (ap["mean_lower"], ap["mean_upper"]) == pytest.approx((low, high))
    assert summaries["a"]["average_precision"]["mean_lower"] is None
    assert ap["verdict"] == ("a better" if low > 0 else "b better" if high < 0 else "not distinguishable")


def test_verdict_needs_every_interval_on_one_side_of_zero():
    assert compare.verdict("a", "b", [(0.01, 0.05), (0.02, 0.04)]) == "a better"
    assert compare.verdict("a", "b", [(-0.05, -0.01), (-0.04, -0.02)]) == "b better"
    assert compare.verdict("a", "b", [(0.01, 0.05), (-0.01, 0.04)]) == "not distinguishable"
    assert compare.verdict("a", "b", [(0.01, 0.05), (0.02, 0.04)], lower_is_better=True) == "b better"


def test_member_interval_of_a_difference_resamples_members_and_rows():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.05).astype(int)
    # Five members per strategy; strategy a is clearly better than b in every member; c has a single model.
    a = np.stack([1 / (1 + np.exp(-rng.normal(1.5 * labels, 1.0))) for _ in range(5)], axis=1)
    b = np.stack([1 / (1 + np.exp(-rng.normal(0.5 * labels, 1.0))) for _ in range(5)], axis=1)
    c = 1 / (1 + np.exp(-rng.normal(0.5 * labels, 1.0)))[:, None]
    strategies = {"a": strategy(a), "b": strategy(b), "c": strategy(c)}
    summaries, differences = compare_arrays(labels, strategies, SETTINGS | {"resamples": 200, "seed": 1})
    ap = differences["a-b"]["average_precision"]
    per_member = [
        metrics.average_precision_score(labels, a[:, m]) - metrics.average_precision_score(labels, b[:, m])
        for m in range(5)
    ]
    assert ap["mean"] == pytest.approx(np.mean(per_member))
    assert ap["mean_lower"] < np.mean(per_member) < ap["mean_upper"]
    assert ap["verdict"] == "a better"
    single = differences["a-c"]["average_precision"]  # the single model is paired with every member
    c_ap = metrics.average_precision_score(labels, c[:, 0])
    assert single["mean"] == pytest.approx(
        np.mean([metrics.average_precision_score(labels, a[:, m]) - c_ap for m in range(5)])
    )
    ensemble = summaries["a"]["average_precision"]
    assert ensemble["ensemble"] == pytest.approx(metrics.average_precision_score(labels, a.mean(axis=1)))
    assert ensemble["ensemble_lower"] < ensemble["ensemble"] < ensemble["ensemble_upper"]
    assert set(differences["a-b"]) == {"average_precision", "roc_auc", "recall_at_fpr", "chosen"}
    assert set(differences["a-b"]["chosen"]) == {"cost_per_1000"}


def test_cost_and_thresholds_in_the_summary():
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])[:, None]
    summaries, _ = compare_arrays(labels, {"a": strategy(probabilities, threshold=0.5)}, SETTINGS | {"resamples": 100})
    chosen = summaries["a"]["chosen"]
    assert (chosen["tp"]["ensemble"], chosen["fp"]["ensemble"], chosen["fn"]["ensemble"]) == (1, 1, 1)
    assert chosen["cost_per_1000"]["ensemble"] == pytest.approx(1000 * (20 * 1 + 1 * 1) / 10)
    assert chosen["threshold"] == {
        "ensemble": 0.5,
        "ensemble_lower": None,
        "ensemble_upper": None,
        "mean": 0.5,
        "mean_lower": None,
        "mean_upper": None,
    }
