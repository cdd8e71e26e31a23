"""The comparison evaluate reports (pure computations on predicted probabilities): every strategy's ensemble
and members with 95 % intervals at three operating points, and paired differences between strategies.

Metric names are flat ('chosen.recall'); `nest` turns them into the nested JSON that DVC shows as columns.
"""

from itertools import combinations

import numpy as np

from fraudflow.stats import Ranking, Thresholded, bootstrap_counts, mean_interval, percentile_interval

DIFFERENCE_METRICS = ("average_precision", "roc_auc", "recall_at_fpr", "chosen.cost_per_1000")
LOWER_IS_BETTER = {"chosen.cost_per_1000"}
COUNTS = ("tp", "fp", "tn", "fn")
CHUNK = 50  # resamples per block: bounds memory at rows x CHUNK weights


class ModelScores:
    """Every metric of one model (a member or an ensemble) for any weighting of the test rows.

    Threshold-free scores and the calibrated probabilities' log loss and Brier score; counts and rates at the
    threshold chosen on validation, with the cost per 1,000 transactions; and at the tutorial's fixed threshold
    on the probabilities as trained, with their log loss and Brier score.
    """

    def __init__(self, labels, calibrated, uncalibrated, chosen_threshold: float, settings: dict):
        self.settings, self.chosen_threshold, self.rows = settings, chosen_threshold, len(labels)
        self.ranking = Ranking(labels, calibrated)
        self.chosen = Thresholded(labels, calibrated, chosen_threshold)
        self.tutorial = Thresholded(labels, uncalibrated, settings["threshold"])

    def scores(self, weights: np.ndarray) -> dict:
        s = self.settings
        chosen, tutorial = self.chosen.scores(weights), self.tutorial.scores(weights)
        cost = s["cost_false_negative"] * chosen["fn"] + s["cost_false_positive"] * chosen["fp"]
        result = self.ranking.scores(weights, s["false_positive_rate"])
        result |= {"log_loss": chosen["log_loss"], "brier": chosen["brier"]}
        result |= {f"chosen.{k}": chosen[k] for k in (*COUNTS, "precision", "recall")}
        result["chosen.cost_per_1000"] = 1000 * cost / weights.sum(axis=0)
        result |= {f"tutorial.{k}": tutorial[k] for k in (*COUNTS, "precision", "recall")}
        result |= {"uncalibrated.log_loss": tutorial["log_loss"], "uncalibrated.brier": tutorial["brier"]}
        return result

    def point(self) -> dict:
        ones = np.ones((self.rows, 1))
        return {name: float(values[0]) for name, values in self.scores(ones).items()} | {
            "chosen.threshold": self.chosen_threshold
        }


