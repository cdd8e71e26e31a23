"""The real `dvc` commands on small data, in a temporary git repository holding a copy of the project."""

import json
import re
import shlex
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    REPO,
    chart_contents,
    chart_specs,
    check_page,
    copy_project,
    model_feed,
    needs_chromium,
    raw_test_rows,
    set_params,
)

from fraudflow.costs import flagged
from fraudflow.operating import LOGIT_CLIP
from fraudflow.predictions import MemberColumns
from fraudflow.strategies import NETWORK, REGISTRY, colour
from stages import score

DATA_STAGES = ["download", "clean", "split", "scale"]
EVALUATED = list(REGISTRY)  # the default params train every registered strategy
STRATEGIES = [s.name for s in REGISTRY.values() if s.kind == NETWORK]  # which have a training history
TRAIN_STAGES = [s.stage for s in REGISTRY.values()]
LATE_STAGES = ["evaluate", "explain", "report", "export"]  # after the training stages
# The synthetic data has no duplicate rows, so the grouped split has the stratified split's counts and no twins.
TEST_SPLIT = {"rows": 600, "positives": 12, "duplicate_groups": 0, "rows_with_twin_in_other_split": 0}


@pytest.fixture(scope="module")
def repo(reproduced_project, tmp_path_factory):
    """A git + DVC repo with the project, small fast params, download.url pointing at a small CSV, and every stage
    run (conftest's reproduced_project, copied): the tests that take it change none of its inputs."""
    return copy_project(reproduced_project[0], tmp_path_factory.mktemp("pipeline"))


@pytest.fixture
def reproduced(reproduced_project):
    """What the `dvc repro` that made the project printed."""
    return reproduced_project[1]


@pytest.fixture
def own(reproduced_project, tmp_path):
    """A copy of the reproduced project of the test's own, to change."""
    return copy_project(reproduced_project[0], tmp_path)


@pytest.fixture(scope="module")
def experimented(reproduced_project, tmp_path_factory):
    """A copy of the reproduced project with its results committed, then an experiment on resampled run in the
    workspace; and what the experiment printed."""
    runner = copy_project(reproduced_project[0], tmp_path_factory.mktemp("experiment"))
    runner.commit("results")
    return runner, runner.run("dvc", "exp", "run", "-S", "networks.resampled.steps_per_epoch=4")


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert ran(reproduced) == set(DATA_STAGES + TRAIN_STAGES + LATE_STAGES)
    work = repo.cwd
    assert (work / "data" / "raw" / "table.csv").stat().st_size > 0
    assert json.loads((work / "data" / "raw.json").read_text()).keys() == {"sha256"}
    assert {p.name for p in (work / "data" / "split").iterdir()} == {"train.parquet", "val.parquet", "test.parquet"}
    assert (work / "data" / "scaled" / "preprocessing.json").exists()
    for strategy in STRATEGIES:
        assert {p.name for p in (work / "models" / strategy).iterdir()} == {"member_0.keras", "member_1.keras"}
        assert (work / "data" / "predictions" / f"{strategy}.parquet").exists()
        assert json.loads((work / "metrics" / "train" / f"{strategy}.json").read_text())["epochs_run"]["max"] <= 3
    assert json.loads((work / "metrics" / "split.json").read_text())["test"] == TEST_SPLIT


def test_second_repro_skips_every_stage(repo, reproduced):
    again = repo.run("dvc", "repro")
    assert ran(again) == set()
    assert all(
        f"Stage '{stage}' didn't change, skipping" in again for stage in DATA_STAGES + TRAIN_STAGES + LATE_STAGES
    )


