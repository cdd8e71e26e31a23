"""evaluate: every strategy's test metrics with 95 % intervals at three operating points, paired differences,
their headline numbers (metrics/summary.json), curves and PNG figures.

Probabilities are first corrected to the real fraud rate wherever a model trained at other odds (prior
correction: the weighted and resampled strategies, and any model trained on a negative sample); each model's
cost-minimising threshold is chosen on the validation split and applied unchanged to the test split.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn import metrics

from fraudflow import figures
from fraudflow.common import (
    EVALUATED,
    PREDICTIONS_DIR,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    require,
    run,
    write_json,
)
from fraudflow.compare import MemberMean, compare
from fraudflow.inputs import exact_batches
from fraudflow.operating import cost_threshold, prior_shift, reliability, shift_probabilities
from fraudflow.scaled import load_labels, negative_rate
from fraudflow.stats import DRAW_ROWS
from fraudflow.summary import SUMMARY_FILE, summarise

METRICS_DIR = "metrics/test"
DIFFERENCES_FILE = "metrics/differences.json"
PLOTS_DIR = "plots"
BLOCK_ROWS = DRAW_ROWS  # test rows read and scored at a time; no result depends on it


def read_settings() -> dict:
    params = load_params("evaluate")

    def number(v):
        return is_number(v) and v >= 0

    return {
        "threshold": require(
            params, "evaluate", "threshold", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
        ),
        "cost_false_negative": require(params, "evaluate", "cost_false_negative", number, "a number >= 0"),
        "cost_false_positive": require(params, "evaluate", "cost_false_positive", number, "a number >= 0"),
        "false_positive_rate": require(
            params, "evaluate", "false_positive_rate", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"
        ),
        "curve_points": require(params, "evaluate", "curve_points", lambda v: is_int(v) and v >= 2, "an integer >= 2"),
        "resamples": require(
            params, "evaluate", "bootstrap_resamples", lambda v: is_int(v) and v >= 100, "an integer >= 100"
        ),
        "seed": require(params, "evaluate", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    }


def member_columns(strategy: str) -> list[str]:
    """The member_<i> columns of a strategy's predictions file."""
    path = PREDICTIONS_DIR / f"{strategy}.parquet"
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as error:
        raise StageError(f"{path}: cannot read Parquet ({error}); run 'dvc repro train_{strategy}'") from error
    members = [name for name in names if name.startswith("member_")]
    missing = [name for name in ("split", "label") if name not in names] + ([] if members else ["member_<i>"])
    if missing:
        raise StageError(f"{path}: no {' or '.join(missing)} columns; run 'dvc repro train_{strategy}'")
    return members


