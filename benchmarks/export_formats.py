"""Benchmark part 12 (benchmarks/benchmark.py --only export): the exported model's format, chosen by measurement,
and scoring with it beside the Keras export it replaced, in one run.

12a. Candidates on the real data's trained models (a whole `dvc repro` in a scratch copy), each scoring the
284,807 rows of features the test split's scaled rows make when repeated, on 2 threads, timed twice (the second
run reported): for the gradient-boosted trees, scikit-learn's predict_proba on the pickles (the reference: what
evaluate scores, not a format to hand to a serving stack), the trees as TensorFlow ops (a vectorised traversal of
every tree at once: the candidate that would keep one Keras/SavedModel format) and ONNX's TreeEnsemble run by ONNX
Runtime (fraudflow/onnx_graph.py); for the baseline network's members, Keras and the ONNX graph. Each: seconds, the
largest difference from the reference's probabilities, and the bytes of the model's numbers or file.

12b. `python -m stages.score` on the raw CSV (284,807 rows) with export.strategy baseline, gbdt and blend (ONNX),
and with the baseline export of KERAS_REVISION, the last revision whose export wrote a Keras model (its own scratch
project from `git archive`): wall seconds and peak memory of each command.

12c. train_gbdt's memory at 64x the rows (benchmarks/data_scale.py's data) with train.negative_rate 0.1: `dvc repro
train_gbdt`, each stage's wall seconds and peak memory.

12d. Exactness, in 12a's project: every evaluated strategy exported (`dvc repro export`), the real test split's raw
rows (fraudflow/raw_rows.py) scored by `python -m stages.score`, against evaluate: the largest difference from
evaluate's calibrated ensemble probabilities, and the rows flagged (and positives among them) against the counts
in metrics/test/<strategy>.json (value_rule, or chosen without a cost column). The target: within 1e-6, the same.
"""

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import data_scale

