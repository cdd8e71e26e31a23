import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_scaled, make_creditcard, run_data_stages, set_params
from sklearn.model_selection import train_test_split

from fraudflow.common import CLEAN_PARQUET, RAW_CSV, SCALED_DIR, SPLIT_DIR, StageError
from stages import clean, scale, split

SPLITS = ("train", "val", "test")
FEATURES = [f"V{i}" for i in range(1, 29)] + ["Amount"]  # of the raw data; Time is not a feature


def read_splits():
    return {name: pd.read_parquet(SPLIT_DIR / f"{name}.parquet") for name in SPLITS}


def read_counts():
    return json.loads(Path(split.METRICS_FILE).read_text())


def keys(frame: pd.DataFrame) -> list[tuple]:
    """One tuple of feature values per clean row: twins have equal tuples."""
    return list(map(tuple, frame.drop(columns=["Class", "Time"], errors="ignore").to_numpy()))


def make_twins(frame: pd.DataFrame, rows) -> pd.DataFrame:
    """Give every row in rows the features (not Time, not Class) of the first one."""
    frame.loc[rows[1:], FEATURES] = frame.loc[[rows[0]] * (len(rows) - 1), FEATURES].to_numpy()
    return frame


def with_duplicates(rows: int = 3000, frauds: int = 60) -> pd.DataFrame:
    """Synthetic raw data with 31 planted groups of twins spread over the file (and so over time): 5 groups of 2 to 4
    frauds, 25 groups of 2 to 8 non-frauds, and a fraud with a non-fraud twin."""
    frame = make_creditcard(rows, frauds)
    rng = np.random.default_rng(1)
    fraud_rows = iter(rng.permutation(np.flatnonzero(frame["Class"] == 1)))
    normal_rows = iter(rng.permutation(np.flatnonzero(frame["Class"] == 0)))
    groups = [[next(fraud_rows) for _ in range(size)] for size in (2, 2, 3, 3, 4)]
    groups += [[next(normal_rows) for _ in range(2 + i % 7)] for i in range(25)]
    groups.append([next(fraud_rows), next(normal_rows)])
    for group in groups:
        make_twins(frame, group)
    return frame


def run_clean_and_split(project, raw: pd.DataFrame, **split_params):
    """Write raw as the raw CSV, run clean, set split params (e.g. method="time") and run split."""
    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(RAW_CSV, index=False)
    clean.main()
    set_params(project / "params.yaml", **{f"split__{key}": value for key, value in split_params.items()})
    split.main()


def test_split_sizes_counts_and_stratification(project):
    run_data_stages(rows=3000, frauds=60)
    parts = read_splits()
    assert {name: len(part) for name, part in parts.items()} == {"train": 1920, "val": 480, "test": 600}
    assert {name: int(part["Class"].sum()) for name, part in parts.items()} == {"train": 38, "val": 10, "test": 12}
    assert read_counts()["test"] == {
        "rows": 600,
        "positives": 12,
        "duplicate_groups": 0,
        "rows_with_twin_in_other_split": 0,
    }
    # Every clean row lands in exactly one split.
    together = pd.concat(parts.values()).sort_values("V1", ignore_index=True)
    everything = pd.read_parquet(CLEAN_PARQUET).drop(columns="Time").sort_values("V1", ignore_index=True)
    pd.testing.assert_frame_equal(together, everything)


@pytest.mark.parametrize("method", ["random", "time"])
def test_same_data_and_params_give_the_same_bytes(project, method):
    run_clean_and_split(project, with_duplicates(), method=method)
    outputs = [*sorted(SPLIT_DIR.iterdir()), Path(split.METRICS_FILE)]
    first = [path.read_bytes() for path in outputs]
    split.main()
    assert [path.read_bytes() for path in outputs] == first


def test_split_is_seeded(project):
    run_data_stages(rows=500, frauds=20)
    first = read_splits()
    set_params(project / "params.yaml", split__seed=7)
    split.main()
    assert not first["test"].equals(read_splits()["test"])


@pytest.mark.parametrize("stratify", [True, False])
def test_twins_stay_in_one_split(project, stratify):
    run_clean_and_split(project, with_duplicates(), stratify=stratify)
    for seed in (0, 1, 42):
        set_params(project / "params.yaml", split__seed=seed)
        split.main()
        parts = {name: set(keys(part)) for name, part in read_splits().items()}
        assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
        counts = read_counts()
        assert [counts[name]["rows_with_twin_in_other_split"] for name in SPLITS] == [0, 0, 0]
        assert sum(counts[name]["duplicate_groups"] for name in SPLITS) == 31


def test_grouped_split_is_stratified_within_two_frauds(project):
    run_clean_and_split(project, with_duplicates())
    labels = pd.read_parquet(CLEAN_PARQUET)["Class"]
    for seed in range(5):
        set_params(project / "params.yaml", split__seed=seed)
        split.main()
        rest, test = train_test_split(labels, test_size=0.2, random_state=seed, stratify=labels)
        train, val = train_test_split(rest, test_size=0.2, random_state=seed, stratify=rest)
        counts = read_counts()
        for name, plain in {"train": train, "val": val, "test": test}.items():
            assert abs(counts[name]["positives"] - plain.sum()) <= 2, (seed, name)
            assert abs(counts[name]["rows"] - len(plain)) <= 2, (seed, name)


