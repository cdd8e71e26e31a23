"""Your own data: a table described in params.yaml's `data` section, through the real `dvc` pipeline, export and
score; the same predictions under other column names; the preprocessing's rules; each error by its message."""

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pyarrow as pa
import pytest
from conftest import MIXED_DATA, REPO, make_creditcard, make_mixed, project_repo, raw_test_rows, set_cell, set_params

from fraudflow import onnx_graph, preprocess
from fraudflow.common import EXPORT_DIR, PREDICTIONS_DIR, RAW_CSV, SCALED_DIR, SPLIT_DIR, StageError, load_preprocessing
from fraudflow.strategies import evaluated
from stages import clean, scale, score, split, train_logistic

# make_mixed's data section: its own columns (no data.columns list), amount_usd the cost of a missed positive (and
# evaluate.cost_false_negative null: the flat cost is the mean amount_usd of the training split's positives)
MIXED = {**MIXED_DATA, "data__columns": None, "data__cost": "amount_usd", "evaluate__cost_false_negative": None}


# The tests that take `mixed` run in one process (pytest -n, --dist loadgroup), so its `dvc repro` runs once.
on_mixed = pytest.mark.xdist_group("mixed")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """make_mixed's table through `dvc repro` (every stage, export included)."""
    runner = project_repo(tmp_path_factory.mktemp("mixed"), make_mixed(), **MIXED)
    runner.run("dvc", "repro")
    return runner


def score_command(runner, source, destination) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "stages.score", str(source), str(destination)]
    return subprocess.run(command, cwd=runner.cwd, env=runner.env, capture_output=True, text=True)


@on_mixed
def test_the_preprocessing_follows_the_data_section(mixed, monkeypatch):
    monkeypatch.chdir(mixed.cwd)
    prep = load_preprocessing()
    assert prep["numeric"] == ["Logamount_usd", "x1", "x2", "x3"] and prep["indicators"] == ["x2"]
    merchants = prep["categories"]["merchant"]
    assert merchants[:3] == ["grocery", "fuel", "travel"] and len(merchants) == 5
    assert "(missing)" in prep["categories"]["channel"]
    assert prep["features"][4:6] == ["x2_missing", "merchant=(other)"]
    assert not any(name.startswith(("tx_id", "event_time", "comment", "outcome")) for name in prep["features"])
    assert np.load(SCALED_DIR / "train_features.npy").shape[1] == len(prep["features"]) == 4 + 1 + 6 + 1 + 4
    strategies = [entry.name for entry in evaluated()]
    assert strategies == ["baseline", "weighted", "resampled", "focal", "logistic", "gbdt", "blend"]
    for name in strategies:
        metrics = json.loads((mixed.cwd / "metrics" / "test" / f"{name}.json").read_text())
        assert 0 < metrics["average_precision"]["ensemble_lower"] < metrics["average_precision"]["ensemble"]


@on_mixed
def test_scores_of_the_raw_test_rows_equal_evaluates_and_carry_the_ids(mixed, monkeypatch, tmp_path):
    monkeypatch.chdir(mixed.cwd)
    rows = raw_test_rows()
    assert rows["x2"].isna().any() and rows["channel"].isna().any()
    rows.to_csv(tmp_path / "test_rows.csv", index=False)
    result = score_command(mixed, tmp_path / "test_rows.csv", tmp_path / "scores.csv")
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "scores.csv")
    predictions = pd.read_parquet(PREDICTIONS_DIR / "baseline.parquet").query("split == 'test'")
    assert "probability" not in predictions  # the members' columns only; the ensemble is their mean
    ensemble = predictions.filter(regex=r"^member_\d+$").mean(axis=1)  # baseline: no calibration shift at rate 1
    assert predictions.filter(regex=r"^member_\d+$").shape[1] == 2  # FAST_PARAMS' members
    np.testing.assert_allclose(scores["probability"], ensemble, rtol=0, atol=1e-6)
    assert scores["tx_id"].tolist() == predictions["tx_id"].tolist() == rows["tx_id"].tolist()
    assert list(scores.columns) == [*rows.columns, "probability", "flagged"]  # every input column, then the scores