def bootstrap_scores(labels: np.ndarray, scorers: dict, resamples: int, seed: int) -> dict:
    """{model: {metric: array of `resamples` values}}; every model is scored on the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    blocks = {name: [] for name in scorers}
    for start in range(0, resamples, CHUNK):
        weights = bootstrap_counts(rng, len(labels), min(CHUNK, resamples - start))
        for name, scorer in scorers.items():
            blocks[name].append(scorer.scores(weights))
    return {
        name: {metric: np.concatenate([block[metric] for block in parts]) for metric in parts[0]}
        for name, parts in blocks.items()
    }


def summary(ensemble: dict, members: list[dict], resampled: dict) -> dict:
    """Per metric: the ensemble's value and bootstrap interval, the members' mean and Student-t interval."""
    result = {}
    for metric, value in ensemble.items():
        low, high = percentile_interval(resampled[metric]) if metric in resampled else (None, None)
        mean, mean_low, mean_high = mean_interval([member[metric] for member in members])
        result[metric] = {
            "ensemble": int(value) if metric.split(".")[-1] in COUNTS else value,
            "ensemble_lower": low,
            "ensemble_upper": high,
            "mean": mean,
            "mean_lower": mean_low,
            "mean_upper": mean_high,
        }
    return result


def verdict(first: str, second: str, intervals: list[tuple[float, float]], lower_is_better: bool = False) -> str:
    """Which strategy is better, only if every interval of first - second excludes 0 on the same side."""
    if lower_is_better:
        first, second = second, first
    if all(low > 0 for low, _ in intervals):
        return f"{first} better"
    if all(high < 0 for _, high in intervals):
        return f"{second} better"
    return "not distinguishable"


def paired_differences(points: dict, resampled: dict, members: dict, seed: int) -> dict:
    """For each pair of strategies and metric, first - second: the ensembles' difference with a paired bootstrap
    interval over the test rows, and the mean difference of member i against member i (same starting weights;
    a strategy with one model pairs it with every member) with an interval over resampled rows and resampled
    members together."""
    rng = np.random.default_rng(seed)
    resamples = len(next(iter(resampled.values()))["roc_auc"])
    count = max(members.values())
    member_draws = rng.integers(0, count, size=(resamples, count))  # the same member draws for every pair

    def own(strategy, i):  # member i of a strategy; its only one if it has one
        return min(i, members[strategy] - 1)

    result = {}
    for first, second in combinations(points, 2):
        pair = {}
        for metric in DIFFERENCE_METRICS:
            ensemble = resampled[(first, "ensemble")][metric] - resampled[(second, "ensemble")][metric]
            by_member = np.array(
                [
                    resampled[(first, own(first, i))][metric] - resampled[(second, own(second, i))][metric]
                    for i in range(count)
                ]
            )  # (members, resamples)
            member_mean = by_member[member_draws.T, np.arange(resamples)].mean(axis=0)
            point_differences = [
                points[first]["members"][own(first, i)][metric] - points[second]["members"][own(second, i)][metric]
                for i in range(count)
            ]
            intervals = [percentile_interval(ensemble), percentile_interval(member_mean)]
            pair[metric] = {
                "ensemble": points[first]["ensemble"][metric] - points[second]["ensemble"][metric],
                "ensemble_lower": intervals[0][0],
                "ensemble_upper": intervals[0][1],
                "mean": float(np.mean(point_differences)),
                "mean_lower": intervals[1][0],
                "mean_upper": intervals[1][1],
                "verdict": verdict(first, second, intervals, metric in LOWER_IS_BETTER),
            }
        result[f"{first}-{second}"] = nest(pair)
    return result


def compare(labels: np.ndarray, strategies: dict, settings: dict):
    """strategies: {name: {"calibrated", "uncalibrated": (rows, members) arrays, "thresholds": one chosen
    threshold per member, "ensemble_threshold"}}. Returns ({strategy: summary}, paired differences)."""
    points, scorers, members = {}, {}, {}
    for name, s in strategies.items():
        models = {"ensemble": (s["calibrated"].mean(axis=1), s["uncalibrated"].mean(axis=1), s["ensemble_threshold"])}
        for i, threshold in enumerate(s["thresholds"]):
            models[i] = (s["calibrated"][:, i], s["uncalibrated"][:, i], threshold)
        for model, (calibrated, uncalibrated, threshold) in models.items():
            scorers[(name, model)] = ModelScores(labels, calibrated, uncalibrated, threshold, settings)
        members[name] = len(s["thresholds"])
        points[name] = {
            "ensemble": scorers[(name, "ensemble")].point(),
            "members": [scorers[(name, i)].point() for i in range(members[name])],
        }
    resampled = bootstrap_scores(labels, scorers, settings["resamples"], settings["seed"])
    summaries = {
        name: nest(summary(point["ensemble"], point["members"], resampled[(name, "ensemble")]))
        for name, point in points.items()
    }
    return summaries, paired_differences(points, resampled, members, settings["seed"] + 1)


def nest(flat: dict) -> dict:
    """{'chosen.recall': v} -> {'chosen': {'recall': v}}."""
    nested = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested
