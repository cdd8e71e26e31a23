"""train_gbdt: the reference users would pick instead, gradient-boosted trees (scikit-learn's
HistGradientBoostingClassifier) on the same scaled features, with members like the networks'.

Member m is seeded by (train.seed, m): its own share of the features at each split (train_gbdt.max_features) and,
with train.negative_rate below 1, its own negative sample (evaluate corrects its probabilities as it does those of
any model trained at the real odds). Each member adds trees until train_gbdt.patience trees in a row have not
raised the average precision of the validation split (its fixed negative sample under negative sampling, as the
networks' early stopping), and keeps the trees up to its best. Its predictions have the format of the other
strategies', so evaluate scores it with the same code.
"""

import pickle
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from fraudflow.common import (
    MODELS_DIR,
    PREDICTIONS_DIR,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    require,
    run,
    write_json,
)
from fraudflow.scaled import (
    NpyRows,
    check_negative_rate,
    features_file,
    load_labels,
    member_sample,
    member_seed,
    negative_rate,
    train_members,
    train_seed,
    validation_sample,
    write_predictions,
)
from fraudflow.strategies import TREES, the_kind

NAME = the_kind(TREES).name
METRICS_FILE = f"metrics/train/{NAME}.json"
THREADS = 2  # OpenMP threads of the fit (fixed, like TensorFlow's: fraudflow/__init__.py)


def read_settings() -> dict:
    own = load_params("train_gbdt")

    def positive_int(v):
        return is_int(v) and v > 0

    return {
        "seed": train_seed(),
        "members": train_members(),
        "learning_rate": require(
            own, "train_gbdt", "learning_rate", lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"
        ),
        "max_trees": require(own, "train_gbdt", "max_trees", positive_int, "an integer > 0"),
        "max_leaf_nodes": require(
            own, "train_gbdt", "max_leaf_nodes", lambda v: is_int(v) and v >= 2, "an integer >= 2"
        ),
        "min_samples_leaf": require(own, "train_gbdt", "min_samples_leaf", positive_int, "an integer > 0"),
        "l2_regularization": require(
            own, "train_gbdt", "l2_regularization", lambda v: is_number(v) and v >= 0, "a number >= 0"
        ),
        "max_features": require(
            own, "train_gbdt", "max_features", lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"
        ),
        "patience": require(own, "train_gbdt", "patience", positive_int, "an integer > 0"),
    }


def tree_model(settings: dict, member: int) -> HistGradientBoostingClassifier:
    """Member `member`'s model, unfitted: early stopping on the average precision of the validation rows given to
    fit, after `patience` trees in a row without a better one."""
    return HistGradientBoostingClassifier(
        learning_rate=settings["learning_rate"],
        max_iter=settings["max_trees"],
        max_leaf_nodes=settings["max_leaf_nodes"],
        min_samples_leaf=settings["min_samples_leaf"],
        l2_regularization=settings["l2_regularization"],
        max_features=settings["max_features"],
        early_stopping=True,
        scoring="average_precision",
        n_iter_no_change=settings["patience"],
        tol=0,
        random_state=member_seed(settings["seed"], member),
    )


def keep_best_trees(model: HistGradientBoostingClassifier):
    """Cut a fitted model back to its trees up to its best validation score, at least one (scikit-learn stops once
    `patience` trees in a row have not beaten the score before them, and keeps every tree it grew;
    tests/test_gbdt.py checks the cut model against scikit-learn's staged predictions)."""
    best = max(int(np.argmax(model.validation_score_)), 1)  # validation_score_[i]: after i trees
    model._predictors = model._predictors[:best]  # n_iter_ follows


def main():
    settings, rate, labels = read_settings(), negative_rate(), load_labels("train")
    check_negative_rate(labels, rate)
    features, val_labels = NpyRows(features_file("train")), load_labels("val")
    val_rows = validation_sample(val_labels, rate, settings["seed"])
    x_val, y_val = NpyRows(features_file("val")).take(val_rows), val_labels[val_rows]
    members, best_ap, started = [], [], time.perf_counter()
    with threadpool_limits(THREADS, "openmp"):
        for member in range(settings["members"]):
            rows = member_sample(labels, rate, settings["seed"], member)
            model = tree_model(settings, member)
            model.fit(features.take(rows), labels[rows], X_val=x_val, y_val=y_val)
            keep_best_trees(model)
            members.append(model)
            best_ap.append(float(model.validation_score_.max()))
            log.info("%s member %d: %d trees, validation AP %.4f", NAME, member, model.n_iter_, best_ap[-1])
        seconds = time.perf_counter() - started
        with atomic_output(MODELS_DIR / NAME) as tmp:
            tmp.mkdir()
            for number, model in enumerate(members):
                (tmp / f"member_{number}.pkl").write_bytes(pickle.dumps(model, protocol=5))
        write_predictions(
            PREDICTIONS_DIR / f"{NAME}.parquet",
            lambda x: np.stack([m.predict_proba(x)[:, 1] for m in members], axis=1),
        )
    trees = [model.n_iter_ for model in members]
    write_json(
        METRICS_FILE,
        {
            "members": settings["members"],
            "trees": {"min": min(trees), "max": max(trees)},
            "best_val_prc": {"min": min(best_ap), "max": max(best_ap)},
        },
    )
    log.info("%s: %d members, %d to %d trees in %.1f s", NAME, len(members), min(trees), max(trees), seconds)


if __name__ == "__main__":
    run(main)
