"""Benchmark the pipeline against the tutorial's code on a copy of the real data; prints each part's tables and
writes them into benchmarks/results.md, the file the README and the docs take their measured numbers from.

    python benchmarks/benchmark.py --data ../shared/data/creditcard.csv.gz

Parts: 1a. training 1 against 5 members (fixed epochs, no early stopping); 1b. same-work training of one model
per strategy against benchmarks/tutorial_reference.py; 2. the whole `dvc repro` from scratch (5 members per
strategy), per stage, against the whole tutorial script (one model each); 3. a no-op `dvc repro`;
4. an incremental `dvc repro` after one networks.resampled param change; 5. growth: the data stages and one
epoch of each strategy on 1x, 4x and 16x the rows; 6. scoring: `python -m stages.score` on the whole CSV
and on 16 copies of its rows; 7. pins: each setting that fraudflow pins (fraudflow/__init__.py), and others that
could change the bytes, changed one at a time: a short training's bytes against the pinned run's, and its time;
8, 9 and 10 (benchmarks/data_scale.py): the data stages on 1x, 4x, 16x and 64x the rows, CSV and Parquet, DVC's
cache links, the CSV engines, the whole `dvc repro` and scoring at each size with train.negative_rate 1.0 and 0.1
(0.1 only past 4x), and from those, where one machine ends: each stage's time and memory per million rows and the
rows at which it passes a day or the machine's memory; 11. the gradient-boosted-tree libraries
(benchmarks/gbdt_libraries.py); 12. the exported model's format and scoring with it beside the previous Keras
export, and the exported model of every strategy against evaluate on the raw test rows
(benchmarks/export_formats.py); 13. reason codes: the method against occlusion and exact SHAP, and scoring with and
without them (benchmarks/reasons.py); 14. scoring on Spark's local mode against one machine at 64x
(benchmarks/spark_scoring.py; needs requirements-spark.txt). `--only NAME` runs just one part: pipeline (2 to 4),
score, pins, scale, limits (10c alone, from the tables in results.md), gbdt, export, reasons or spark; `--scale 64`
one size.
Everything runs in scratch copies of the project, so the work tree is left alone. Needs the project's environment
(`make repro` or `make test` creates it).

Results: benchmarks/results.md (benchmarks/results.py) holds a section per part (1, 2-4, 5, 6, 7, 8-10, 11, 12, 13, 14),
each under a line saying when, on what machine, on which commit and by which command it was measured. Each part
that finishes replaces its own section; the others, and the section of a part that failed, are kept.
"""

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import data_scale
import export_formats
import gbdt_libraries
import numpy as np
import pyarrow.csv as pacsv
import reasons
import results
import spark_scoring
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["stages", "fraudflow", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"]
RESULTS = REPO / "benchmarks" / "results.md"
SCALE_TITLE = "8-10. Data at scale"  # its section holds 10c, derived from its tables 8 and 10
MEASURED = [*PROJECT_FILES, ".dvc/plots", "benchmarks", ":(exclude)benchmarks/results.md"]  # the code measured
PRINTED = []  # the tables print_table printed since the running part began: its section of RESULTS
STRATEGIES = ("baseline", "weighted", "resampled")  # the tutorial's three (parts 1, 5: one epoch each)
TUTORIAL_EPOCHS = (28, 13, 111)  # where the tutorial's own run stopped early
STAGE_DONE = data_scale.STAGE_DONE  # a stage's last log line: its wall time and peak memory
TRAINED = re.compile(
    r"^\S+ (?P<strategy>\w+): (?P<members>\d+) members, (?P<epochs>\d+) epochs in (?P<seconds>[\d.]+) s", re.M
)
FITTED = re.compile(r"^\S+ (?P<strategy>\w+): \d+ members, .*? in (?P<seconds>[\d.]+) s", re.M)  # networks, trees
REFERENCE = re.compile(r"^reference (?P<strategy>\w+): (?P<epochs>\d+) epochs, (?P<seconds>[\d.]+) s", re.M)
DONE = data_scale.DONE  # a command's last log line: its wall time and peak memory
# Five baseline members with random weights (scoring speed does not depend on them) and the threshold and k
# evaluate would have chosen, so that the export stage can run without training.
RANDOM_MEMBERS = """
import json, keras
from pathlib import Path
from fraudflow.common import save_keras
for i in range(5):
    keras.utils.set_random_seed(i)
    layers = [keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5), keras.layers.Dense(1, "sigmoid")]
    save_keras(keras.Sequential([keras.Input(shape=(29,)), *layers]), f"models/baseline/member_{i}.keras")
Path("models/rules").mkdir(parents=True, exist_ok=True)
rule = {"strategy": "baseline", "calibration_logit_shift": 0.0, "cost_column": "Amount", "k": 1.0,
        "cost_false_positive": 5, "flagged": "probability / (1 - probability) * Amount > k * cost_false_positive",
        "score_profile": {"edges": [0.5], "shares": [0.5, 0.5, 0.0], "split": "validation"}}  # made up, unused here
Path("models/rules/baseline.json").write_text(json.dumps(rule))
"""
# Scoring once the model is loaded, twice (the first run also pays the runtime's set-up on its first call):
# wall and CPU seconds (all threads) of each run, and peak memory.
TIMED_SCORE = """
import sys, time
from pathlib import Path
from fraudflow.common import peak_memory_mb
from stages import score
card = score.load_card()
predict = score.load_predictor(card)
for _ in range(2):
    wall, cpu = time.perf_counter(), time.process_time()
    rows, _ = score.score(Path(sys.argv[1]), Path(sys.argv[2]), card, load_predict=lambda card: predict)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"scored {rows} rows: {wall:.3f} s wall, {cpu:.3f} s cpu, {peak_memory_mb():.0f} MB")
"""
TIMED = re.compile(r"scored (?P<rows>\d+) rows: (?P<wall>[\d.]+) s wall, (?P<cpu>[\d.]+) s cpu, (?P<mb>\d+) MB")


# A scratch git + DVC repo: its commands' environment, how it is made and how its files are committed.
SCRATCH_ENV = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(Path.home())}
INIT = (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"])


def commit_all(message: str) -> list[list[str]]:
    return [
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message],
    ]