def test_metrics_show_gives_the_headline_numbers_and_the_detail_on_request(repo, reproduced):
    shown = json.loads(repo.run("dvc", "metrics", "show", "--json"))
    files = next(iter(shown.values()))["data"]
    # the metrics files dvc.yaml declares: a row per strategy, and the recommendation
    assert sorted(files) == sorted([*(f"metrics/headline/{s}.json" for s in EVALUATED), "metrics/recommended.json"])
    for strategy in EVALUATED:
        keys = {"ap", "roc_auc", "recall_at_fpr", "cost", "precision", "recall", "value_cost", "value_caught"}
        assert set(files[f"metrics/headline/{strategy}.json"]["data"]) == keys
    assert files["metrics/recommended.json"]["data"]["strategy"] in EVALUATED
    verdicts = json.loads((repo.cwd / "metrics" / "verdicts.json").read_text())
    assert list(verdicts) == ["-".join(pair) for pair in combinations(EVALUATED, 2)]
    assert verdicts["baseline-weighted"]["ap"] in {"baseline better", "weighted better", "not distinguishable"}
    table = repo.run("dvc", "metrics", "show").splitlines()
    assert len(table) == len(EVALUATED) + 2 and max(map(len, table)) <= 200, table  # a header, a row per file

    detail = next(iter(json.loads(repo.run("dvc", "metrics", "show", "--json", "metrics/test")).values()))["data"]
    for strategy in EVALUATED:
        test_metrics = detail[f"metrics/test/{strategy}.json"]["data"]
        assert {"average_precision", "roc_auc", "recall_at_fpr", "log_loss", "brier", "chosen", "tutorial"} <= set(
            test_metrics
        )
        # A single model has no interval over members: DVC leaves out the null mean_lower and mean_upper.
        single = {"mean_lower", "mean_upper"} if strategy == "logistic" else set()
        assert (
            set(test_metrics["average_precision"])
            == {"ensemble", "ensemble_lower", "ensemble_upper", "mean", "mean_lower", "mean_upper"} - single
        )
        for operating_point in ("chosen", "value_rule", "tutorial"):
            assert sum(test_metrics[operating_point][k]["ensemble"] for k in ("tp", "fp", "tn", "fn")) == 600
        ap = test_metrics["average_precision"]
        assert files[f"metrics/headline/{strategy}.json"]["data"]["ap"].startswith(
            f"{ap['ensemble']:.3f} [{ap['ensemble_lower']:.3f}, "
        )
    assert json.loads((repo.cwd / "metrics" / "split.json").read_text())["test"] == TEST_SPLIT


