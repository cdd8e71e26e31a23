import json

import numpy as np
import pandas as pd
from conftest import run_data_stages, set_params

from stages import scale, split
from stages.common import CLEAN_PARQUET, SCALED_DIR, SPLIT_DIR, load_scaled


def read_splits():
    return {name: pd.read_parquet(SPLIT_DIR / f"{name}.parquet") for name in ("train", "val", "test")}


def test_split_sizes_counts_and_stratification(project):
    run_data_stages(rows=3000, frauds=60)
    parts = read_splits()
    assert {name: len(part) for name, part in parts.items()} == {"train": 1920, "val": 480, "test": 600}
    assert {name: int(part["Class"].sum()) for name, part in parts.items()} == {"train": 38, "val": 10, "test": 12}
    counts = json.loads((project / split.METRICS_FILE).read_text())
    assert counts["test"] == {"rows": 600, "frauds": 12}
    # Every clean row lands in exactly one split.
    together = pd.concat(parts.values()).sort_values("V1", ignore_index=True)
    everything = pd.read_parquet(CLEAN_PARQUET).sort_values("V1", ignore_index=True)
    pd.testing.assert_frame_equal(together, everything)


def test_split_is_seeded(project):
    run_data_stages(rows=500, frauds=20)
    first = read_splits()
    split.main()
    assert all(first[name].equals(part) for name, part in read_splits().items())
    set_params(project / "params.yaml", split__seed=7)
    split.main()
    assert not first["test"].equals(read_splits()["test"])


def test_unstratified_split_matches_sklearn_defaults(project):
    run_data_stages(rows=500, frauds=20)
    set_params(project / "params.yaml", split__stratify=False)
    split.main()
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(pd.read_parquet(CLEAN_PARQUET), test_size=0.2, random_state=42)
    pd.testing.assert_frame_equal(read_splits()["test"], test.reset_index(drop=True))


def test_scaler_is_fitted_on_train_only_and_clips(project):
    run_data_stages(rows=3000, frauds=60)
    x_train, y_train = load_scaled("train")
    x_test, _ = load_scaled("test")
    assert x_train.dtype == np.float32 and y_train.dtype == np.int8
    assert x_train.shape == (1920, 29)
    assert np.abs(x_train).max() <= 5 and np.abs(x_test).max() <= 5
    # Unclipped columns of the training split are standardised exactly; the test split only approximately.
    np.testing.assert_allclose(x_train[:, 10].mean(), 0, atol=1e-5)
    assert abs(x_test[:, 10].mean()) > 1e-4


def test_scaler_json_reproduces_the_scaled_features(project):
    run_data_stages(rows=500, frauds=20)
    saved = json.loads((SCALED_DIR / "scaler.json").read_text())
    raw_test = pd.read_parquet(SPLIT_DIR / "test.parquet")[saved["features"]].to_numpy()
    again = np.clip((raw_test - saved["mean"]) / np.array(saved["scale"]), -saved["clip"], saved["clip"])
    np.testing.assert_allclose(load_scaled("test")[0], again, rtol=1e-6, atol=1e-6)


def test_clip_param_is_used(project):
    run_data_stages(rows=500, frauds=20)
    set_params(project / "params.yaml", scale__clip=1.5)
    scale.main()
    assert np.abs(load_scaled("train")[0]).max() == np.float32(1.5)
