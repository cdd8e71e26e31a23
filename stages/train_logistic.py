"""train_logistic: the reference model, scikit-learn's logistic regression on the same scaled features.

Its predictions have the format of the network strategies' (one member), so evaluate scores it with the same
code. With train.negative_rate below 1 it fits on the first network member's negative sample (every positive,
that share of the negatives); evaluate corrects its probabilities as it does the baseline's. The fit is Newton's
method to full precision and the coefficients are rounded to 10 significant digits, so every processor gets the
same model and the same output bytes.
"""

import time

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from fraudflow.common import (
    MODELS_DIR,
    PREDICTIONS_DIR,
    REFERENCE_STRATEGY,
    is_int,
    is_number,
    load_params,
    load_preprocessing,
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
    negative_rate,
    write_predictions,
)

METRICS_FILE = f"metrics/train/{REFERENCE_STRATEGY}.json"
MODEL_FILE = MODELS_DIR / f"{REFERENCE_STRATEGY}.json"


def fit(features: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, float, int]:
    """Coefficients, intercept and Newton iterations of an L2-regularised logistic regression (inverse strength c)."""
    model = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=100)
    model.fit(features.astype(np.float64), labels)

    def round10(values):
        return np.array([float(f"{v:.10g}") for v in np.ravel(values)])

    return round10(model.coef_), float(round10(model.intercept_)[0]), int(model.n_iter_[0])


def predict(features: np.ndarray, coefficients: np.ndarray, intercept: float) -> np.ndarray:
    """Fraud probabilities; the sum runs feature by feature (no BLAS), so it is the same on every processor."""
    logit = np.full(len(features), intercept)
    for column, weight in enumerate(coefficients):
        logit += features[:, column].astype(np.float64) * weight
    return expit(logit)


def main():
    params = load_params("train_logistic")
    c = require(params, "train_logistic", "C", lambda v: is_number(v) and v > 0, "a number > 0")
    rate, labels = negative_rate(), load_labels("train")
    check_negative_rate(labels, rate)
    seed = require(load_params("train"), "train", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    rows = member_sample(labels, rate, seed, 0)
    scaled = NpyRows(features_file("train"))
    x_train = scaled.rows(0, len(scaled)) if rate == 1 else scaled.take(rows)

    started = time.perf_counter()
    coefficients, intercept, iterations = fit(x_train, labels[rows], c)
    seconds = time.perf_counter() - started

    features = load_preprocessing()["features"]
    write_json(MODEL_FILE, {"features": features, "coefficients": coefficients.tolist(), "intercept": intercept})
    write_predictions(
        PREDICTIONS_DIR / f"{REFERENCE_STRATEGY}.parquet",
        lambda x: predict(x, coefficients, intercept)[:, np.newaxis],
    )
    write_json(METRICS_FILE, {"members": 1, "iterations": iterations})
    log.info(
        "%s: fitted in %.1f s (%d Newton iterations); model written to %s",
        REFERENCE_STRATEGY,
        seconds,
        iterations,
        MODEL_FILE,
    )


if __name__ == "__main__":
    run(main)
