"""Reason codes: export/reasons.onnx (fraudflow/onnx_reasons.py) and `python -m stages.score --reasons N`."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import make_members, model_feed, raw_test_rows, run_data_stages, set_params, write_rule

from fraudflow import fitted
from fraudflow.common import EXPORT_DIR, MODELS_DIR, PARAMS_FILE, PREPROCESSING_FILE, PROFILE_FILE, StageError
from stages import export, score, train_gbdt, train_logistic


def explain(rows: pd.DataFrame) -> np.ndarray:
    """The exported reasons model's contributions for these raw rows, (rows, columns)."""
    card = score.load_card()
    return np.asarray(score.load_explainer(card)(model_feed(rows, card)))


def exported_as(strategy: str, **params):
    """Export the strategy trained in the working directory (its rule as evaluate would write it)."""
    set_params(PARAMS_FILE, export__strategy=strategy, **params)
    write_rule(strategy)
    export.main()
    return json.loads((EXPORT_DIR / "model.json").read_text())


def test_logistic_contributions_are_its_coefficients_times_the_scaled_differences_from_the_training_mean(project):
    run_data_stages()
    train_logistic.main()
    card = exported_as("logistic")
    model = json.loads(MODELS_DIR.joinpath("logistic.json").read_text())
    features = np.load("data/scaled/test_features.npy").astype(np.float64)
    means = np.array(json.loads(PROFILE_FILE.read_text())["feature_means"])
    np.testing.assert_allclose(means, np.load("data/scaled/train_features.npy").mean(axis=0, dtype=np.float64))
    expected = np.array(model["coefficients"]) * (features - means)  # one feature per column here
    contributions = explain(raw_test_rows())
    np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-9)
    logit = features @ np.array(model["coefficients"]) + model["intercept"]
    reference = card["reasons"]["reference_logit"]
    np.testing.assert_allclose(contributions.sum(axis=1) + reference, logit, rtol=0, atol=1e-9)


def test_network_contributions_are_integrated_gradients_that_add_up_to_the_members_mean_logit(exported):
    """Completeness: the contributions of a row sum to the members' mean logit there minus at the reference, and a
    column that equals the reference's contributes nothing."""
    card = score.load_card()
    weights = fitted.network_weights("baseline", 29)
    rows = raw_test_rows()
    features = np.load("data/scaled/test_features.npy").astype(np.float64)
    logits = [np.maximum(features @ w[0] + w[1], 0) @ w[2][:, 0] + w[3][0] for w in weights]
    contributions = explain(rows)
    total = contributions.sum(axis=1) + card["reasons"]["reference_logit"]
    np.testing.assert_allclose(total, np.mean(logits, axis=0) + card["calibration_logit_shift"], rtol=0, atol=1e-9)
    means = np.array(json.loads(PROFILE_FILE.read_text())["feature_means"])
    prep = json.loads(PREPROCESSING_FILE.read_text())
    at_mean = rows.copy()
    at_mean["V14"] = means[13] * prep["scale"][13] + prep["mean"][13]  # V14 at the training mean: no contribution
    assert np.abs(explain(at_mean)[:, 13]).max() < 1e-9
    assert np.abs(contributions[:, 13]).max() > 1e-3


def test_tree_contributions_follow_each_rows_path_and_add_up_to_the_members_mean_logit(project):
    run_data_stages()
    set_params(PARAMS_FILE, train_gbdt__max_trees=20, train_gbdt__patience=5, train__members=2)
    train_gbdt.main()
    card = exported_as("gbdt")
    features = np.load("data/scaled/test_features.npy").astype(np.float64)
    members = [pickle.loads(path.read_bytes()) for path in fitted.member_files("gbdt", "pkl")]
    logit = np.mean([member.decision_function(features) for member in members], axis=0)
    contributions = explain(raw_test_rows())
    total = contributions.sum(axis=1) + card["reasons"]["reference_logit"]
    np.testing.assert_allclose(total, logit + card["calibration_logit_shift"], rtol=0, atol=1e-4)  # float32 out
    # a column no tree splits on contributes nothing; the trees' first split's column does
    used = {int(f) for m in members for (p,) in m._predictors for f in p.nodes["feature_idx"][p.nodes["is_leaf"] == 0]}
    unused = sorted(set(range(29)) - used)
    assert unused and np.abs(contributions[:, unused]).max() == 0
    root = int(members[0]._predictors[0][0].nodes["feature_idx"][0])
    assert np.abs(contributions[:, root]).max() > 0


def test_score_adds_the_largest_contributions_largest_first_and_only_those_that_push_the_score_up(exported, tmp_path):
    source, destination = tmp_path / "rows.csv", tmp_path / "scores.parquet"
    rows = raw_test_rows()
    rows.to_csv(source, index=False)
    names = np.array([entry["column"] for entry in score.load_card()["inputs"]])
    score.score(source, destination, score.load_card(), reasons=len(names))  # every column: some push it down
    scores = pd.read_parquet(destination)
    reason_columns = [f"reason_{i}{part}" for i in range(1, len(names) + 1) for part in ("", "_contribution")]
    assert list(scores.columns) == [*rows.columns, "probability", "flagged", *reason_columns]
    contributions = explain(rows)
    largest = np.sort(contributions, axis=1)[:, ::-1]
    got = scores[[f"reason_{i}_contribution" for i in range(1, len(names) + 1)]].to_numpy()
    np.testing.assert_array_equal(got, np.where(largest > 0, largest, np.nan))  # only columns that pushed it up
    assert 0 < np.isnan(got).sum() < got.size
    np.testing.assert_array_equal(scores["reason_1"], names[contributions.argmax(axis=1)])
    last = scores[f"reason_{len(names)}"]
    assert last.isna().all() and scores[f"reason_{len(names)}_contribution"].isna().all()


@pytest.mark.parametrize("count", [-1, 30])
def test_a_bad_number_of_reasons_is_refused_before_anything_is_written(exported, tmp_path, monkeypatch, count):
    source, destination = tmp_path / "rows.csv", tmp_path / "scores.csv"
    raw_test_rows().to_csv(source, index=False)
    monkeypatch.setattr("sys.argv", ["score", str(source), str(destination), "--reasons", str(count)])
    with pytest.raises(StageError, match=f"--reasons: expected 0 to 29 \\(the columns the model takes\\), got {count}"):
        score.main()
    assert not destination.exists()


def test_members_of_a_network_ensemble_are_explained_with_their_own_weights(project):
    """Two members, one of them doubled: the contributions are their mean's, member by member."""
    run_data_stages()
    make_members("baseline", count=2)
    card = exported_as("baseline")
    both = explain(raw_test_rows())
    weights = fitted.network_weights("baseline", 29)
    features = np.load("data/scaled/test_features.npy").astype(np.float64)
    means = np.array(json.loads(PROFILE_FILE.read_text())["feature_means"])
    for member in weights:  # each member's integrated gradients, by a fine Riemann sum along the path
        steps = np.linspace(0, 1, 2001)[:, None, None]
        path = means + steps * (features[:50] - means)
        active = (path @ member[0] + member[1] > 0).astype(float)
        gradient = (active * member[2][:, 0]) @ member[0].T
        member.append((gradient[:-1] + gradient[1:]).mean(axis=0) / 2 * (features[:50] - means))
    mean = (weights[0][-1] + weights[1][-1]) / 2
    np.testing.assert_allclose(both[:50], mean, rtol=0, atol=2e-3)
    assert card["members"] == 2
