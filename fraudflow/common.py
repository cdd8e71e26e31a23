"""Helpers shared by every stage: params, errors, logging, atomic outputs, file IO."""

import json
import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

PARAMS_FILE = Path("params.yaml")
SPLITS = ("train", "val", "test")

RAW_DIR = Path("data/raw")  # what download wrote: one of the two below
RAW_CSV = RAW_DIR / "table.csv"
RAW_PARQUET = RAW_DIR / "table.parquet"  # a Parquet file or a folder of them
RAW_RECORD = Path("data/raw.json")  # the raw table's sha256, as download computed it
CSV_SUFFIXES = (".csv", ".csv.gz")
CLEAN_PARQUET = Path("data/clean/table.parquet")
SPLIT_DIR = Path("data/split")
SCALED_DIR = Path("data/scaled")
PREPROCESSING_FILE = SCALED_DIR / "preprocessing.json"  # what scale fitted (fraudflow/preprocess.py)
PROFILE_FILE = Path("data/profile/profile.json")  # the training split's profile (fraudflow/profile.py), from scale
COSTS_DIR = Path("data/costs")  # the cost column's values of the val and test rows, for evaluate (stages/scale.py)
MODELS_DIR = Path("models")
RULES_DIR = MODELS_DIR / "rules"  # each strategy's calibration and flagging rule, chosen by evaluate
PREDICTIONS_DIR = Path("data/predictions")
BLEND_DIR = Path("data/blend")  # the blend's predictions, apart from the predictions it is made of
IMPORTANCE_FILE = Path("metrics/importance.json")  # each strategy's mean |contribution| per column (stages/explain.py)
EXPORT_DIR = Path("export")  # the model to deploy: stages/export.py

# What save_keras writes instead of the save time, so identical models give identical files.
KERAS_DATE_SAVED = "1980-01-01@00:00:00"
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

log = logging.getLogger("fraudflow")


class StageError(Exception):
    """A problem the user can fix (bad input, bad params, unreachable data); printed as one line."""


def run(main):
    """Run a stage's main(): log to stderr, turn a StageError into a one-line message and exit 1.

    The last line gives the stage's wall time and peak memory (the benchmark reads it).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    stage = " ".join([Path(sys.argv[0]).stem, *sys.argv[1:]])
    wall = time.time() - psutil.Process().create_time()  # from process start, imports included
    log.info("%s done: %.1f s wall, %.0f MB peak memory", stage, wall, peak_memory_mb())


def peak_memory_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM counts this program only; ru_maxrss also counts the
    memory of the process that started it, as it was when it forked this one."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)[1]) / 1024
    except (OSError, TypeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# TensorFlow's C++ code logs in absl's format ("I0000 00:00:1795850485.842253   11538 port.cc:153] ...", the first
# letter the severity) and honours TF_CPP_MIN_LOG_LEVEL, except for what it prints during `import tensorflow`, before
# its logging is set up: absl's notice below, then "oneDNN custom operations are on ..." at INFO, each twice, as both
# _pywrap_tensorflow_internal.so and _pywrap_profiler_plugin.so hold a copy of that code.
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ABSL_LINE = re.compile(r"([IWEF])\d{4} \S+ +\d+ \S+:\d+\] ")
SEVERITIES = "IWEF"  # the levels of TF_CPP_MIN_LOG_LEVEL: 0 shows all, 1 hides INFO, 2 WARNING, 3 ERROR too


@contextmanager
def quiet_tensorflow():
    """Import TensorFlow (or Keras) inside this block to apply TF_CPP_MIN_LOG_LEVEL to its start-up lines too.

    TF_CPP_MIN_LOG_LEVEL defaults to 3 (TensorFlow's C++ lines hidden but for fatal ones); set it to 0 to see
    everything. What the block writes to stderr is held back and written out at its end, less absl's notice and
    the C++ lines below that level; everything else, such as Python warnings, is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 0
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                absl = ABSL_LINE.match(line)
                hidden = line.rstrip("\n") == ABSL_NOTICE or (absl and SEVERITIES.index(absl[1]) < level)
                if level == 0 or not hidden:
                    sys.stderr.write(line)
            sys.stderr.flush()


def load_params(section: str) -> dict:
    """Return one section of params.yaml, or fail naming the file and the section."""
    try:
        params = yaml.safe_load(PARAMS_FILE.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise StageError(f"{PARAMS_FILE}: cannot read params ({error})") from error
    if not isinstance(params, dict) or not isinstance(params.get(section), dict):
        raise StageError(f"{PARAMS_FILE}: missing section '{section}'")
    return params[section]


def require(params: dict, section: str, key: str, valid, description: str):
    """Return params[key] if valid(value) holds; otherwise fail naming 'section.key'."""
    if key not in params:
        raise StageError(f"{PARAMS_FILE}: missing param '{section}.{key}'")
    value = params[key]
    if not valid(value):
        raise StageError(f"{PARAMS_FILE}: param '{section}.{key}' must be {description}, got {value!r}")
    return value


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path` (file or directory); move it into place only on success."""
    path = Path(path)
    made = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}-{path.name}")  # keeps the suffix, which Keras checks
    _remove(tmp)
    try:
        yield tmp
        _remove(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        if made and not any(path.parent.iterdir()):
            path.parent.rmdir()
        raise


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def rounded(data, digits: int = 10):
    """Floats rounded to `digits` significant digits (lists and dicts recursively): last-bit differences between
    processors' math libraries do not reach the files."""
    if isinstance(data, float):
        return float(f"{data:.{digits}g}")
    if isinstance(data, dict):
        return {key: rounded(value, digits) for key, value in data.items()}
    if isinstance(data, list):
        return [rounded(value, digits) for value in data]
    return data


def write_json(path, data):
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(rounded(data), indent=2) + "\n")


def write_parquet(table: pa.Table, path):
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def save_keras(model, path):
    """Save a Keras model as a .keras file that is byte-identical for identical models.

    Keras writes the save time into metadata.json and the zip entries, and the memory address of objects
    shared between layers into config.json; these become a fixed date and ids counted in order of appearance.
    """
    with atomic_output(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as saved:
            entries = [(info, saved.read(info)) for info in saved.infolist()]
        with zipfile.ZipFile(tmp, "w") as fixed:
            for info, data in entries:
                if info.filename == "metadata.json":
                    data = json.dumps({**json.loads(data), "date_saved": KERAS_DATE_SAVED}).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
                fixed.writestr(zipfile.ZipInfo(info.filename, ZIP_DATE_TIME), data, compress_type=info.compress_type)


def _renumber_shared_objects(config, ids: dict):
    """The config with every 'shared_object_id' (an id() in Keras) replaced by 0, 1, ... in order of appearance."""
    if isinstance(config, dict):
        if "shared_object_id" in config:
            config["shared_object_id"] = ids.setdefault(config["shared_object_id"], len(ids))
        for value in config.values():
            _renumber_shared_objects(value, ids)
    elif isinstance(config, list):
        for value in config:
            _renumber_shared_objects(value, ids)
    return config


def read_parquet(path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise StageError(f"{path}: cannot read Parquet ({error}); run the stages before this one") from error


def load_preprocessing() -> dict:
    """The preprocessing that the scale stage fitted on the training split (fraudflow/preprocess.py)."""
    try:
        return json.loads(PREPROCESSING_FILE.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{PREPROCESSING_FILE}: cannot read ({error}); run 'dvc repro scale'") from error
