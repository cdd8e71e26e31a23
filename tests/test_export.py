import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import (
    CHOSEN_K,
    CHOSEN_THRESHOLD,
    MODEL_COLUMNS,
    drop_networks,
    make_members,
    model_feed,
    python_environment,
    raw_test_rows,
    run_data_stages,
    set_params,
    write_rule,
)

from fraudflow.common import EXPORT_DIR, RAW_CSV, StageError, rounded
from fraudflow.inputs import fingerprint
from fraudflow.operating import prior_shift, shift_probabilities
from fraudflow.predictions import MemberColumns
from fraudflow.scaled import load_labels
from fraudflow.strategies import REGISTRY
from stages import export, score, train_blend, train_gbdt, train_logistic

ALL = "'export.strategy' must be one of baseline, weighted, resampled, focal, logistic, gbdt, blend"


def exported_probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The exported model's probabilities of raw rows, as stages.score computes them (ONNX Runtime)."""
    card = score.load_card()
    return score.load_predictor(card)(model_feed(frame, card)).ravel()


def evaluated_probabilities(strategy: str) -> np.ndarray:
    """What evaluate scores on the test split: the members' probabilities calibrated as the rule file says, their
    mean."""
    shift = json.loads((EXPORT_DIR / "model.json").read_text())["calibration_logit_shift"]
    return MemberColumns(strategy, "test", shift).read_all().calibrated.value()


def test_model_on_raw_rows_reproduces_the_pipelines_test_predictions(exported):
    probabilities = exported_probabilities(raw_test_rows())
    assert probabilities.shape == (600,)
    np.testing.assert_allclose(probabilities, evaluated_probabilities("baseline"), rtol=0, atol=1e-12)
    # The members disagree: a model that left one out would miss the mean by far more than 1e-12.
    test = MemberColumns("baseline", "test", 0.0)
    members = np.stack(list(test), axis=1)
    assert np.abs(members - members.mean(axis=1, keepdims=True)).min(axis=1).max() > 1e-3


def test_the_onnx_file_takes_a_named_input_per_column(exported):
    model = onnx.load(EXPORT_DIR / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name: (i.type.tensor_type.elem_type, len(i.type.tensor_type.shape.dim)) for i in model.graph.input}
    assert inputs == {name: (onnx.TensorProto.DOUBLE, 2) for name in MODEL_COLUMNS}
    assert [output.name for output in model.graph.output] == ["probability"]


def test_model_json_says_what_the_model_expects(exported):
    card = json.loads((EXPORT_DIR / "model.json").read_text())
    reasons, profile = card.pop("reasons"), card.pop("profile")
    assert reasons == {
        "model": "reasons.onnx",
        "reference_logit": reasons["reference_logit"],
        "method": export.REASONS_METHOD,
    }
    assert list(profile["columns"]) == MODEL_COLUMNS and profile["rows"] == len(load_labels("train"))
    for name, bins in profile["columns"].items():  # the training split's deciles: about a tenth in each bin
        assert bins["type"] == "number" and len(bins["shares"]) == len(bins["edges"]) + 2 == 11, name
        assert sum(bins["shares"]) == pytest.approx(1) and max(bins["shares"]) < 0.15 and bins["shares"][-1] == 0
        assert ("log_eps" in bins) == (name == "Amount")
    assert profile["scores"]["split"] == "validation" and sum(profile["scores"]["shares"]) == pytest.approx(1)
    assert card == {
        "strategy": "baseline",
        "members": 3,
        "format": export.FORMAT,
        "inputs": [{"column": name, "input": name, "type": "number"} for name in MODEL_COLUMNS],
        "log": ["Amount"],
        "missing": "error",
        "calibration_logit_shift": 0.0,
        "validation_cost_per_1000": 50.0,
        "cost_column": "Amount",
        "k": CHOSEN_K,
        "cost_false_positive": 5,
        "k_chosen": "on the validation split, least sum of the missed positives' Amount + cost_false_positive * FP",
        "flagged": "probability / (1 - probability) * Amount > k * cost_false_positive",
        "data_sha256": fingerprint(RAW_CSV),
    }


def test_without_a_cost_column_model_json_holds_the_threshold(exported_dir, tmp_path, monkeypatch):
    shutil.copytree(exported_dir, tmp_path / "flat", ignore=shutil.ignore_patterns("export"))
    monkeypatch.chdir(tmp_path / "flat")
    set_params(tmp_path / "flat" / "params.yaml", data__cost=None, evaluate__cost_false_negative=133)
    write_rule("baseline")  # evaluate's rule without a cost column
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
    # as evaluate calibrates and averages the members, with the shift to the 10 digits its rule file holds
    members = np.stack(list(MemberColumns("weighted", "test", 0.0)), axis=1)
    expected = shift_probabilities(members, rounded(shift)).mean(axis=1)
    np.testing.assert_allclose(exported_probabilities(raw_test_rows()), expected, rtol=0, atol=1e-12)
    assert json.loads((EXPORT_DIR / "model.json").read_text())["calibration_logit_shift"] == rounded(shift)


