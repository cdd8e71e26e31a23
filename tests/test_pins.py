"""The pinned settings (fraudflow/__init__.py): in place before numpy and TensorFlow load, in every module that
loads them; and a tiny training run twice, in two fresh processes, writes the same bytes."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, python_environment, run_data_stages, set_params

from fraudflow import PINNED

MODULES = sorted(
    f"{path.parent.name}.{path.stem}"
    for folder in ("stages", "fraudflow")
    for path in (REPO / folder).glob("*.py")
    if path.stem != "__init__"
)
PURE_PYTHON = {"fraudflow.summary", "fraudflow.tables"}  # load neither numpy nor TensorFlow: nothing to pin
# Imports a module with a finder that records, when numpy or tensorflow is first imported, the pinned variables.
RECORD_IMPORTS = """
import importlib, json, os, sys
names, seen = json.loads(sys.argv[2]), {}
class Record:
    def find_spec(self, name, path=None, target=None):
        if name in ("numpy", "tensorflow") and name not in seen:
            seen[name] = {key: os.environ.get(key) for key in names}
sys.meta_path.insert(0, Record())
importlib.import_module(sys.argv[1])
print(json.dumps(seen))
"""


def clean_environment() -> dict:
    """The subprocess environment without the pinned variables (this process set them when it imported fraudflow)."""
    return {key: value for key, value in python_environment().items() if key not in PINNED}


@pytest.mark.parametrize("module", MODULES)
def test_pins_are_set_before_numpy_and_tensorflow_load(module):
    result = subprocess.run(
        [sys.executable, "-c", RECORD_IMPORTS, module, json.dumps(list(PINNED))],
        env=clean_environment(),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    if module in PURE_PYTHON:
        assert seen == {}, f"{module} loads {', '.join(seen)}: check its pins (remove it from PURE_PYTHON)"
        return
    assert "numpy" in seen, f"{module} does not load numpy: nothing to check"
    for library, environment in seen.items():
        assert environment == PINNED, f"{module}: {library} loaded before the pins were set"


def test_a_tiny_training_gives_the_same_bytes_in_two_fresh_processes(project):
    run_data_stages(rows=2000, frauds=40)
    set_params(project / "params.yaml", train__members=2, train__batch_size=256, networks__baseline={"epochs": 2})
    digests = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "stages.train", "baseline"],
            env=clean_environment(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        files = [Path("data/predictions/baseline.parquet"), *sorted(Path("models/baseline").iterdir())]
        digests.append({str(path): hashlib.md5(path.read_bytes()).hexdigest() for path in files})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 3  # the predictions and two members


def test_a_variable_set_by_the_user_wins():
    environment = {**clean_environment(), "TF_NUM_INTRAOP_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "import os, fraudflow; print(os.environ['TF_NUM_INTRAOP_THREADS'])"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "1"
