"""train_gbdt on generated data: predictions in the other strategies' format, members that differ, the same bytes
for the same seed, the cut back to the best trees, and its params refused by name."""

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import run_data_stages, set_params

from fraudflow.common import PREDICTIONS_DIR, StageError
from fraudflow.scaled import features_file, load_labels
from stages import train_gbdt, train_logistic

SMALL = {"train_gbdt__max_trees": 60, "train_gbdt__patience": 10, "train__members": 3}


@pytest.fixture
def scaled(project):
    run_data_stages(rows=3000, frauds=60)
    set_params(project / "params.yaml", **SMALL)
    return project


def test_writes_predictions_like_the_other_strategies_with_members_that_differ(scaled):
    train_gbdt.main()
    train_logistic.main()
    trees = pd.read_parquet(PREDICTIONS_DIR / "gbdt.parquet")
    logistic = pd.read_parquet(PREDICTIONS_DIR / "logistic.parquet")
    assert list(logistic.columns) == ["split", "label", "member_0"]  # members only: evaluate takes their mean
    assert list(trees.columns) == [*logistic.columns, "member_1", "member_2"]
    assert trees[["split", "label"]].equals(logistic[["split", "label"]])
    members = trees[["member_0", "member_1", "member_2"]].to_numpy()
    assert not np.array_equal(members[:, 0], members[:, 1]) and not np.array_equal(members[:, 1], members[:, 2])
    assert ((members > 0) & (members < 1)).all()
    test = trees["split"] == "test"
    ensemble, positive = members[test].mean(axis=1), trees.loc[test, "label"].to_numpy() == 1  # the members' mean
    assert ensemble[positive].mean() > 5 * ensemble[~positive].mean()


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_models(scaled):
    def written():
        train_gbdt.main()
        files = [PREDICTIONS_DIR / "gbdt.parquet", *sorted((scaled / "models" / "gbdt").iterdir())]
        return {str(path): path.read_bytes() for path in files}

    first = written()
    assert written() == first
    set_params(scaled / "params.yaml", train__seed=7)
    other = written()
    assert other.keys() == first.keys() and all(other[path] != first[path] for path in first)


def test_a_member_keeps_the_trees_up_to_its_best_validation_score(scaled):
    settings = train_gbdt.read_settings() | {"patience": 15}
    x, y = np.load(features_file("train")), load_labels("train")
    x_val, y_val = np.load(features_file("val")), load_labels("val")
    model = train_gbdt.tree_model(settings, 0)
    model.fit(x, y, X_val=x_val, y_val=y_val)
    best = int(np.argmax(model.validation_score_))
    assert 1 <= best < model.n_iter_  # early stopping ran past the best tree
    staged = list(model.staged_predict_proba(x_val))[best - 1]  # scikit-learn's own prediction after `best` trees
    train_gbdt.keep_best_trees(model)
    assert model.n_iter_ == best
    np.testing.assert_array_equal(model.predict_proba(x_val), staged)
    saved = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(saved.predict_proba(x_val), staged)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("learning_rate", 0, "'train_gbdt.learning_rate' must be a number in (0, 1], got 0"),
        ("max_trees", 2.5, "'train_gbdt.max_trees' must be an integer > 0, got 2.5"),
        ("max_leaf_nodes", 1, "'train_gbdt.max_leaf_nodes' must be an integer >= 2, got 1"),
        ("min_samples_leaf", 0, "'train_gbdt.min_samples_leaf' must be an integer > 0, got 0"),
        ("l2_regularization", -1, "'train_gbdt.l2_regularization' must be a number >= 0, got -1"),
        ("max_features", 1.5, "'train_gbdt.max_features' must be a number in (0, 1], got 1.5"),
        ("patience", "ten", "'train_gbdt.patience' must be an integer > 0, got 'ten'"),
    ],
)
def test_a_bad_param_is_named_on_one_line_and_nothing_is_written(scaled, key, value, message):
    set_params(scaled / "params.yaml", **{f"train_gbdt__{key}": value})
    with pytest.raises(StageError) as error:
        train_gbdt.main()
    assert str(error.value) == f"params.yaml: param {message}"
    assert not (PREDICTIONS_DIR / "gbdt.parquet").exists() and not (scaled / "models" / "gbdt").exists()