def test_every_strategy_exports_a_model_that_scores_and_flags_the_test_rows_as_evaluate(own, monkeypatch):
    """For each strategy: dvc repro export after setting export.strategy, then stages.score (in this process; the
    command's own tests are in test_score.py) on the raw test rows gives evaluate's probabilities (its members
    calibrated and averaged) and flags the rows evaluate counts."""
    monkeypatch.chdir(own.cwd)
    rows = raw_test_rows()
    rows.to_csv(own.cwd / "test_rows.csv", index=False)
    params = own.cwd / "params.yaml"
    for strategy in EVALUATED:
        set_params(params, export__strategy=strategy)
        assert ran(own.run("dvc", "repro", "export")) <= {"export"}  # nothing for the strategy already exported
        assert json.loads((own.cwd / "export" / "model.json").read_text())["strategy"] == strategy
        score.score(Path("test_rows.csv"), Path("scores.csv"), score.load_card())  # what the command runs
        scores = pd.read_csv(own.cwd / "scores.csv")
        rule = json.loads((own.cwd / "models" / "rules" / f"{strategy}.json").read_text())
        expected = MemberColumns(strategy, "test", rule["calibration_logit_shift"]).read_all().calibrated.value()
        np.testing.assert_allclose(scores["probability"], expected, rtol=0, atol=1e-12, err_msg=strategy)
        counted = json.loads((own.cwd / "metrics" / "test" / f"{strategy}.json").read_text())["value_rule"]
        flagged_rows = (scores["flagged"].sum(), (scores["flagged"] & scores["Class"]).sum())
        assert flagged_rows == (counted["tp"]["ensemble"] + counted["fp"]["ensemble"], counted["tp"]["ensemble"])
        # every column's contribution: they sum to the members' mean logit minus the reference (a blend's members:
        # its own logits), whose members' probabilities the predictions hold as trained
        card = json.loads((own.cwd / "export" / "model.json").read_text())
        contributions = np.asarray(score.load_explainer(card)(model_feed(rows, card)))
        total = contributions.sum(axis=1)
        score.score(Path("test_rows.csv"), Path("reasons.csv"), card, reasons=3)
        first = pd.read_csv(own.cwd / "reasons.csv")[["reason_1", "reason_1_contribution"]]
        largest = contributions.max(axis=1)
        np.testing.assert_allclose(first["reason_1_contribution"], np.where(largest > 0, largest, np.nan), rtol=1e-12)
        member_logits = [np.log(p) - np.log1p(-p) for p in MemberColumns(strategy, "test", 0.0)]
        mean_logit = np.mean(member_logits, axis=0) + rule["calibration_logit_shift"]
        exact = np.ones(len(rows), dtype=bool)  # a blend's rows where no part's probability was clipped (LOGIT_CLIP)
        for part in (
            json.loads((own.cwd / "models" / "blend.json").read_text())["strategies"] if strategy == "blend" else []
        ):
            exact &= np.all([(p > LOGIT_CLIP) & (p < 1 - LOGIT_CLIP) for p in MemberColumns(part, "test", 0.0)], axis=0)
        assert exact.mean() > 0.9, strategy
        got = total[exact] + card["reasons"]["reference_logit"]
        np.testing.assert_allclose(got, mean_logit[exact], rtol=0, atol=1e-4, err_msg=strategy)


def test_plots_show_writes_one_page_with_the_charts_in_reading_order(repo, reproduced):
    repo.run("dvc", "plots", "show", "-o", "plots_page")
    page = repo.cwd / "plots_page" / "index.html"
    specs = chart_specs(page)
    histories = [f"plots_history_{s}_csv" for s in sorted(STRATEGIES)]
    assert list(specs) == ["headline", "roc", "precision_recall", "confusion", "cost_k", "importance", *histories]
    titles = [spec["title"]["text"] for spec in specs.values()]
    assert titles[0].startswith("Which strategy to deploy")
    assert titles[1].startswith("ROC curve on the test split") and "log scale" in titles[1]
    assert titles[2].startswith("Precision-recall curve on the test split")
    assert titles[3].startswith("Confusion matrices on the test split")
    assert titles[4].startswith("Validation cost as k varies")
    assert titles[5].startswith("Which columns matter")
    assert all(title.startswith("Training history: plots/history/") for title in titles[6:])
    recommended = json.loads((repo.cwd / "metrics" / "recommended.json").read_text())["strategy"]
    marked = {row["strategy"] for row in specs["headline"]["data"]["values"] if row["recommended"] == "1"}
    assert marked == {recommended}
    for name, spec in specs.items():  # every strategy's results in every chart; a history chart per network
        values = spec["data"]["values"]
        if name.startswith("plots_history_"):
            assert {row["filename"] for row in values} == {f"plots/history/{name.split('_')[2]}.csv"}
        else:
            assert list(dict.fromkeys(row["strategy"] for row in values)) == EVALUATED
            assert {(row["strategy"], row["order"]) for row in values} == {(s, str(i)) for i, s in enumerate(EVALUATED)}
    html = page.read_text()
    assert "_plots_confusion.png" not in html  # the confusion chart is drawn once, interactive
    positions = [html.index(f"_plots_{figure}.png") for figure in ("calibration", "prc", "roc")]
    assert html.index(f'id = "{histories[-1]}"') < min(positions)  # the PNG figures after the charts
    assert page.stat().st_size < 2_500_000


