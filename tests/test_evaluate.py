import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import python_environment, set_params
from sklearn import metrics

from stages import evaluate
from stages.common import PREDICTIONS_DIR, STRATEGIES, write_parquet

SUMMARY_KEYS = {"ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper"}


def test_thin_keeps_endpoints_and_caps_points():
    curve = pd.DataFrame({"x": np.arange(1000)})
    thinned = evaluate.thin(curve, 300)
    assert len(thinned) == 300
    assert thinned["x"].iloc[0] == 0 and thinned["x"].iloc[-1] == 999


def test_pr_points_keep_every_recall_level():
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.01).astype(int)
    probabilities = np.clip(rng.normal(0.2 + 0.5 * labels, 0.15), 0, 1)
    points = evaluate.pr_points(labels, probabilities, max_points=10_000)
    assert len(points) <= 2 * (labels.sum() + 1)
    _, full_recall, _ = metrics.precision_recall_curve(labels, probabilities)
    assert set(points["recall"]) == set(full_recall)


def write_predictions(members: int, rows: int = 2000, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Test predictions of every strategy with `members` members; strategy k is noisier than strategy k - 1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.05).astype(int)
    probabilities = {}
    for noise, strategy in enumerate(STRATEGIES, start=1):
        logits = rng.normal(2.5 * labels - 3, noise, size=(members, rows)).T
        probabilities[strategy] = 1 / (1 + np.exp(-logits))
        frame = pd.DataFrame({"split": "test", "label": labels, "probability": probabilities[strategy].mean(axis=1)})
        for member in range(members):
            frame[f"member_{member}"] = probabilities[strategy][:, member]
        write_parquet(pa.Table.from_pandas(frame), PREDICTIONS_DIR / f"{strategy}.parquet")
    return labels, probabilities


@pytest.mark.parametrize("members", [1, 4])
def test_stage_writes_intervals_differences_curves_and_images(project, members):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=200)
    labels, probabilities = write_predictions(members)
    evaluate.main()
    baseline = json.loads((project / "metrics" / "test" / "baseline.json").read_text())
    assert set(baseline) == {"tp", "fp", "tn", "fn", "precision", "recall", "roc_auc", "average_precision", "log_loss"}
    assert all(set(values) == SUMMARY_KEYS for values in baseline.values())
    ensemble = probabilities["baseline"].mean(axis=1)
    ap = baseline["average_precision"]
    assert ap["ensemble"] == pytest.approx(metrics.average_precision_score(labels, ensemble))
    assert ap["ensemble_lower"] < ap["ensemble"] < ap["ensemble_upper"]
    member_aps = [metrics.average_precision_score(labels, p) for p in probabilities["baseline"].T]
    assert ap["mean"] == pytest.approx(np.mean(member_aps))
    if members == 1:
        assert ap["mean_lower"] is None and ap["mean_upper"] is None
    else:
        assert ap["mean_lower"] < ap["mean"] < ap["mean_upper"]
    assert baseline["tp"]["ensemble"] == int(((ensemble > 0.5) & (labels == 1)).sum())

    differences = json.loads((project / "metrics" / "differences.json").read_text())
    assert set(differences) == {"baseline-weighted", "baseline-resampled", "weighted-resampled"}
    first = differences["baseline-resampled"]["roc_auc"]
    assert set(first) == SUMMARY_KEYS | {"verdict"}
    assert first["verdict"] == "baseline better"  # the least noisy against the noisiest

    confusion = pd.read_csv(project / "plots" / "confusion" / "weighted.csv")
    assert confusion["count"].sum() == len(labels) and len(confusion) == 4
    roc = pd.read_csv(project / "plots" / "roc" / "resampled.csv")
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0, 1)
    for image in ("roc.png", "prc.png", "confusion.png"):
        assert (project / "plots" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_output_is_the_same_bytes_run_after_run(project):
    set_params(project / "params.yaml", evaluate__bootstrap_resamples=100)
    write_predictions(3)
    outputs = ["metrics/test/baseline.json", "metrics/differences.json", "plots/roc.png", "plots/roc/weighted.csv"]
    evaluate.main()
    first = {path: (project / path).read_bytes() for path in outputs}
    evaluate.main()
    assert {path: (project / path).read_bytes() for path in outputs} == first


@pytest.mark.parametrize(
    "key, value", [("bootstrap_resamples", 10), ("bootstrap_resamples", "many"), ("seed", -1), ("threshold", 1.5)]
)
def test_bad_params_give_one_line_and_write_nothing(project, key, value):
    set_params(project / "params.yaml", **{f"evaluate__{key}": value})
    write_predictions(2)
    result = subprocess.run(
        [sys.executable, "-m", "stages.evaluate"], capture_output=True, text=True, env=python_environment()
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: params.yaml: param 'evaluate.{key}' must be")
    assert not (project / "metrics").exists() and not (project / "plots").exists()


def test_predictions_without_members_are_refused(project):
    frame = pd.DataFrame({"split": "test", "label": [0, 1], "probability": [0.1, 0.9]})
    for strategy in STRATEGIES:
        write_parquet(pa.Table.from_pandas(frame), PREDICTIONS_DIR / f"{strategy}.parquet")
    with pytest.raises(evaluate.StageError, match="no member_<i> columns; run 'dvc repro train_baseline'"):
        evaluate.main()
