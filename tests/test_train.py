import json
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import load_scaled, run_data_stages, set_params

from fraudflow import batches, members
from fraudflow.common import PREDICTIONS_DIR, StageError, save_keras
from fraudflow.predictions import MemberColumns
from fraudflow.strategies import NETWORK, REGISTRY
from stages import train

NETWORKS = [s.name for s in REGISTRY.values() if s.kind == NETWORK]  # the strategies stages.train trains

SETTINGS = {
    "seed": 1,
    "members": 3,
    "hidden_units": 16,
    "dropout": 0.5,
    "learning_rate": 1e-3,
    "batch_size": 256,
    "monitor": "val_auc",
    "patience": 10,
    "negative_rate": 1.0,
    "epochs": 3,
    "steps_per_epoch": 5,
    "gamma": 2.0,
    "alpha": None,
}


@pytest.fixture
def scaled(project):
    run_data_stages(rows=3000, frauds=60)
    return {name: load_scaled(name) for name in ("train", "val", "test")}


def fit(strategy, scaled, **changes):
    return members.fit_members(REGISTRY[strategy], SETTINGS | changes, scaled["train"], scaled["val"])


def test_member_has_the_tutorials_shape():
    model = members.build_member(29, SETTINGS, output_bias=-6.36)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense"]
    assert model.count_params() == 497
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), [-6.36], rtol=1e-6)


def test_class_weights_follow_the_formula():
    labels = np.array([0] * 990 + [1] * 10, dtype=np.int8)
    weights = members.class_weights(labels)
    assert weights == pytest.approx((1000 / (2 * 990), 1000 / (2 * 10)))
    assert weights[0] * 990 == pytest.approx(weights[1] * 10)  # both classes carry the same total weight


def test_initial_bias_is_log_of_the_odds():
    labels = np.array([0] * 990 + [1] * 10)
    assert members.initial_bias(labels) == pytest.approx(np.log(10 / 990))
    with pytest.raises(StageError, match="both classes"):
        members.initial_bias(np.zeros(10, dtype=int))


def test_stacked_model_predicts_what_each_member_predicts(scaled):
    x_test = scaled["test"][0]
    built = members.initial_members(29, SETTINGS, -3.0)
    stacked = members.stack(built, SETTINGS)
    expected = np.stack([m.predict(x_test, verbose=0)[:, 0] for m in built], axis=1)
    np.testing.assert_allclose(members.member_predictor(stacked)(x_test), expected, rtol=1e-5, atol=1e-7)


def test_balanced_batches_give_each_member_its_own_half_positive_draw(scaled):
    x_train, y_train = scaled["train"]
    samples = batches.member_samples(y_train, 1.0, 3, 3)
    rows = batches.balanced_rows(batches.class_pools(y_train, samples), 256, 3, epoch=1, steps=5)
    assert rows.shape == (3, 5 * 256)
    for step in range(5):  # each batch: 128 positives, then 128 negatives
        np.testing.assert_array_equal(
            y_train[rows[:, step * 256 : (step + 1) * 256]], np.repeat([[1, 0]], 128, axis=1).repeat(3, axis=0)
        )
    assert not np.array_equal(rows[0, :256], rows[1, :256])
    assert int(y_train.sum()) < 128  # positives are drawn with replacement: more than the split has


def test_balanced_batches_draw_negatives_from_each_members_own_sample(scaled):
    _, y_train = scaled["train"]
    samples = batches.member_samples(y_train, 0.3, 3, 3)
    rows = batches.balanced_rows(batches.class_pools(y_train, samples), 256, 3, epoch=1, steps=5)
    for member in range(3):
        negatives = rows[member][y_train[rows[member]] == 0]
        assert len(negatives) == 5 * 128 and set(negatives) <= set(samples[member])