@needs_chromium
def test_plots_page_draws_every_chart_without_network(repo, reproduced, tmp_path):
    repo.run("dvc", "plots", "show")
    page = repo.cwd / "dvc_plots" / "index.html"
    assert "<script src=" not in page.read_text()  # the libraries are inlined from the page template
    result = check_page(page, tmp_path / "page.png")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "of which not local: 0" in result.stdout
    assert (tmp_path / "page.png").read_bytes().startswith(b"\x89PNG")
    # what a reader sees: legends name the strategies (not files) in the PNG figures' colours
    drawn = chart_contents(page)
    colours = [colour(i) for i in range(len(EVALUATED))]
    for chart in ("roc", "precision_recall", "cost_k"):
        assert drawn[chart]["legend"] == [list(entry) for entry in zip(EVALUATED, colours, strict=True)]
    assert sorted(line["stroke"] for line in drawn["roc"]["lines"]) == sorted(colours)
    assert drawn["plots_history_baseline_csv"]["legend"][:2] == [["0", colour(0)], ["1", colour(1)]]  # members
    headers = [text for role, text in drawn["confusion"]["texts"] if role == "title-text"]
    assert headers[: len(EVALUATED)] == list(EVALUATED)


def test_split_param_change_reruns_split_and_later_stages_only(own):
    params = own.cwd / "params.yaml"
    original = params.read_text()
    for change in ({"split__method": "time"}, {"split__group_duplicates": False}):
        set_params(params, **change)
        assert own.changed_stages() == {"split", "report"}, change  # report shows the params
        params.write_text(original)
    set_params(params, split__seed=7)
    # dvc status compares each stage with its own dependencies: only split (and report, which shows the params)
    # sees the change ...
    assert own.changed_stages() == {"split", "report"}
    # ... and repro carries it on to every stage downstream, leaving download and clean cached.
    assert ran(own.run("dvc", "repro")) == {"split", "scale", *TRAIN_STAGES, *LATE_STAGES}
    assert own.changed_stages() == set()


def assert_headline_diff_about(strategy: str, diff: dict):
    """`dvc metrics diff` lists only the headline numbers of the strategy and of the blend (made of it) and the
    recommendation, each one changed after rounding: at most 25 rows."""
    headline = {f"metrics/headline/{s}.json" for s in (strategy, "blend")}
    assert f"metrics/headline/{strategy}.json" in diff and set(diff) <= headline | {"metrics/recommended.json"}, diff
    rows = [row for file in diff.values() for row in file.values()]
    assert all(row["old"] != row["new"] for row in rows) and len(rows) <= 25


@pytest.mark.xdist_group("experimented")  # both tests of the experiment in one process: it is made once
def test_a_resampled_experiment_reruns_what_reads_it_and_diffs_only_resampled_and_blend_numbers(experimented):
    repo, experiment = experimented
    assert ran(experiment) == {"train@resampled", "train_blend", *LATE_STAGES}
    assert_headline_diff_about("resampled", json.loads(repo.run("dvc", "metrics", "diff", "--json")))
    # the documented way to read the experiments: the changed param, AP and the deployed cost, within 200 columns
    recipe = re.search(
        r"^dvc exp show --only-changed --drop .*$", (REPO / "docs" / "looking-at-results.md").read_text(), re.M
    )
    table = repo.run(*shlex.split(recipe[0])).splitlines()
    header = table[1].split()
    assert max(map(len, table)) <= 200, "\n".join(table)
    assert header[0] == "Experiment" and "networks.resampled.steps_per_epoch" in header
    assert {"metrics/headline/resampled.json:ap", "metrics/headline/resampled.json:value_cost"} <= set(header)