@on_mixed
def test_an_unseen_level_and_missing_values_are_scored(mixed, monkeypatch, tmp_path):
    monkeypatch.chdir(mixed.cwd)
    rows = make_mixed(rows=40, positives=4, seed=9).drop(columns=["outcome"]).assign(merchant="grocery")
    rows.loc[[1, 5, 7], "merchant"] = "brand-new shop"
    rows.loc[[2, 5], "channel"] = None
    rows.loc[3, "x2"] = np.nan
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = score_command(mixed, tmp_path / "new.csv", tmp_path / "scores.parquet")
    assert result.returncode == 0, result.stderr
    assert "score: 3 rows had a category level unseen in training; scored as (other)" in result.stderr
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 40 and scores["probability"].between(0, 1).all()
    # An unseen level scores as (other) does: as a level past max_categories.
    rare = sorted(set(make_mixed()["merchant"]) - set(load_preprocessing()["categories"]["merchant"]))[0]
    rows.loc[[1, 5, 7], "merchant"] = rare
    rows.to_csv(tmp_path / "rare.csv", index=False)
    assert score_command(mixed, tmp_path / "rare.csv", tmp_path / "rare_scores.parquet").returncode == 0
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "rare_scores.parquet")["probability"], scores["probability"])


@on_mixed
def test_the_exported_model_takes_named_inputs_and_model_json_lists_them(mixed):
    card = json.loads((mixed.cwd / EXPORT_DIR / "model.json").read_text())
    kinds = {entry["column"]: (entry["type"], entry.get("levels")) for entry in card["inputs"]}
    assert kinds == {
        "amount_usd": ("number", None),
        "x1": ("number", None),
        "x2": ("number", None),
        "x3": ("number", None),
        "merchant": ("category", 5),
        "channel": ("category", 4),
    }
    assert card["missing"] == "impute" and card["log"] == ["amount_usd"]
    model = onnx.load(mixed.cwd / EXPORT_DIR / "model.onnx")
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    text, number = onnx.TensorProto.STRING, onnx.TensorProto.DOUBLE
    assert types == {name: text if kind == "category" else number for name, (kind, _) in kinds.items()}


def test_renamed_and_reordered_columns_give_the_same_predictions(tmp_path, monkeypatch):
    raw = make_creditcard(rows=1500, frauds=40)
    names = {name: f"col {i}" for i, name in enumerate(raw.columns)}  # spaces: not valid Keras input names
    renamed = raw.rename(columns=names)
    renamed = renamed[list(reversed(renamed.columns))]
    renamed[names["Class"]] = renamed[names["Class"]].map({0: "no", 1: "yes"})

    def predictions(folder, frame, **data):
        folder.mkdir()
        monkeypatch.chdir(folder)
        shutil.copy(REPO / "params.yaml", folder / "params.yaml")
        set_params(folder / "params.yaml", **data)
        RAW_CSV.parent.mkdir(parents=True)
        frame.to_csv(RAW_CSV, index=False)
        for stage in (clean, split, scale, train_logistic):
            stage.main()
        return pd.read_parquet(PREDICTIONS_DIR / "logistic.parquet"), np.load(SCALED_DIR / "train_features.npy")

    original, original_features = predictions(tmp_path / "original", raw)
    other, other_features = predictions(
        tmp_path / "renamed",
        renamed,
        data__label=names["Class"],
        data__positive="yes",
        data__time=names["Time"],
        data__log=[names["Amount"]],
        data__columns=[names[f"V{i}"] for i in range(1, 29)] + [names["Amount"]],
        data__cost=names["Amount"],
    )
    # Features come in file order: reversed here, so compare column sets, then the logistic model's predictions.
    assert sorted(map(tuple, original_features.T.round(6))) == sorted(map(tuple, other_features.T.round(6)))
    np.testing.assert_allclose(other["member_0"], original["member_0"], rtol=1e-7)  # its one model
    assert other["label"].tolist() == original["label"].tolist()