@pytest.fixture(scope="module")
def every_strategy(exported_dir, tmp_path_factory):
    """The exported project with logistic regression, the trees and the blend trained as their stages do (the
    networks: baseline only), and a rule file for each."""
    root = tmp_path_factory.mktemp("every") / "project"
    shutil.copytree(exported_dir, root, ignore=shutil.ignore_patterns("export"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        set_params(root / "params.yaml", train__members=3, train_gbdt__max_trees=40)
        drop_networks(root / "params.yaml", "weighted", "resampled", "focal")  # the networks: baseline only
        for stage in (train_logistic, train_gbdt, train_blend):
            stage.main()
        for strategy in ("logistic", "gbdt", "blend"):
            write_rule(strategy)
    return root


@pytest.mark.parametrize("strategy", ["logistic", "gbdt", "blend"])
def test_every_strategy_exports_to_a_model_that_gives_evaluates_probabilities(every_strategy, monkeypatch, strategy):
    monkeypatch.chdir(every_strategy)
    set_params(every_strategy / "params.yaml", export__strategy=strategy)
    export.main()
    card = json.loads((EXPORT_DIR / "model.json").read_text())
    assert (card["strategy"], card["members"]) == (strategy, 1 if strategy == "logistic" else 3)
    exported, expected = exported_probabilities(raw_test_rows()), evaluated_probabilities(strategy)
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-12)
    assert np.ptp(expected) > 0.1  # a model that scored every row alike would not pass


def test_the_blends_weights_depend_on_the_validation_rows_only(every_strategy, tmp_path, monkeypatch):
    """Other test labels (and so other test rows' predictions) change no weight; other validation labels do."""

    def weights_with(labels_of) -> dict:
        work = tmp_path / labels_of.__name__
        shutil.copytree(every_strategy, work)
        monkeypatch.chdir(work)
        for path in (work / "data" / "predictions").glob("*.parquet"):
            frame = pd.read_parquet(path)
            frame["label"] = labels_of(frame)
            frame.to_parquet(path, index=False)
        train_blend.main()
        return json.loads((work / "models" / "blend.json").read_text())

    original = json.loads((every_strategy / "models" / "blend.json").read_text())
    assert set(original["strategies"]) == {"baseline", "logistic", "gbdt"}

    def test_labels_shuffled(frame):
        test = frame["split"] == "test"
        labels = frame["label"].to_numpy().copy()
        labels[test] = np.random.default_rng(0).permutation(labels[test])
        return labels

    def validation_labels_shuffled(frame):
        val = frame["split"] == "val"
        labels = frame["label"].to_numpy().copy()
        labels[val] = np.random.default_rng(0).permutation(labels[val])
        return labels

    assert weights_with(test_labels_shuffled) == original
    assert weights_with(validation_labels_shuffled) != original


def test_exported_files_are_byte_identical_across_runs(exported_dir, tmp_path):
    def export_in(directory) -> dict:
        shutil.copytree(exported_dir, directory, ignore=shutil.ignore_patterns("export"))
        subprocess.run([sys.executable, "-m", "stages.export"], cwd=directory, env=python_environment(), check=True)
        files = sorted(path for path in (directory / EXPORT_DIR).rglob("*") if path.is_file())
        return {str(path.relative_to(directory)): path.read_bytes() for path in files}

    first, second = export_in(tmp_path / "first"), export_in(tmp_path / "second")
    assert {name.split("/")[-1] for name in first} == {"model.onnx", "reasons.onnx", "model.json"}
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
    with pytest.raises(StageError, match=rf"{ALL}, got 'smote'$"):
        export.main()


def test_a_strategy_left_out_of_the_run_is_not_exportable(project):
    set_params(project / "params.yaml", export__strategy="focal")
    drop_networks(project / "params.yaml", "focal")
    with pytest.raises(StageError, match=r"'export.strategy' must be one of baseline, weighted, resampled, logistic"):
        export.main()


def test_a_missing_rule_names_the_stage_that_writes_it(project):
    run_data_stages(rows=500, frauds=10)
    with pytest.raises(StageError, match=r"models/rules/baseline.json: cannot read .*; run 'dvc repro evaluate'"):
        export.main()


@pytest.mark.parametrize(
    ("inputs", "layers", "error"),
    [
        (5, [("relu", 16), ("sigmoid", 1)], r"takes input \(None, 5\), expected \(None, 29\)"),
        (29, [("tanh", 16), ("sigmoid", 1)], r"not a relu then sigmoid network with biases and one output"),
        (29, [("sigmoid", 1)], r"not a relu then sigmoid network with biases and one output"),
        (29, [("relu", 16), ("sigmoid", 2)], r"not a relu then sigmoid network with biases and one output"),
    ],
)
def test_a_member_of_another_shape_is_named(project, inputs, layers, error):
    import keras

    run_data_stages(rows=500, frauds=10)
    write_rule("baseline")
    dense = [keras.layers.Dense(units, activation=activation) for activation, units in layers]
    keras.Sequential([keras.Input(shape=(inputs,)), *dense]).save(project / "m.keras")
    (project / "models" / "baseline").mkdir(parents=True)
    (project / "m.keras").rename(project / "models" / "baseline" / "member_0.keras")
    with pytest.raises(StageError, match=rf"models/baseline/member_0.keras: {error}"):
        export.main()
