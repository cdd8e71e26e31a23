"""Each strategy's fitted numbers, read from models/: a network's members' weights, the trees' nodes, logistic
regression's coefficients; and how a strategy is made of them (a blend: of other strategies' members). export and
explain build their ONNX graphs from these.
"""

import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np

from fraudflow.common import MODELS_DIR, StageError
from fraudflow.strategies import BLEND, LOGISTIC, NETWORK, REGISTRY, TREES

MEMBER_FILE = re.compile(r"member_(\d+)\.(keras|pkl)")


def member_files(strategy: str, suffix: str) -> list[Path]:
    """models/<strategy>/member_0.<suffix>, member_1.<suffix>, ..., in that order."""
    folder = MODELS_DIR / strategy
    found = {int(m[1]): path for path in folder.glob(f"member_*.{suffix}") if (m := MEMBER_FILE.fullmatch(path.name))}
    if not found:
        raise StageError(f"{folder}: no member_<i>.{suffix} files; run 'dvc repro {REGISTRY[strategy].stage}'")
    if sorted(found) != list(range(len(found))):
        raise StageError(f"{folder}: member files are not numbered 0 to {len(found) - 1}: {sorted(found)}")
    return [found[i] for i in range(len(found))]


# The activations of a network member's Dense layers, in order (fraudflow/members.py's build_member): the network
# that export and explain rebuild in ONNX.
NETWORK_ACTIVATIONS = ["relu", "sigmoid"]


def network_weights(strategy: str, n_features: int) -> list[list[np.ndarray]]:
    """Each network member's [kernel1, bias1, kernel2, bias2], read from its Keras file without loading Keras: the
    archive's config.json lists the layers, its model.weights.h5 holds each Dense layer's kernel and bias under
    layers/dense, layers/dense_1, ... (Keras names a layer's entry by its class, counted in order)."""
    weights = []
    for path in member_files(strategy, "keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                layers = json.loads(archive.read("config.json"))["config"]["layers"]
                stored = io.BytesIO(archive.read("model.weights.h5"))
            shape = [layer["config"].get("batch_shape") for layer in layers if layer["class_name"] == "InputLayer"]
            dense = [layer["config"] for layer in layers if layer["class_name"] == "Dense"]
            kinds = [(d["activation"], d["use_bias"]) for d in dense]
            outputs = dense[-1]["units"] if dense else None
        except (OSError, KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile) as error:
            raise StageError(f"{path}: not a Keras model file of a network member ({error})") from error
        if shape != [[None, n_features]]:
            found = tuple(shape[0]) if shape and shape[0] else None
            raise StageError(f"{path}: takes input {found}, expected (None, {n_features})")
        if kinds != [(activation, True) for activation in NETWORK_ACTIVATIONS] or outputs != 1:
            raise StageError(f"{path}: not a {' then '.join(NETWORK_ACTIVATIONS)} network with biases and one output")
        entries = ["dense", *(f"dense_{n}" for n in range(1, len(dense)))]
        try:
            with h5py.File(stored, "r") as h5:
                weights.append([h5[f"layers/{entry}/vars/{i}"][()] for entry in entries for i in (0, 1)])
        except (OSError, KeyError) as error:
            raise StageError(f"{path}: its weights are not where Keras writes them ({error})") from error
    return weights


def tree_tables(strategy: str) -> list[dict]:
    """Each tree member's baseline (raw score before any tree) and trees, as scikit-learn's predictor nodes."""
    members = []
    for path in member_files(strategy, "pkl"):
        model = pickle.loads(path.read_bytes())
        trees = [
            {
                "feature": nodes["feature_idx"],
                "threshold": nodes["num_threshold"],
                "left": nodes["left"],
                "right": nodes["right"],
                "is_leaf": nodes["is_leaf"],
                "value": nodes["value"],
                "count": nodes["count"],  # training rows reaching each node (the reason codes weigh by them)
            }
            for nodes in (predictor.nodes for (predictor,) in model._predictors)
        ]
        members.append({"baseline": float(model._baseline_prediction.ravel()[0]), "trees": trees})
    return members


def read_json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read ({error}); run 'dvc repro {stage}'") from error


def member_data(strategy: str, n_features: int) -> tuple:
    """The strategy's fitted numbers (a network's members' weights, the trees' tables, or logistic regression's
    coefficients and intercept) and its number of members."""
    entry = REGISTRY[strategy]
    if entry.kind == NETWORK:
        weights = network_weights(strategy, n_features)
        return weights, len(weights)
    if entry.kind == TREES:
        tables = tree_tables(strategy)
        return tables, len(tables)
    if entry.kind == LOGISTIC:
        model = read_json(MODELS_DIR / f"{strategy}.json", entry.stage)
        return (np.array(model["coefficients"]), model["intercept"]), 1
    raise StageError(f"{strategy}: a {entry.kind} strategy has no members of its own")


def parts(strategy: str) -> tuple[dict[str, float], int | None, float]:
    """What the strategy's probability is made of: {strategy: weight} (itself, 1.0; a blend's strategies of weight
    > 0), the number of members a blend averages (None: the strategy's own) and a blend's intercept (else 0)."""
    if REGISTRY[strategy].kind != BLEND:
        return {strategy: 1.0}, None, 0.0
    blend = read_json(MODELS_DIR / f"{strategy}.json", REGISTRY[strategy].stage)
    if not any(blend["strategies"].values()):
        raise StageError(
            f"{MODELS_DIR / strategy}.json: every weight is 0 (the blend is a constant); export another strategy"
        )
    return (
        {name: weight for name, weight in blend["strategies"].items() if weight},
        blend["members"],
        blend["intercept"],
    )


def member_weights(count: int, members: int) -> np.ndarray:
    """Each of a strategy's `count` members' share of `members` averaged ones: member i takes the strategy's member
    min(i, count - 1), as a blend takes them (for the strategy itself, count == members: 1 / count each)."""
    return np.bincount(np.minimum(np.arange(members), count - 1), minlength=count) / members


def explained(weights: dict[str, float], data: dict) -> dict:
    """fraudflow/onnx_reasons.py's parts: {strategy: (its kind, its fitted numbers, its members, its weight)}."""
    return {name: (REGISTRY[name].kind, *data[name], weight) for name, weight in weights.items()}