def as_arrays(table: pa.Table, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (rows, members) probabilities as trained."""
    probabilities = np.stack([table[name].to_numpy() for name in members]).T
    return table["label"].to_numpy(), probabilities


def split_batches(strategy: str, split: str, columns: list[str]):
    """One split's rows of some columns of a strategy's predictions, in batches of at most BLOCK_ROWS rows, read
    a row group at a time (pyarrow's iter_batches kept every row it had read until the file was closed: 600 MB
    for the four files' test rows at 64x)."""
    file = pq.ParquetFile(PREDICTIONS_DIR / f"{strategy}.parquet")
    for group in range(file.num_row_groups):
        rows = file.read_row_group(group, columns=["split", *columns])
        yield from rows.filter(pc.equal(rows["split"], split)).to_batches(max_chunksize=BLOCK_ROWS)


def split_column(strategy: str, split: str, column: str) -> np.ndarray:
    """One column of one split of a strategy's predictions, whole."""
    return pa.Table.from_batches(split_batches(strategy, split, [column]))[column].to_numpy()


class MemberColumns:
    """One split of a strategy's predictions, one member's column at a time, prior-corrected by `shift`; the
    ensemble's probabilities, as trained and corrected, are summed on the way (so memory holds about three
    columns, never every member's)."""

    def __init__(self, strategy: str, split: str, shift: float):
        self.strategy, self.split, self.shift = strategy, split, shift
        self.labels = split_column(strategy, split, "label")
        self.as_trained, self.calibrated = MemberMean(), MemberMean()

    def __iter__(self):
        for name in member_columns(self.strategy):
            raw = split_column(self.strategy, self.split, name)
            calibrated = shift_probabilities(raw, self.shift)
            self.as_trained.add(raw)
            self.calibrated.add(calibrated)
            yield calibrated


def strategy_test_blocks(strategy: str):
    """A strategy's test rows in blocks of BLOCK_ROWS rows: (labels, probabilities as trained)."""
    members = member_columns(strategy)
    for table in exact_batches(split_batches(strategy, "test", ["label", *members]), BLOCK_ROWS):
        yield as_arrays(table, members)


def test_blocks(shifts: dict):
    """Every strategy's test rows side by side, block by block: (labels, {strategy: (calibrated, as trained)})."""
    for blocks in zip(*(strategy_test_blocks(strategy) for strategy in shifts), strict=True):
        yield (
            blocks[0][0],
            {s: (shift_probabilities(p, shifts[s]), p) for s, (_, p) in zip(shifts, blocks, strict=True)},
        )


def operating_points(strategy: str, shift: float, settings: dict) -> dict:
    """The thresholds chosen on the validation split: one per member and the ensemble's."""
    val = MemberColumns(strategy, "val", shift)
    costs = settings["cost_false_negative"], settings["cost_false_positive"]
    try:
        thresholds = [cost_threshold(val.labels, column, *costs) for column in val]
        ensemble_threshold = cost_threshold(val.labels, val.calibrated.value(), *costs)
    except ValueError as error:
        raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: validation split: {error}") from error
    return {"thresholds": thresholds, "ensemble_threshold": ensemble_threshold}


def thin(curve: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most max_points rows, evenly spaced, always keeping the first and the last."""
    if len(curve) <= max_points:
        return curve
    return curve.iloc[np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))]


def roc_points(labels, probabilities, max_points: int) -> pd.DataFrame:
    fpr, tpr, _ = metrics.roc_curve(labels, probabilities, drop_intermediate=True)
    return thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}), max_points)


def pr_points(labels, probabilities, max_points: int) -> pd.DataFrame:
    """The precision-recall curve reduced to its corners: the first and last point of every recall level."""
    precision, recall, _ = metrics.precision_recall_curve(labels, probabilities)
    curve = pd.DataFrame({"recall": recall, "precision": precision})
    corners = curve[~curve["recall"].duplicated(keep="first") | ~curve["recall"].duplicated(keep="last")]
    return thin(corners, max_points)


def confusion_cells(result: dict) -> pd.DataFrame:
    """The ensemble's 2x2 confusion matrix at the chosen threshold as four rows of counts."""
    cells = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}
    chosen = result["chosen"]
    return pd.DataFrame(
        [{"actual": a, "predicted": p, "count": chosen[key]["ensemble"]} for (a, p), key in cells.items()]
    )


def write_csv(frame: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def curves_and_positives(strategy: str, shift: float, n: int) -> dict:
    """What evaluate draws of one strategy's test split, its labels, and its positives' scores for compare."""
    test = MemberColumns(strategy, "test", shift)
    labels, members, positives = test.labels, [], {}
    positive = labels == 1
    for i, column in enumerate(test):
        members.append((roc_points(labels, column, n), pr_points(labels, column, n)))
        positives[i] = column[positive]
    mean = test.calibrated.value()
    return {
        "labels": labels,
        "curves": ((roc_points(labels, mean, n), pr_points(labels, mean, n)), members if len(members) > 1 else []),
        "calibration": {
            "as trained": reliability(labels, test.as_trained.value()),
            "calibrated": reliability(labels, mean),
        },
        "positives": {"ensemble": mean[positive]} | positives,
    }


def main():
    settings = read_settings()
    train_labels, rate = load_labels("train"), negative_rate()
    labels, strategies, drawn, shifts = None, {}, {}, {}
    for strategy in EVALUATED:  # a few columns of one strategy's splits in memory at a time
        shifts[strategy] = prior_shift(strategy, train_labels, rate)
        strategies[strategy] = operating_points(strategy, shifts[strategy], settings)
        drawn[strategy] = curves_and_positives(strategy, shifts[strategy], settings["curve_points"])
        if labels is not None and not np.array_equal(labels, drawn[strategy]["labels"]):
            raise StageError(f"{PREDICTIONS_DIR}/{strategy}.parquet: other test rows than baseline; rerun 'dvc repro'")
        labels = drawn[strategy].pop("labels")
        strategies[strategy]["positives"] = drawn[strategy]["positives"]
    counts = {s: len(p["thresholds"]) for s, p in strategies.items() if len(p["thresholds"]) > 1}
    if len(set(counts.values())) > 1:
        raise StageError(f"{PREDICTIONS_DIR}: strategies have different numbers of members {counts}; rerun 'dvc repro'")

    results, differences = compare(test_blocks(shifts), strategies, len(labels), settings)
    for strategy, result in results.items():
        write_json(f"{METRICS_DIR}/{strategy}.json", result)
        (roc, pr), _ = drawn[strategy]["curves"]
        write_csv(roc, f"{PLOTS_DIR}/roc/{strategy}.csv")
        write_csv(pr, f"{PLOTS_DIR}/prc/{strategy}.csv")
        write_csv(confusion_cells(result), f"{PLOTS_DIR}/confusion/{strategy}.csv")
        write_csv(pd.DataFrame(drawn[strategy]["calibration"]["calibrated"]), f"{PLOTS_DIR}/calibration/{strategy}.csv")
        chosen = result["chosen"]
        log.info(
            "evaluate: %-9s test AP %.4f [%.4f, %.4f]; recall at FPR %g: %.4f; at the threshold chosen on "
            "validation, %.4f: test recall %.4f, precision %.4f, cost per 1,000 %.2f",
            strategy,
            *(result["average_precision"][k] for k in ("ensemble", "ensemble_lower", "ensemble_upper")),
            settings["false_positive_rate"],
            result["recall_at_fpr"]["ensemble"],
            chosen["threshold"]["ensemble"],
            chosen["recall"]["ensemble"],
            chosen["precision"]["ensemble"],
            chosen["cost_per_1000"]["ensemble"],
        )
    write_json(DIFFERENCES_FILE, differences)
    write_json(SUMMARY_FILE, summarise(results, differences))
    for pair, difference in differences.items():
        ap = difference["average_precision"]
        log.info(
            "evaluate: %s AP difference %+.4f [%+.4f, %+.4f] (members %+.4f [%+.4f, %+.4f]): %s",
            pair,
            *(ap[k] for k in ("ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper")),
            ap["verdict"],
        )
    curves = {s: d["curves"] for s, d in drawn.items()}
    figures.draw_roc({s: (c[0][0], [m[0] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/roc.png")
    figures.draw_prc({s: (c[0][1], [m[1] for m in c[1]]) for s, c in curves.items()}, results, f"{PLOTS_DIR}/prc.png")
    figures.draw_confusion(results, f"{PLOTS_DIR}/confusion.png")
    figures.draw_reliability({s: d["calibration"] for s, d in drawn.items()}, f"{PLOTS_DIR}/calibration.png")


if __name__ == "__main__":
    run(main)
