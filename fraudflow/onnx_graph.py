"""The exported model as an ONNX graph, built with onnx.helper from the fitted numbers, for ONNX Runtime: raw columns
by name -> the preprocessing as clean and scale do it -> a strategy's members (networks, logistic regression,
gradient-boosted trees, or a blend of strategies) -> their calibrated probabilities' mean, float64, shape (n, 1).

Numbers come in as float64 (NaN: missing), categories as text. The features are float32, as scale writes them;
every member's probability is computed in float64 on them, as its stage computed it (the networks' float32 weights
cast exactly, as members.member_predictor does), so the exported model agrees with evaluate to double precision's
rounding (the benchmark's exactness part measures it on the real data).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fraudflow.common import StageError
from fraudflow.operating import LOGIT_CLIP

OPSETS = {"": 21, "ai.onnx.ml": 5}  # ai.onnx.ml 5: TreeEnsemble with float64 splits and leaf values
IR_VERSION = 10
OUTPUT = "probability"
INTERNAL = "fraudflow:"  # the graph's own value names start with it; an input (a column's name) must not
# A tree node's children: where each goes in the TreeEnsemble's attributes (x <= split: the true branch, left)
BRANCHES = (("left", "truenodeids", "trueleafs"), ("right", "falsenodeids", "falseleafs"))


class Graph:
    """ONNX nodes and constants under construction; every value gets a fresh name."""

    def __init__(self):
        self.nodes, self.constants, self.count = [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{INTERNAL}{hint}_{self.count}"

    def const(self, value, dtype=np.float64) -> str:
        name = self.name("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attributes) -> str:
        output = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], domain=domain, **attributes))
        return output


def model_inputs(prep: dict) -> list[dict]:
    """model.json's input list: every raw column the model takes, its input's name (the column's) and type; for a
    category column, its vocabulary (any other level is (other)) and the training levels folded into (other)."""
    inputs = [{"column": c, "input": c, "type": "number"} for c in (prep["log"].get(n, n) for n in prep["numeric"])]
    for name, levels in prep["categories"].items():
        entry = {"column": name, "input": name, "type": "category", "levels": len(levels)}
        inputs.append({**entry, "vocabulary": levels, "folded": prep["folded"][name]})
    return inputs


def preprocess(g: Graph, prep: dict, inputs: list[dict], eps: float) -> str:
    """Float32 features (n, features) from the raw columns, as fraudflow/preprocess.py's transform of clean's output:
    log(x + eps) for data.log columns, imputation and its indicators, scaling, clipping, one-hot over the training
    levels (index 0: any other level)."""
    numbers = [entry["input"] for entry in inputs if entry["type"] == "number"]
    numbers = [
        g.op("Log", g.op("Add", x, g.const([eps]))) if name in prep["log"] else x
        for x, name in zip(numbers, prep["numeric"], strict=True)
    ]
    parts = []
    if numbers:
        imputed = [
            g.op("Where", g.op("IsNaN", x), g.const([prep["impute"][name]]), x) if name in prep["impute"] else x
            for x, name in zip(numbers, prep["numeric"], strict=True)
        ]
        x = g.op("Concat", *imputed, axis=1)
        scaled = g.op("Div", g.op("Sub", x, g.const(prep["mean"])), g.const(prep["scale"]))
        clipped = g.op("Clip", scaled, g.const(-prep["clip"]), g.const(prep["clip"]))
        parts.append(g.op("Cast", clipped, to=TensorProto.FLOAT))
    for name in prep["indicators"]:
        missing = g.op("IsNaN", numbers[prep["numeric"].index(name)])
        parts.append(g.op("Cast", missing, to=TensorProto.FLOAT))
    for entry in inputs:
        if entry["type"] == "category":
            levels = entry["vocabulary"]
            code = g.op(
                "LabelEncoder",
                entry["input"],
                domain="ai.onnx.ml",
                keys_strings=levels,
                values_int64s=list(range(1, len(levels) + 1)),
                default_int64=0,
            )
            depth = len(levels) + 1
            one_hot = g.op("OneHot", code, g.const([depth], np.int64), g.const([0, 1], np.float32), axis=-1)
            parts.append(g.op("Reshape", one_hot, g.const([-1, depth], np.int64)))
    return g.op("Concat", *parts, axis=1) if len(parts) > 1 else parts[0]


def network_members(g: Graph, features: str, members: list[list[np.ndarray]]) -> str:
    """(n, members) float64 probabilities of the tutorial's networks, each [kernel1, bias1, kernel2, bias2], in
    double as members.member_predictor computes them: all members' hidden layers as one product, their outputs
    through a block-diagonal kernel."""
    hidden = members[0][0].shape[1]
    kernel1 = np.concatenate([m[0] for m in members], axis=1)
    bias1 = np.concatenate([m[1] for m in members])
    kernel2 = np.zeros((hidden * len(members), len(members)))
    for i, member in enumerate(members):
        kernel2[i * hidden : (i + 1) * hidden, i] = member[2][:, 0]
    bias2 = np.array([m[3][0] for m in members])
    x = g.op("Cast", features, to=TensorProto.DOUBLE)
    h = g.op("Relu", g.op("Add", g.op("MatMul", x, g.const(kernel1)), g.const(bias1)))
    return g.op("Sigmoid", g.op("Add", g.op("MatMul", h, g.const(kernel2)), g.const(bias2)))


def logistic_member(g: Graph, features: str, coefficients: np.ndarray, intercept: float) -> str:
    """(n, 1) float64 probabilities of logistic regression."""
    x = g.op("Cast", features, to=TensorProto.DOUBLE)
    score = g.op("Add", g.op("MatMul", x, g.const(np.reshape(coefficients, (-1, 1)))), g.const([intercept]))
    return g.op("Sigmoid", score)


def tree_members(g: Graph, features: str, members: list[dict]) -> str:
    """(n, members) float64 probabilities of gradient-boosted trees: one TreeEnsemble with a target per member.
    Each member: {"baseline": its raw score before any tree, "trees": [nodes]}, nodes as arrays feature, threshold,
    left, right, is_leaf, value (scikit-learn's predictor nodes: go left when x <= threshold; no value is missing
    here, since the features are imputed)."""
    a = {key: [] for key in ("featureids", "splits", "truenodeids", "trueleafs", "falsenodeids", "falseleafs")}
    roots, leaf_targets, leaf_weights = [], [], []
    for target, member in enumerate(members):
        for nodes in member["trees"]:
            leaf = nodes["is_leaf"].astype(bool)
            if leaf[0]:  # a tree of one leaf: a split that always goes to it
                a["featureids"].append(0)
                a["splits"].append(np.inf)
                for _, ids, leafs in BRANCHES:
                    a[ids].append(len(leaf_weights))
                    a[leafs].append(1)
            # each node's index among the ensemble's branch nodes, or among its leaves
            position = np.empty(len(leaf), np.int64)
            position[~leaf] = len(a["featureids"]) + np.arange(int((~leaf).sum()))
            position[leaf] = len(leaf_weights) + np.arange(int(leaf.sum()))
            roots.append(len(a["featureids"]) - 1 if leaf[0] else int(position[0]))
            for node in np.flatnonzero(~leaf):
                a["featureids"].append(int(nodes["feature"][node]))
                a["splits"].append(float(nodes["threshold"][node]))
                for child, ids, leafs in BRANCHES:
                    target_node = int(nodes[child][node])
                    a[ids].append(int(position[target_node]))
                    a[leafs].append(int(leaf[target_node]))
            leaf_targets += [target] * int(leaf.sum())
            leaf_weights += nodes["value"][leaf].tolist()
    raw = g.op(
        "TreeEnsemble",
        g.op("Cast", features, to=TensorProto.DOUBLE),
        domain="ai.onnx.ml",
        n_targets=len(members),
        aggregate_function=1,  # sum
        post_transform=0,  # none
        tree_roots=roots,
        nodes_featureids=a["featureids"],
        nodes_splits=numpy_helper.from_array(np.array(a["splits"], np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(len(a["splits"]), np.uint8)),  # BRANCH_LEQ
        nodes_truenodeids=a["truenodeids"],
        nodes_trueleafs=a["trueleafs"],
        nodes_falsenodeids=a["falsenodeids"],
        nodes_falseleafs=a["falseleafs"],
        leaf_targetids=leaf_targets,
        leaf_weights=numpy_helper.from_array(np.array(leaf_weights, np.float64)),
    )
    return g.op("Sigmoid", g.op("Add", raw, g.const([m["baseline"] for m in members])))


def logit(g: Graph, probabilities: str) -> str:
    """log(p) - log(1 - p), as fraudflow/operating.py computes it."""
    return g.op("Sub", g.op("Log", probabilities), g.op("Log", g.op("Sub", g.const([1.0]), probabilities)))


def calibrated_mean(g: Graph, probabilities: str, shift: float) -> str:
    """The members' mean of sigmoid(logit(p) + shift), as evaluate calibrates and averages them, (n, 1)."""
    if shift:
        probabilities = g.op("Sigmoid", g.op("Add", logit(g, probabilities), g.const([shift])))
    return g.op("ReduceMean", probabilities, g.const([1], np.int64), keepdims=1)


def blended_mean(g: Graph, parts: list[tuple[str, int, float]], intercept: float, members: int) -> str:
    """A blend's probability, (n, 1): member i is sigmoid(intercept + sum over strategies of weight *
    logit(p)) of the strategies' member i (a strategy with fewer members gives its last), as stages/train_blend.py
    computes it; then their mean. parts: (the strategy's (n, its members) probabilities, its members, weight)."""
    logits = []
    for probabilities, _, _ in parts:
        logits.append(logit(g, g.op("Clip", probabilities, g.const(LOGIT_CLIP), g.const(1 - LOGIT_CLIP))))
    weights = np.zeros((sum(count for _, count, _ in parts), members))
    start = 0
    for _, count, weight in parts:
        for i in range(members):
            weights[start + min(i, count - 1), i] = weight
        start += count
    stacked = g.op("Concat", *logits, axis=1) if len(logits) > 1 else logits[0]
    blended = g.op("Sigmoid", g.op("Add", g.op("MatMul", stacked, g.const(weights)), g.const([intercept])))
    return g.op("ReduceMean", blended, g.const([1], np.int64), keepdims=1)


def model(
    g: Graph, inputs: list[dict], value: str, output: str = OUTPUT, width: int = 1, opsets=None
) -> onnx.ModelProto:
    """The graph's model: an input per raw column (float64 or text, shape (n, 1); an entry with a "width", float64
    (n, width)), `value` as the float64 output `output`, (n, width)."""
    clash = [entry["column"] for entry in inputs if entry["input"].startswith(INTERNAL) or entry["input"] == output]
    if clash:
        raise StageError(f"column '{clash[0]}': a name the exported model uses itself; rename the column")
    g.nodes.append(helper.make_node("Identity", [value], [output]))
    graph = helper.make_graph(
        g.nodes,
        "fraudflow",
        [
            helper.make_tensor_value_info(
                entry["input"],
                TensorProto.STRING if entry["type"] == "category" else TensorProto.DOUBLE,
                [None, entry.get("width", 1)],
            )
            for entry in inputs
        ],
        [helper.make_tensor_value_info(output, TensorProto.DOUBLE, [None, width])],
        initializer=g.constants,
    )
    opsets = opsets or OPSETS
    built = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    )
    built.ir_version = IR_VERSION
    built.producer_name = "fraudflow"
    onnx.checker.check_model(built, full_check=True)
    return built


def runner(model, output: str, threads: int = 2):
    """An ONNX model (a ModelProto or a file) as a function of its named inputs returning `output`, run by ONNX
    Runtime on `threads` threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return lambda inputs: session.run([output], inputs)[0]
