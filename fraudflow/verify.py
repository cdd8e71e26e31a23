"""Do the results in the work tree match the committed ones, and by how much?

    dvc repro --force && python -m fraudflow.verify [--against REVISION]

TensorFlow's training outputs (the network strategies' models, predictions, histories and everything computed
from them) differ from one machine to another: last bits at first, which training amplifies over the epochs
(docs/reproducibility.md). Their git-tracked metrics are compared value by value: numbers within TOLERANCE
(relative, or ABSOLUTE for values near zero such as differences between strategies), integers, text and verdicts
(counts, epochs, "baseline better") exactly. Training histories must have the same members and epochs; their
values, like the points of curves, images, the rounded headline numbers (metrics/headline/) and the results
document (docs/results.md), are reported, not checked: the detailed metrics check what they lead to.
In dvc.lock only their hashes may differ. Every other file (code, params, the data stages' and logistic
regression's outputs, and what is computed only from them) must be byte-identical. Exits 1 if anything differs
beyond that, naming the file and key.
"""

import argparse
import csv
import io
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import yaml
from matplotlib import image

from fraudflow.strategies import LOGISTIC, REGISTRY
from fraudflow.summary import HEADLINE_DIR, RECOMMENDED_FILE, VERDICTS_FILE

# Seen between two x86-64 machines (measured in an earlier session, before the docs were generated): test metrics
# at most 1.4e-4 relative, differences between strategies 2.6e-6 absolute.
TOLERANCE = 1e-3
ABSOLUTE = 1e-5
# Files written from TensorFlow's training (and the trees', whose float sums are not checked across processors
# either), directly or through the evaluate and export stages (fnmatch's * crosses "/").
TRAINING_OUTPUTS = [
    *(
        pattern.format(s.name)
        for s in REGISTRY.values()
        if s.kind != LOGISTIC
        for pattern in (
            "models/{}",
            "models/{}/*",
            "models/{}.json",
            str(s.predictions),
            "metrics/train/{}.json",
            "metrics/test/{}.json",
            "models/rules/{}.json",
            "plots/history/{}.csv",
        )
    ),
    "plots/*.csv",  # every strategy's points
    "export",
    "export/*",
    "metrics/differences.json",
    "metrics/importance.json",  # from every strategy's models
    HEADLINE_DIR,
    f"{HEADLINE_DIR}/*",
    VERDICTS_FILE,
    RECOMMENDED_FILE,
    "docs/results.md",
    "plots/*.png",
    "dvc.lock",
]
# Points of curves (a probability that moves across a calibration bin's edge moves a row between bins; one across
# k * cost_false_positive changes a validation cost), the columns ranked by importance (a near tie may swap two) and
# pixels.
DRAWINGS = ["plots/roc.csv", "plots/prc.csv", "plots/costk.csv", "plots/importance.csv", "*.png"]
HISTORIES = "plots/history/*"
EPOCHS = ("member", "epoch")  # the history columns that must match exactly


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], capture_output=True, check=True).stdout


def is_training_output(path: str) -> bool:
    """A training output, or a folder (a dvc.lock entry) holding one."""
    if any(fnmatch(path, pattern) for pattern in TRAINING_OUTPUTS):
        return True
    folder = Path(path)
    return folder.is_dir() and any(is_training_output(str(file)) for file in folder.rglob("*") if file.is_file())


def flatten(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(data, list):
        return {k: v for i, value in enumerate(data) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): data}


def as_number(value):
    """An int or float for a number (or numeric text), None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return None


def csv_cells(rows: list[list[str]]) -> dict:
    """{"row <i> <column>": text} of a CSV's rows under its header."""
    return {
        f"row {i} {name}": value for i, row in enumerate(rows[1:], 1) for name, value in zip(rows[0], row, strict=True)
    }


