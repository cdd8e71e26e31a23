"""export: one strategy's members as one self-contained model (raw columns in, fraud probability out).

Writes models/export/: model.keras, saved_model/ (the same model for TensorFlow Serving, one named input per
column) and model.json (strategy, inputs with their types and vocabularies, missing-value policy, and what evaluate
chose in models/rules/<strategy>.json: the calibration and the rule that flags a row, a threshold or with a cost
column its name, k and cost_false_positive; the raw data's sha256 from data/raw.json).
"""

import json
import logging
import re
from pathlib import Path
from unittest import mock

import numpy as np

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
    save_keras,
)
from fraudflow.strategies import NETWORK, REGISTRY

with quiet_tensorflow():
    import keras
    from keras import ops
    from keras.src.export import saved_model_export_archive
    from tensorflow.core.protobuf import fingerprint_pb2

MEMBER_FILE = re.compile(r"member_(\d+)\.keras")
INTERNAL = "fraudflow_"  # the model's own layer names start with it; input names never do


def load_members(strategy: str, n_features: int) -> list[keras.Model]:
    """The strategy's member models, models/<strategy>/member_0.keras, member_1.keras, ..., in that order."""
    folder = MODELS_DIR / strategy
    found = {int(m[1]): path for path in folder.glob("member_*.keras") if (m := MEMBER_FILE.fullmatch(path.name))}
    if not found:
        raise StageError(f"{folder}: no member_<i>.keras files; run 'dvc repro {REGISTRY[strategy].stage}'")
    if sorted(found) != list(range(len(found))):
        raise StageError(f"{folder}: member files are not numbered 0 to {len(found) - 1}: {sorted(found)}")
    members = [keras.saving.load_model(found[i]) for i in range(len(found))]
    for i, member in enumerate(members):
        if member.input_shape != (None, n_features):
            raise StageError(f"{found[i]}: takes input {member.input_shape}, expected (None, {n_features})")
    return members


