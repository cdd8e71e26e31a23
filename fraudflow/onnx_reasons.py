"""Reason codes as an ONNX graph (export/reasons.onnx): for each row, how much each raw column moved the strategy's
logit away from the reference, a training row of average features (model.json's reasons.reference_logit).

Each kind of member gets the attribution that is exact and cheap for it, on its logit (before the sigmoid):
- logistic regression: coefficient x (feature - training mean): its exact SHAP values for independent features;
- a network (Dense-ReLU-Dense): integrated gradients from the training mean, exact in closed form (along the path
  each hidden unit is linear until its ReLU switches, at most once), so they sum to logit(x) - logit(mean);
- gradient-boosted trees: each split on the row's path adds E(child) - E(node) to its feature (E: the mean leaf
  value under it, weighted by training rows; Saabas's attribution, the path-dependent part of TreeSHAP), summing to
  logit(x) - the trees' expected logit. One TreeEnsembleRegressor whose leaves hold their path's contributions
  (hence ai.onnx.ml opset 3, and float32 output).
Members are averaged (a blend: its weights times its strategies' attributions), and a column's features summed (a
category's one-hot block, a missing-value indicator). The sum over columns is the members' mean logit minus the
reference; the final probability averages the members' probabilities, so its logit can differ from it (the
benchmark measures by how much). A contribution says how the model's output moves with the column, not that the
column causes fraud.
"""

import numpy as np
from onnx import TensorProto, numpy_helper

from fraudflow import onnx_graph
from fraudflow.common import StageError
from fraudflow.fitted import member_weights
from fraudflow.onnx_graph import Graph, preprocess
from fraudflow.strategies import LOGISTIC, NETWORK, TREES

OPSETS = {"": 21, "ai.onnx.ml": 3}  # ai.onnx.ml 3: TreeEnsembleRegressor, several targets per leaf
OUTPUT = "contributions"


def feature_columns(prep: dict, inputs: list[dict]) -> np.ndarray:
    """(features, columns) 0/1: which raw column (model.json's inputs, in order) each feature comes from."""
    position = {entry["column"]: i for i, entry in enumerate(inputs)}
    raw = [prep["log"].get(name, name) for name in prep["numeric"]]
    owners = [*raw, *(prep["log"].get(name, name) for name in prep["indicators"])]
    for name, levels in prep["categories"].items():
        owners += [name] * (len(levels) + 1)
    grouping = np.zeros((len(owners), len(inputs)))
    grouping[np.arange(len(owners)), [position[name] for name in owners]] = 1
    return grouping


def logistic(g: Graph, x: str, means: np.ndarray, model: tuple, weights: np.ndarray):
    """weight x coefficient x (x - mean) per feature, (n, features), and the reference logit's part; model:
    (coefficients, intercept), weights: its one member's."""
    (coefficients, intercept), weight = model, float(weights.sum())
    contributions = g.op("Mul", g.op("Sub", x, g.const(means)), g.const(weight * coefficients))
    return contributions, weight * (float(means @ coefficients) + intercept)


def network(g: Graph, x: str, means: np.ndarray, members: list[list[np.ndarray]], weights: np.ndarray):
    """Integrated gradients from the mean of each member [kernel1, bias1, kernel2, bias2], weighted by `weights`
    and summed, (n, features); and the reference logit's part."""
    kernel1 = np.concatenate([m[0] for m in members], axis=1).astype(np.float64)
    bias1 = np.concatenate([m[1] for m in members]).astype(np.float64)
    out = np.concatenate([weight * m[2][:, 0] for m, weight in zip(members, weights, strict=True)])
    at_mean = means @ kernel1 + bias1  # each hidden unit's input at the reference
    biases = np.array([weight * m[3][0] for m, weight in zip(members, weights, strict=True)])
    reference = np.maximum(at_mean, 0) @ out + biases.sum()
    at_row = g.op("Add", g.op("MatMul", x, g.const(kernel1)), g.const(bias1))
    change = g.op("Sub", at_row, g.const(at_mean))
    safe = g.op("Where", g.op("Equal", change, g.const([0.0])), g.const([1.0]), change)
    crossing = g.op("Div", g.const(-at_mean), safe)  # where along the path the unit's input crosses 0
    row_on, mean_on = g.op("Greater", at_row, g.const([0.0])), at_mean > 0
    after = g.op("Sub", g.const([1.0]), crossing)
    active = g.op(
        "Where",
        row_on,
        g.op("Where", g.const(mean_on, bool), g.const([1.0]), after),
        g.op("Where", g.const(mean_on, bool), crossing, g.const([0.0])),
    )  # the share of the path it is on
    gradient = g.op("MatMul", g.op("Mul", active, g.const(out)), g.const(kernel1.T))
    return g.op("Mul", gradient, g.op("Sub", x, g.const(means))), float(reference)


