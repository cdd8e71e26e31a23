import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from stages import evaluate
from stages.common import PREDICTIONS_DIR, STRATEGIES, write_parquet

# Ten test rows: 4 frauds. At threshold 0.5: tp 3 (0.9, 0.8, 0.6), fn 1 (0.3), fp 1 (0.7), tn 5.
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PROBABILITIES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05, 0.5])


def test_scores_on_a_hand_made_example():
    result = evaluate.scores(LABELS, PROBABILITIES, threshold=0.5)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (3, 1, 5, 1)
    assert result["accuracy"] == pytest.approx(8 / 10)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    # Of the 4 x 6 fraud/non-fraud pairs, four are misordered: 0.6 < 0.7, and 0.3 < 0.7, 0.4, 0.5.
    assert result["roc_auc"] == pytest.approx(20 / 24)
    # Ranked by probability: hits at ranks 1, 2, 4, 7 -> AP = (1 + 1 + 3/4 + 4/7) / 4.
    assert result["average_precision"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 7) / 4)
    expected_loss = -np.mean(LABELS * np.log(PROBABILITIES) + (1 - LABELS) * np.log(1 - PROBABILITIES))
    assert result["log_loss"] == pytest.approx(expected_loss)


def test_threshold_is_strict_like_keras():
    result = evaluate.scores(LABELS, PROBABILITIES, threshold=0.6)
    assert (result["tp"], result["fp"]) == (2, 1)


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
    _, full_recall, _ = evaluate.metrics.precision_recall_curve(labels, probabilities)
    assert set(points["recall"]) == set(full_recall)


def test_stage_writes_metrics_curves_and_images(project):
    for shift, strategy in enumerate(STRATEGIES):
        frame = pd.DataFrame(
            {"split": "test", "label": LABELS, "probability": np.clip(PROBABILITIES + shift / 100, 0, 1)}
        )
        write_parquet(pa.Table.from_pandas(frame), PREDICTIONS_DIR / f"{strategy}.parquet")
    evaluate.main()
    baseline = json.loads((project / "metrics" / "test" / "baseline.json").read_text())
    assert baseline == pytest.approx(evaluate.scores(LABELS, PROBABILITIES, 0.5))
    confusion = pd.read_csv(project / "plots" / "confusion" / "weighted.csv")
    assert confusion["count"].sum() == len(LABELS) and len(confusion) == 4
    roc = pd.read_csv(project / "plots" / "roc" / "resampled.csv")
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0, 1)
    for image in ("roc.png", "prc.png", "confusion.png"):
        assert (project / "plots" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