class Comparison:
    """Differences found so far: `problems` fail the check, `largest` is the largest relative one within it."""

    def __init__(self):
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.largest = (0.0, "")

    def values(self, path: str, committed: dict, fresh: dict, checked=lambda key: True):
        """Compare flattened values: floats within the tolerance, everything else exactly; only report the keys
        that are not `checked`."""
        for key in sorted(committed.keys() ^ fresh.keys()):
            self.problems.append(f"{path}: {key} is in only one of the two")
        changed, largest = 0, (0.0, "")
        for key in sorted(committed.keys() & fresh.keys()):
            old, new = committed[key], fresh[key]
            if old == new:
                continue
            changed += 1
            a, b = as_number(old), as_number(new)
            if isinstance(a, int) and isinstance(b, int) or a is None or b is None:
                if checked(key):
                    self.problems.append(f"{path}: {key} committed {old}, now {new} (must match exactly)")
                continue
            relative = abs(a - b) / max(abs(a), abs(b))
            where = f"{path} {key}: {old} -> {new}"
            largest = max(largest, (relative, where))
            if checked(key) and relative > TOLERANCE and abs(a - b) > ABSOLUTE:
                self.problems.append(
                    f"{path}: {key} committed {old}, now {new} ({relative:.1e} relative > {TOLERANCE})"
                )
        if changed:
            self.notes.append(f"{path}: {changed} values differ, largest {largest[0]:.1e} relative")
        self.largest = max(self.largest, largest)

    def json(self, path: str, committed: bytes, fresh: bytes):
        self.values(path, flatten(json.loads(committed)), flatten(json.loads(fresh)))

    def csv(self, path: str, committed: bytes, fresh: bytes):
        old, new = (list(csv.reader(io.StringIO(text.decode()))) for text in (committed, fresh))
        if len(old) != len(new) or old[:1] != new[:1]:
            self.problems.append(f"{path}: {len(old) - 1} rows committed, {len(new) - 1} now (or other columns)")
            return
        history = fnmatch(path, HISTORIES)
        self.values(path, csv_cells(old), csv_cells(new), lambda key: not history or key.split(" ", 2)[2] in EPOCHS)

    def drawing(self, path: str, committed: bytes, fresh: bytes):
        if path.endswith(".png"):
            old, new = (image.imread(io.BytesIO(data)) for data in (committed, fresh))
            if old.shape != new.shape:
                self.notes.append(f"{path}: redrawn at another size")
                return
            changed = int(np.any(old != new, axis=-1).sum())
            self.notes.append(f"{path}: redrawn, {changed:,} of {old.shape[0] * old.shape[1]:,} pixels differ")
        else:
            old, new = committed.decode().splitlines(), fresh.decode().splitlines()
            changed = sum(a != b for a, b in zip(old, new, strict=False)) + abs(len(old) - len(new))
            checked = "what it draws is checked in metrics/"
            self.notes.append(f"{path}: curve redrawn, {changed} of {len(old) - 1} points differ ({checked})")

    def lock(self, committed: bytes, fresh: bytes):
        """dvc.lock: every stage, command, param and hash the same, but the hashes of training outputs."""
        old, new = (yaml.safe_load(text)["stages"] for text in (committed, fresh))
        hashes = 0
        for stage in sorted(old.keys() | new.keys()):
            if stage not in old or stage not in new:
                self.problems.append(f"dvc.lock: stage {stage} is in only one of the two")
                continue
            a, b = dict(old[stage]), dict(new[stage])
            files_a = {entry["path"]: entry for entry in a.pop("deps", []) + a.pop("outs", [])}
            files_b = {entry["path"]: entry for entry in b.pop("deps", []) + b.pop("outs", [])}
            if a != b:
                self.problems.append(f"dvc.lock: stage {stage}: its command or params differ")
            for path in sorted(files_a.keys() | files_b.keys()):
                if files_a.get(path) == files_b.get(path):
                    continue
                if path not in files_a or path not in files_b:
                    self.problems.append(f"dvc.lock: stage {stage}: {path} is in only one of the two")
                elif is_training_output(path):
                    hashes += 1
                else:
                    self.problems.append(f"dvc.lock: stage {stage}: {path} differs (must be byte-identical)")
        if hashes:
            self.notes.append(f"dvc.lock: {hashes} hashes of training outputs differ")

    def file(self, path: str, committed: bytes | None, fresh: bytes | None):
        if committed is None or fresh is None:
            self.problems.append(f"{path}: {'new' if committed is None else 'deleted'} (not in the commit's files)")
        elif not is_training_output(path):
            self.problems.append(f"{path}: differs (must be byte-identical)")
        elif path == "dvc.lock":
            self.lock(committed, fresh)
        elif any(fnmatch(path, pattern) for pattern in DRAWINGS):
            self.drawing(path, committed, fresh)
        elif fnmatch(path, f"{HEADLINE_DIR}/*"):  # rounded from metrics/test/, which is checked
            self.values(path, flatten(json.loads(committed)), flatten(json.loads(fresh)), lambda key: False)
        elif path.endswith(".json"):
            self.json(path, committed, fresh)
        elif path.endswith(".csv"):
            self.csv(path, committed, fresh)
        else:
            self.notes.append(f"{path}: bytes differ")


def changed_files(revision: str) -> list[str]:
    """Files that differ from the revision, deleted or new (not ignored)."""
    changed = git("diff", "--name-only", "--no-renames", revision, "--").decode().split()
    return sorted({*changed, *git("ls-files", "--others", "--exclude-standard").decode().split()})


def committed_bytes(revision: str, path: str) -> bytes | None:
    result = subprocess.run(["git", "cat-file", "blob", f"{revision}:{path}"], capture_output=True)
    return result.stdout if result.returncode == 0 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="the revision to compare with (default: %(default)s)")
    revision = parser.parse_args(argv).against
    changed = changed_files(revision)
    comparison = Comparison()
    for path in changed:
        fresh = Path(path).read_bytes() if Path(path).is_file() else None
        comparison.file(path, committed_bytes(revision, path), fresh)
    tracked = len(git("ls-files").decode().split())
    print(f"{tracked - len(changed)} of {tracked} tracked files byte-identical with {revision}")
    for line in comparison.notes + comparison.problems:
        print(f"  {line}")
    relative, where = comparison.largest
    if comparison.problems:
        print(f"{len(comparison.problems)} differences beyond the tolerance: the results do NOT match {revision}")
        return 1
    largest = f"largest difference {relative:.1e} relative ({where})" if where else "no value differs"
    print(f"the results match {revision}: {largest}; tolerance {TOLERANCE} relative, counts exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