def test_top_levels_ties_by_name_and_other_for_the_rest():
    column = pd.Series(["b", "a", "c", "c", "d", "b", "a", "e"])
    assert preprocess.ranked_levels(column.value_counts().to_dict()) == ["a", "b", "c", "d", "e"]
    train = pd.DataFrame({"n": [1.0, np.nan, 3.0, 5.0], "k": ["a", "a", "b", "c"], "y": [0, 1, 0, 0]})
    roles = {"numeric": ["n"], "categorical": ["k"], "log": {}, "missing": "impute"}
    prep = preprocess.fit(lambda columns: [pa.Table.from_pandas(train[columns])], roles, clip=5, max_categories=1)
    assert prep["impute"] == {"n": 3.0} and prep["features"] == ["n", "n_missing", "k=(other)", "k=a"]
    assert prep["folded"] == {"k": ["b", "c"]}
    features = preprocess.transform(pd.DataFrame({"n": [np.nan], "k": ["zzz"]}), prep)
    np.testing.assert_allclose(features, [[0.0, 1.0, 1.0, 0.0]])  # the median scales to 0


def write_mixed(frame: pd.DataFrame, project, **data):
    set_params(project / "params.yaml", **{**MIXED, **data})
    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RAW_CSV, index=False)


def test_categorical_auto_takes_every_text_column(project):
    write_mixed(make_mixed(rows=300, positives=10), project, data__categorical="auto")
    clean.main()
    split.main()
    scale.main()
    assert list(load_preprocessing()["categories"]) == ["merchant", "channel"]


def test_data_columns_names_the_features_and_the_others_are_ignored(project, caplog):
    caplog.set_level(logging.INFO, logger="fraudflow")
    columns = ["amount_usd", "x1", "x2", "merchant", "channel"]  # x3 left out
    write_mixed(make_mixed(rows=300, positives=10), project, data__columns=columns)
    for stage in (clean, split, scale):
        stage.main()
    assert "clean: ignored 1 columns not in data.columns: x3" in caplog.text
    prep = load_preprocessing()
    assert prep["numeric"] == ["Logamount_usd", "x1", "x2"] and list(prep["categories"]) == ["merchant", "channel"]
    assert not any(name.startswith("x3") for name in prep["features"])


