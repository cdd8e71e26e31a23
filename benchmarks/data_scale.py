"""Benchmark parts 8, 9 and 10 (benchmarks/benchmark.py): the data stages on enlarged copies of the real data, and
the CSV engines the choice of pyarrow was made against.

8. scale: Nx data from the real CSV (each two-day period of rows resampled with a seeded jitter of the numeric
   features, so copies are not exact twins; frauds at the real rate; Time stretched over N periods, so the time
   split still works), as a CSV and as a Parquet folder partitioned by period; download, clean, split and scale
   run on each (python -m stages.<name>, not through DVC, which would also copy every output into its cache):
   wall time, seconds per million rows and peak memory. Then the download stage through `dvc repro` on the 16x
   CSV with DVC's default cache link (copy) and with hardlinks: time and disk taken.
9. engines: the 16x CSV read and written as Parquet, with the column types clean reads, by pyarrow's streaming
   CSV reader, DuckDB and Polars' streaming engine (the last two when installed: `pip install duckdb polars`).
10. the whole `dvc repro` from scratch on the Nx CSV, default params but train.negative_rate (1.0 and 0.1 up to
   4x, 0.1 beyond; DVC's cache hardlinked, as docs/scale.md advises for large data), then the exported model on
   the same CSV (`python -m stages.score`): wall time and peak memory of every stage, and each strategy's test
   average precision with its 95 % interval.
10c. where one machine ends (`--only limits` derives it again from the tables 8 and 10 in benchmarks/results.md,
   measuring nothing): per stage, a straight line through its wall time and peak memory against the rows gives its
   seconds and megabytes per million rows, and where it passes a day or the memory of the machine measured.
"""

import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PERIOD_SECONDS = 172_800  # creditcard.csv spans two days
STAGES = ("download", "clean", "split", "scale")
DONE = re.compile(r" done: (?P<wall>[\d.]+) s wall, (?P<mb>\d+) MB peak memory")
EVALUATED = ("baseline", "weighted", "resampled", "focal", "logistic", "gbdt", "blend")  # the registry's, not imported
STAGE_DONE = re.compile(r"^[\d:]+ (?P<stage>[\w ]+) done: (?P<wall>[\d.]+) s wall, (?P<mb>\d+) MB peak memory", re.M)


SCORED = "score"  # part 10's row for `python -m stages.score` on the whole CSV, after the repro
DAY_SECONDS = 86_400
# A line that grows over the sizes measured by less than this share of its first value, or than the unit's floor
# (seconds, MB), is called flat: noise, not growth.
FLAT_GROWTH, FLAT_SECONDS, FLAT_MB = 0.05, 1.0, 10.0
# What to do where a stage passes a day or the memory on one machine (docs/scale.md): by stage, or by its first
# word for the network stages ("train baseline").
WHAT_TO_DO = {
    "download": "write the table upstream as a Parquet folder: fewer bytes to copy (8)",
    "clean": "give it Parquet instead of CSV (8); it holds one batch",
    "split": "a machine with more memory: it keeps a hash, a label, a split and a duplicate group per row",
    "scale": "nothing per row: its time follows the rows it reads",
    "train": "lower train.negative_rate: time follows the sampled rows (resampled's, the validation sample)",
    "train_logistic": "lower train.negative_rate: it fits on member 0's sample, in blocks",
    "train_gbdt": "lower train.negative_rate: scikit-learn holds its sample whole, in float64",
    "train_blend": "a smaller split.val_size: it holds every strategy's validation predictions",
    "evaluate": "fewer evaluate.bootstrap_resamples: time follows test rows x resamples, memory its positives x them",
    "explain": "a smaller split.val_size: it scores every validation row",
    "report": "reads no rows",
    "export": "reads no rows",
    SCORED: "a Parquet folder on a cluster, with --engine spark (docs/serving.md)",
}


def negative_rates(factor: int) -> tuple[float, ...]:
    """Part 10's train.negative_rate values at a size: every negative only up to 4x (the networks' time grows with
    the sampled rows)."""
    return (1.0, 0.1) if factor <= 4 else (0.1,)


