"""Benchmark part 14 (benchmarks/benchmark.py --only spark): scoring on Spark's local mode against the one-machine
command on the same rows, side by side in one run: the FACTOR-times data of benchmarks/data_scale.py (a CSV, and a
folder of one Parquet file per period), an exported model of five baseline members (benchmark.py's
RANDOM_MEMBERS: scoring speed does not depend on the weights).

14a. `python -m stages.score` on the CSV into a Parquet file, on the folder file by file into a folder, and with
`--engine spark` (local[*]) on the folder into a folder, one after the other: wall seconds, rows per second and peak
memory of the command (Spark's: the driver's; its workers are other processes), and, apart, a Spark session's
start and stop alone (the JVM's start-up, which the Spark command's wall time includes), and Spark's own work without
the model, in one session: the folder read and written again by the JVM alone, then with every column sent through
a Python worker and back (mapInArrow), as the scoring sends them. Then the Spark scores against the one-machine
folder's: the largest difference of the sorted probabilities and the flagged rows.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import data_scale

FACTOR = 64
DONE = data_scale.DONE  # a command's last log line: its wall time and peak memory
RESULT = re.compile(r"^result (.*)$", re.M)
START_STOP = """
import sys, time
started = time.perf_counter()
from fraudflow.spark_scoring import spark_session
spark_session("local[*]").stop()
print(f"result {time.perf_counter() - started:.1f}")
"""
ENGINE_ALONE = """
import sys, time
from fraudflow.spark_scoring import spark_session
spark = spark_session("local[*]")
frame = spark.read.parquet(sys.argv[1])
schema = ", ".join(f"`{field.name}` {field.dataType.simpleString()}" for field in frame.schema)
def through(batches):
    yield from batches
for label, data in (("jvm", frame), ("python", frame.mapInArrow(through, schema))):
    started = time.perf_counter()
    data.write.parquet(f"{sys.argv[2]}_{label}")
    print(f"result {label} {time.perf_counter() - started:.1f}")
spark.stop()
"""
COMPARE = """
import json, sys
from pathlib import Path
import numpy as np, pyarrow.dataset as ds
def read(folder):
    dataset = ds.dataset(folder, format="parquet", exclude_invalid_files=True)
    table = dataset.to_table(columns=["probability", "flagged"])
    return np.sort(table["probability"].to_numpy()), int(table["flagged"].to_numpy().sum())
(local, local_flags), (spark, spark_flags) = read(sys.argv[1]), read(sys.argv[2])
print("result", json.dumps([len(local), len(spark), float(np.abs(local - spark).max()), local_flags, spark_flags]))
"""


def compare(root: Path, data: Path, project_class, print_table, random_members: str):
    """Part 14."""
    project = project_class(root / "spark_project", data)
    project.run(["dvc", "repro", "scale"])
    (project.path / "models" / "baseline").mkdir(parents=True)
    project.set_params(**{"export.strategy": "baseline"})
    project.run([sys.executable, "-c", random_members])
    project.run([sys.executable, "-m", "stages.export"])
    csv_path, folder, rows = data_scale.make_data(data, FACTOR, root)
    runs = [
        ("one machine: CSV file -> Parquet file", [str(csv_path), str(root / "scores.parquet")]),
        ("one machine: Parquet folder -> folder, file by file", [str(folder), str(root / "scores_local")]),
        ("Spark local[*]: Parquet folder -> folder", [str(folder), str(root / "scores_spark"), "--engine", "spark"]),
    ]
    table = []
    for label, arguments in runs:
        seconds, output = project.run([sys.executable, "-m", "stages.score", *arguments])
        done = DONE.search(output)
        table.append([label, f"{rows:,}", f"{seconds:.1f}", f"{rows / seconds:,.0f}", done["mb"] if done else "-"])
    started = float(RESULT.search(project.run([sys.executable, "-c", START_STOP])[1])[1])
    table.append(["Spark local[*]: a session's start and stop alone", "-", f"{started:.1f}", "-", "-"])
    alone = project.run([sys.executable, "-c", ENGINE_ALONE, str(folder), str(root / "alone")])[1]
    for key, seconds in (line.split() for line in RESULT.findall(alone)):
        what = {"jvm": "read and written again by the JVM", "python": "every column through Python and back"}[key]
        per_second = f"{rows / float(seconds):,.0f}"
        table.append([f"Spark local[*], a started session: {what}, no model", f"{rows:,}", seconds, per_second, "-"])
    compared = project.run([sys.executable, "-c", COMPARE, str(root / "scores_local"), str(root / "scores_spark")])
    found = json.loads(RESULT.search(compared[1])[1])
    print_table(
        f"14a. Scoring {rows:,} rows ({FACTOR}x) on one machine and on Spark's local mode, side by side",
        ["command", "rows", "wall s", "rows per s", "peak MB"],
        table,
        "Each command's wall time (with Spark's, its JVM's start-up, measured alone in the fourth row), its rows per "
        "second and its peak memory, one after the other; the last two rows are Spark's own work without the model, "
        "timed inside one started session: what the engine adds on the same cores. Spark against the one-machine "
        f"folder: {found[1]:,} and {found[0]:,} rows, sorted probabilities at most {found[2]:.1e} apart, "
        f"{found[4]:,} and {found[3]:,} rows flagged.",
    )
    scratch = [root / name for name in ("scores.parquet", "scores_local", "scores_spark", "alone_jvm", "alone_python")]
    for path in (csv_path, folder, *scratch, project.path):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
