"""Benchmark part 13 (benchmarks/benchmark.py --only reasons): reason codes, their method chosen by measurement, and
their cost, in one run on the real data's trained models (a whole `dvc repro` in a scratch copy).

13a. Methods side by side on the test split's scaled rows, per model kind (the gradient-boosted trees, logistic
regression, the baseline network): the project's (fraudflow/onnx_reasons.py: path attribution for trees, exact
integrated gradients for networks, coefficient x difference for the regression, run by ONNX Runtime), occlusion
(each feature set to the reference, the training mean, one at a time: the logit's drop, by the models' own
libraries) and exact SHAP values where a model has them (trees: TreeSHAP, path-dependent, by the `shap` package
when installed, `pip install shap`; logistic regression: its closed form). For each: how far a row's contributions
are from adding up to its members' mean logit minus the method's reference (median and largest) and to the logit of
the members' mean probability (what the exported model returns; median), agreement with
the exact SHAP values (the mean over rows of their correlation, and the share of rows whose 3 largest
contributions are the same columns), and seconds per 100,000 rows. SHAP is timed on SHAP_ROWS rows and scaled.

13b. `python -m stages.score` on the raw CSV (284,807 rows -> CSV) with and without `--reasons 3`, for the
strategies in SCORED, one after the other: wall seconds, peak memory and the ratio (the target: at most 5x).
"""

import json
import re
import tempfile
from pathlib import Path

import data_scale

SHAP_ROWS = 2000
SCORED = ("gbdt", "logistic", "baseline", "blend")
DONE = data_scale.DONE  # a command's last log line: its wall time and peak memory
RESULT = re.compile(r"^result (.*)$", re.M)
METHODS = r"""
import json, pickle, time
import numpy as np
import fraudflow  # the pins
from fraudflow import fitted
from fraudflow.common import load_preprocessing
from fraudflow.strategies import REGISTRY
from stages.explain import FEATURES, explainer

SHAP_ROWS = int(__import__("sys").argv[1])
prep = load_preprocessing()
means = np.array(json.load(open("data/profile/profile.json"))["feature_means"])
x = np.load("data/scaled/test_features.npy").astype(np.float64)
n, d = x.shape


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def ours(strategy):
    # the project's contributions and reference logit (without the calibration shift), features in
    explain, reference = explainer(strategy, prep, means)
    explain({FEATURES: x[:100]})  # warm up
    found, seconds = timed(lambda: explain({FEATURES: x}))
    return found, reference, seconds


def member_logits(strategy):
    # each member's logit, (rows, members), by the models' own libraries
    data, _ = fitted.member_data(strategy, d)
    kind = REGISTRY[strategy].kind
    if kind == "trees":
        members = [pickle.loads(path.read_bytes()) for path in fitted.member_files(strategy, "pkl")]
        return lambda rows: np.stack([m.decision_function(rows) for m in members], axis=1)
    if kind == "logistic":
        coefficients, intercept = data
        return lambda rows: (rows @ coefficients + intercept)[:, None]
    return lambda rows: np.stack([np.maximum(rows @ w[0] + w[1], 0) @ w[2][:, 0] + w[3][0] for w in data], axis=1)


def occlusion(logit):
    def run():
        at_row, found = logit(x), np.empty((n, d))
        for column in range(d):
            changed = x.copy()
            changed[:, column] = means[column]
            found[:, column] = at_row - logit(changed)
        return found
    found, seconds = timed(run)
    return found, float(logit(means[None, :])[0]), seconds


def exact_shap(strategy):
    kind = REGISTRY[strategy].kind
    if kind == "logistic":
        coefficients, intercept = fitted.member_data(strategy, d)[0]
        found, seconds = timed(lambda: coefficients * (x - means))
        return found, float(means @ coefficients + intercept), seconds, n
    if kind != "trees":
        return None
    try:
        import shap
    except ImportError:
        return None
    members = [pickle.loads(path.read_bytes()) for path in fitted.member_files(strategy, "pkl")]
    def run():
        explainers = [shap.TreeExplainer(m) for m in members]
        values = np.mean([e.shap_values(x[:SHAP_ROWS]) for e in explainers], axis=0)
        return values, float(np.mean([np.ravel(e.expected_value)[0] for e in explainers]))
    (found, reference), seconds = timed(run)
    return found, reference, seconds, SHAP_ROWS


def agreement(found, exact):
    rows = len(exact)
    a, b = found[:rows], exact
    a0, b0 = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    correlation = (a0 * b0).sum(axis=1) / np.sqrt((a0 ** 2).sum(axis=1) * (b0 ** 2).sum(axis=1))
    top = lambda v: np.sort(np.argsort(-v, axis=1, kind="stable")[:, :3], axis=1)
    return float(np.nanmean(correlation)), float((top(a) == top(b)).all(axis=1).mean())


result = []
for strategy in ("gbdt", "logistic", "baseline"):
    members = member_logits(strategy)
    logit = lambda rows: members(rows).mean(axis=1)
    at_rows = members(x)
    target = at_rows.mean(axis=1)
    mean_probability = (1 / (1 + np.exp(-at_rows))).mean(axis=1)  # what the exported model averages
    final = np.log(mean_probability) - np.log1p(-mean_probability)
    exact = exact_shap(strategy)
    methods = {"project's": ours(strategy), "occlusion": occlusion(logit)}
    if exact:
        methods["exact SHAP"] = exact[:3]
    for method, (found, reference, seconds) in methods.items():
        rows = exact[3] if method == "exact SHAP" else n
        gap = np.abs(found.sum(axis=1) + reference - target[:rows])
        final_gap = np.abs(found.sum(axis=1) + reference - final[:rows])
        agree = agreement(found, exact[0]) if exact else (None, None)
        gaps = [float(np.median(gap)), float(gap.max()), float(np.median(final_gap))]
        result.append([strategy, method, *gaps, *agree, seconds / rows * 1e5])
print("result", json.dumps(result))
"""


