"""train_blend: a strategy made of the others, weighted as the validation split says.

Member i of the blend is sigmoid(b + sum over strategies s of w_s * logit(p_s,i)), p_s,i the probability of member
i of strategy s as trained (a strategy with fewer members gives its last: logistic regression its one model), with
non-negative weights w_s and an intercept b fitted on the validation split alone: the least log loss of the
strategies' ensembles, logit of the mean of their members' probabilities. So the blend is calibrated to the real
positive rate (evaluate shifts nothing), and a strategy that adds nothing gets the weight 0. The test split is
not read until the weights are fixed. blend.strategies says which it may use ("all": every other one evaluated).

Writes data/blend/blend.parquet (its members' predictions, in the format of the others'), models/blend.json (the
weights, the intercept and the strategies, for export) and metrics/train/blend.json.
"""

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from fraudflow.common import (
    MODELS_DIR,
    PARAMS_FILE,
    StageError,
    load_params,
    log,
    rounded,
    run,
    write_json,
)
from fraudflow.inputs import exact_batches
from fraudflow.operating import logit
from fraudflow.outputs import write_tables
from fraudflow.predictions import BLOCK_ROWS, MemberColumns, member_columns, split_batches
from fraudflow.scaled import PREDICTED_SPLITS, train_members
from fraudflow.strategies import BLEND, REGISTRY, evaluated, the_kind

NAME = the_kind(BLEND).name
MODEL_FILE = MODELS_DIR / f"{NAME}.json"
METRICS_FILE = f"metrics/train/{NAME}.json"


def read_settings() -> list[str]:
    """blend.strategies: "all" (every other strategy evaluated) or a list of their names, in registry order."""
    others = [s.name for s in evaluated() if s.kind != BLEND]
    chosen = load_params(NAME).get("strategies")
    if chosen == "all":
        return others
    if not isinstance(chosen, list) or not chosen or any(name not in others for name in chosen):
        raise StageError(
            f"{PARAMS_FILE}: param '{NAME}.strategies' must be 'all' or a list of strategies among "
            f"{', '.join(others)}, got {chosen!r}"
        )
    return [name for name in others if name in chosen]


def fit(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights (one per column of logits) and an intercept of the least log loss plus scikit-learn's
    default L2 penalty on the weights (0.5 * |w|^2, C = 1: negligible beside tens of thousands of rows, but it keeps
    the weights finite where the rows are separable), to full precision (L-BFGS-B), rounded to 10 digits."""
    y = labels.astype(np.float64)

    def loss(beta):
        weights, z = beta[:-1], logits @ beta[:-1] + beta[-1]
        residual = expit(z) - y
        value = -(y @ log_expit(z) + (1 - y) @ log_expit(-z)) + 0.5 * weights @ weights
        return value / len(y), np.r_[logits.T @ residual + weights, residual.sum()] / len(y)

    start = np.r_[np.full(logits.shape[1], 1 / logits.shape[1]), 0.0]
    bounds = [(0, None)] * logits.shape[1] + [(None, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": 0, "gtol": 1e-12})
    if not np.all(np.isfinite(result.x)):
        raise StageError(f"{NAME}: the fit of the weights on the validation split did not converge ({result.message})")
    beta = np.array(rounded(result.x.tolist()))
    return beta[:-1], float(beta[-1])


def blended(probabilities: list[np.ndarray], weights: np.ndarray, intercept: float, members: int) -> np.ndarray:
    """(rows, members): member i of the blend from each strategy's (rows, its members) probabilities."""
    z = np.full((len(probabilities[0]), members), intercept)
    for p, weight in zip(probabilities, weights, strict=True):
        columns = np.minimum(np.arange(members), p.shape[1] - 1)
        z += weight * logit(p[:, columns])
    return expit(z)


def write_predictions(strategies: list[str], weights: np.ndarray, intercept: float, members: int):
    """data/blend/blend.parquet: the blend's members on the val and test rows, block by block, with the ids and
    labels of the first strategy's file (every strategy's has the same rows, in the same order)."""
    columns = {s: member_columns(s) for s in strategies}
    first = strategies[0]
    names = pq.read_schema(REGISTRY[first].predictions).names
    ids = [name for name in names if name not in ("split", "label", *columns[first])]

    def tables():
        for split in PREDICTED_SPLITS:
            streams = [
                exact_batches(
                    split_batches(s, split, [*ids, "label", *columns[s]] if s == first else columns[s]), BLOCK_ROWS
                )
                for s in strategies
            ]
            for blocks in zip(*streams, strict=True):
                probabilities = [
                    np.stack([block[c].to_numpy() for c in columns[s]], axis=1)
                    for s, block in zip(strategies, blocks, strict=True)
                ]
                blend = blended(probabilities, weights, intercept, members)
                head = blocks[0]
                yield pa.table(
                    {
                        **{name: head[name] for name in ids},
                        "split": pa.array([split] * head.num_rows, pa.string()),
                        "label": head["label"],
                        **{f"member_{i}": pa.array(blend[:, i]) for i in range(members)},
                    }
                )

    write_tables(the_kind(BLEND).predictions, tables())


def main():
    strategies = read_settings()
    started = time.perf_counter()
    ensembles, labels = [], None
    for strategy in strategies:  # one strategy's validation columns in memory at a time
        val = MemberColumns(strategy, "val", 0.0).read_all()
        if labels is not None and not np.array_equal(labels, val.labels):
            raise StageError(f"{strategy}: other validation rows than {strategies[0]}'s; rerun 'dvc repro'")
        labels = val.labels
        ensembles.append(logit(val.as_trained.value()))
    weights, intercept = fit(np.stack(ensembles, axis=1), labels)
    members = train_members()  # as many as the other strategies have, whichever it weighs
    write_predictions(strategies, weights, intercept, members)
    model = {"strategies": dict(zip(strategies, weights.tolist(), strict=True)), "intercept": intercept}
    write_json(MODEL_FILE, model | {"members": members})
    write_json(METRICS_FILE, {"members": members, "weights": model["strategies"], "intercept": intercept})
    log.info(
        "%s: weights %s, intercept %.4f (fitted on %d validation rows in %.1f s)",
        NAME,
        ", ".join(f"{s} {w:.4f}" for s, w in model["strategies"].items()),
        intercept,
        len(labels),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    run(main)