class Project:
    """A scratch git + DVC copy of the project, its data source set by download.url."""

    def __init__(self, root: Path, data: Path, revision: str | None = None):
        """The work tree's project files, or with `revision` those of that revision (git archive)."""
        self.path = root
        if revision:
            root.mkdir(parents=True)
            export_formats.archive(revision, root, PROJECT_FILES)
        for name in [] if revision else PROJECT_FILES:
            source = REPO / name
            copy = shutil.copytree if source.is_dir() else shutil.copy
            copy(source, root / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
        self.env = dict(SCRATCH_ENV)
        self.set_params(**{"download.url": str(data)})
        for command in INIT:
            self.run(command)
        shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")
        for command in commit_all("copy"):
            self.run(command)

    def run(self, command: list[str]) -> tuple[float, str]:
        """Wall seconds and combined output of a command in the project; fails loudly."""
        started = time.perf_counter()
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode:
            sys.exit(f"benchmark: {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return seconds, result.stdout + result.stderr

    def set_params(self, **updates):
        """Keys are dotted paths, 'section.key' or 'networks.baseline.epochs'."""
        path = self.path / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for name, value in updates.items():
            *parents, key = name.split(".")
            node = params
            for parent in parents:
                node = node[parent]
            node[key] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def stages_ran(output: str) -> list[str]:
    return re.findall(r"^Running stage '([\w@]+)'", output, re.M)


def print_table(title: str, header: list[str], rows: list[list], note: str):
    """Prints a table under its title and the sentence `note` saying what it shows; PRINTED keeps the same text."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    PRINTED.append("\n".join([*lines, "", note]))
    print(f"\n{PRINTED[-1]}", flush=True)


def same_work(root: Path, data: Path, epochs: tuple[int, int, int], members: int):
    project = Project(root / "same_work", data)
    project.run(["dvc", "repro", "scale"])
    project.set_params(
        **{"train.patience": max(epochs)},
        **{f"networks.{strategy}.epochs": n for strategy, n in zip(STRATEGIES, epochs, strict=True)},
    )
    trained = {}
    for count in (1, members):
        project.set_params(**{"train.members": count})
        for strategy in STRATEGIES:
            match = TRAINED.search(project.run([sys.executable, "-m", "stages.train", strategy])[1])
            trained[strategy, count] = float(match["seconds"])
    pipeline = {strategy: trained[strategy, 1] for strategy in STRATEGIES}
    rows = [
        [s, n, f"{trained[s, 1]:.1f}", f"{trained[s, members]:.1f}", f"{trained[s, members] / trained[s, 1]:.2f}"]
        for s, n in zip(STRATEGIES, epochs, strict=True)
    ]
    print_table(
        f"1a. Members: 1 against {members} members of each strategy, same fixed epochs (build + fit)",
        ["strategy", "epochs", "1 member s", f"{members} members s", "ratio"],
        rows,
        f"The ratio is {members} members' training time over one member's, each strategy at the same epochs in the "
        "same run; the seconds are this machine's.",
    )
    output = project.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "tutorial_reference.py"),
            "--scaled",
            "data/scaled",
            "--epochs",
            *map(str, epochs),
        ]
    )[1]
    reference = {m["strategy"]: float(m["seconds"]) for m in REFERENCE.finditer(output)}
    rows = [
        [s, n, f"{pipeline[s]:.1f}", f"{reference[s]:.1f}", f"{pipeline[s] / reference[s]:.3f}"]
        for s, n in zip(STRATEGIES, epochs, strict=True)
    ]
    total_pipeline, total_reference = sum(pipeline.values()), sum(reference.values())
    rows.append(
        [
            "all three",
            sum(epochs),
            f"{total_pipeline:.1f}",
            f"{total_reference:.1f}",
            f"{total_pipeline / total_reference:.3f}",
        ]
    )
    print_table(
        "1b. Same work: one model per strategy, fixed epochs, no early stopping (model build + fit)",
        ["strategy", "epochs", "pipeline s", "tutorial code s", "pipeline / tutorial"],
        rows,
        "The last column is the pipeline's time over the tutorial code's for the same epochs on the same data, "
        "measured side by side (below 1: the pipeline is faster); the seconds are this machine's.",
    )
    shutil.rmtree(project.path)


def whole_pipeline(root: Path, data: Path):
    project = Project(root / "whole", data)
    seconds, output = project.run(["dvc", "repro"])
    trained = {m["strategy"]: m["epochs"] for m in TRAINED.finditer(output)}
    members = next(TRAINED.finditer(output))["members"]
    fitting = {m["strategy"]: float(m["seconds"]) for m in FITTED.finditer(output)}
    rows = []
    for m in STAGE_DONE.finditer(output):
        strategy = m["stage"].split()[-1].removeprefix("train_")
        start_up, fit = import_seconds(project, m["stage"]), fitting.get(strategy)
        rest = float(m["wall"]) - start_up - (fit or 0)
        fit_cell = "" if fit is None else f"{fit:.1f}"
        rows.append(
            [m["stage"], m["wall"], f"{start_up:.1f}", fit_cell, f"{rest:.1f}", m["mb"], trained.get(strategy, "")]
        )
    seed = yaml.safe_load((project.path / "params.yaml").read_text())["split"]["seed"]
    reference_seconds, reference_output = project.run(
        [sys.executable, str(REPO / "benchmarks" / "tutorial_reference.py"), "--csv", str(data), "--seed", str(seed)]
    )
    reference_epochs = " / ".join(m["epochs"] for m in REFERENCE.finditer(reference_output))
    totals = [f"{sum(float(row[i] or 0) for row in rows):.1f}" for i in (1, 2, 3, 4)]
    rows.append(["sum of the stages", *totals, "", ""])

    def whole(label: str, value: str, epochs: str = "") -> list[str]:  # a row of one figure, and the epochs
        return [label, value, "", "", "", "", epochs]

    rows.append(whole("DVC between the stages", f"{seconds - float(totals[0]):.1f}"))
    rows.append(whole("**dvc repro, from scratch**", f"{seconds:.1f}", " / ".join(trained.values())))
    rows.append(
        whole(f"tutorial script, whole (same split, seed {seed})", f"{reference_seconds:.1f}", reference_epochs)
    )
    rows.append(whole("**pipeline / tutorial**", f"{seconds / reference_seconds:.3f}"))
    print_table(
        f"2. Whole pipeline from scratch, default params ({members} members; epochs: {' / '.join(trained)})",
        ["stage", "wall s", "start-up s", "fitting s", "the rest s", "peak MB", "epochs"],
        rows,
        "The pipeline / tutorial row is the whole `dvc repro` from scratch over the whole tutorial script on the same "
        "split, run one after the other; the rows above are each stage's wall time and peak memory on this machine. "
        "Start-up: a fresh interpreter importing the stage's module and the libraries it loads (TensorFlow for the "
        "networks), timed after the run; fitting: the members' training as the networks' and the trees' stages log it "
        "(networks: every epoch with its validation scoring; trees: every member's fit); the rest: everything else, "
        "the other stages' fitting included. A stage's wall time counts from its process's start as Linux records it, "
        "on a clock whose origin is rounded down to the second, so each stage's wall and start-up times are long by "
        "the same fraction of a second, and DVC between the stages (the whole repro's time less the stages' own) is "
        "short by that fraction times the number of stages.",
    )

    noop_seconds, noop_output = project.run(["dvc", "repro"])
    one_stage = one_stage_noop(root / "one_stage")
    print_table(
        "3. No-op dvc repro",
        ["project", "wall s", "stages run"],
        [
            ["this pipeline", f"{noop_seconds:.2f}", len(stages_ran(noop_output))],
            ["a one-stage DVC project", f"{one_stage:.2f}", 0],
            ["**this pipeline / one stage**", f"{noop_seconds / one_stage:.2f}", ""],
        ],
        "The time `dvc repro` takes right after the run above, when nothing changed, and how many stages it ran; "
        "beside it, the same in a git + DVC project of one stage (one small output), made in the same run: what DVC "
        "alone costs.",
    )

    steps = yaml.safe_load((project.path / "params.yaml").read_text())["networks"]["resampled"]["steps_per_epoch"]
    project.set_params(**{"networks.resampled.steps_per_epoch": steps + 1})
    incremental_seconds, incremental_output = project.run(["dvc", "repro"])
    print_table(
        f"4. Incremental: networks.resampled.steps_per_epoch {steps} -> {steps + 1}",
        ["wall s", "stages run"],
        [[f"{incremental_seconds:.1f}", ", ".join(stages_ran(incremental_output))]],
        "The stages one changed network param reruns, and the time they take.",
    )
    shutil.rmtree(project.path)


def import_seconds(project: Project, stage: str) -> float:
    """Seconds from a fresh interpreter's start until it has imported the module of a stage (its name as it logs
    it: 'train baseline' is stages.train) and, with it, the libraries the module loads: counted as the stage counts
    its wall time (fraudflow.common.run), its exit left out."""
    module = "stages." + ("train" if stage.startswith("train ") else stage)
    since_start = "import time, psutil; print('imported after', time.time() - psutil.Process().create_time())"
    _, output = project.run([sys.executable, "-c", f"import {module}; {since_start}"])
    return float(re.search(r"^imported after ([\d.]+)$", output, re.M)[1])


def one_stage_noop(root: Path) -> float:
    """A no-op `dvc repro` of a git + DVC project with one stage writing one small file, after its first run."""
    root.mkdir()
    stage = {"stages": {"one": {"cmd": "python -c \"open('out.txt', 'w').write('1')\"", "outs": ["out.txt"]}}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(stage))
    # the stage committed, its results not: as in the pipeline's project (Project)
    for command in (*INIT, *commit_all("one stage"), ["dvc", "repro"]):
        subprocess.run(command, cwd=root, env=SCRATCH_ENV, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=root, env=SCRATCH_ENV, check=True, capture_output=True)
    return time.perf_counter() - started


def grown_copy(data: Path, factor: int, directory: Path) -> Path:
    """`factor` times the rows, drawn with replacement from the real rows (seeded)."""
    table = pacsv.read_csv(data)
    rows = np.random.default_rng(factor).integers(0, table.num_rows, factor * table.num_rows)
    path = directory / f"creditcard_x{factor}.csv"
    pacsv.write_csv(table.take(rows), path)
    return path


def growth(root: Path, data: Path, factors: list[int]):
    rows = []
    for factor in factors:
        source = data if factor == 1 else grown_copy(data, factor, root)
        project = Project(root / f"growth_x{factor}", source)
        project.set_params(**{"download.sha256": ""}, **{f"networks.{s}.epochs": 1 for s in STRATEGIES})
        _, output = project.run(["dvc", "repro", *(f"train@{s}" for s in STRATEGIES)])
        for match in STAGE_DONE.finditer(output):
            rows.append([f"{factor}x", match["stage"], match["wall"], match["mb"]])
        shutil.rmtree(project.path)
        if source != data:
            source.unlink()
    print_table(
        "5. Growth: data stages and one epoch of each strategy",
        ["data", "stage", "wall s", "peak MB"],
        rows,
        "Each stage's wall time and peak memory on each size of data (rows drawn from the real rows): read a stage "
        "down the sizes for how its time and memory grow with the rows.",
    )


def repeated_csv(source: Path, times: int, destination: Path):
    """The CSV's data rows `times` times over under its header, copied as bytes (memory does not grow)."""
    with source.open("rb") as file:
        header = file.readline()
        body = file.tell()
    with destination.open("wb") as out:
        out.write(header)
        for _ in range(times):
            with source.open("rb") as file:
                file.seek(body)
                shutil.copyfileobj(file, out, 1 << 24)


def scoring(root: Path, data: Path):
    project = Project(root / "score", data)
    project.run(["dvc", "repro", "scale"])
    (project.path / "models" / "baseline").mkdir(parents=True)
    project.set_params(**{"export.strategy": "baseline"})  # the strategy RANDOM_MEMBERS makes
    project.run([sys.executable, "-c", RANDOM_MEMBERS])
    project.run([sys.executable, "-m", "stages.export"])
    raw = project.path / "data" / "raw" / "table.csv"
    repeated = root / "creditcard_x16.csv"
    repeated_csv(raw, 16, repeated)
    rows = []
    for label, source, output in [
        ("1x CSV -> CSV", raw, "scores.csv"),
        ("1x CSV -> Parquet", raw, "scores.parquet"),
        ("16x CSV -> CSV", repeated, "scores.csv"),
    ]:
        destination = root / output
        seconds, output_text = project.run([sys.executable, "-m", "stages.score", str(source), str(destination)])
        done = DONE.search(output_text)
        timed = list(TIMED.finditer(project.run([sys.executable, "-c", TIMED_SCORE, str(source), str(destination)])[1]))
        runs = [f"{t['wall']} / {t['cpu']} / {int(t['rows']) / float(t['wall']):,.0f}" for t in timed]
        rows.append([label, f"{int(timed[0]['rows']):,}", f"{seconds:.1f}", done["mb"], *runs, timed[-1]["mb"]])
        destination.unlink()
    repeated.unlink()
    print_table(
        "6. Scoring: python -m stages.score (5 members); then the same scoring timed twice once the model is loaded",
        [
            "input -> output",
            "rows",
            "command wall s",
            "command peak MB",
            "loaded, 1st run: wall s / cpu s / rows/s",
            "2nd run",
            "peak MB",
        ],
        rows,
        "The rows per second scored once the model is loaded (the 2nd run is the steady state), and the whole "
        "command's wall time and peak memory, on this machine.",
    )
    shutil.rmtree(project.path)


# Part 7: (label, environment on top of the pins). TF_NUM_*_THREADS=0 is TensorFlow's own default: the machine's cores.
PIN_SETTINGS = [
    ("pinned (fraudflow/__init__.py)", {}),
    ("pinned, again", {}),
    (
        "threads from the machine (TF_NUM_INTRAOP/INTEROP_THREADS=0)",
        {"TF_NUM_INTRAOP_THREADS": "0", "TF_NUM_INTEROP_THREADS": "0"},
    ),
    ("intra-op threads 1", {"TF_NUM_INTRAOP_THREADS": "1"}),
    ("intra-op threads 4", {"TF_NUM_INTRAOP_THREADS": "4"}),
    ("inter-op threads 1", {"TF_NUM_INTEROP_THREADS": "1"}),
    ("oneDNN capped at SSE4.1 (ONEDNN_MAX_CPU_ISA=SSE41)", {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    ("oneDNN uncapped (ONEDNN_MAX_CPU_ISA=ALL)", {"ONEDNN_MAX_CPU_ISA": "ALL"}),
    ("oneDNN graph rewrites on (TF_ENABLE_ONEDNN_OPTS=1)", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("XLA auto-clustering (TF_XLA_FLAGS)", {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}),
    ("op determinism (TF_DETERMINISTIC_OPS=1)", {"TF_DETERMINISTIC_OPS": "1"}),
    ("numpy's AVX-512 loops allowed (NPY_DISABLE_CPU_FEATURES empty)", {"NPY_DISABLE_CPU_FEATURES": ""}),
]


def pins(root: Path, data: Path, members: int = 2, epochs: int = 5):
    """Train `members` baseline members for `epochs` epochs (no early stopping) under each of PIN_SETTINGS."""
    project = Project(root / "pins", data)
    project.run(["dvc", "repro", "scale"])
    project.set_params(**{"train.members": members, "train.patience": epochs, "networks.baseline.epochs": epochs})
    predictions = project.path / "data" / "predictions" / "baseline.parquet"
    pinned, rows = None, []
    environment = project.env
    for label, overrides in PIN_SETTINGS:
        project.env = {**environment, **overrides}
        output = project.run([sys.executable, "-m", "stages.train", "baseline"])[1]
        digest = hashlib.md5(predictions.read_bytes()).hexdigest()
        pinned = pinned or digest
        bytes_ = "same" if digest == pinned else "different"
        rows.append([label, f"{digest[:10]} ({bytes_})", TRAINED.search(output)["seconds"]])
    project.env = environment
    print_table(
        f"7. Pins: {members} baseline members, {epochs} epochs, one setting changed at a time (md5 of the predictions)",
        ["setting", "predictions md5", "training s"],
        rows,
        "Whether each setting changes the bytes of the predictions against the pinned run (same or different), and "
        "the training time under it.",
    )
    shutil.rmtree(project.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="creditcard.csv or .csv.gz (every part but limits reads it)")
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=TUTORIAL_EPOCHS,
        metavar=("B", "W", "R"),
        help="same-work epochs per strategy (default: where the tutorial stopped, %(default)s)",
    )
    parser.add_argument("--members", type=int, default=5, help="members against 1 in part 1a (default %(default)s)")
    parser.add_argument("--growth", type=int, nargs="*", default=[1, 4, 16], help="data size factors (none: skip)")
    parser.add_argument(
        "--scale", type=int, nargs="*", default=[1, 4, 16, 64], help="part 8 and 10's factors (none: skip)"
    )
    parser.add_argument(
        "--only",
        choices=["pipeline", "score", "pins", "scale", "limits", "gbdt", "export", "reasons", "spark"],
        help="run only part 2-4, 6, 7, 8-10, 11, 12, 13 or 14 (replaces its section of benchmarks/results.md only); "
        "limits: derive 10c again from the tables of section 8-10, measuring nothing",
    )
    args = parser.parse_args()
    if args.only != "limits" and not (args.data and args.data.is_file()):
        sys.exit(f"benchmark: --data {args.data or ''}: no such file (every part but limits reads it)")
    data = args.data.resolve() if args.data else None
    command = ["python", str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]
    with tempfile.TemporaryDirectory(prefix="fraudflow-bench-") as scratch:
        root = Path(scratch)
        parts = [  # (--only name, its section's title in RESULTS, run it or None: skipped); RESULTS keeps this order
            (
                None,
                "1. Training against the tutorial's code",
                lambda: same_work(root, data, tuple(args.epochs), args.members),
            ),
            ("pipeline", "2-4. The whole pipeline against the tutorial's script", lambda: whole_pipeline(root, data)),
            (None, "5. Growth", (lambda: growth(root, data, args.growth)) if args.growth else None),
            ("score", "6. Scoring", lambda: scoring(root, data)),
            ("pins", "7. Pins", lambda: pins(root, data)),
            (
                "scale",
                SCALE_TITLE,
                (lambda: data_scale.scale(root, data, args.scale, Project, print_table)) if args.scale else None,
            ),
            (
                "gbdt",
                "11. Gradient-boosted-tree libraries",
                lambda: gbdt_libraries.compare(root, data, Project, print_table),
            ),
            (
                "export",
                "12. The export format, and the exported model against evaluate",
                lambda: export_formats.formats(root, data, Project, print_table),
            ),
            (
                "reasons",
                "13. Reason codes",
                lambda: reasons.methods_and_scoring(root, data, Project, print_table),
            ),
            (
                "spark",
                "14. Scoring on Spark",
                lambda: spark_scoring.compare(root, data, Project, print_table, RANDOM_MEMBERS),
            ),
        ]
        titles = [t for _, t, _ in parts]
        for only, title, run in parts:
            if args.only in (None, only) and run:
                PRINTED.clear()
                measured = results.provenance(REPO, MEASURED, command)
                run()
                results.update(RESULTS, titles, title, "\n\n".join([measured, *PRINTED]))
            if title == SCALE_TITLE and (args.only == "limits" or (args.only in (None, "scale") and run)):
                derive_limits(titles, command)


def derive_limits(titles: list[str], command: list[str]):
    """Part 10c from the tables of section 8-10 as benchmarks/results.md holds them: that section again, its 10c
    replaced."""
    section = results.sections(RESULTS.read_text()).get(SCALE_TITLE)
    if section is None:
        sys.exit(f"benchmark: {RESULTS.name} has no section '{SCALE_TITLE}' to derive 10c from: run --only scale")
    measured = section.split("\n### 10c.")[0].strip()
    PRINTED.clear()
    data_scale.limits(measured, print_table, results.derivation(REPO, MEASURED, command))
    results.update(RESULTS, titles, SCALE_TITLE, "\n\n".join([measured, *PRINTED]))


if __name__ == "__main__":
    main()
