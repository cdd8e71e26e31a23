"""export: one strategy's members as one self-contained model (raw columns in, fraud probability out).

Writes models/export/: model.keras, saved_model/ (the same model for TensorFlow Serving) and model.json
(strategy, columns, threshold, data sha256).
"""

import hashlib
import json
import logging
import re
from pathlib import Path
from unittest import mock

import numpy as np

from fraudflow.common import (
    EXPORT_DIR,
    MODELS_DIR,
    RAW_CSV,
    STRATEGIES,
    StageError,
    atomic_output,
    is_number,
    load_labels,
    load_params,
    load_scaler,
    log,
    quiet_tensorflow,
    require,
    run,
    save_keras,
)
from fraudflow.operating import prior_shift
from stages.clean import LOG_AMOUNT

with quiet_tensorflow():
    import keras
    from keras import ops
    from keras.src.export import saved_model_export_archive
    from tensorflow.core.protobuf import fingerprint_pb2

MEMBER_FILE = re.compile(r"member_(\d+)\.keras")


def load_members(strategy: str, n_features: int) -> list[keras.Model]:
    """The strategy's member models, models/<strategy>/member_0.keras, member_1.keras, ..., in that order."""
    folder = MODELS_DIR / strategy
    found = {int(m[1]): path for path in folder.glob("member_*.keras") if (m := MEMBER_FILE.fullmatch(path.name))}
    if not found:
        raise StageError(f"{folder}: no member_<i>.keras files; run 'dvc repro train_{strategy}'")
    if sorted(found) != list(range(len(found))):
        raise StageError(f"{folder}: member files are not numbered 0 to {len(found) - 1}: {sorted(found)}")
    members = [keras.saving.load_model(found[i]) for i in range(len(found))]
    for i, member in enumerate(members):
        if member.input_shape != (None, n_features):
            raise StageError(f"{found[i]}: takes input {member.input_shape}, expected (None, {n_features})")
    return members


def build(members: list[keras.Model], scaler: dict, eps: float, shift: float) -> keras.Model:
    """Raw columns (float64) -> log(Amount + eps), scaling and clipping as in clean and scale -> float32 ->
    every member -> its probability calibrated as evaluate does (logit + shift, when the strategy needs it) ->
    mean of the members' probabilities (float64), shape (n, 1)."""
    features = scaler["features"]
    amount = features.index(LOG_AMOUNT)
    raw = keras.Input(shape=(len(features),), dtype="float64", name="transactions")
    x = ops.concatenate([raw[:, :amount], ops.log(raw[:, amount : amount + 1] + eps), raw[:, amount + 1 :]], axis=1)
    scale = np.asarray(scaler["scale"])
    x = keras.layers.Normalization(mean=scaler["mean"], variance=scale**2, dtype="float64", name="scale")(x)
    x = ops.cast(ops.clip(x, -scaler["clip"], scaler["clip"]), "float32")
    probabilities = []
    for i, member in enumerate(members):
        member.name = f"member_{i}"  # unique names inside the model
        probability = ops.cast(member(x), "float64")
        if shift:  # prior correction (fraudflow/operating.py): sigmoid(logit(p) + shift)
            probability = ops.sigmoid(ops.log(probability) - ops.log1p(-probability) + shift)
        probabilities.append(probability)
    ensemble = ops.mean(ops.concatenate(probabilities, axis=1), axis=1, keepdims=True)
    return keras.Model(raw, ensemble, name="fraudflow")


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


def sha256(path) -> str:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as error:
        raise StageError(f"{path}: cannot read ({error.strerror}); run 'dvc repro download'") from error


def chosen_threshold(strategy: str) -> float:
    """The ensemble's threshold that evaluate chose on the validation split (least expected cost)."""
    path = Path("metrics/test") / f"{strategy}.json"
    try:
        return float(json.loads(path.read_text())["chosen"]["threshold"]["ensemble"])
    except (OSError, ValueError, KeyError) as error:
        raise StageError(f"{path}: cannot read the chosen threshold ({error}); run 'dvc repro evaluate'") from error


def main():
    strategy = require(
        load_params("export"), "export", "strategy", lambda v: v in STRATEGIES, f"one of {', '.join(STRATEGIES)}"
    )
    eps = require(load_params("clean"), "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    scaler = load_scaler()
    # The same layer names and (unused) dropout seeds whatever ran before: both are written to the files.
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    members = load_members(strategy, len(scaler["features"]))
    threshold = chosen_threshold(strategy)
    shift = prior_shift(strategy, load_labels("train"))
    model = build(members, scaler, eps, shift)
    card = {
        "strategy": strategy,
        "members": len(members),
        "columns": [name if name != LOG_AMOUNT else "Amount" for name in scaler["features"]],
        "calibration_logit_shift": shift,
        "threshold": threshold,
        "threshold_chosen": "on the validation split, least cost_false_negative * FN + cost_false_positive * FP",
        "flagged": "probability > threshold",
        "data_sha256": sha256(RAW_CSV),
    }
    with atomic_output(EXPORT_DIR) as tmp:
        tmp.mkdir()
        save_keras(model, tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        (tmp / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    log.info("export: wrote %s (%s, %d members, threshold %g)", EXPORT_DIR, strategy, len(members), threshold)


if __name__ == "__main__":
    run(main)