KERAS_REVISION = "7d12e46"  # the last revision whose export wrote models/export/model.keras
ROWS = 284_807
DONE = data_scale.DONE  # a command's last log line: its wall time and peak memory
# 12d, run in the project: the raw test rows written to sys.argv[1]; the strategies evaluated.
TEST_ROWS = """
import json, sys
from fraudflow.strategies import evaluated
from fraudflow.raw_rows import raw_rows
raw_rows("test").to_csv(sys.argv[1], index=False)
print("result", json.dumps([s.name for s in evaluated()]))
"""
# 12d: strategy sys.argv[1]'s scores (sys.argv[2]) against evaluate's probabilities and counts.
AGAINST_EVALUATE = """
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
from fraudflow.predictions import MemberColumns
strategy, scores = sys.argv[1], pd.read_csv(sys.argv[2])
rule = json.loads(Path(f"models/rules/{strategy}.json").read_text())
test = MemberColumns(strategy, "test", rule["calibration_logit_shift"]).read_all()
metrics = json.loads(Path(f"metrics/test/{strategy}.json").read_text())
counts = metrics.get("value_rule") or metrics["chosen"]
flagged = scores["flagged"].to_numpy() == 1
result = {
    "difference": float(np.abs(scores["probability"].to_numpy() - test.calibrated.value()).max()),
    "exported": [int(flagged.sum()), int(flagged[test.labels == 1].sum())],
    "evaluate": [int(counts["tp"]["ensemble"] + counts["fp"]["ensemble"]), int(counts["tp"]["ensemble"])],
}
print("result", json.dumps(result))
"""
RESULT = re.compile(r"^result (.*)$", re.M)
CANDIDATES = r"""
import json, pickle, sys, time
from pathlib import Path
import fraudflow  # the pins
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper
from fraudflow import onnx_graph
from fraudflow.common import quiet_tensorflow
from fraudflow import fitted

with quiet_tensorflow():
    import keras
    import tensorflow as tf

ROWS = int(sys.argv[1])
test = np.load("data/scaled/test_features.npy")
x = np.resize(test, (ROWS, test.shape[1]))
results = []


def timed(predict):
    predict()  # first run: set-up, allocation
    started = time.perf_counter()
    out = predict()
    return time.perf_counter() - started, np.asarray(out, np.float64)


def onnx_session(g, probabilities, count):
    graph = helper.make_graph(
        [*g.nodes, helper.make_node("Identity", [probabilities], ["p"])], "candidate",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, x.shape[1]])],
        [helper.make_tensor_value_info("p", TensorProto.DOUBLE, [None, count])], initializer=g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in onnx_graph.OPSETS.items()])
    model.ir_version = onnx_graph.IR_VERSION
    data = model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 2
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return (lambda: session.run(None, {"features": x})[0]), len(data)


# the trees: scikit-learn (reference), TensorFlow ops, ONNX
members = [pickle.loads(p.read_bytes()) for p in fitted.member_files("gbdt", "pkl")]
seconds, reference = timed(lambda: np.stack([m.predict_proba(x)[:, 1] for m in members], axis=1))
pickles = sum(p.stat().st_size for p in fitted.member_files("gbdt", "pkl"))
results.append(["trees", "scikit-learn predict_proba (pickles)", seconds, 0.0, pickles])

tables = fitted.tree_tables("gbdt")
arrays, roots, offset = {k: [] for k in ("feature", "threshold", "left", "right", "value")}, [], 0
for member in tables:
    for nodes in member["trees"]:  # every tree's nodes in one set of arrays; a leaf's children are itself
        leaf, index = nodes["is_leaf"].astype(bool), np.arange(len(nodes["is_leaf"]))
        arrays["feature"].append(np.where(leaf, 0, nodes["feature"]))
        arrays["threshold"].append(np.where(leaf, np.inf, nodes["threshold"]))
        arrays["left"].append(offset + np.where(leaf, index, nodes["left"]))
        arrays["right"].append(offset + np.where(leaf, index, nodes["right"]))
        arrays["value"].append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        offset += len(leaf)
arrays = {k: np.concatenate(v) for k, v in arrays.items()}
steps = max(int(predictor.nodes["depth"].max()) for m in members for (predictor,) in m._predictors)
trees_of = np.repeat(np.arange(len(tables)), [len(m["trees"]) for m in tables])
constants = {k: tf.constant(v) for k, v in arrays.items()}
root_tensor, segments = tf.constant(np.array(roots, np.int64)), tf.constant(trees_of)
baselines = tf.constant([m["baseline"] for m in tables], tf.float64)


@tf.function(input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32)])
def traverse(block):
    features = tf.cast(block, tf.float64)
    node = tf.broadcast_to(root_tensor[None, :], [tf.shape(block)[0], len(roots)])
    for _ in range(steps):  # every tree at once, one level a step; a leaf's children are itself
        value = tf.gather(features, tf.gather(constants["feature"], node), batch_dims=1)
        go_left = value <= tf.gather(constants["threshold"], node)
        node = tf.where(go_left, tf.gather(constants["left"], node), tf.gather(constants["right"], node))
    raw = tf.transpose(tf.math.segment_sum(tf.transpose(tf.gather(constants["value"], node)), segments))
    return tf.sigmoid(raw + baselines)


def tensorflow_trees():
    return np.concatenate([traverse(tf.constant(x[i : i + 16384])).numpy() for i in range(0, ROWS, 16384)])


seconds, out = timed(tensorflow_trees)
difference, size = float(np.abs(out - reference).max()), sum(v.nbytes for v in arrays.values())
results.append(["trees", f"TensorFlow ops (traversal, {steps} levels)", seconds, difference, size])

g = onnx_graph.Graph()
run, size = onnx_session(g, onnx_graph.tree_members(g, "features", tables), len(tables))
seconds, out = timed(run)
results.append(["trees", "ONNX TreeEnsemble (ONNX Runtime)", seconds, float(np.abs(out - reference).max()), size])

# the baseline network's members: Keras (reference), ONNX
files = fitted.member_files("baseline", "keras")
networks = [keras.saving.load_model(p) for p in files]
seconds, reference = timed(lambda: np.concatenate([m.predict(x, batch_size=16384, verbose=0) for m in networks], 1))
results.append(["baseline network", "Keras (TensorFlow)", seconds, 0.0, sum(p.stat().st_size for p in files)])
g = onnx_graph.Graph()
run, size = onnx_session(g, onnx_graph.network_members(g, "features", [m.get_weights() for m in networks]), len(files))
seconds, out = timed(run)
results.append(["baseline network", "ONNX (ONNX Runtime)", seconds, float(np.abs(out - reference).max()), size])
print(json.dumps(results))
"""