def test_shuffled_batches_visit_every_row_once_per_epoch_in_each_members_own_order(scaled):
    _, y_train = scaled["train"]
    samples = batches.member_samples(y_train, 1.0, 3, 3)
    epochs = [batches.shuffled_rows(samples, seed=3, epoch=epoch) for epoch in (1, 2)]
    for rows in epochs:
        for member in range(3):
            np.testing.assert_array_equal(np.sort(rows[member]), np.arange(len(y_train)))
    assert not np.array_equal(epochs[0][0], epochs[0][1])  # members differ
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # epochs differ


@pytest.mark.parametrize("strategy", NETWORKS)
def test_same_seed_gives_identical_predictions(scaled, strategy):
    def predictions():
        model, _, history, _ = fit(strategy, scaled)
        return members.member_predictor(model)(scaled["test"][0]), history

    (first, history), (second, _) = predictions(), predictions()
    np.testing.assert_array_equal(first, second)
    assert first.shape == (600, 3)
    assert len(history) == 3 * SETTINGS["epochs"]
    assert {"member", "epoch", "loss", "val_loss", "val_auc", "val_prc", "val_recall"} <= set(history.columns)


def test_members_start_alike_across_strategies_and_end_different(scaled, monkeypatch):
    started = []
    stack = members.stack

    def recording_stack(built, settings):
        started.append([m.get_weights() for m in built])
        return stack(built, settings)

    monkeypatch.setattr(members, "stack", recording_stack)
    trained = [fit(strategy, scaled, epochs=2)[1] for strategy in NETWORKS]
    for other in started[1:]:
        for a, b in zip(started[0], other, strict=True):  # member i of every strategy: the same starting weights
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    assert not np.array_equal(started[0][0][0], started[0][1][0])  # members start differently
    for built in trained:
        kernels = [m.get_weights()[0] for m in built]
        assert not np.array_equal(kernels[0], kernels[1])


def test_each_member_gets_its_own_best_epoch_restored(scaled, monkeypatch):
    snapshots = {}
    update = members.MemberEarlyStopping.update

    def recording_update(self, epoch, values, weights):
        snapshots[epoch] = weights
        update(self, epoch, values, weights)

    monkeypatch.setattr(members.MemberEarlyStopping, "update", recording_update)
    model, built, history, stopping = fit("baseline", scaled, epochs=15, patience=2, learning_rate=0.01)
    for member, keras_model in enumerate(built):
        mine = history[history["member"] == member]
        best = int(mine.loc[mine["val_auc"].idxmax(), "epoch"])  # the first of equal values, as Keras keeps it
        assert best == stopping.best_epoch[member]
        assert len(mine) == min(15, best + 2) == stopping.epochs_run[member]  # stopped after 2 epochs without gain
        for restored, kept in zip(keras_model.get_weights(), snapshots[best][member], strict=True):
            np.testing.assert_array_equal(restored, kept)
    assert len(set(stopping.best_epoch)) > 1 or len(set(stopping.epochs_run)) > 1  # members stop on their own