@needs_chromium
@pytest.mark.xdist_group("experimented")
def test_plots_diff_draws_each_revision_side_by_side(experimented, tmp_path):
    repo = experimented[0]  # the workspace holds other resampled results than HEAD
    repo.run("dvc", "plots", "diff", "HEAD", "-o", "diff_page")
    page = repo.cwd / "diff_page" / "index.html"
    result = check_page(page, tmp_path / "diff.png")
    assert result.returncode == 0, result.stdout + result.stderr
    drawn = chart_contents(page)
    for chart in ("headline", "roc", "precision_recall", "confusion", "cost_k", "plots_history_resampled_csv"):
        assert {"HEAD", "workspace"} <= {text for _, text in drawn[chart]["texts"]}, chart  # panel headers
    assert len(drawn["roc"]["lines"]) == 2 * len(EVALUATED)


@pytest.mark.parametrize(
    ("stage", "change"), [("logistic", {"train_logistic__C": 0.01}), ("gbdt", {"train_gbdt__l2_regularization": 0.5})]
)
def test_a_reference_param_change_reruns_only_its_stage_and_evaluate(own, stage, change):
    own.commit("results")
    set_params(own.cwd / "params.yaml", **change)
    assert own.changed_stages() == {f"train_{stage}", "report"}
    assert ran(own.run("dvc", "repro")) == {f"train_{stage}", "train_blend", *LATE_STAGES}
    assert_headline_diff_about(stage, json.loads(own.run("dvc", "metrics", "diff", "--json")))


def test_export_stage_packs_the_chosen_strategy_and_reruns_when_its_inputs_change(own, monkeypatch):
    card_file = own.cwd / "export" / "model.json"

    def chosen(strategy):  # the k and threshold evaluate chose on validation
        result = json.loads((own.cwd / "metrics" / "test" / f"{strategy}.json").read_text())
        return result["value_rule"]["k"]["ensemble"], result["chosen"]["threshold"]["ensemble"]

    card = json.loads(card_file.read_text())
    assert (card["strategy"], card["k"], card["calibration_logit_shift"]) == ("baseline", chosen("baseline")[0], 0)
    assert (card["cost_column"], card["cost_false_positive"]) == ("Amount", 5)
    assert card["members"] == 2 and card["inputs"][-1]["column"] == "Amount"
    assert (own.cwd / "export" / "model.onnx").exists()

    set_params(own.cwd / "params.yaml", export__strategy="weighted")
    assert own.changed_stages() == {"export"}
    assert ran(own.run("dvc", "repro")) == {"export"}
    card = json.loads(card_file.read_text())
    assert (card["strategy"], card["k"]) == ("weighted", chosen("weighted")[0])
    assert card["calibration_logit_shift"] < 0  # the weighted members are calibrated to the real positive rate

    set_params(own.cwd / "params.yaml", evaluate__cost_false_positive=50)  # false alarms dearer: a higher threshold
    assert own.changed_stages() == {"evaluate", "report"}  # no data stage reads evaluate's params
    assert ran(own.run("dvc", "repro")) == set(LATE_STAGES)  # explain: its dependency models/ holds models/rules/
    card = json.loads(card_file.read_text())
    assert (card["k"], card["cost_false_positive"]) == (chosen("weighted")[0], 50)
    assert ran(own.run("dvc", "repro")) == set()

    # score applies the rule evaluate scored: on the raw test rows it flags the rows evaluate counts as flagged
    monkeypatch.chdir(own.cwd)
    rows = raw_test_rows()
    rows.to_csv(own.cwd / "test_rows.csv", index=False)
    own.run("python", "-m", "stages.score", "test_rows.csv", "scores.csv")
    scores = pd.read_csv(own.cwd / "scores.csv")
    amount = json.loads((own.cwd / "metrics" / "test" / "weighted.json").read_text())["value_rule"]
    expected = flagged(scores["probability"].to_numpy(), rows["Amount"].to_numpy(), card["k"], 50)
    assert scores["flagged"].tolist() == expected.astype(int).tolist()
    assert (scores["flagged"].sum(), (scores["flagged"] & scores["Class"]).sum()) == (
        amount["tp"]["ensemble"] + amount["fp"]["ensemble"],
        amount["tp"]["ensemble"],
    )

    # A flat cost: clean keeps no Amount of its own; data/scaled, hence the training, stays as it is
    set_params(own.cwd / "params.yaml", data__cost=None, evaluate__cost_false_negative=133)
    assert ran(own.run("dvc", "repro")) == {"clean", "split", "scale", *LATE_STAGES}
    card, result = (
        json.loads(card_file.read_text()),
        json.loads((own.cwd / "metrics" / "test" / "weighted.json").read_text()),
    )
    assert "cost_column" not in card and "value_rule" not in result
    assert card["threshold"] == result["chosen"]["threshold"]["ensemble"]


