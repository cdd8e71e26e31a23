"""train: fit the members of one imbalance strategy: `python -m stages.train baseline|weighted|resampled`."""

import sys
import time

import numpy as np

from fraudflow.common import (
    MODELS_DIR,
    PREDICTIONS_DIR,
    STRATEGIES,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    require,
    run,
    save_keras,
    write_json,
)
from fraudflow.members import MONITORS, fit_members, member_predictor
from fraudflow.scaled import (
    NpyRows,
    features_file,
    load_labels,
    negative_rate,
    train_members,
    train_seed,
    write_predictions,
)

HISTORY_DIR = "plots/history"
METRICS_DIR = "metrics/train"


def read_settings(strategy: str) -> dict:
    """The shared `train` params plus the strategy's own `train_<strategy>` params, all validated."""
    if strategy not in STRATEGIES:
        raise StageError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    shared, own_section = load_params("train"), f"train_{strategy}"
    own = load_params(own_section)

    def positive_int(v):
        return is_int(v) and v > 0

    settings = {
        "seed": train_seed(),
        "members": train_members(),
        "hidden_units": require(shared, "train", "hidden_units", positive_int, "an integer > 0"),
        "dropout": require(shared, "train", "dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "learning_rate": require(shared, "train", "learning_rate", lambda v: is_number(v) and v > 0, "a number > 0"),
        "batch_size": require(shared, "train", "batch_size", positive_int, "an integer > 0"),
        "monitor": require(shared, "train", "monitor", lambda v: v in MONITORS, f"one of {', '.join(MONITORS)}"),
        "patience": require(shared, "train", "patience", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "negative_rate": negative_rate(),
        "epochs": require(own, own_section, "epochs", positive_int, "an integer > 0"),
    }
    if strategy == "resampled":
        settings["steps_per_epoch"] = require(own, own_section, "steps_per_epoch", positive_int, "an integer > 0")
        if settings["batch_size"] < 2:
            raise StageError("params.yaml: param 'train.batch_size' must be >= 2 for balanced batches")
    return settings


def epoch_logger(strategy: str, settings: dict):
    """Logs one line per epoch: how many members still train and the monitored value's range over them."""
    monitor = settings["monitor"]

    def log_epoch(epoch, training_members, validation):
        values = validation[monitor][training_members]
        log.info(
            "%s epoch %d/%d: %d of %d members training, %s %.4f to %.4f",
            strategy,
            epoch,
            settings["epochs"],
            len(training_members),
            settings["members"],
            monitor,
            values.min(),
            values.max(),
        )

    return log_epoch


def main():
    if len(sys.argv) != 2:
        raise StageError(f"usage: python -m stages.train {{{'|'.join(STRATEGIES)}}}")
    strategy = sys.argv[1]
    settings = read_settings(strategy)
    train, val = ((NpyRows(features_file(split)), load_labels(split)) for split in ("train", "val"))

    started = time.perf_counter()
    model, members, history, stopping = fit_members(strategy, settings, train, val, epoch_logger(strategy, settings))
    seconds = time.perf_counter() - started

    with atomic_output(MODELS_DIR / strategy) as tmp:
        tmp.mkdir()
        for number, member in enumerate(members):
            save_keras(member, tmp / f"member_{number}.keras")
    write_predictions(PREDICTIONS_DIR / f"{strategy}.parquet", member_predictor(model))
    with atomic_output(f"{HISTORY_DIR}/{strategy}.csv") as tmp:
        history.to_csv(tmp, index=False, float_format="%.6g")
    monitor = settings["monitor"]
    best = stopping.sign * stopping.best
    write_json(
        f"{METRICS_DIR}/{strategy}.json",
        {
            "members": settings["members"],
            "epochs_run": {"min": int(stopping.epochs_run.min()), "max": int(stopping.epochs_run.max())},
            "best_epoch": {"min": int(stopping.best_epoch.min()), "max": int(stopping.best_epoch.max())},
            f"best_{monitor}": {"min": float(best.min()), "max": float(best.max())},
        },
    )
    log.info(
        "%s: %d members, %d epochs in %.1f s; best epochs %s (%s %s); models written to %s",
        strategy,
        settings["members"],
        stopping.epochs_run.max(),
        seconds,
        stopping.best_epoch.tolist(),
        monitor,
        np.round(best, 4).tolist(),
        MODELS_DIR / strategy,
    )


if __name__ == "__main__":
    run(main)
