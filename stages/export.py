"""export: one strategy as one self-contained model for ONNX Runtime (raw columns in, probability out), whichever
strategy params.yaml's export.strategy names: a network's members, logistic regression, the gradient-boosted trees
or the blend of the others.

Writes export/: model.onnx (fraudflow/onnx_graph.py: the preprocessing, the members, the calibration) and model.json
(strategy, inputs with their types and vocabularies, missing-value policy, and what evaluate chose in
models/rules/<strategy>.json: the calibration and the rule that flags a row, a threshold or with a cost column its
name, k and cost_false_positive; the raw data's sha256 from data/raw.json). Both are byte-identical run after run.
"""

import json
import pickle
import re
from pathlib import Path

import numpy as np

from fraudflow import onnx_graph
from fraudflow.common import (
    EXPORT_DIR,
    MODELS_DIR,
    RAW_RECORD,
    RULES_DIR,
    StageError,
    atomic_output,
    is_number,
    load_params,
    load_preprocessing,
    log,
    quiet_tensorflow,
    require,
    run,
)
from fraudflow.strategies import BLEND, LOGISTIC, NETWORK, REGISTRY, TREES, evaluated

MEMBER_FILE = re.compile(r"member_(\d+)\.(keras|pkl)")
MODEL_FILE = EXPORT_DIR / "model.onnx"
FORMAT = "ONNX (opset 21, ai.onnx.ml 5), for ONNX Runtime: one input per column, output 'probability'"


def member_files(strategy: str, suffix: str) -> list[Path]:
    """models/<strategy>/member_0.<suffix>, member_1.<suffix>, ..., in that order."""
    folder = MODELS_DIR / strategy
    found = {int(m[1]): path for path in folder.glob(f"member_*.{suffix}") if (m := MEMBER_FILE.fullmatch(path.name))}
    if not found:
        raise StageError(f"{folder}: no member_<i>.{suffix} files; run 'dvc repro {REGISTRY[strategy].stage}'")
    if sorted(found) != list(range(len(found))):
        raise StageError(f"{folder}: member files are not numbered 0 to {len(found) - 1}: {sorted(found)}")
    return [found[i] for i in range(len(found))]


def network_weights(strategy: str, n_features: int) -> list[list[np.ndarray]]:
    """Each network member's [kernel1, bias1, kernel2, bias2], from its Keras file."""
    with quiet_tensorflow():
        import keras

    weights = []
    for path in member_files(strategy, "keras"):
        member = keras.saving.load_model(path)
        if member.input_shape != (None, n_features):
            raise StageError(f"{path}: takes input {member.input_shape}, expected (None, {n_features})")
        weights.append(member.get_weights())
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


def members(g: onnx_graph.Graph, features: str, strategy: str, n_features: int) -> tuple[str, int]:
    """The strategy's members' probabilities as trained, (n, members), and how many members."""
    entry = REGISTRY[strategy]
    if entry.kind == NETWORK:
        weights = network_weights(strategy, n_features)
        return onnx_graph.network_members(g, features, weights), len(weights)
    if entry.kind == TREES:
        tables = tree_tables(strategy)
        return onnx_graph.tree_members(g, features, tables), len(tables)
    if entry.kind == LOGISTIC:
        model = read_json(MODELS_DIR / f"{strategy}.json", entry.stage)
        return onnx_graph.logistic_member(g, features, np.array(model["coefficients"]), model["intercept"]), 1
    raise StageError(f"{strategy}: a {entry.kind} strategy has no members of its own")


def model_inputs(prep: dict) -> list[dict]:
    """model.json's input list: every raw column the model takes, its input's name (the column's) and type; for a
    category column, its vocabulary (any other level is (other)) and the training levels folded into (other)."""
    inputs = [{"column": c, "input": c, "type": "number"} for c in (prep["log"].get(n, n) for n in prep["numeric"])]
    for name, levels in prep["categories"].items():
        entry = {"column": name, "input": name, "type": "category", "levels": len(levels)}
        inputs.append({**entry, "vocabulary": levels, "folded": prep["folded"][name]})
    return inputs


def build(strategy: str, prep: dict, inputs: list[dict], eps: float, shift: float) -> tuple:
    """The strategy's ONNX model and its number of members: a blend combines its strategies' members (those of
    weight 0 left out)."""
    g = onnx_graph.Graph()
    features = onnx_graph.preprocess(g, prep, inputs, eps)
    n_features = len(prep["features"])
    if REGISTRY[strategy].kind == BLEND:
        blend = read_json(MODELS_DIR / f"{strategy}.json", REGISTRY[strategy].stage)
        if not any(blend["strategies"].values()):
            raise StageError(
                f"{MODELS_DIR / strategy}.json: every weight is 0 (the blend is a constant); export another strategy"
            )
        parts = [
            (*members(g, features, name, n_features), weight) for name, weight in blend["strategies"].items() if weight
        ]
        probability, count = onnx_graph.blended_mean(g, parts, blend["intercept"], blend["members"]), blend["members"]
    else:
        probabilities, count = members(g, features, strategy, n_features)
        probability = onnx_graph.calibrated_mean(g, probabilities, shift)
    return onnx_graph.model(g, inputs, probability), count


def main():
    names = [s.name for s in evaluated()]
    strategy = require(load_params("export"), "export", "strategy", lambda v: v in names, f"one of {', '.join(names)}")
    eps = require(load_params("clean"), "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    prep = load_preprocessing()
    rule = read_json(RULES_DIR / f"{strategy}.json", "evaluate")
    sha256 = read_json(RAW_RECORD, "download").get("sha256")
    inputs = model_inputs(prep)
    model, count = build(strategy, prep, inputs, eps, rule["calibration_logit_shift"])
    card = {
        "strategy": strategy,
        "members": count,
        "format": FORMAT,
        "inputs": inputs,
        "log": sorted(prep["log"].values()),
        "missing": prep["missing"],
        **rule,
        "data_sha256": sha256,
    }
    with atomic_output(EXPORT_DIR) as tmp:
        tmp.mkdir()
        (tmp / MODEL_FILE.name).write_bytes(model.SerializeToString(deterministic=True))
        (tmp / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    detail = f"k {rule['k']:g}" if "k" in rule else f"threshold {rule['threshold']:g}"
    log.info("export: wrote %s (%s, %d members, %s)", EXPORT_DIR, strategy, count, detail)


if __name__ == "__main__":
    run(main)
