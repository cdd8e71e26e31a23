import time
import zipfile

import keras
import numpy as np

from fraudflow.common import save_keras


def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2), keras.layers.Dense(1)])


def test_save_keras_writes_the_same_bytes_for_the_same_model(tmp_path):
    model = small_model()
    save_keras(model, tmp_path / "first.keras")
    model.save(tmp_path / "plain.keras")
    time.sleep(2.1)  # zip entries store the time in steps of 2 s, metadata.json in steps of 1 s
    save_keras(model, tmp_path / "second.keras")
    model.save(tmp_path / "plain_again.keras")
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    # Without save_keras the two files differ.
    assert (tmp_path / "plain.keras").read_bytes() != (tmp_path / "plain_again.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.keras") as saved:
        assert {info.date_time for info in saved.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_save_keras_files_load_with_their_weights_and_differ_when_weights_do(tmp_path):
    model = small_model()
    save_keras(model, tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for saved, original in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)
    model.layers[-1].bias.assign([1.0])
    save_keras(model, tmp_path / "changed.keras")
    assert (tmp_path / "changed.keras").read_bytes() != (tmp_path / "model.keras").read_bytes()