def test_way_back_after_an_experiment_where_the_training_bytes_differ_from_the_commit(own):
    """The committed dvc.lock names baseline models and predictions this machine never made, as one committed from
    another processor does: the README's way back makes this machine's results again, deleting nothing, and
    fraudflow.verify accepts them."""
    work = own.cwd
    predictions = work / "data" / "predictions" / "baseline.parquet"
    ours = predictions.read_bytes()
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for entry in stage.get("deps", []) + stage.get("outs", []):
            if entry["path"] in ("models/baseline", "data/predictions/baseline.parquet"):
                entry["md5"] = "0" * 32 + (".dir" if entry["path"].startswith("models") else "")
    (work / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    own.commit("results from another machine")

    own.run("dvc", "exp", "run", "-S", "networks.baseline.epochs=2")
    assert predictions.read_bytes() != ours
    own.run("git", "checkout", "--", "params.yaml")
    back = own.run("dvc", "repro")
    # trained again, to the same bytes; export may come back from DVC's run cache of the first repro
    assert {"train@baseline", "train_blend", "evaluate"} <= ran(back) <= {"train@baseline", "train_blend", *LATE_STAGES}
    assert predictions.read_bytes() == ours
    assert {p.name for p in (work / "models" / "baseline").iterdir()} == {"member_0.keras", "member_1.keras"}
    assert (work / "export" / "model.json").exists()
    verified = subprocess.run(
        [sys.executable, "-m", "fraudflow.verify"], cwd=work, env=own.env, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "hashes of training outputs differ" in verified.stdout


def test_a_strategy_added_through_the_registry_alone_is_trained_and_compared_everywhere(own):
    """One registry entry and its params section: dvc.yaml's foreach trains it, and evaluate puts it in every
    table, the headline numbers and the plots data, beside the others."""
    registry = own.cwd / "fraudflow" / "strategies.py"
    entry = '        Strategy("focal", NETWORK, loss="binary_focal_crossentropy"),\n'
    added = entry + '        Strategy("tempered", NETWORK, balanced_odds=True, class_weights=True),\n'
    registry.write_text(registry.read_text().replace(entry, added))
    params = yaml.safe_load((own.cwd / "params.yaml").read_text())
    params["networks"]["tempered"] = {"epochs": 2}
    (own.cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "train@tempered" in ran(own.run("dvc", "repro"))
    assert (own.cwd / "models" / "tempered" / "member_1.keras").exists()
    assert (own.cwd / "metrics" / "headline" / "tempered.json").exists()
    verdicts = json.loads((own.cwd / "metrics" / "verdicts.json").read_text())
    assert {"baseline-tempered", "tempered-gbdt"} <= set(verdicts)
    assert json.loads((own.cwd / "metrics" / "test" / "tempered.json").read_text())["average_precision"]["mean"] > 0
    roc = pd.read_csv(own.cwd / "plots" / "roc.csv")
    assert list(dict.fromkeys(roc["strategy"]))[3:5] == ["focal", "tempered"]  # in registry order
    report = (own.cwd / "docs" / "results.md").read_text()
    assert report.count("| tempered |") >= 4 and "| baseline − tempered |" in report
