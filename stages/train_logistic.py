"""train_logistic: the reference model, logistic regression (scikit-learn's objective) on the same scaled features.

Its predictions have the format of the network strategies' (one member), so evaluate scores it with the same
code. With train.negative_rate below 1 it fits on the first network member's negative sample (every positive,
that share of the negatives); evaluate corrects its probabilities as it does a network's. The fit is Newton's
method to full precision in bounded memory and the coefficients are rounded to 10 significant digits, so every
processor gets the same model and the same output bytes.
"""

import time

import numpy as np
from scipy.special import expit

from fraudflow.common import (
    MODELS_DIR,
    PREDICTIONS_DIR,
    StageError,
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
    train_seed,
    write_predictions,
)
from fraudflow.strategies import LOGISTIC, the_kind

FIT_ROWS = 1 << 16  # training rows per block of the fit's sums
MAX_ITERATIONS = 100
NAME = the_kind(LOGISTIC).name
METRICS_FILE = f"metrics/train/{NAME}.json"
MODEL_FILE = MODELS_DIR / f"{NAME}.json"


def fit(features: NpyRows, rows: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, float, int]:
    """Coefficients, intercept and Newton iterations of scikit-learn's L2-regularised logistic regression (inverse
    strength c; the intercept not penalised) on the given training rows.

    Newton's method with a backtracking line search, as scikit-learn's newton-cholesky solver, but with the loss,
    gradient and Hessian summed over blocks of FIT_ROWS rows, so memory holds one block whatever the rows; run to
    full precision and rounded to 10 significant digits, like every processor's."""
    n_features = features.shape[1]
    penalty = np.r_[np.full(n_features, 1 / c), 0.0]

    def objective(beta):  # loss, gradient and Hessian at beta, over every block
        loss, gradient, hessian = 0.5 * penalty @ beta**2, penalty * beta, np.diag(penalty)
        for start in range(0, len(rows), FIT_ROWS):
            block = rows[start : start + FIT_ROWS]
            x, y = np.hstack([features.take(block), np.ones((len(block), 1))]), labels[start : start + FIT_ROWS]
            logit = x @ beta
            loss += np.logaddexp(0, logit).sum() - y @ logit
            p = expit(logit)
            gradient += x.T @ (p - y)
            hessian += (x * (p * (1 - p))[:, None]).T @ x
        return loss, gradient, hessian

    beta, iterations = np.zeros(n_features + 1), 0
    loss, gradient, hessian = objective(beta)
    while True:
        iterations += 1
        step, size = np.linalg.solve(hessian, gradient), 1.0
        # Backtracking (Armijo) while the step promises a decrease the loss can show; near the optimum, full steps.
        while gradient @ step > 1e-12 * abs(loss):
            candidate = beta - size * step
            new = objective(candidate)
            if new[0] <= loss - 1e-4 * size * (gradient @ step):
                break
            size /= 2
            if size < 1e-10:
                raise StageError("train_logistic: Newton's method found no step that lowers the loss")
        else:
            candidate = beta - step
            new = objective(candidate)
        beta, (loss, gradient, hessian) = candidate, new
        if np.abs(size * step).max() <= 1e-11 * (1 + np.abs(beta).max()):  # converged to full precision
            break
        if iterations == MAX_ITERATIONS:
            raise StageError(f"train_logistic: Newton's method did not converge in {MAX_ITERATIONS} iterations")

    def round10(values):
        return np.array([float(f"{v:.10g}") for v in np.ravel(values)])

    return round10(beta[:-1]), float(round10(beta[-1:])[0]), iterations


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
    rows = member_sample(labels, rate, train_seed(), 0)
    started = time.perf_counter()
    coefficients, intercept, iterations = fit(NpyRows(features_file("train")), rows, labels[rows], c)
    seconds = time.perf_counter() - started

    features = load_preprocessing()["features"]
    write_json(MODEL_FILE, {"features": features, "coefficients": coefficients.tolist(), "intercept": intercept})
    write_predictions(
        PREDICTIONS_DIR / f"{NAME}.parquet",
        lambda x: predict(x, coefficients, intercept)[:, np.newaxis],
    )
    write_json(METRICS_FILE, {"members": 1, "iterations": iterations})
    log.info(
        "%s: fitted in %.1f s (%d Newton iterations); model written to %s",
        NAME,
        seconds,
        iterations,
        MODEL_FILE,
    )


if __name__ == "__main__":
    run(main)
