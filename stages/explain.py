"""explain: which columns matter to each strategy, as the reason codes measure it: the mean absolute contribution
of each raw column to the logit over the validation rows (fraudflow/onnx_reasons.py, the graph export writes as
export/reasons.onnx, here on the scaled features).

Writes metrics/importance.json ({strategy: {column: mean |contribution|}}, columns in the model's order, and the
columns ranked by their mean over the strategies) and plots/importance.csv (the chart's rows: the
IMPORTANCE_CHART_COLUMNS first of that ranking, per strategy).
"""

import numpy as np
import pandas as pd

from fraudflow import fitted, onnx_graph, onnx_reasons
from fraudflow.common import IMPORTANCE_FILE, PROFILE_FILE, atomic_output, load_preprocessing, log, run, write_json
from fraudflow.curves import plot_table
from fraudflow.inputs import batch_rows
from fraudflow.scaled import features_file
from fraudflow.strategies import evaluated

PLOT_FILE = "plots/importance.csv"
IMPORTANCE_CHART_COLUMNS = 20
FEATURES = "features"


def explainer(strategy: str, prep: dict, means: np.ndarray) -> tuple:
    """The strategy's contributions per raw column as a function of scaled features ({FEATURES: (n, features)
    float64}), run by ONNX Runtime, and its reference logit (without a calibration shift)."""
    weights, count, intercept = fitted.parts(strategy)
    data = {name: fitted.member_data(name, len(prep["features"])) for name in weights}
    entry = [{"column": FEATURES, "input": FEATURES, "type": "number", "width": len(prep["features"])}]
    parts = fitted.explained(weights, data)
    model, reference = onnx_reasons.reasons_model(
        onnx_graph.Graph(), FEATURES, entry, parts, count or data[strategy][1], means, prep
    )
    return onnx_graph.runner(model, onnx_reasons.OUTPUT), reference + intercept


def importance(explain, features: np.ndarray, columns: int) -> np.ndarray:
    """Mean |contribution| per raw column over the rows of `features` (read in batches)."""
    total = np.zeros(columns)
    for start in range(0, len(features), batch_rows()):
        block = np.asarray(features[start : start + batch_rows()], dtype=np.float64)
        total += np.abs(explain({FEATURES: block})).sum(axis=0)
    return total / len(features)


def ranked(found: dict[str, dict[str, float]]) -> list[str]:
    """The columns by their mean importance over the strategies, largest first (ties: the model's column order)."""
    columns = list(next(iter(found.values())))
    mean = {c: sum(found[s][c] for s in found) / len(found) for c in columns}
    return sorted(columns, key=lambda c: -mean[c])


def chart_rows(found: dict[str, dict[str, float]], order: list[str]) -> pd.DataFrame:
    """plots/importance.csv: the first IMPORTANCE_CHART_COLUMNS columns of `order`, ranked 1, 2, ..."""
    top = order[:IMPORTANCE_CHART_COLUMNS]
    frames = {
        s: pd.DataFrame({"column": top, "rank": range(1, len(top) + 1), "importance": [values[c] for c in top]})
        for s, values in found.items()
    }
    return plot_table(frames)


def main():
    prep = load_preprocessing()
    means = np.array(fitted.read_json(PROFILE_FILE, "scale")["feature_means"])
    features = np.load(features_file("val"), mmap_mode="r")
    names = [entry["column"] for entry in onnx_graph.model_inputs(prep)]
    found = {}
    for strategy in (s.name for s in evaluated()):
        explain, _ = explainer(strategy, prep, means)
        found[strategy] = dict(zip(names, importance(explain, features, len(names)).tolist(), strict=True))
        top = max(found[strategy], key=found[strategy].get)
        log.info(
            "explain: %-9s most important column %s (mean |contribution| %.3f)", strategy, top, found[strategy][top]
        )
    order = ranked(found)
    write_json(IMPORTANCE_FILE, {"split": "validation", "rows": len(features), "ranked": order, "strategies": found})
    with atomic_output(PLOT_FILE) as tmp:
        chart_rows(found, order).to_csv(tmp, index=False, float_format="%.10g")


if __name__ == "__main__":
    run(main)