def test_save_keras_writes_the_same_bytes_for_the_same_weights(tmp_path):
    model = members.build_member(29, SETTINGS, -3.0)
    save_keras(model, tmp_path / "a.keras")
    save_keras(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("count", [1, 3])
def test_stage_writes_members_predictions_history_and_metrics(scaled, project, monkeypatch, count):
    set_params(project / "params.yaml", train__batch_size=256, train__members=count, networks__weighted={"epochs": 4})
    monkeypatch.setattr(sys, "argv", ["train", "weighted"])
    train.main()
    files = sorted((project / "models" / "weighted").iterdir())
    assert [f.name for f in files] == [f"member_{i}.keras" for i in range(count)]
    predictions = pd.read_parquet(PREDICTIONS_DIR / "weighted.parquet")
    assert predictions["split"].value_counts().to_dict() == {"test": 600, "val": 480}
    test = predictions[predictions["split"] == "test"]
    member_columns = [f"member_{i}" for i in range(count)]
    assert list(test.columns) == ["split", "label", *member_columns]  # the ensemble: their mean, taken by evaluate
    for path, column in zip(files, member_columns, strict=True):  # the saved members give the predictions
        model = keras.saving.load_model(path)
        np.testing.assert_allclose(test[column], model.predict(scaled["test"][0], verbose=0)[:, 0], rtol=1e-5)
    read = MemberColumns("weighted", "test", 0.0)  # as evaluate reads them, uncorrected
    for column, values in zip(member_columns, read, strict=True):
        np.testing.assert_array_equal(values, test[column])
    np.testing.assert_allclose(read.as_trained.value(), test[member_columns].mean(axis=1))
    np.testing.assert_array_equal(test["label"], scaled["test"][1])
    history = pd.read_csv(project / "plots" / "history" / "weighted.csv")
    assert set(history["member"]) == set(range(count))
    metrics = json.loads((project / "metrics" / "train" / "weighted.json").read_text())
    assert metrics["members"] == count
    assert set(metrics) == {"members", "epochs_run", "best_epoch", "best_val_prc"}  # val_prc: the default monitor
    assert metrics["best_val_prc"]["max"] == pytest.approx(history["val_prc"].max(), abs=1e-6)


BAD_PARAMS = [
    ("networks", "baseline", {"epochs": -1}, "networks.baseline.epochs"),
    ("train", "batch_size", 0, "train.batch_size"),
    ("train", "monitor", "val_f1", "train.monitor"),
    ("train", "dropout", 1.0, "train.dropout"),
    ("train", "members", 0, "train.members"),
    ("train", "members", 65, "train.members"),
    ("train", "members", "5", "train.members"),
    ("train", "members", True, "train.members"),
]


@pytest.mark.parametrize("section, key, value, named", BAD_PARAMS)
def test_bad_params_are_named_before_any_work(project, section, key, value, named):
    set_params(project / "params.yaml", **{f"{section}__{key}": value})
    with pytest.raises(StageError, match=rf"'{named}' must be"):
        train.read_settings(REGISTRY["baseline"])


@pytest.mark.parametrize(
    ("own", "message"),
    [
        ({"epochs": 3, "gamma": -1, "alpha": None}, r"'networks.focal.gamma' must be a number >= 0, got -1"),
        ({"epochs": 3, "gamma": 2, "alpha": 1.5}, r"'networks.focal.alpha' must be null or a number in \(0, 1\)"),
        ({"epochs": 3, "gamma": 2}, r"missing param 'networks.focal.alpha'"),
        ({"epochs": 3, "gamma": 2, "alpha": None, "steps_per_epoch": 5}, r"'networks.focal.steps_per_epoch' is not"),
    ],
)
def test_a_strategys_own_params_are_checked_by_what_it_is(project, own, message):
    """Each network strategy reads the params its registry entry needs (focal: its loss's gamma and alpha) and
    refuses any other, naming it."""
    set_params(project / "params.yaml", networks__focal=own)
    with pytest.raises(StageError, match=message):
        train.read_settings(REGISTRY["focal"])


def test_a_network_section_not_in_the_registry_is_refused(project):
    set_params(project / "params.yaml", networks__smote={"epochs": 3})
    with pytest.raises(StageError, match=r"networks.smote: not a network strategy of fraudflow/strategies.py"):
        train.read_settings(REGISTRY["baseline"])


def test_bad_members_param_fails_the_stage_with_one_line_and_writes_nothing(scaled, project, monkeypatch, capsys):
    set_params(project / "params.yaml", train__members=65)
    monkeypatch.setattr(sys, "argv", ["train", "baseline"])
    with pytest.raises(SystemExit) as exit_info:
        from fraudflow.common import run

        run(train.main)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: params.yaml: param 'train.members' must be an integer in 1..64, got 65"]
    assert not (project / "models").exists() and not (project / "data" / "predictions").exists()


@pytest.mark.parametrize("strategy", ["smote", "logistic"])  # unknown, and not a network
def test_unknown_strategy_is_refused(project, monkeypatch, strategy):
    monkeypatch.setattr(sys, "argv", ["train", strategy])
    with pytest.raises(StageError, match=r"^usage: python -m stages.train \{baseline\|weighted\|resampled\|focal\}$"):
        train.main()
