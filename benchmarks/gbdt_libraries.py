"""Benchmark part 11 (benchmarks/benchmark.py --only gbdt): the gradient-boosted-tree libraries train_gbdt was chosen
from, on the real data's scaled splits: scikit-learn's HistGradientBoostingClassifier, LightGBM and XGBoost (the
last two where installed: `pip install lightgbm xgboost`).

Each library fits `SEEDS` models with the same settings (learning rate 0.1, up to 1,000 trees of at most 31 leaves,
80 % of the features per tree or split, an L2 penalty of 10 on the leaf values, early stopping after 50 rounds
without a better validation average precision), each in its own process with 2 threads: validation AP (what the
choice may look at), the test AP of the seeds' ensemble, seconds per model, trees, and whether a second fit of
seed 0 gives the same bytes. Without the L2 penalty (scikit-learn's and LightGBM's default is none, XGBoost's 1)
the first two diverge on this data: a leaf of almost only legitimate rows has a hessian sum near 0, so its Newton
step is huge (measured: validation AP 0.12 and 0.74, LightGBM's best iteration its first).
"""

import json
import subprocess
import sys
from pathlib import Path

SEEDS = 5
FIT = r"""
import json, sys, time
import numpy as np
from sklearn.metrics import average_precision_score

library = sys.argv[1]
x, y = np.load("data/scaled/train_features.npy"), np.load("data/scaled/train_labels.npy")
xv, yv = np.load("data/scaled/val_features.npy"), np.load("data/scaled/val_labels.npy")
xt, yt = np.load("data/scaled/test_features.npy"), np.load("data/scaled/test_labels.npy")


def fit(seed):
    if library == "scikit-learn":
        from sklearn.ensemble import HistGradientBoostingClassifier
        model = HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=1000, max_leaf_nodes=31, max_features=0.8, early_stopping=True,
            scoring="average_precision", n_iter_no_change=50, l2_regularization=10.0, random_state=seed)
        model.fit(x, y, X_val=xv, y_val=yv)
        return model, model.n_iter_
    if library == "lightgbm":
        import lightgbm
        model = lightgbm.LGBMClassifier(
            n_estimators=1000, learning_rate=0.1, num_leaves=31, colsample_bytree=0.8, random_state=seed,
            n_jobs=2, deterministic=True, force_row_wise=True, reg_lambda=10.0, verbose=-1)
        model.fit(x, y, eval_set=[(xv, yv)], eval_metric="average_precision",
                  callbacks=[lightgbm.early_stopping(50, first_metric_only=True, verbose=False)])
        return model, model.best_iteration_
    import xgboost
    model = xgboost.XGBClassifier(
        n_estimators=1000, learning_rate=0.1, max_leaves=31, grow_policy="lossguide", colsample_bynode=0.8,
        tree_method="hist", n_jobs=2, reg_lambda=10.0, random_state=seed, eval_metric="aucpr", early_stopping_rounds=50)
    model.fit(x, y, eval_set=[(xv, yv)], verbose=False)
    return model, model.best_iteration + 1


results = {"val_ap": [], "test_ap": [], "seconds": [], "trees": []}
test_probabilities = []
for seed in range(int(sys.argv[2])):
    started = time.perf_counter()
    model, trees = fit(seed)
    results["seconds"].append(time.perf_counter() - started)
    results["trees"].append(int(trees))
    results["val_ap"].append(average_precision_score(yv, model.predict_proba(xv)[:, 1]))
    test_probabilities.append(model.predict_proba(xt)[:, 1])
    results["test_ap"].append(average_precision_score(yt, test_probabilities[-1]))
results["ensemble_test_ap"] = average_precision_score(yt, np.mean(test_probabilities, axis=0))
again, _ = fit(0)
results["same_bytes"] = again.predict_proba(xt)[:, 1].tobytes() == test_probabilities[0].tobytes()
print(json.dumps(results))
"""
LIBRARIES = {
    "scikit-learn HistGradientBoosting": ("scikit-learn", "sklearn"),
    "LightGBM": ("lightgbm", "lightgbm"),
    "XGBoost": ("xgboost", "xgboost"),
}


def compare(root: Path, data: Path, project_class, print_table):
    project = project_class(root / "gbdt", data)
    project.run(["dvc", "repro", "scale"])
    rows = []
    for name, (library, module) in LIBRARIES.items():
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
            rows.append([name, "not installed", "", "", "", "", ""])
            continue
        environment = {**project.env, "OMP_NUM_THREADS": "2"}
        fitted = subprocess.run(
            [sys.executable, "-c", FIT, library, str(SEEDS)],
            cwd=project.path,
            env=environment,
            capture_output=True,
            text=True,
        )
        if fitted.returncode:
            rows.append([name, f"failed: {fitted.stderr.strip().splitlines()[-1]}", "", "", "", "", ""])
            continue
        r = json.loads(fitted.stdout.strip().splitlines()[-1])
        version = subprocess.run(
            [sys.executable, "-c", f"import {module}; print({module}.__version__)"], capture_output=True, text=True
        ).stdout.strip()
        rows.append(
            [
                f"{name} {version}",
                "{:.3f} ± {:.3f}".format(*mean_sd(r["val_ap"])),
                "{:.3f} ± {:.3f}".format(*mean_sd(r["test_ap"])),
                f"{r['ensemble_test_ap']:.3f}",
                "{:.1f} ± {:.1f}".format(*mean_sd(r["seconds"])),
                f"{min(r['trees'])}-{max(r['trees'])}",
                "yes" if r["same_bytes"] else "no",
            ]
        )
    print_table(
        f"11. Gradient-boosted trees: {SEEDS} seeds per library, early stopping on validation AP, 2 threads",
        [
            "library",
            "validation AP (seeds)",
            "test AP (seeds)",
            "test AP, ensemble",
            "s per model",
            "trees",
            "same bytes twice",
        ],
        rows,
        "Each library's average precision over seeds and its ensemble's on the same split, its fitting time per "
        "model on 2 threads of this machine, and whether two fits give the same bytes.",
    )


def mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
