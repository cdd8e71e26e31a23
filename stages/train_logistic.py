"""train_logistic: the reference model, scikit-learn's logistic regression on the same scaled features.

Its predictions have the format of the network strategies' (one member), so evaluate scores it with the same
code. The fit is Newton's method to full precision and the coefficients are rounded to 10 significant digits,
so every processor gets the same model and the same output bytes.
"""

import time

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from fraudflow.common import (
    MODELS_DIR,
    PREDICTIONS_DIR,
    REFERENCE_STRATEGY,
    is_number,
    load_params,
    load_preprocessing,
    load_scaled,
    log,
    prediction_rows,
    require,
    run,
    write_json,
    write_parquet,
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
    (x_train, y_train), val, test = (load_scaled(split) for split in ("train", "val", "test"))

    started = time.perf_counter()
    coefficients, intercept, iterations = fit(x_train, y_train, c)
    seconds = time.perf_counter() - started

    features = load_preprocessing()["features"]
    write_json(MODEL_FILE, {"features": features, "coefficients": coefficients.tolist(), "intercept": intercept})
    parts = []
    for name, (x, y) in {"val": val, "test": test}.items():
        probability = predict(x, coefficients, intercept)
        parts.append(prediction_rows(name, y, probability[:, np.newaxis]))
    write_parquet(
        pa.Table.from_pandas(pd.concat(parts, ignore_index=True), preserve_index=False),
        PREDICTIONS_DIR / f"{REFERENCE_STRATEGY}.parquet",
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