@pytest.mark.parametrize("stratify", [True, False])
def test_without_grouping_the_split_is_sklearns_and_its_twins_are_counted(project, stratify):
    run_clean_and_split(project, with_duplicates(), group_duplicates=False, stratify=stratify)
    rows = pd.read_parquet(CLEAN_PARQUET).drop(columns="Time")
    rest, test = train_test_split(rows, test_size=0.2, random_state=42, stratify=rows["Class"] if stratify else None)
    train, val = train_test_split(rest, test_size=0.2, random_state=42, stratify=rest["Class"] if stratify else None)
    parts = read_splits()
    for name, expected in {"train": train, "val": val, "test": test}.items():  # sklearn's rows, in file order
        pd.testing.assert_frame_equal(parts[name], expected.sort_index().reset_index(drop=True))
    occurrences = Counter(keys(rows))
    counts = read_counts()
    for name in SPLITS:
        own = keys(parts[name])
        elsewhere = {key for other in SPLITS if other != name for key in keys(parts[other])}
        assert counts[name]["rows_with_twin_in_other_split"] == sum(key in elsewhere for key in own)
        assert counts[name]["duplicate_groups"] == len({key for key in own if occurrences[key] > 1})
    assert sum(counts[name]["rows_with_twin_in_other_split"] for name in SPLITS) > 0


def shuffled_in_time(raw: pd.DataFrame) -> pd.DataFrame:
    """Times 0 .. rows-1 in random file order, so split must sort them: a row's Time is its rank in time."""
    return raw.assign(Time=np.random.default_rng(2).permutation(len(raw)).astype(float))


def period(time: float) -> str:
    """The split a row of 3000 belongs to by time alone: the latest 600 are test, the latest 480 of the rest val."""
    return "train" if time < 1920 else "val" if time < 2400 else "test"


def test_time_split_trains_on_the_earliest_rows_and_tests_on_the_latest(project):
    raw = shuffled_in_time(make_creditcard(rows=3000, frauds=60))
    run_clean_and_split(project, raw, method="time", group_duplicates=False)
    cleaned = pd.read_parquet(CLEAN_PARQUET)
    time_of = dict(zip(keys(cleaned), cleaned["Time"], strict=True))
    times = {name: [time_of[key] for key in keys(part)] for name, part in read_splits().items()}
    assert max(times["train"]) < min(times["val"]) and max(times["val"]) < min(times["test"])
    assert {name: len(values) for name, values in times.items()} == {"train": 1920, "val": 480, "test": 600}


def test_time_split_moves_earlier_twins_forward_with_their_latest_row(project):
    raw = shuffled_in_time(with_duplicates())
    run_clean_and_split(project, raw, method="time")
    latest, cleaned = {}, pd.read_parquet(CLEAN_PARQUET)
    for key, time in zip(keys(cleaned), cleaned["Time"], strict=True):
        latest[key] = max(latest.get(key, time), time)
    # Every row is where its group's latest row falls by time: training holds nothing from the later periods.
    for name, part in read_splits().items():
        assert {period(latest[key]) for key in keys(part)} == {name}
    assert [read_counts()[name]["rows_with_twin_in_other_split"] for name in SPLITS] == [0, 0, 0]


BAD_PARAMS = {
    "method": ("weekly", r"'split.method' must be 'random' or 'time', got 'weekly'"),
    "group_duplicates": ("yes", r"'split.group_duplicates' must be true or false, got 'yes'"),
}


@pytest.mark.parametrize("param", BAD_PARAMS)
def test_bad_split_param_is_named_and_nothing_is_written(project, param):
    value, message = BAD_PARAMS[param]
    with pytest.raises(StageError, match=message):
        run_clean_and_split(project, make_creditcard(rows=500, frauds=20), **{param: value})
    assert CLEAN_PARQUET.exists() and not SPLIT_DIR.exists() and not Path(split.METRICS_FILE).exists()


def test_time_split_without_recent_frauds_fails(project):
    raw = make_creditcard(rows=500, frauds=20)
    raw["Class"] = (raw.index < 20).astype(int)  # the 20 earliest rows are the frauds
    with pytest.raises(
        StageError, match=r"split.method 'time' leaves the val split without a positive row \(80 rows\)"
    ):
        run_clean_and_split(project, raw, method="time")
    assert not SPLIT_DIR.exists() and not Path(split.METRICS_FILE).exists()


def test_grouped_split_with_every_fraud_in_one_group_fails(project):
    raw = make_creditcard(rows=500, frauds=3)
    make_twins(raw, np.flatnonzero(raw["Class"] == 1))
    with pytest.raises(StageError, match=r"split.method 'random' leaves the \w+ split without a positive row"):
        run_clean_and_split(project, raw)
    assert not SPLIT_DIR.exists() and not Path(split.METRICS_FILE).exists()


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


def test_preprocessing_json_reproduces_the_scaled_features(project):
    run_data_stages(rows=500, frauds=20)
    saved = json.loads((SCALED_DIR / "preprocessing.json").read_text())
    raw_test = pd.read_parquet(SPLIT_DIR / "test.parquet")[saved["features"]].to_numpy()
    again = np.clip((raw_test - saved["mean"]) / np.array(saved["scale"]), -saved["clip"], saved["clip"])
    np.testing.assert_allclose(load_scaled("test")[0], again, rtol=1e-6, atol=1e-6)


def test_clip_param_is_used(project):
    run_data_stages(rows=500, frauds=20)
    set_params(project / "params.yaml", scale__clip=1.5)
    scale.main()
    assert np.abs(load_scaled("train")[0]).max() == np.float32(1.5)


def test_duplicate_groups_number_twins_as_factorize_does():
    rng = np.random.default_rng(0)
    for rows, distinct in [(1, 1), (7, 2), (5000, 300), (5000, 5000)]:
        hashes = rng.integers(0, distinct, rows).astype(np.uint64) << np.uint64(40)
        groups, sizes = split.duplicate_groups(hashes)
        np.testing.assert_array_equal(groups, pd.factorize(hashes)[0])
        np.testing.assert_array_equal(sizes, np.bincount(groups))
