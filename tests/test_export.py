import hashlib
import json
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import (
    CHOSEN_K,
    CHOSEN_THRESHOLD,
    MODEL_COLUMNS,
    make_members,
    model_feed,
    python_environment,
    raw_test_rows,
    run_data_stages,
    set_params,
    write_rule,
)

from fraudflow.common import EXPORT_DIR, PREDICTIONS_DIR, RAW_CSV, StageError, rounded
from fraudflow.operating import prior_shift, shift_probabilities
from fraudflow.scaled import load_labels
from fraudflow.strategies import REGISTRY
from stages import export


def pipeline_test_probabilities() -> np.ndarray:
    """The baseline ensemble's test probabilities: the mean of its members' (trained at the real odds: no shift)."""
    predictions = pd.read_parquet(PREDICTIONS_DIR / "baseline.parquet")
    return predictions.loc[predictions["split"] == "test", [f"member_{i}" for i in range(3)]].mean(axis=1).to_numpy()


def test_model_on_raw_rows_reproduces_the_pipelines_test_predictions(exported):
    model = keras.saving.load_model(EXPORT_DIR / "model.keras")
    probabilities = model.predict(model_feed(raw_test_rows()), verbose=0)
    assert probabilities.shape == (600, 1)
    np.testing.assert_allclose(probabilities.ravel(), pipeline_test_probabilities(), rtol=0, atol=1e-6)
    # The members disagree: a model that left one out would miss the mean by far more than 1e-6.
    predictions = pd.read_parquet(PREDICTIONS_DIR / "baseline.parquet")
    members = predictions[[f"member_{i}" for i in range(3)]].to_numpy()
    assert np.abs(members - members.mean(axis=1, keepdims=True)).min(axis=1).max() > 1e-3


def test_saved_model_gives_the_same_numbers_as_the_keras_file(exported):
    rows = model_feed(raw_test_rows())
    keras_file = keras.saving.load_model(EXPORT_DIR / "model.keras").predict(rows, verbose=0)
    serving = tf.saved_model.load(str(EXPORT_DIR / "saved_model")).signatures["serving_default"]
    saved_model = serving(**{name: tf.constant(values) for name, values in rows.items()})["output_0"].numpy()
    np.testing.assert_allclose(saved_model, keras_file, rtol=0, atol=1e-6)


def test_model_json_says_what_the_model_expects(exported):
    card = json.loads((EXPORT_DIR / "model.json").read_text())
    assert card == {
        "strategy": "baseline",
        "members": 3,
        "inputs": [{"column": name, "input": name, "type": "number"} for name in MODEL_COLUMNS],
        "log": ["Amount"],
        "missing": "error",
        "calibration_logit_shift": 0.0,
        "cost_column": "Amount",
        "k": CHOSEN_K,
        "cost_false_positive": 5,
        "k_chosen": "on the validation split, least sum of the missed positives' Amount + cost_false_positive * FP",
        "flagged": "probability / (1 - probability) * Amount > k * cost_false_positive",
        "data_sha256": hashlib.sha256(RAW_CSV.read_bytes()).hexdigest(),
    }


def test_without_a_cost_column_model_json_holds_the_threshold(exported_dir, tmp_path, monkeypatch):
    shutil.copytree(exported_dir, tmp_path / "flat", ignore=shutil.ignore_patterns("export"))
    monkeypatch.chdir(tmp_path / "flat")
    set_params(tmp_path / "flat" / "params.yaml", data__cost=None, evaluate__cost_false_negative=133)
    write_rule("baseline")  # the flat cost's rule, as evaluate writes it
    export.main()
    card = json.loads((EXPORT_DIR / "model.json").read_text())
    assert "cost_column" not in card and "k" not in card
    assert (card["threshold"], card["flagged"]) == (CHOSEN_THRESHOLD, "probability > threshold")
    assert card["threshold_chosen"] == (
        "on the validation split, least cost_false_negative * FN + cost_false_positive * FP"
    )


