"""train: fit the members of one network strategy: `python -m stages.train <name>`, a key of params.yaml's
`networks` (fraudflow/strategies.py says how each trains)."""

import sys
import time

import numpy as np

from fraudflow.common import (
    MODELS_DIR,
    PARAMS_FILE,
    PREDICTIONS_DIR,
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
from fraudflow.strategies import NETWORK, NETWORKS_SECTION, REGISTRY, Strategy, network_params

HISTORY_DIR = "plots/history"
METRICS_DIR = "metrics/train"


def positive_int(v) -> bool:
    return is_int(v) and v > 0


# The params a network strategy's own section may hold: (valid, description, which strategies need it).
OWN_PARAMS = {
    "epochs": (positive_int, "an integer > 0", lambda s: True),
    "steps_per_epoch": (positive_int, "an integer > 0", lambda s: s.balanced_batches),
    "gamma": (lambda v: is_number(v) and v >= 0, "a number >= 0", lambda s: s.loss == "binary_focal_crossentropy"),
    "alpha": (
        lambda v: v is None or (is_number(v) and 0 < v < 1),
        "null or a number in (0, 1)",
        lambda s: s.loss == "binary_focal_crossentropy",
    ),
}


def read_settings(entry: Strategy) -> dict:
    """The shared `train` params plus the strategy's own `networks.<name>` params, all validated."""
    shared, section = load_params("train"), f"{NETWORKS_SECTION}.{entry.name}"
    own = network_params().get(entry.name)
    if not isinstance(own, dict):
        raise StageError(f"{PARAMS_FILE}: missing section '{section}'")
    needed = [key for key, (_, _, needs) in OWN_PARAMS.items() if needs(entry)]
    unknown = [key for key in own if key not in needed]
    if unknown:
        raise StageError(
            f"{PARAMS_FILE}: param '{section}.{unknown[0]}' is not one of {entry.name}'s ({', '.join(needed)})"
        )
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
    }
    for key in needed:
        valid, description, _ = OWN_PARAMS[key]
        settings[key] = require(own, section, key, valid, description)
    if entry.balanced_batches and settings["batch_size"] < 2:
        raise StageError(f"{PARAMS_FILE}: param 'train.batch_size' must be >= 2 for balanced batches")
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
    networks = [s.name for s in REGISTRY.values() if s.kind == NETWORK]
    if len(sys.argv) != 2 or sys.argv[1] not in networks:
        raise StageError(f"usage: python -m stages.train {{{'|'.join(networks)}}}")
    strategy = sys.argv[1]
    settings = read_settings(REGISTRY[strategy])
    train, val = ((NpyRows(features_file(split)), load_labels(split)) for split in ("train", "val"))

    started = time.perf_counter()
    log_epoch = epoch_logger(strategy, settings)
    model, members, history, stopping = fit_members(REGISTRY[strategy], settings, train, val, log_epoch)
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
