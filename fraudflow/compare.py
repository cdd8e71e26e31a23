"""The comparison evaluate reports (pure computations on predicted probabilities): every strategy's ensemble
and members with 95 % intervals at three operating points, and paired differences between strategies.

Metric names are flat ('chosen.recall'); `nest` turns them into the nested JSON that DVC shows as columns.
"""

from itertools import combinations

import numpy as np

from fraudflow.costs import value_at_risk, value_scores
from fraudflow.stats import Ranking, Thresholded, WeightStream, mean_interval, percentile_interval

# Paired between strategies (the value_rule.* ones with a cost column only)
DIFFERENCE_METRICS = (
    "average_precision",
    "roc_auc",
    "recall_at_fpr",
    "chosen.cost_per_1000",
    "value_rule.cost_per_1000",
    "value_rule.savings",
)
LOWER_IS_BETTER = {"chosen.cost_per_1000", "value_rule.cost_per_1000"}
# Metrics in [0, 1] (the last part of the name): their member intervals are taken on the logit scale
BOUNDED = {"average_precision", "roc_auc", "recall_at_fpr", "precision", "recall", "brier", "caught"}
COUNTS = ("tp", "fp", "tn", "fn")


class ModelScores:
    """Every metric of one model (a member or an ensemble) for k weightings of the test rows, summed block by block.

    Threshold-free scores and the calibrated probabilities' log loss and Brier score; counts and rates at the
    threshold chosen on validation, with the cost per 1,000 rows; with a cost column ("value_rule.k" chosen on
    validation), counts, rates, cost, savings and value caught under the rule p / (1 - p) * value >
    k * cost_false_positive (fraudflow/costs.py), and what it saves against the threshold's flags at the same
    costs; and at the tutorial's fixed threshold on the probabilities as trained, with their log loss and Brier
    score. A member's resamples are used only for the DIFFERENCE_METRICS, so of the rest it sums only column 0 of
    the weights (the rows as they are).
    """

    def __init__(self, positive_scores, chosen: dict, settings: dict, k: int, member: bool, dtype):
        self.settings = settings
        self.ranking = Ranking(positive_scores, k, dtype)
        by_value = "value_rule.k" in chosen
        self.chosen = Thresholded(chosen["chosen.threshold"], k, 1 if member else k, values=by_value)
        self.value_rule = None
        if by_value:
            self.value_rule = Thresholded(chosen["value_rule.k"], k, 0, values=True)
        self.tutorial = Thresholded(settings["threshold"], *((1, 1) if member else (k, k)))

    def add(self, labels, values, calibrated, uncalibrated, weights: np.ndarray):
        self.ranking.add(labels, calibrated, weights)
        self.chosen.add(labels, calibrated, weights, values)
        if self.value_rule:
            self.value_rule.add(
                labels, value_at_risk(calibrated, values, self.settings["cost_false_positive"]), weights, values
            )
        self.tutorial.add(labels, uncalibrated, weights)

    def scores(self, positive_weights: np.ndarray) -> dict:
        """{metric: values}, one per weighting of the rows (a member's beyond the DIFFERENCE_METRICS: column 0)."""
        s = self.settings
        chosen, tutorial = self.chosen.scores(), self.tutorial.scores()
        cost = s["cost_false_negative"] * chosen["fn"] + s["cost_false_positive"] * chosen["fp"]
        total = chosen["tp"] + chosen["fp"] + chosen["tn"] + chosen["fn"]
        result = self.ranking.scores(positive_weights, s["false_positive_rate"])
        result |= {"log_loss": chosen["log_loss"], "brier": chosen["brier"]}
        # A Poisson resample's size varies around the split's: its counts are scaled to the split's size.
        size = total[0] / total
        result |= {f"chosen.{k}": chosen[k] * size for k in COUNTS}
        result |= {f"chosen.{k}": chosen[k] for k in ("precision", "recall")}
        result["chosen.cost_per_1000"] = 1000 * cost / total
        if self.value_rule:
            by_value = self.value_rule.scores()
            result |= {f"value_rule.{k}": by_value[k] * size for k in COUNTS}
            result |= {f"value_rule.{k}": by_value[k] for k in ("precision", "recall")}

            def at_value_costs(cells):  # cost, savings and value caught of these flags, each row at its value
                return value_scores(*(cells[k] for k in (*COUNTS, "tp_value", "fn_value")), s["cost_false_positive"])

            values = at_value_costs(by_value)
            result |= {f"value_rule.{k}": v for k, v in values.items()}
            by_threshold = at_value_costs(chosen)  # the flat threshold's flags: what the value rule saves against it
            result["value_rule.threshold_cost_per_1000"] = by_threshold["cost_per_1000"]
            result["value_rule.saved_per_1000"] = by_threshold["cost_per_1000"] - values["cost_per_1000"]
        result |= {f"tutorial.{k}": tutorial[k] * size[: tutorial[k].size] for k in COUNTS}
        result |= {f"tutorial.{k}": tutorial[k] for k in ("precision", "recall")}
        result |= {"uncalibrated.log_loss": tutorial["log_loss"], "uncalibrated.brier": tutorial["brier"]}
        return result