# clean names where a bad table came from: download.url (params.yaml's, the real data's URL here)
FROM_URL = r" \(data/raw/table\.csv is download\.url '[^']*'\)$"
BAD_TABLES = {
    "declared column absent": (
        lambda f: f.drop(columns=["tx_id"]),
        {},
        r"data/raw/table.csv: missing column 'tx_id' \(named in data.ids\)" + FROM_URL,
    ),
    "a feature data.columns lists absent": (
        lambda f: f.drop(columns=["x3"]),
        {"data__columns": ["amount_usd", "x1", "x2", "x3", "merchant", "channel"]},
        r"data/raw/table.csv: missing column 'x3' \(named in data.columns\)" + FROM_URL,
    ),
    "the cost column absent": (
        lambda f: f.drop(columns=["amount_usd"]),
        {"data__log": []},
        r"data/raw/table.csv: missing column 'amount_usd' \(named in data.cost\)" + FROM_URL,
    ),
    "label with three values": (
        lambda f: set_cell(f, "outcome", 11, "unknown"),
        {},
        r"column 'outcome', row 12 \(line 13\): a third label value \('unknown', after 'legit' and 'fraud'\)",
    ),
    "label without positive": (
        lambda f: f,
        {"data__positive": "chargeback"},
        r"column 'outcome': no row has data.positive 'chargeback' \(its values: 'fraud', 'legit'\)",
    ),
    "text in a numeric column": (
        lambda f: set_cell(f, "x3", 4, "abc"),
        {},
        r"column 'x3', row 5 \(line 6\): text in a numeric column \(list the column in data.categorical\) \('abc'\)"
        + FROM_URL,
    ),
    "negative value in a log column": (
        lambda f: set_cell(f, "amount_usd", 8, -3.5),
        {},
        r"column 'amount_usd', row 9 \(line 10\): negative or non-finite value in the cost column .* \(-3.5\)"
        + FROM_URL,
    ),
    "missing value under missing: error": (
        lambda f: f,
        {"data__missing": "error"},
        r"column 'x2', row \d+ \(line \d+\): missing value \(set data.missing: impute to fill it\) \(nan\)" + FROM_URL,
    ),
    "missing category under missing: error": (
        lambda f: f.assign(x2=f["x2"].fillna(0)),
        {"data__missing": "error"},
        r"column 'channel', row \d+ \(line \d+\): missing value \(set data.missing: impute to fill it\) \(nan\)"
        + FROM_URL,
    ),
    "column named twice": (
        lambda f: f,
        {"data__drop": ["comment", "merchant"]},
        r"params.yaml: column 'merchant' is named in data.drop and data.categorical; give each column one role$",
    ),
    "an id named like a prediction column": (
        lambda f: f.rename(columns={"tx_id": "probability"}),
        {"data__ids": ["probability"]},
        r"params.yaml: data.ids: 'probability' is a name the predictions use; rename the column$",
    ),
    "a time that is neither a number nor a date": (
        lambda f: set_cell(f, "event_time", 6, "unknown"),
        {},
        r"column 'event_time', row 7 \(line 8\): time value that is neither a number nor an ISO date \('unknown'\)"
        + FROM_URL,
    ),
    "a date in a numeric column": (
        lambda f: f.assign(x3="2026-11-30"),
        {},
        r"column 'x3', row 1 \(line 2\): a date in a numeric column \(name the column in data.time or data.drop\)",
    ),
    "a column twice in the header": (
        lambda f: f.rename(columns={"x3": "x1"}),
        {},
        r"data/raw/table.csv: column 'x1' appears twice in the header; rename one" + FROM_URL,
    ),
    "bad missing policy": (lambda f: f, {"data__missing": "drop"}, r"'data.missing' must be 'error' or 'impute'"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_a_bad_table_is_named_in_one_line_and_nothing_is_written(project, case):
    damage, data, message = BAD_TABLES[case]
    write_mixed(damage(make_mixed(rows=300, positives=10)), project, **data)
    with pytest.raises(StageError, match=message) as error:
        clean.main()
    assert "\n" not in str(error.value)
    assert not (project / "data" / "clean").exists()


def test_a_column_missing_only_outside_training_is_imputed_too(project):
    frame = make_mixed(rows=400, positives=20)
    frame["x2"] = frame["x2"].fillna(0.0)
    frame.loc[frame["event_time"].nlargest(5).index, "x1"] = np.nan  # the latest rows: the test split
    write_mixed(frame, project, split__method="time")
    for stage in (clean, split, scale):
        stage.main()
    prep = load_preprocessing()
    assert prep["indicators"] == [] and set(prep["impute"]) == {"Logamount_usd", "x1", "x2", "x3"}
    assert not np.isnan(np.load(SCALED_DIR / "test_features.npy")).any()


def test_a_column_without_values_in_training_is_named(project):
    write_mixed(make_mixed(rows=300, positives=10).assign(x3=np.nan), project)
    clean.main()
    split.main()
    with pytest.raises(StageError, match=r"train.parquet: column 'x3' has no value in the training split; list it"):
        scale.main()


def test_category_features_alone_are_enough():
    train = pd.DataFrame({"k": ["a", "b", "a"], "y": [0, 1, 0]})
    roles = {"numeric": [], "categorical": ["k"], "log": {}, "missing": "error"}
    prep = preprocess.fit(lambda columns: [pa.Table.from_pandas(train[columns])], roles, 5, 10)
    np.testing.assert_array_equal(preprocess.transform(train, prep), [[0, 1, 0], [0, 0, 1], [0, 1, 0]])


def test_auto_categories_keep_the_files_text_so_scoring_sees_the_same_levels(project):
    frame = make_mixed(rows=300, positives=10).assign(flag=lambda f: np.where(f["x1"] > 0, "true", "false"))
    write_mixed(frame, project, data__categorical="auto")
    for stage in (clean, split, scale):
        stage.main()
    prep = load_preprocessing()
    assert sorted(prep["categories"]["flag"]) == ["false", "true"]
    card = {"inputs": onnx_graph.model_inputs(prep), "log": ["amount_usd"], "missing": "impute"}
    batch = pa.Table.from_pandas(frame.head(50).astype({"flag": str}))
    _, unseen = score.model_inputs(batch, card, "new.csv", 0)
    assert not unseen.any()


def test_the_exported_preprocessing_equals_scales_whatever_the_spread_and_the_names(project):
    rng = np.random.default_rng(3)
    rows = 400
    frame = pd.DataFrame(
        {
            "scale": rng.normal(size=rows),  # names the model's own layers once had
            "member_0": rng.normal(size=rows) * 1e-9,  # a spread below Keras Normalization's 1e-7 floor
            "k": rng.choice(["a", "b", "c"], rows),
            "k_levels": rng.normal(size=rows),
            "Class": (rng.random(rows) < 0.1).astype(int),
        }
    )
    write_mixed(frame, project, data__label="Class", data__positive=1, data__time=None, data__ids=[], data__drop=[])
    set_params(
        project / "params.yaml",
        data__log=[],
        data__categorical=["k"],
        data__cost=None,  # no cost column: a flat cost
        split__group_duplicates=False,
    )
    for stage in (clean, split, scale):
        stage.main()
    prep = load_preprocessing()
    inputs = onnx_graph.model_inputs(prep)
    coefficients = np.random.default_rng(0).normal(size=len(prep["features"]))  # a logistic member reads them all
    g = onnx_graph.Graph()
    member = onnx_graph.logistic_member(g, onnx_graph.preprocess(g, prep, inputs, eps=0.001), coefficients, -0.5)
    model = onnx_graph.model(g, inputs, onnx_graph.calibrated_mean(g, member, 0.0))
    test = pd.read_parquet(SPLIT_DIR / "test.parquet")
    feed = {
        entry["input"]: test[[entry["column"]]].to_numpy(object if entry["type"] == "category" else float)
        for entry in inputs
    }
    features = np.load(SCALED_DIR / "test_features.npy").astype(np.float64)
    expected = 1 / (1 + np.exp(-(features @ coefficients - 0.5)))
    exported = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feed)[0].ravel()
    np.testing.assert_allclose(exported, expected, rtol=1e-12, atol=0)


@on_mixed
def test_reason_codes_credit_each_column_with_its_features_one_hot_blocks_and_missing_indicators(mixed, monkeypatch):
    """Logistic regression on the mixed table: a column's contribution is the sum over its features (a category's
    one-hot block, a number's missing-value indicator, a data.log column's log feature) of coefficient x (scaled
    feature - training mean)."""
    monkeypatch.chdir(mixed.cwd)
    params = mixed.cwd / "params.yaml"
    original = params.read_text()
    set_params(params, export__strategy="logistic")
    mixed.run("dvc", "repro", "export")
    params.write_text(original)  # the module's other tests see the project as it was (export aside)
    card = score.load_card()
    rows = raw_test_rows()
    feed, _ = score.model_inputs(pa.Table.from_pandas(rows), card, "test rows", 0)
    contributions = np.asarray(score.load_explainer(card)(feed))
    prep = load_preprocessing()
    model = json.loads((mixed.cwd / "models" / "logistic.json").read_text())
    means = np.array(json.loads((mixed.cwd / "data" / "profile" / "profile.json").read_text())["feature_means"])
    by_feature = np.array(model["coefficients"]) * (np.load(SCALED_DIR / "test_features.npy") - means)
    owners = {"Logamount_usd": "amount_usd", "x2_missing": "x2"}
    columns = [entry["column"] for entry in card["inputs"]]
    assert columns == ["amount_usd", "x1", "x2", "x3", "merchant", "channel"]
    for i, column in enumerate(columns):
        features = [j for j, f in enumerate(prep["features"]) if owners.get(f, f.split("=")[0]) == column]
        assert len(features) == {"x2": 2, "merchant": 6, "channel": 5}.get(column, 1)
        np.testing.assert_allclose(contributions[:, i], by_feature[:, features].sum(axis=1), atol=1e-9, err_msg=column)
    assert rows["channel"].isna().any() and rows["x2"].isna().any()