def formats(root: Path, data: Path, project_class, print_table):
    """Part 12: the candidates (12a), scoring side by side with the Keras export (12b), the trees at 64x (12c)."""
    project = project_class(root / "export", data)
    project.run(["dvc", "repro"])
    output = project.run(["python", "-c", CANDIDATES, str(ROWS)])[1]
    results = json.loads(output.strip().splitlines()[-1])
    rows = [[model, candidate, f"{s:.2f}", f"{d:.1e}", f"{b / 1e6:.2f}"] for model, candidate, s, d, b in results]
    print_table(
        f"12a. Export format candidates: {ROWS:,} rows of scaled features, 2 threads (second run)",
        ["model", "candidate", "seconds", "largest difference from the first", "MB"],
        rows,
        "Each candidate's scoring time, side by side with the others on the same rows, and its largest difference "
        "from the probabilities of the same model's first candidate (the reference).",
    )
    raw = project.path / "data" / "raw" / "table.csv"
    rows = []
    for strategy in ("baseline", "gbdt", "blend"):
        project.set_params(**{"export.strategy": strategy})
        project.run(["dvc", "repro", "export"])
        rows.append([f"{strategy} (ONNX, this revision)", *score(project, raw)])
    keras = project_class(root / "keras_export", data, revision=KERAS_REVISION)
    keras.run(["dvc", "repro", "export"])
    rows.append([f"baseline (Keras, {KERAS_REVISION})", *score(keras, keras.path / "data" / "raw" / "table.csv")])
    print_table(
        f"12b. python -m stages.score on the raw CSV ({ROWS:,} rows -> CSV), side by side",
        ["exported model", "wall s", "peak MB"],
        rows,
        "The scoring command's wall time and peak memory with each exported model, the ONNX exports of this revision "
        "beside the Keras export they replaced, one after the other.",
    )
    exact = exactness(project, root)
    shutil.rmtree(project.path)
    shutil.rmtree(keras.path)
    trees_at_scale(root, data, project_class, print_table)
    print_table(
        "12d. Exactness: each strategy's exported model on the raw test rows (python -m stages.score) against evaluate",
        ["strategy", "max abs difference", "flagged rows (exported / evaluate)", "same flagged rows"],
        exact,
        "How far the exported model's probabilities are from evaluate's calibrated ensemble's on the same rows (the "
        "target: within 1e-6), and whether it flags as many rows, and as many positives, as evaluate counted.",
    )


def exactness(project, root: Path) -> list[list]:
    """Part 12d's rows: every evaluated strategy exported in turn, its raw test rows scored, against evaluate."""
    rows_file, scores_file = root / "test_rows.csv", root / "test_scores.csv"
    strategies = json.loads(RESULT.search(project.run(["python", "-c", TEST_ROWS, str(rows_file)])[1])[1])
    rows = []
    for strategy in strategies:
        project.set_params(**{"export.strategy": strategy})
        project.run(["dvc", "repro", "export"])
        project.run(["python", "-m", "stages.score", str(rows_file), str(scores_file)])
        output = project.run(["python", "-c", AGAINST_EVALUATE, strategy, str(scores_file)])[1]
        r = json.loads(RESULT.search(output)[1])
        counts = [f"{flagged:,} ({positives:,} positive)" for flagged, positives in (r["exported"], r["evaluate"])]
        rows.append(
            [strategy, f"{r['difference']:.1e}", " / ".join(counts), "yes" if r["exported"] == r["evaluate"] else "no"]
        )
    rows_file.unlink()
    scores_file.unlink()
    return rows


def trees_at_scale(root: Path, data: Path, project_class, print_table, factor: int = 64, rate: float = 0.1):
    """Part 12c: the stages up to train_gbdt on `factor` times the rows at negative rate `rate`."""
    csv_path, folder, rows = data_scale.make_data(data, factor, root)
    shutil.rmtree(folder)
    project = project_class(root / "trees_at_scale", csv_path)
    project.set_params(**{"download.sha256": "", "train.negative_rate": rate})
    output = project.run(["dvc", "repro", "train_gbdt"])[1]
    stages = [[m["stage"], m["wall"], m["mb"]] for m in data_scale.STAGE_DONE.finditer(output)]
    print_table(
        f"12c. train_gbdt at {factor}x ({rows:,} rows), train.negative_rate {rate}",
        ["stage", "wall s", "peak MB"],
        stages,
        "Each stage's wall time and peak memory up to train_gbdt on the large data, train_gbdt's peak last.",
    )
    shutil.rmtree(project.path)
    csv_path.unlink()


def score(project, source: Path) -> list[str]:
    """Wall seconds and peak MB of `python -m stages.score` on the source."""
    with tempfile.TemporaryDirectory() as scratch:
        output = project.run(["python", "-m", "stages.score", str(source), f"{scratch}/scores.csv"])[1]
    done = DONE.search(output)
    return [done["wall"], done["mb"]]


def archive(revision: str, destination: Path, names: list[str]):
    """The named files of a revision of this repository, written into destination (git archive)."""
    repository = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryFile() as packed:
        subprocess.run(["git", "archive", revision, *names], cwd=repository, stdout=packed, check=True)
        packed.seek(0)
        with tarfile.open(fileobj=packed) as tar:
            tar.extractall(destination, filter="data")