class MemberMean:
    """The ensemble's probability of each row, its members' columns added one at a time in member order, so a
    split read column by column and each block of its rows give the same bits."""

    def __init__(self):
        self.total, self.count = None, 0

    def add(self, column: np.ndarray):
        self.total = np.array(column, np.float64) if self.total is None else np.add(self.total, column, out=self.total)
        self.count += 1

    def value(self) -> np.ndarray:
        return self.total / self.count


def ensemble(probabilities: np.ndarray) -> np.ndarray:
    """The ensemble's probability of each row: the mean of its members' (rows, members) (MemberMean)."""
    mean = MemberMean()
    for column in probabilities.T:
        mean.add(column)
    return mean.value()


def bootstrap_scores(chunks, scorers: dict, resamples: int, seed: int) -> dict:
    """Feeds every block of test rows with its weights (stats.WeightStream) to every scorer; returns
    {model: {metric: values}}, column 0 the rows as they are, then one value per resample (paired)."""
    positive_weights = []
    with WeightStream(seed, resamples) as stream:
        for labels, values, predictions in chunks:
            weights = stream.next(len(labels))
            positive_weights.append(weights[labels == 1])
            for (name, model), scorer in scorers.items():
                calibrated, uncalibrated = predictions[name]
                if model == "ensemble":
                    scorer.add(labels, values, ensemble(calibrated), ensemble(uncalibrated), weights)
                else:
                    scorer.add(labels, values, calibrated[:, model], uncalibrated[:, model], weights)
    positive_weights = np.concatenate(positive_weights)
    return {key: scorer.scores(positive_weights) for key, scorer in scorers.items()}


def point(scores: dict, chosen: dict) -> dict:
    """Column 0 of a model's scores: its metrics on the test rows as they are, and what was chosen on validation."""
    return {name: float(values[0]) for name, values in scores.items()} | chosen


def summary(ensemble_point: dict, members: list[dict], resampled: dict) -> dict:
    """Per metric: the ensemble's value and bootstrap interval, the members' mean and Student-t interval (on the
    logit scale for the BOUNDED metrics; none for the rule's k: chosen, not estimated, and the members' ks can lie
    decades apart)."""
    result = {}
    for metric, value in ensemble_point.items():
        low, high = percentile_interval(resampled[metric]) if metric in resampled else (None, None)
        bounded = metric.split(".")[-1] in BOUNDED
        mean, mean_low, mean_high = mean_interval([member[metric] for member in members], bounded)
        if metric == "value_rule.k":
            mean_low = mean_high = None
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
        for metric in (m for m in DIFFERENCE_METRICS if m in resampled[(first, "ensemble")]):
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


def compare(chunks, strategies: dict, rows: int, settings: dict):
    """chunks: the test rows block by block, in order, as (labels, their values in the cost column or None,
    {strategy: (calibrated, uncalibrated) (rows, members) probabilities}); strategies: {name: {"positives":
    {model: its calibrated scores of the positive test rows}, "chosen": {model: what was chosen on validation
    ({"chosen.threshold": ..., "value_rule.k": ... with a cost column})}}, models "ensemble" and each member i};
    rows: how many test rows. Returns ({strategy: summary}, paired differences)."""
    k = 1 + settings["resamples"]
    dtype = np.float32 if rows < 1 << 23 else np.float64  # a resample's sums stay below 2^24, exact in float32
    scorers = {}
    for name, s in strategies.items():
        for model, chosen in s["chosen"].items():
            member = model != "ensemble"
            scorers[(name, model)] = ModelScores(s["positives"][model], chosen, settings, k, member, dtype)
    scores = bootstrap_scores(chunks, scorers, settings["resamples"], settings["seed"])
    resampled = {key: {metric: values[1:] for metric, values in model.items()} for key, model in scores.items()}
    members = {name: len(s["chosen"]) - 1 for name, s in strategies.items()}
    points = {
        name: {
            "ensemble": point(scores[(name, "ensemble")], s["chosen"]["ensemble"]),
            "members": [point(scores[(name, i)], s["chosen"][i]) for i in range(members[name])],
        }
        for name, s in strategies.items()
    }
    summaries = {
        name: nest(summary(p["ensemble"], p["members"], resampled[(name, "ensemble")])) for name, p in points.items()
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