def test_weighted_members_are_calibrated_inside_the_model(exported_dir, tmp_path, monkeypatch):
    shutil.copytree(exported_dir, tmp_path / "weighted", ignore=shutil.ignore_patterns("export"))
    monkeypatch.chdir(tmp_path / "weighted")
    make_members("weighted")
    set_params(tmp_path / "weighted" / "params.yaml", export__strategy="weighted")
    export.main()
    shift = prior_shift(REGISTRY["weighted"].balanced_odds, load_labels("train"), 1.0)
    assert shift < -1
    predictions = pd.read_parquet(PREDICTIONS_DIR / "weighted.parquet")
    members = predictions.loc[predictions["split"] == "test", [f"member_{i}" for i in range(3)]].to_numpy()
    expected = shift_probabilities(members, shift).mean(axis=1)  # as evaluate calibrates and averages
    model = keras.saving.load_model(EXPORT_DIR / "model.keras")
    exported = model.predict(model_feed(raw_test_rows()), verbose=0).ravel()
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-6)
    # The shift as evaluate's rule file holds it (write_json: 10 significant digits), which the model applies
    assert json.loads((EXPORT_DIR / "model.json").read_text())["calibration_logit_shift"] == rounded(shift)


def test_exported_files_are_byte_identical_across_runs(exported_dir, tmp_path):
    def export_in(directory) -> dict:
        shutil.copytree(exported_dir, directory, ignore=shutil.ignore_patterns("export"))
        subprocess.run([sys.executable, "-m", "stages.export"], cwd=directory, env=python_environment(), check=True)
        files = sorted(path for path in (directory / EXPORT_DIR).rglob("*") if path.is_file())
        return {str(path.relative_to(directory)): path.read_bytes() for path in files}

    first, second = export_in(tmp_path / "first"), export_in(tmp_path / "second")
    assert {"model.keras", "model.json", "saved_model.pb", "fingerprint.pb"} <= {name.split("/")[-1] for name in first}
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_missing_members_name_the_stage_that_makes_them(project):
    run_data_stages(rows=500, frauds=10)
    write_rule("baseline")
    with pytest.raises(StageError, match=r"models/baseline: no member_<i>.keras files; run 'dvc repro train@baseline'"):
        export.main()
    assert not EXPORT_DIR.exists()


def test_members_must_be_numbered_from_zero(project):
    run_data_stages(rows=500, frauds=10)
    make_members("weighted", count=2)
    (project / "models" / "weighted" / "member_1.keras").rename(project / "models" / "weighted" / "member_2.keras")
    set_params(project / "params.yaml", export__strategy="weighted")
    with pytest.raises(StageError, match=r"models/weighted: member files are not numbered 0 to 1: \[0, 2\]"):
        export.main()
    assert not EXPORT_DIR.exists()


def test_unknown_strategy_param_is_named(project):
    set_params(project / "params.yaml", export__strategy="smote")
    with pytest.raises(
        StageError, match=r"'export.strategy' must be one of baseline, weighted, resampled, focal, got 'smote'"
    ):
        export.main()


@pytest.mark.parametrize(
    ("strategy", "model"), [("gbdt", "models/gbdt/member_<i>.pkl"), ("logistic", "models/logistic.json")]
)
def test_a_strategy_without_network_members_is_refused_saying_what_to_use(project, strategy, model):
    set_params(project / "params.yaml", export__strategy=strategy)
    with pytest.raises(
        StageError,
        match=rf"'export.strategy' '{strategy}': .* use one of baseline, weighted, "
        rf"resampled, focal, or score with {re.escape(model)}",
    ) as error:
        export.main()
    assert "\n" not in str(error.value)


def test_a_member_of_another_shape_is_named(project):
    run_data_stages(rows=500, frauds=10)
    write_rule("baseline")
    keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(1)]).save(project / "m.keras")
    (project / "models" / "baseline").mkdir(parents=True)
    (project / "m.keras").rename(project / "models" / "baseline" / "member_0.keras")
    with pytest.raises(
        StageError, match=r"models/baseline/member_0.keras: takes input \(None, 5\), expected \(None, 29\)"
    ):
        export.main()