def methods_and_scoring(root: Path, data: Path, project_class, print_table):
    """Part 13: the methods (13a), then scoring with and without reasons (13b)."""
    project = project_class(root / "reasons", data)
    project.run(["dvc", "repro"])
    rows = json.loads(RESULT.search(project.run(["python", "-c", METHODS, str(SHAP_ROWS)])[1])[1])
    print_table(
        "13a. Reason-code methods on the test split's 56,961 rows (exact SHAP for trees on the first "
        f"{SHAP_ROWS:,}), 2 threads",
        [
            "model",
            "method",
            "sum - (members' mean logit - reference): median",
            "largest",
            "sum - (final probability's logit - reference): median",
            "correlation with exact SHAP",
            "same top 3 as exact SHAP",
            "seconds per 100,000 rows",
        ],
        [
            [
                model,
                method,
                f"{median:.1e}",
                f"{largest:.1e}",
                f"{final:.2f}",
                cell(corr, ".3f"),
                cell(same, ".1%"),
                f"{per:.2f}",
            ]
            for model, method, median, largest, final, corr, same, per in rows
        ],
        "How far each method's contributions are from adding up to the members' mean logit minus its reference (and "
        "to the logit of the members' mean probability, what the exported model gives), "
        "how well they agree with exact SHAP values where a model has them ('-': none), and their time. Occlusion "
        "and SHAP run in the models' own libraries; the project's method runs in ONNX Runtime.",
    )
    raw = project.path / "data" / "raw" / "table.csv"
    scoring = []
    for strategy in SCORED:
        project.set_params(**{"export.strategy": strategy})
        project.run(["dvc", "repro", "export"])
        plain, reasons = (score(project, raw, extra) for extra in ([], ["--reasons", "3"]))
        scoring.append([strategy, *plain, *reasons, f"{float(reasons[0]) / float(plain[0]):.2f}"])
    print_table(
        "13b. python -m stages.score on the raw CSV (284,807 rows -> CSV) with and without --reasons 3",
        ["exported strategy", "wall s", "peak MB", "with --reasons 3: wall s", "peak MB", "ratio (target <= 5)"],
        scoring,
        "The scoring command's wall time and peak memory without and with three reason codes per row, one after "
        "the other, per exported strategy.",
    )


def cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def score(project, source: Path, extra: list[str]) -> list[str]:
    """Wall seconds and peak MB of `python -m stages.score` on the source."""
    with tempfile.TemporaryDirectory() as scratch:
        output = project.run(["python", "-m", "stages.score", str(source), f"{scratch}/scores.csv", *extra])[1]
    done = DONE.search(output)
    return [done["wall"], done["mb"]]
