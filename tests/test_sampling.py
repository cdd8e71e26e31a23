"""Negative sampling (train.negative_rate), its prior correction, and training that reads the split from disk."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import load_scaled, run_data_stages, set_params
from sklearn.linear_model import LogisticRegression
from test_train import SETTINGS

from fraudflow import batches, members, operating, scaled
from fraudflow.common import PREDICTIONS_DIR, StageError, run
from fraudflow.strategies import REGISTRY
from stages import train, train_logistic


@pytest.fixture
def data(project):
    run_data_stages(rows=3000, frauds=60)
    return {split: load_scaled(split) for split in ("train", "val", "test")}


def test_member_samples_are_seeded_differ_between_members_and_keep_every_positive():
    labels = np.zeros(10_000, dtype=np.int8)
    labels[::100] = 1
    samples = batches.member_samples(labels, 0.2, seed=7, members=3)
    np.testing.assert_array_equal(samples, batches.member_samples(labels, 0.2, seed=7, members=3))
    assert samples.shape == (3, 100 + round(0.2 * 9_900))
    for sample in samples:
        assert (np.diff(sample) > 0).all()  # sorted, no repeats
        np.testing.assert_array_equal(sample[labels[sample] == 1], np.flatnonzero(labels))
    assert len({sample.tobytes() for sample in samples}) == 3
    assert not np.array_equal(samples, batches.member_samples(labels, 0.2, seed=8, members=3))
    np.testing.assert_array_equal(batches.member_samples(labels, 1.0, 7, 3), np.tile(np.arange(10_000), (3, 1)))


def test_a_rate_keeping_fewer_negatives_than_positives_is_refused_naming_the_counts():
    labels = np.r_[np.ones(50), np.zeros(1000)].astype(np.int8)
    scaled.check_negative_rate(labels, 0.05)  # 50 negatives for 50 positives: enough
    with pytest.raises(StageError) as error:
        scaled.check_negative_rate(labels, 0.04)
    assert str(error.value) == (
        "params.yaml: param 'train.negative_rate' 0.04 keeps 40 of the training split's 1,000 negatives, "
        "fewer than its 50 positives; use at least 0.05"
    )
    labels = np.r_[np.ones(315), np.zeros(181_962)].astype(np.int8)  # creditcard's training split
    with pytest.raises(StageError, match="keeps 182 of .* use at least 0.0018$"):
        scaled.check_negative_rate(labels, 0.001)
    scaled.check_negative_rate(labels, 0.0018)  # the rate it suggests is enough


def test_npy_rows_read_any_rows_in_any_order(tmp_path, monkeypatch):
    array = np.arange(5000 * 3, dtype=np.float32).reshape(5000, 3)
    np.save(tmp_path / "a.npy", array)
    monkeypatch.setattr(scaled, "RANGE_BYTES", 1000)  # many ranges, each let go after reading
    rows = scaled.NpyRows(tmp_path / "a.npy")
    indices = np.random.default_rng(0).integers(0, 5000, 20_000)
    np.testing.assert_array_equal(rows.take(indices), array[indices])
    np.testing.assert_array_equal(rows.rows(4990, 5000), array[4990:])
    assert len(rows) == 5000 and rows.nbytes == array.nbytes
    many = np.arange(70_000 * 3, dtype=np.float32).reshape(70_000, 3)
    np.save(tmp_path / "many.npy", many)
    monkeypatch.setattr(scaled, "RANGE_BYTES", 12)  # a range per row: more ranges than 16 bits can number
    indices = np.random.default_rng(1).integers(0, 70_000, 30_000)
    np.testing.assert_array_equal(scaled.NpyRows(tmp_path / "many.npy").take(indices), many[indices])


def test_the_correction_of_a_sampled_model_recovers_the_true_rate():
    # Known truth: P(y | x) = sigmoid(2x - 6), about 1 % positives; a model fitted on every positive and 10 % of
    # the negatives predicts odds 10 times too high, and the correction divides them back.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400_000, 1))
    truth = 1 / (1 + np.exp(-(2 * x[:, 0] - 6)))
    labels = (rng.random(len(truth)) < truth).astype(np.int8)
    rows = scaled.negative_sample(labels, 0.1, [1])
    sampled = LogisticRegression().fit(x[rows], labels[rows]).predict_proba(x)[:, 1]
    shift = operating.prior_shift(REGISTRY["baseline"].balanced_odds, labels, 0.1)
    corrected = operating.shift_probabilities(sampled, shift)
    np.testing.assert_allclose(corrected, sampled / (sampled + (1 - sampled) / 0.1), rtol=1e-12)  # He et al. 2014
    assert sampled.mean() > 5 * labels.mean()
    standard_error = np.sqrt(labels.mean() * (1 - labels.mean()) / len(labels))
    assert abs(corrected.mean() - labels.mean()) < 3 * standard_error
    assert np.abs(corrected - truth).mean() < 0.002
    # Class weights and balanced batches train at 1:1 whatever the sample: their shift does not change.
    for name in ("weighted", "resampled"):
        balanced = REGISTRY[name].balanced_odds
        assert balanced and operating.prior_shift(balanced, labels, 0.1) == operating.prior_shift(balanced, labels, 1.0)


def test_logistic_fit_in_blocks_equals_scikit_learns_on_the_same_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    labels = (rng.random(3000) < 1 / (1 + np.exp(-(x @ [1.5, -1.0, 0.5, 0.0] - 3)))).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    rows = scaled.negative_sample(labels, 0.5, [3])
    monkeypatch.setattr(train_logistic, "FIT_ROWS", 97)  # 16 blocks
    coefficients, intercept, _ = train_logistic.fit(scaled.NpyRows(tmp_path / "x.npy"), rows, labels[rows], 0.3)
    reference = LogisticRegression(C=0.3, solver="newton-cholesky", tol=1e-12, max_iter=100)
    reference.fit(x[rows].astype(np.float64), labels[rows])
    np.testing.assert_allclose(coefficients, reference.coef_[0], rtol=1e-8)
    assert intercept == pytest.approx(reference.intercept_[0], rel=1e-8)


@pytest.mark.parametrize("strategy", ["baseline", "resampled"])
def test_training_read_chunk_by_chunk_from_disk_equals_training_in_memory(data, strategy, monkeypatch):
    settings = SETTINGS | {"negative_rate": 0.5}
    x_val, y_val = data["val"]

    def fitted(train_features):
        model, *_ = members.fit_members(REGISTRY[strategy], settings, (train_features, data["train"][1]), data["val"])
        return members.member_predictor(model)(x_val)

    in_memory = fitted(data["train"][0])
    monkeypatch.setattr(members, "RESIDENT_BYTES", 0)
    monkeypatch.setenv("FRAUDFLOW_BATCH_ROWS", "600")  # chunks of 2 batches of 256
    monkeypatch.setattr(scaled, "RANGE_BYTES", 4096)
    streamed = fitted(scaled.NpyRows(scaled.features_file("train")))
    np.testing.assert_array_equal(streamed, in_memory)
    assert not np.array_equal(in_memory, fitted(data["train"][0][::-1].copy()))  # the test can fail


def test_train_stage_on_a_negative_sample_writes_every_val_and_test_row(data, project, monkeypatch):
    set_params(project / "params.yaml", train__negative_rate=0.2, train__members=2, networks__baseline={"epochs": 3})
    monkeypatch.setattr(sys, "argv", ["train", "baseline"])
    train.main()
    predictions = pd.read_parquet(PREDICTIONS_DIR / "baseline.parquet")
    assert list(predictions["split"].value_counts().sort_index()) == [len(data["test"][1]), len(data["val"][1])]
    assert json.loads((project / "metrics/train/baseline.json").read_text())["members"] == 2


@pytest.mark.parametrize("rate", [0, 1.5, "half"])
def test_a_negative_rate_outside_0_1_is_refused_before_any_work(data, project, monkeypatch, capsys, rate):
    set_params(project / "params.yaml", train__negative_rate=rate)
    monkeypatch.setattr(sys, "argv", ["train", "baseline"])
    with pytest.raises(SystemExit) as stopped:
        run(train.main)
    assert stopped.value.code != 0
    assert "param 'train.negative_rate' must be a number in (0, 1]" in capsys.readouterr().err
    assert not (project / "models/baseline").exists() and not PREDICTIONS_DIR.exists()


def test_a_rate_too_small_for_the_training_split_fails_the_stage_writing_nothing(data, project, monkeypatch, capsys):
    set_params(project / "params.yaml", train__negative_rate=0.001)
    monkeypatch.setattr(sys, "argv", ["train", "baseline"])
    with pytest.raises(SystemExit):
        run(train.main)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "param 'train.negative_rate' 0.001 keeps 2 of the training split's" in error
    assert not (project / "models/baseline").exists() and not PREDICTIONS_DIR.exists()