def periods(data: Path, factor: int):
    """`factor` tables of the real rows' size: period p resampled (seed p), jittered, its Time shifted by p
    periods."""
    real = pacsv.read_csv(data)
    features = [f"V{i}" for i in range(1, 29)]
    for period in range(factor):
        rng = np.random.default_rng(period)
        rows = real.take(np.sort(rng.integers(0, real.num_rows, real.num_rows)))  # Time order kept
        columns = {"Time": pa.array(rows["Time"].to_numpy() + period * PERIOD_SECONDS)}
        for name in features:
            values = rows[name].to_numpy()
            columns[name] = pa.array(values + rng.normal(0, 0.01, len(values)))
        amount = rows["Amount"].to_numpy()
        columns["Amount"] = pa.array(np.round(np.maximum(amount * (1 + rng.normal(0, 0.01, len(amount))), 0), 2))
        columns["Class"] = rows["Class"]
        yield pa.table(columns)


def make_data(data: Path, factor: int, root: Path) -> tuple[Path, Path, int]:
    """The Nx data as creditcard_x<N>.csv and as a folder creditcard_x<N>/period=<p>/part-0.parquet; its rows."""
    csv_path, folder = root / f"creditcard_x{factor}.csv", root / f"creditcard_x{factor}"
    rows, tables = 0, periods(data, factor)
    first = next(tables)
    with pacsv.CSVWriter(csv_path, first.schema) as writer:
        for period, table in enumerate(itertools.chain([first], tables)):
            writer.write_table(table)
            (folder / f"period={period}").mkdir(parents=True)
            pq.write_table(table, folder / f"period={period}" / "part-0.parquet")
            rows += table.num_rows
    return csv_path, folder, rows


def run_stages(project, source: Path, drop: list[str]) -> dict:
    """Wall s and peak MB of each data stage on the source."""
    project.set_params(**{"download.url": str(source), "download.sha256": "", "data.drop": drop})
    results = {}
    for stage in STAGES:
        output = project.run([sys.executable, "-m", f"stages.{stage}"])[1]
        done = DONE.search(output)
        results[stage] = (float(done["wall"]), int(done["mb"]))
    shutil.rmtree(project.path / "data")
    return results


def whole_repro(root: Path, csv_path: Path, rate: float, project_class) -> tuple[float, dict, dict]:
    """`dvc repro` from scratch on the CSV at one negative rate, then the exported model on the CSV: the repro's wall
    seconds, {stage: (wall s, peak MB)} (the scoring's as SCORED) and {strategy: test AP (ensemble, lower, upper)}."""
    project = project_class(root / "repro", csv_path)
    project.run(["dvc", "config", "cache.type", "reflink,hardlink,copy"])
    project.set_params(**{"download.sha256": "", "train.negative_rate": rate})
    seconds, output = project.run(["dvc", "repro"])
    stages = {m["stage"]: (float(m["wall"]), int(m["mb"])) for m in STAGE_DONE.finditer(output)}
    scored = DONE.search(project.run([sys.executable, "-m", "stages.score", str(csv_path), "scores.parquet"])[1])
    stages[SCORED] = (float(scored["wall"]), int(scored["mb"]))
    quality = {}
    for strategy in EVALUATED:
        ap = json.loads((project.path / "metrics" / "test" / f"{strategy}.json").read_text())["average_precision"]
        quality[strategy] = (ap["ensemble"], ap["ensemble_lower"], ap["ensemble_upper"])
    shutil.rmtree(project.path)
    return seconds, stages, quality