def input_name(column: str, taken: set) -> str:
    """A name for the column's model input that Keras and SavedModel signatures accept, unique in `taken`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", column)
    name = name if re.match(r"[A-Za-z]", name) and not name.startswith(INTERNAL) else f"c_{name}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def model_inputs(prep: dict) -> list[dict]:
    """model.json's input list: every raw column the model takes, its input name and type; for a category
    column, its vocabulary (any other level is (other)) and the training levels folded into (other)."""
    raw = {name: prep["log"].get(name, name) for name in prep["numeric"]}
    taken, inputs = set(), []
    for name in prep["numeric"]:
        inputs.append({"column": raw[name], "input": input_name(raw[name], taken), "type": "number"})
    for name, levels in prep["categories"].items():
        entry = {"column": name, "input": input_name(name, taken), "type": "category", "levels": len(levels)}
        inputs.append({**entry, "vocabulary": levels, "folded": prep["folded"][name]})
    return inputs


def build(members: list[keras.Model], prep: dict, inputs: list[dict], eps: float, shift: float) -> keras.Model:
    """Raw columns by name -> the preprocessing as clean and scale do it (log, imputation and its indicators,
    scaling, clipping, one-hot over the training levels) -> float32 features -> every member -> its probability
    calibrated as evaluate does (logit + shift, when the strategy needs it) -> mean of the members'
    probabilities (float64), shape (n, 1). Numbers come in as float64 (NaN: missing), categories as text."""
    tensors = {
        entry["input"]: keras.Input(
            shape=(1,), dtype="float64" if entry["type"] == "number" else "string", name=entry["input"]
        )
        for entry in inputs
    }
    numbers = [tensors[entry["input"]] for entry in inputs if entry["type"] == "number"]
    numbers = [ops.log(x + eps) if name in prep["log"] else x for x, name in zip(numbers, prep["numeric"], strict=True)]
    parts = []
    if numbers:
        imputed = [
            ops.where(ops.isnan(x), prep["impute"][name], x) if name in prep["impute"] else x
            for x, name in zip(numbers, prep["numeric"], strict=True)
        ]
        x = ops.concatenate(imputed, axis=1) if len(imputed) > 1 else imputed[0]
        x = (x - np.asarray(prep["mean"])) / np.asarray(prep["scale"])  # as scale does, whatever the spread
        parts.append(ops.cast(ops.clip(x, -prep["clip"], prep["clip"]), "float32"))
    for name in prep["indicators"]:
        parts.append(ops.cast(ops.isnan(numbers[prep["numeric"].index(name)]), "float32"))
    for entry in inputs:
        if entry["type"] == "category":
            lookup = keras.layers.StringLookup(
                vocabulary=entry["vocabulary"],
                num_oov_indices=1,
                output_mode="one_hot",
                name=f"{INTERNAL}levels_{entry['input']}",
            )
            parts.append(ops.reshape(lookup(tensors[entry["input"]]), (-1, entry["levels"] + 1)))
    x = ops.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    probabilities = []
    for i, member in enumerate(members):
        member.name = f"{INTERNAL}member_{i}"  # unique names inside the model
        probability = ops.cast(member(x), "float64")
        if shift:  # prior correction (fraudflow/operating.py): sigmoid(logit(p) + shift)
            probability = ops.sigmoid(ops.log(probability) - ops.log1p(-probability) + shift)
        probabilities.append(probability)
    ensemble = ops.mean(ops.concatenate(probabilities, axis=1), axis=1, keepdims=True)
    return keras.Model(tensors, ensemble, name="fraudflow")


def export_saved_model(model: keras.Model, path):
    """model.export() to a SavedModel directory that is byte-identical for identical models.

    Keras lists the variables in the order of a set of object ids (it varies from run to run): they are put
    in the model's own order. TensorFlow writes a random uuid into fingerprint.pb: it is cleared.
    """
    position = {id(variable.value): i for i, variable in enumerate(model.variables)}
    list_variables = saved_model_export_archive._list_variables_used_by_fns

    def in_model_order(functions):
        return [sorted(group, key=lambda v: position[id(v)]) for group in list_variables(functions)]

    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # no "Assets written to ..."
    with mock.patch.object(saved_model_export_archive, "_list_variables_used_by_fns", in_model_order):
        model.export(path, format="tf_saved_model", verbose=False)
    (path / "assets").rmdir()  # empty (the model has no assets); DVC would not restore an empty folder anyway
    fingerprint_file = path / "fingerprint.pb"
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprint_file.read_bytes())
    fingerprint.ClearField("uuid")
    fingerprint_file.write_bytes(fingerprint.SerializeToString(deterministic=True))


def read_json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read ({error}); run 'dvc repro {stage}'") from error


def main():
    params = load_params("export")
    networks = [s.name for s in REGISTRY.values() if s.kind == NETWORK]
    chosen = params.get("strategy")
    if chosen in REGISTRY and chosen not in networks:  # coefficients or trees: no network members
        saved = "models/logistic.json" if chosen == "logistic" else f"models/{chosen}/member_<i>.pkl (scikit-learn)"
        raise StageError(
            f"params.yaml: param 'export.strategy' {chosen!r}: export packs a network strategy's members into one "
            f"Keras model; use one of {', '.join(networks)}, or score with {saved} yourself"
        )
    strategy = require(params, "export", "strategy", lambda v: v in networks, f"one of {', '.join(networks)}")
    eps = require(load_params("clean"), "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    prep = load_preprocessing()
    rule = read_json(RULES_DIR / f"{strategy}.json", "evaluate")
    sha256 = read_json(RAW_RECORD, "download").get("sha256")
    # The same layer names and (unused) dropout seeds whatever ran before: both are written to the files.
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    members = load_members(strategy, len(prep["features"]))
    inputs = model_inputs(prep)
    model = build(members, prep, inputs, eps, rule["calibration_logit_shift"])
    card = {
        "strategy": strategy,
        "members": len(members),
        "inputs": inputs,
        "log": sorted(prep["log"].values()),
        "missing": prep["missing"],
        **rule,
        "data_sha256": sha256,
    }
    with atomic_output(EXPORT_DIR) as tmp:
        tmp.mkdir()
        save_keras(model, tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        (tmp / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    detail = f"k {rule['k']:g}" if "k" in rule else f"threshold {rule['threshold']:g}"
    log.info("export: wrote %s (%s, %d members, %s)", EXPORT_DIR, strategy, len(members), detail)


if __name__ == "__main__":
    run(main)
