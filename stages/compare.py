"""The comparison evaluate reports: every strategy's ensemble and members with 95 % intervals, and paired
differences between strategies (pure computations on predicted probabilities)."""

from itertools import combinations

import numpy as np
from threadpoolctl import threadpool_limits

from stages.stats import Ranking, Thresholded, bootstrap_counts, mean_interval, percentile_interval

RANKING_METRICS = ("average_precision", "roc_auc")
THRESHOLD_METRICS = ("tp", "fp", "tn", "fn", "precision", "recall", "log_loss")
COUNTS = ("tp", "fp", "tn", "fn")
CHUNK = 50  # resamples per block: bounds memory at rows x CHUNK weights


def point_scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Every metric of one model on the rows as they are."""
    ones = np.ones((len(labels), 1))
    average_precision, auc = Ranking(labels, probabilities).scores(ones)
    result = {"average_precision": average_precision, "roc_auc": auc}
    result |= Thresholded(labels, probabilities, threshold).scores(ones)
    return {name: float(values[0]) for name, values in result.items()}


@threadpool_limits.wrap(limits=1, user_api="blas")  # small products: threads only wait for each other on a busy machine
def bootstrap_scores(labels: np.ndarray, models: dict, threshold: float, resamples: int, seed: int) -> dict:
    """{model: {metric: array of `resamples` values}}; every model is scored on the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    scorers = {name: (Ranking(labels, p), Thresholded(labels, p, threshold)) for name, p in models.items()}
    blocks = {name: [] for name in models}
    for start in range(0, resamples, CHUNK):
        weights = bootstrap_counts(rng, len(labels), min(CHUNK, resamples - start))
        for name, (ranking, thresholded) in scorers.items():
            average_precision, auc = ranking.scores(weights)
            blocks[name].append({"average_precision": average_precision, "roc_auc": auc} | thresholded.scores(weights))
    return {
        name: {metric: np.concatenate([block[metric] for block in parts]) for metric in parts[0]}
        for name, parts in blocks.items()
    }


def summary(ensemble: dict, members: list[dict], resampled: dict) -> dict:
    """Per metric: the ensemble's value and bootstrap interval, the members' mean and Student-t interval."""
    result = {}
    for metric, value in ensemble.items():
        low, high = percentile_interval(resampled[metric])
        mean, mean_lower, mean_upper = mean_interval([member[metric] for member in members])
        result[metric] = {
            "ensemble": int(value) if metric in COUNTS else value,
            "ensemble_lower": low,
            "ensemble_upper": high,
            "mean": mean,
            "mean_lower": mean_lower,
            "mean_upper": mean_upper,
        }
    return result


def verdict(first: str, second: str, intervals: list[tuple[float, float]]) -> str:
    """Which strategy is better, only if every interval of first - second excludes 0 on the same side."""
    if all(low > 0 for low, _ in intervals):
        return f"{first} better"
    if all(high < 0 for _, high in intervals):
        return f"{second} better"
    return "not distinguishable"


def paired_differences(points: dict, resampled: dict, members: int, seed: int) -> dict:
    """For each pair of strategies and ranking metric, first - second: the ensembles' difference with a paired
    bootstrap interval over the test rows, and the mean difference of member i against member i (same
    starting weights) with an interval over resampled rows and resampled members together."""
    rng = np.random.default_rng(seed)
    resamples = len(next(iter(resampled.values()))["roc_auc"])
    member_draws = rng.integers(0, members, size=(resamples, members))  # the same member draws for every pair
    result = {}
    for first, second in combinations(points, 2):
        pair = {}
        for metric in RANKING_METRICS:
            ensemble = resampled[(first, "ensemble")][metric] - resampled[(second, "ensemble")][metric]
            by_member = np.array(
                [
                    resampled[(first, member)][metric] - resampled[(second, member)][metric]
                    for member in range(members)
                ]
            )  # (members, resamples)
            member_mean = by_member[member_draws.T, np.arange(resamples)].mean(axis=0)
            intervals = [percentile_interval(ensemble), percentile_interval(member_mean)]
            pair[metric] = {
                "ensemble": points[first]["ensemble"][metric] - points[second]["ensemble"][metric],
                "ensemble_lower": intervals[0][0],
                "ensemble_upper": intervals[0][1],
                "mean": float(
                    np.mean([a[metric] - b[metric] for a, b in zip(points[first]["members"], points[second]["members"])])
                ),
                "mean_lower": intervals[1][0],
                "mean_upper": intervals[1][1],
                "verdict": verdict(first, second, intervals),
            }
        result[f"{first}-{second}"] = pair
    return result


def compare(labels: np.ndarray, probabilities: dict, threshold: float, resamples: int, seed: int):
    """probabilities: {strategy: (rows, members) array}. Returns ({strategy: summary}, paired differences)."""
    points, models = {}, {}
    for strategy, member_probabilities in probabilities.items():
        ensemble = member_probabilities.mean(axis=1)
        points[strategy] = {
            "ensemble": point_scores(labels, ensemble, threshold),
            "members": [point_scores(labels, column, threshold) for column in member_probabilities.T],
        }
        models[(strategy, "ensemble")] = ensemble
        models |= {(strategy, member): column for member, column in enumerate(member_probabilities.T)}
    resampled = bootstrap_scores(labels, models, threshold, resamples, seed)
    summaries = {
        strategy: summary(point["ensemble"], point["members"], resampled[(strategy, "ensemble")])
        for strategy, point in points.items()
    }
    members = next(iter(probabilities.values())).shape[1]
    return summaries, paired_differences(points, resampled, members, seed + 1)