def repro_tables(runs: dict, print_table):
    """Part 10's two tables: a column per (size, rate) run."""
    columns = [f"{factor}x, rate {rate:g}" for factor, rate in runs]
    stages = list(next(iter(runs.values()))[1])
    rows = [[stage] + [f"{run[1][stage][0]:.1f} s, {run[1][stage][1]} MB" for run in runs.values()] for stage in stages]
    rows.append(["**dvc repro, whole**"] + [f"**{run[0] / 60:.1f} min**" for run in runs.values()])
    rows.append(["largest peak"] + [f"{max(mb for _, mb in run[1].values())} MB" for run in runs.values()])
    print_table(
        "10. Whole dvc repro at scale: each stage's wall time and peak memory",
        ["stage", *columns],
        rows,
        f"Each stage's wall time and peak memory in a whole `dvc repro` from scratch, then `{SCORED}`'s, "
        "`python -m stages.score` on the same CSV with the exported model, a column per size and train.negative_rate.",
    )
    quality = [
        [strategy] + ["{:.3f} [{:.3f}, {:.3f}]".format(*run[2][strategy]) for run in runs.values()]
        for strategy in EVALUATED
    ]
    print_table(
        "10b. Test average precision of each ensemble [95 % interval]",
        ["strategy", *columns],
        quality,
        "Each strategy's test average precision with its 95 % interval in the same runs: what a lower "
        "train.negative_rate costs in quality at each size.",
    )


def line(rows: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of values against rows (two sizes or more)."""
    slope, intercept = np.polyfit(np.array(rows, dtype=float), np.array(values, dtype=float), 1)
    return intercept, slope


def count(rows: float) -> str:
    """A row count in words a person reads at a glance: 410 million, 3.2 billion."""
    if rows <= 0:
        return "already"
    if rows < 1e6:
        return "under 1 million"
    return f"{rows / 1e9:,.1f} billion" if rows >= 1e9 else f"{rows / 1e6:,.0f} million"


def reaches(rows: list[int], values: list[float], limit: float, floor: float) -> str:
    """Where the line through (rows, values) reaches limit; flat when it grows over the rows measured by less than
    FLAT_GROWTH of its value at the fewest rows, or than floor."""
    base, slope = line(rows, values)
    first = base + slope * min(rows)
    if slope * (max(rows) - min(rows)) < max(FLAT_GROWTH * first, floor):
        return "flat"
    return count((limit - base) / slope)


def is_network(stage: str) -> bool:
    return stage.startswith("train ")


def measured_runs(section: str) -> tuple[dict, dict, float, int]:
    """From section 8-10's text: its runs {(factor, rate): {stage: (wall s, peak MB)}} (table 10), the rows of each
    size {factor: rows} (table 8), and the memory (MB) and cores of the machine that measured them."""
    tables = {m[1]: m[2] for m in re.finditer(r"^### (\S+) .*?\n\n(\|.*?)\n\n", section, re.M | re.S)}
    cells = {
        name: [[c.strip() for c in row.strip("|").split("|")] for row in table.splitlines()[2:]]
        for name, table in tables.items()
    }
    sizes = {int(row[0][:-1]): int(row[1].replace(",", "")) for row in cells["8."]}
    header = [c.strip() for c in tables["10."].splitlines()[0].strip("|").split("|")][1:]
    keys = [(int(m[1]), float(m[2])) for m in (re.match(r"(\d+)x, rate ([\d.]+)", c) for c in header)]
    runs = {key: {} for key in keys}
    for stage, *values in cells["10."]:
        for key, value in zip(keys, values, strict=True):
            found = re.fullmatch(r"([\d.]+) s, (\d+) MB", value)
            if found:
                runs[key][stage] = (float(found[1]), int(found[2]))
    machine = re.search(r"(\d+) cores, ([\d.]+) GiB RAM", section)
    return runs, sizes, float(machine[2]) * 1024, int(machine[1])


def limits(section: str, print_table, derived: str):
    """Part 10c, from section 8-10's text (measured_runs): per stage (per train.negative_rate for the members'
    training, the stages whose work it sets) with two sizes or more, its seconds and MB per million rows and the rows
    at which it passes a day and the machine's memory. `derived`: which code derived it, and when."""
    runs, sizes, memory_mb, cores = measured_runs(section)
    by_rate = {rate: [key for key in runs if key[1] == rate] for rate in sorted({r for _, r in runs}, reverse=True)}
    table = []
    for stage in next(iter(runs.values())):
        follows_rate = stage.startswith("train") and stage != "train_blend"  # the members' training
        for rate, keys in by_rate.items() if follows_rate else [("any", [*runs])]:
            factors = sorted({factor for factor, _ in keys})
            if is_network(stage):  # the largest sizes: how a network stage reads a large split (caption)
                factors = factors[-2:]
                keys = [key for key in keys if key[0] in factors]
            if len(factors) < 2:
                continue
            rows = [sizes[factor] for factor, _ in keys]
            seconds, mb = zip(*(runs[key][stage] for key in keys), strict=True)
            table.append(
                [
                    stage,
                    rate if rate == "any" else f"{rate:g}",
                    " / ".join(f"{factor}x" for factor in factors),
                    f"{line(rows, seconds)[1] * 1e6:.2f}",
                    f"{max(mb)}",
                    f"{line(rows, mb)[1] * 1e6:.1f}",
                    reaches(rows, seconds, DAY_SECONDS, FLAT_SECONDS),
                    reaches(rows, mb, memory_mb, FLAT_MB),
                    WHAT_TO_DO.get(stage, WHAT_TO_DO.get(stage.split()[0], "")),
                ]
            )
    print_table(
        "10c. Where one machine ends: each stage's growth, and the rows at which it passes a day or the memory",
        [
            "stage",
            "negative rate",
            "sizes",
            "s per million rows",
            "largest peak MB",
            "MB per million rows",
            "a day at",
            f"{memory_mb / 1024:.1f} GiB at",
            "what to do there",
        ],
        table,
        "From tables 8 and 10 above: per stage (and per train.negative_rate for the members' training, the stages "
        "whose work it sets), a straight line (least squares) through its wall time and its peak memory in the runs "
        "of 10, against the input's rows; its slope per million rows, and the row count at which it reaches a day "
        f"or this machine's memory. Those counts extrapolate far past the largest size measured, on {cores} cores: "
        "read them as orders of magnitude. Flat: the line grows over the sizes measured by less than "
        f"{FLAT_GROWTH:.0%} or {FLAT_SECONDS:g} s or {FLAT_MB:g} MB (noise, not growth). The network stages hold "
        "a training split of up to RESIDENT_BYTES (fraudflow/members.py) whole and read a larger one in chunks: "
        "their lines run through the two largest sizes of each rate, and where those two held the split whole, the "
        f"memory overstates a larger table's. {derived}",
    )


def scale(root: Path, data: Path, factors: list[int], project_class, print_table):
    table, project, runs = [], project_class(root / "scale", data), {}
    for factor in factors:
        csv_path, folder, rows = make_data(data, factor, root)
        for form, source, drop in (("CSV", csv_path, []), ("Parquet folder", folder, ["period"])):
            for stage, (wall, mb) in run_stages(project, source, drop).items():
                table.append([f"{factor}x", f"{rows:,}", form, stage, f"{wall:.1f}", f"{wall / rows * 1e6:.2f}", mb])
        shutil.rmtree(folder)
        for rate in negative_rates(factor):
            runs[factor, rate] = whole_repro(root, csv_path, rate, project_class)
            print(f"part 10: {factor}x, rate {rate}: {runs[factor, rate][0]:.0f} s", file=sys.stderr, flush=True)
        if factor == 16:
            links = cache_links(root, csv_path, project_class)
            engine_rows = engines(csv_path, rows, root)
        csv_path.unlink()
    print_table(
        "8. Scale: the data stages on Nx the rows (python -m stages.<name>; time includes imports)",
        ["data", "rows", "input", "stage", "wall s", "s per million rows", "peak MB"],
        table,
        "Read a stage's seconds per million rows and peak memory down the sizes: equal figures mean its time grows "
        "linearly with the rows and its memory not at all.",
    )
    if 16 in factors:
        print_table(
            "8b. dvc repro download on the 16x CSV: DVC's cache link type (`dvc config cache.type ...`)",
            ["cache.type", "wall s", "disk taken GB (data/raw + .dvc/cache)"],
            links,
            "The download stage's time and the disk its output takes with DVC's default cache link (copy) and "
            "with hardlinks, side by side.",
        )
        print_table(
            "9. Engines: the 16x CSV to Parquet with clean's column types, streamed",
            ["engine", "wall s", "rows per s", "peak MB"],
            engine_rows,
            "Rows per second and peak memory of each engine converting the same CSV, one after the other.",
        )
    repro_tables(runs, print_table)
    shutil.rmtree(project.path)


