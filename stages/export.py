"""export: one strategy as one self-contained model for ONNX Runtime (raw columns in, probability out), whichever
strategy params.yaml's export.strategy names: a network's members, logistic regression, the gradient-boosted trees
or the blend of the others.

Writes export/: model.onnx (fraudflow/onnx_graph.py: the preprocessing, the members, the calibration), reasons.onnx
(fraudflow/onnx_reasons.py: each raw column's contribution to the logit, for `score --reasons`) and model.json
(strategy, inputs with their types and vocabularies, missing-value policy, and what evaluate chose in
models/rules/<strategy>.json: the calibration and the rule that flags a row, a threshold or with a cost column its
name, k and cost_false_positive; the reasons' reference logit; the profile that fraudflow/monitor.py compares scored
files with; the raw data's sha256 from data/raw.json). All are byte-identical run after run.
"""

import json

from fraudflow import fitted, onnx_graph, onnx_reasons
from fraudflow.common import (
    EXPORT_DIR,
    PROFILE_FILE,
    RAW_RECORD,
    RULES_DIR,
    atomic_output,
    is_number,
    load_params,
    load_preprocessing,
    log,
    require,
    run,
)
from fraudflow.strategies import BLEND, NETWORK, REGISTRY, TREES, evaluated

MODEL_FILE = EXPORT_DIR / "model.onnx"
REASONS_FILE = EXPORT_DIR / "reasons.onnx"
REASONS_METHOD = (
    "each column's contribution to the members' mean logit against the reference (a training row of average "
    "features): exact for logistic regression, integrated gradients for networks, path attribution for trees"
)
FORMAT = "ONNX (opset 21, ai.onnx.ml 5), for ONNX Runtime: one input per column, output 'probability'"


def probabilities(g: onnx_graph.Graph, features: str, strategy: str, data) -> str:
    """The strategy's members' probabilities as trained, (n, members)."""
    kind = REGISTRY[strategy].kind
    if kind == NETWORK:
        return onnx_graph.network_members(g, features, data)
    if kind == TREES:
        return onnx_graph.tree_members(g, features, data)
    return onnx_graph.logistic_member(g, features, *data)


def build(strategy: str, prep: dict, inputs: list[dict], eps: float, shift: float, means: list[float]) -> tuple:
    """The strategy's ONNX model, its reasons model (fraudflow/onnx_reasons.py) with their reference logit, and its
    number of members. A blend combines its strategies' members (those of weight 0 left out)."""
    weights, count, intercept = fitted.parts(strategy)
    data = {name: fitted.member_data(name, len(prep["features"])) for name in weights}
    g = onnx_graph.Graph()
    features = onnx_graph.preprocess(g, prep, inputs, eps)
    if REGISTRY[strategy].kind == BLEND:
        weighted = [(probabilities(g, features, n, data[n][0]), data[n][1], w) for n, w in weights.items()]
        probability = onnx_graph.blended_mean(g, weighted, intercept, count)
    else:
        count = data[strategy][1]
        probability = onnx_graph.calibrated_mean(g, probabilities(g, features, strategy, data[strategy][0]), shift)
    r, x = onnx_reasons.features_graph(prep, inputs, eps)
    reasons, reference = onnx_reasons.reasons_model(r, x, inputs, fitted.explained(weights, data), count, means, prep)
    return onnx_graph.model(g, inputs, probability), reasons, reference + intercept + shift, count


def monitor_profile(profile: dict, prep: dict, inputs: list[dict], eps: float, scores: dict) -> dict:
    """model.json's profile: the training split's decile shares of each column the model takes, under its raw name
    (a data.log column's edges on log(x + log_eps)), and the validation split's of the probabilities."""
    raw = dict(prep["log"])  # clean's name of a data.log column -> the raw column's
    columns = {}
    for clean_name, bins in profile["columns"].items():
        name = raw.get(clean_name, clean_name)
        columns[name] = bins | ({"log_eps": eps} if clean_name in raw else {})
    order = [entry["column"] for entry in inputs]
    return {"rows": profile["rows"], "columns": {name: columns[name] for name in order}, "scores": scores}


def main():
    names = [s.name for s in evaluated()]
    strategy = require(load_params("export"), "export", "strategy", lambda v: v in names, f"one of {', '.join(names)}")
    eps = require(load_params("clean"), "clean", "eps", lambda v: is_number(v) and v > 0, "a number > 0")
    prep = load_preprocessing()
    rule = fitted.read_json(RULES_DIR / f"{strategy}.json", "evaluate")
    sha256 = fitted.read_json(RAW_RECORD, "download").get("sha256")
    inputs = onnx_graph.model_inputs(prep)
    profile = fitted.read_json(PROFILE_FILE, "scale")
    shift = rule["calibration_logit_shift"]
    model, reasons, reference, count = build(strategy, prep, inputs, eps, shift, profile["feature_means"])
    scores = rule.pop("score_profile")
    card = {
        "strategy": strategy,
        "members": count,
        "format": FORMAT,
        "inputs": inputs,
        "log": sorted(prep["log"].values()),
        "missing": prep["missing"],
        **rule,
        "reasons": {"model": REASONS_FILE.name, "reference_logit": reference, "method": REASONS_METHOD},
        "profile": monitor_profile(profile, prep, inputs, eps, scores),
        "data_sha256": sha256,
    }
    with atomic_output(EXPORT_DIR) as tmp:
        tmp.mkdir()
        (tmp / MODEL_FILE.name).write_bytes(model.SerializeToString(deterministic=True))
        (tmp / REASONS_FILE.name).write_bytes(reasons.SerializeToString(deterministic=True))
        (tmp / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    detail = f"k {rule['k']:g}" if "k" in rule else f"threshold {rule['threshold']:g}"
    log.info("export: wrote %s (%s, %d members, %s)", EXPORT_DIR, strategy, count, detail)


if __name__ == "__main__":
    run(main)
