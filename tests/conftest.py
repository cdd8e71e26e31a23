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