def cache_links(root: Path, csv_path: Path, project_class) -> list[list]:
    rows = []
    for link in ("copy", "hardlink"):
        project = project_class(root / f"link_{link}", csv_path)
        project.set_params(**{"download.sha256": ""})
        project.run(["dvc", "config", "cache.type", link])
        seconds, _ = project.run(["dvc", "repro", "download"])
        taken = disk_bytes([project.path / "data" / "raw", project.path / ".dvc" / "cache"])
        rows.append([link, f"{seconds:.1f}", f"{taken / 1e9:.2f}"])
        shutil.rmtree(project.path)
    return rows


def disk_bytes(folders: list[Path]) -> int:
    """Bytes on disk under the folders, a file hardlinked in several places once."""
    seen, total = set(), 0
    for path in (path for folder in folders for path in folder.rglob("*")):
        stat = path.lstat()
        if path.is_file() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512
    return total


# Each engine converts sys.argv[1] (CSV) into sys.argv[2] (Parquet), streaming, Time..Amount as float64 and Class
# as text (as clean reads them), and prints its peak memory (VmHWM: fraudflow.common.peak_memory_mb, not imported).
ENGINES = {
    "pyarrow (open_csv, ParquetWriter)": "pyarrow",
    "DuckDB (read_csv, COPY ... TO)": "duckdb",
    "Polars (scan_csv, sink_parquet)": "polars",
}
CONVERSIONS = {
    "pyarrow": """
import pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
names = pacsv.open_csv(sys.argv[1]).schema.names
types = {name: pa.string() if name == "Class" else pa.float64() for name in names}
reader = pacsv.open_csv(sys.argv[1], convert_options=pacsv.ConvertOptions(column_types=types))
with pq.ParquetWriter(sys.argv[2], reader.schema, use_dictionary=["Class"]) as writer:  # as clean writes
    for batch in reader:
        writer.write_batch(batch)
""",
    "duckdb": """
import duckdb
duckdb.sql("SET threads = 2")
duckdb.sql(f"COPY (SELECT * REPLACE (CAST(Class AS VARCHAR) AS Class) FROM read_csv('{sys.argv[1]}')) "
           f"TO '{sys.argv[2]}' (FORMAT parquet)")
""",
    "polars": """
import polars as pl
pl.scan_csv(sys.argv[1], schema_overrides={"Class": pl.String}, infer_schema_length=10000).with_columns(
    pl.exclude("Class").cast(pl.Float64)).sink_parquet(sys.argv[2])
""",
}
PEAK = "\nimport re; print('peak MB', int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) >> 10)"


def engines(csv_path: Path, lines: int, root: Path) -> list[list]:
    rows, output = [], root / "engine.parquet"
    for name, module in ENGINES.items():
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
            rows.append([name, "not installed", "", ""])
            continue
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", "import sys" + CONVERSIONS[module] + PEAK, str(csv_path), str(output)],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if result.returncode:
            rows.append([name, f"failed: {result.stderr.strip().splitlines()[-1]}", "", ""])
            continue
        peak = re.search(r"peak MB (\d+)", result.stdout)[1]
        assert pq.read_metadata(output).num_rows == lines, f"{name}: wrong row count"
        rows.append([name, f"{seconds:.1f}", f"{lines / seconds:,.0f}", peak])
        output.unlink()
    return rows
