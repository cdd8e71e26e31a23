"""Shared fixtures: a synthetic creditcard-like data set and a scratch project directory."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
MODEL_COLUMNS = COLUMNS[1:-1]  # what the exported model takes: V1 ... V28, Amount


def make_creditcard(rows: int = 3000, frauds: int = 60, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like creditcard.csv; frauds are shifted on a few features so a model can find them."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(rows, dtype=int)
    labels[rng.choice(rows, frauds, replace=False)] = 1
    features = rng.normal(size=(rows, 28))
    features[labels == 1, :4] += 3.0
    frame = pd.DataFrame(features, columns=COLUMNS[1:29])
    frame.insert(0, "Time", np.sort(rng.uniform(0, 172_800, rows)).round())
    frame["Amount"] = rng.lognormal(3, 1.5, rows).round(2)
    frame["Class"] = labels
    return frame


def set_cell(frame, column, row, value):
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def set_params(path: Path, **updates):
    """Change params in a params.yaml; keys are 'section__key' (double underscore), e.g. download__sha256=''."""
    params = yaml.safe_load(path.read_text())
    for name, value in updates.items():
        section, key = name.split("__")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch directory holding the repository's params.yaml, used as the working directory."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDITCARD_URL", raising=False)
    return tmp_path


def python_environment() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH, the repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    env.pop("CREDITCARD_URL", None)
    return env


def run_data_stages(rows: int = 3000, frauds: int = 60):
    """Write a synthetic raw CSV in the working directory and run clean, split and scale on it."""
    from stages import clean, scale, split
    from stages.common import RAW_CSV

    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    make_creditcard(rows, frauds).to_csv(RAW_CSV, index=False)
    for stage in (clean, split, scale):
        stage.main()


def make_members(strategy: str = "baseline", count: int = 3):
    """What the train stage writes for a strategy, from small models trained briefly on the scaled data in the
    working directory: models/<strategy>/member_<i>.keras and data/predictions/<strategy>.parquet (the members'
    probabilities on the val and test splits, computed from the saved files, and their mean)."""
    import keras

    from stages.common import MODELS_DIR, PREDICTIONS_DIR, load_scaled, save_keras

    features, labels = load_scaled("train")
    paths = [MODELS_DIR / strategy / f"member_{i}.keras" for i in range(count)]
    for seed, path in enumerate(paths):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(features.shape[1],)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(features, labels, batch_size=256, epochs=2, verbose=0)
        save_keras(model, path)
    members = [keras.saving.load_model(path) for path in paths]
    parts = []
    for split in ("val", "test"):
        split_features, split_labels = load_scaled(split)
        probabilities = [m.predict(split_features, verbose=0).ravel().astype(np.float64) for m in members]
        columns = {f"member_{i}": p for i, p in enumerate(probabilities)}
        parts.append(
            pd.DataFrame(
                {"split": split, "label": split_labels, "probability": np.mean(probabilities, axis=0), **columns}
            )
        )
    PREDICTIONS_DIR.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(PREDICTIONS_DIR / f"{strategy}.parquet", index=False)


def raw_test_rows() -> pd.DataFrame:
    """The raw CSV rows of the test split in the working directory, in the split's order: the split replayed
    on the raw rows (it depends only on the number of rows, the labels and the params)."""
    from stages import split
    from stages.common import RAW_CSV

    params = yaml.safe_load(Path("params.yaml").read_text())["split"]
    return split.split(pd.read_csv(RAW_CSV), **params)["test"]


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory):
    """A project directory, made once: the data stages run on synthetic data, three baseline members and the
    export stage run on them (models/export). Use it through `exported`, and change nothing in it."""
    from stages import export

    root = tmp_path_factory.mktemp("exported")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run_data_stages()
        make_members("baseline")
        export.main()
    return root


@pytest.fixture
def exported(exported_dir, monkeypatch):
    """The working directory is `exported_dir`."""
    monkeypatch.chdir(exported_dir)
    return exported_dir