def expected_values(nodes: dict) -> np.ndarray:
    """Each node's mean leaf value under it, weighted by the training rows that reached each leaf."""
    expected = np.array(nodes["value"], dtype=np.float64)
    for node in reversed(range(len(expected))):  # scikit-learn numbers children after their parent
        if not nodes["is_leaf"][node]:
            left, right = nodes["left"][node], nodes["right"][node]
            counts = nodes["count"][left], nodes["count"][right]
            expected[node] = (counts[0] * expected[left] + counts[1] * expected[right]) / sum(counts)
    return expected


def trees(g: Graph, x: str, members: list[dict], weights: np.ndarray, column_of: np.ndarray, columns: int):
    """Path contributions of gradient-boosted trees per raw column, weighted by `weights` and summed, (n, columns);
    and the reference logit's part (the members' baselines and their trees' expected values)."""
    a = {key: [] for key in ("treeids", "nodeids", "featureids", "modes", "values", "true", "false")}
    t = {key: [] for key in ("treeids", "nodeids", "ids", "weights")}
    reference, tree = 0.0, 0
    for member, weight in zip(members, weights, strict=True):
        reference += weight * member["baseline"]
        for nodes in member["trees"]:
            expected = expected_values(nodes)
            reference += weight * expected[0]
            if nodes["is_leaf"][0]:
                continue
            paths = {0: {}}  # node -> {column: contribution} along the path from the root
            for node in range(len(expected)):
                leaf, path = bool(nodes["is_leaf"][node]), paths.pop(node)
                a["treeids"].append(tree), a["nodeids"].append(node)
                a["featureids"].append(0 if leaf else int(nodes["feature"][node]))
                a["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
                a["values"].append(0.0 if leaf else float(nodes["threshold"][node]))
                a["true"].append(0 if leaf else int(nodes["left"][node]))
                a["false"].append(0 if leaf else int(nodes["right"][node]))
                if leaf:
                    for column, value in sorted(path.items()):
                        t["treeids"].append(tree), t["nodeids"].append(node)
                        t["ids"].append(column), t["weights"].append(weight * value)
                    continue
                column = int(column_of[nodes["feature"][node]])
                for child in (nodes["left"][node], nodes["right"][node]):
                    step = expected[child] - expected[node]
                    paths[int(child)] = path | {column: path.get(column, 0.0) + step}
            tree += 1
    if not tree:
        return None, reference
    contributions = g.op(
        "TreeEnsembleRegressor",
        x,
        domain="ai.onnx.ml",
        n_targets=columns,
        aggregate_function="SUM",
        nodes_treeids=a["treeids"],
        nodes_nodeids=a["nodeids"],
        nodes_featureids=a["featureids"],
        nodes_modes=a["modes"],
        nodes_values_as_tensor=numpy_helper.from_array(np.array(a["values"], np.float64)),
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
        target_treeids=t["treeids"],
        target_nodeids=t["nodeids"],
        target_ids=t["ids"],
        target_weights_as_tensor=numpy_helper.from_array(np.array(t["weights"], np.float64)),
    )
    return g.op("Cast", contributions, to=TensorProto.DOUBLE), reference


def features_graph(prep: dict, inputs: list[dict], eps: float) -> tuple[Graph, str]:
    """A graph of the model's raw inputs and its float64 features."""
    g = Graph()
    return g, g.op("Cast", preprocess(g, prep, inputs, eps), to=TensorProto.DOUBLE)


def contributions(g: Graph, x: str, parts: dict, members: int, means: np.ndarray, grouping: np.ndarray) -> tuple:
    """(n, columns) contributions of a strategy made of `parts`, {name: (kind, fitted data, its members, weight)}
    (fraudflow/fitted.py), its probability averaging `members` members; and the reference logit, without the
    calibration shift or a blend's intercept."""
    pieces, reference = [], 0.0
    for kind, data, count, weight in parts.values():
        weights = weight * member_weights(count, members)
        if kind == TREES:
            piece, part = trees(g, x, data, weights, grouping.argmax(axis=1), grouping.shape[1])
        elif kind in (NETWORK, LOGISTIC):
            by_feature, part = (network if kind == NETWORK else logistic)(g, x, means, data, weights)
            piece = g.op("MatMul", by_feature, g.const(grouping))
        else:
            raise StageError(f"a {kind} strategy has no members to explain")
        pieces += [piece] if piece else []
        reference += part
    if not pieces:  # only trees of one leaf: every row is the reference
        pieces.append(g.op("MatMul", g.op("Mul", x, g.const([0.0])), g.const(grouping)))
    return (g.op("Sum", *pieces) if len(pieces) > 1 else pieces[0]), reference


def reasons_model(g: Graph, x: str, entries: list[dict], explained: dict, members: int, means, prep: dict) -> tuple:
    """The model of a strategy's contributions per raw column (`contributions`, fed by `entries`: the raw columns,
    or one entry of the scaled features of x), and its reference logit without a calibration shift or intercept."""
    grouping = feature_columns(prep, onnx_graph.model_inputs(prep))
    values, reference = contributions(g, x, explained, members, np.asarray(means), grouping)
    return onnx_graph.model(g, entries, values, OUTPUT, grouping.shape[1], OPSETS), reference
