"""The real `dvc` commands on small data, in a temporary git repository holding a copy of the project."""

import json
import subprocess
import sys
from itertools import combinations

import pandas as pd
import pytest
import yaml
from conftest import (
    chart_contents,
    chart_specs,
    check_page,
    make_creditcard,
    needs_chromium,
    project_repo,
    raw_test_rows,
    set_params,
)

from fraudflow.common import EVALUATED
from fraudflow.costs import flagged
from fraudflow.figures import COLOURS

DATA_STAGES = ["download", "clean", "split", "scale"]
TRAIN_STAGES = ["train_baseline", "train_weighted", "train_resampled", "train_logistic", "train_gbdt"]
STRATEGIES = ["baseline", "weighted", "resampled"]  # the network's, which have a training history
# The synthetic data has no duplicate rows, so the grouped split has the stratified split's counts and no twins.
TEST_SPLIT = {"rows": 600, "frauds": 12, "duplicate_groups": 0, "rows_with_twin_in_other_split": 0}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repo with the project, small fast params, and CREDITCARD_URL pointing at a small CSV."""
    return project_repo(tmp_path_factory.mktemp("pipeline"), make_creditcard(rows=3000, frauds=60))


@pytest.fixture(scope="module")
def reproduced(repo):
    return repo.run("dvc", "repro")


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert ran(reproduced) == set(DATA_STAGES + TRAIN_STAGES + ["evaluate", "export"])
    work = repo.cwd
    assert (work / "data" / "raw" / "creditcard.csv").stat().st_size > 0
    assert {p.name for p in (work / "data" / "split").iterdir()} == {"train.parquet", "val.parquet", "test.parquet"}
    assert (work / "data" / "scaled" / "preprocessing.json").exists()
    for strategy in ("baseline", "weighted", "resampled"):
        assert {p.name for p in (work / "models" / strategy).iterdir()} == {"member_0.keras", "member_1.keras"}
        assert (work / "data" / "predictions" / f"{strategy}.parquet").exists()
        assert json.loads((work / "metrics" / "train" / f"{strategy}.json").read_text())["epochs_run"]["max"] <= 3
    assert json.loads((work / "metrics" / "split.json").read_text())["test"] == TEST_SPLIT


def test_second_repro_skips_every_stage(repo, reproduced):
    again = repo.run("dvc", "repro")
    assert ran(again) == set()
    assert all(
        f"Stage '{stage}' didn't change, skipping" in again
        for stage in DATA_STAGES + TRAIN_STAGES + ["evaluate", "export"]
    )


def test_metrics_show_gives_the_headline_numbers_and_the_detail_on_request(repo, reproduced):
    shown = json.loads(repo.run("dvc", "metrics", "show", "--json"))
    files = next(iter(shown.values()))["data"]
    assert list(files) == ["metrics/summary.json"]  # the only metrics file dvc.yaml declares
    headline = files["metrics/summary.json"]["data"]
    pairs = ["-".join(pair) for pair in combinations(EVALUATED, 2)]
    assert sorted(headline) == sorted([*EVALUATED, *pairs])
    for strategy in EVALUATED:
        keys = {"ap", "roc_auc", "recall_at_fpr", "cost", "precision", "recall", "amount_cost", "caught"}
        assert set(headline[strategy]) == keys
    assert headline["baseline-weighted"]["ap"] in {"baseline better", "weighted better", "not distinguishable"}

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
        for operating_point in ("chosen", "amount", "tutorial"):
            assert sum(test_metrics[operating_point][k]["ensemble"] for k in ("tp", "fp", "tn", "fn")) == 600
        ap = test_metrics["average_precision"]
        assert headline[strategy]["ap"].startswith(f"{ap['ensemble']:.3f} [{ap['ensemble_lower']:.3f}, ")
    assert json.loads((repo.cwd / "metrics" / "split.json").read_text())["test"] == TEST_SPLIT


def test_plots_show_writes_one_page_with_the_charts_in_reading_order(repo, reproduced):
    repo.run("dvc", "plots", "show", "-o", "plots_page")
    page = repo.cwd / "plots_page" / "index.html"
    specs = chart_specs(page)
    assert list(specs) == ["roc", "precision_recall", "confusion", "cost_k", "training"]
    titles = [spec["title"]["text"] for spec in specs.values()]
    assert titles[0].startswith("ROC curve on the test split") and "log scale" in titles[0]
    assert titles[1].startswith("Precision-recall curve on the test split")
    assert titles[2].startswith("Confusion matrices on the test split")
    assert titles[3].startswith("Validation cost as k varies")
    assert titles[4].startswith("Training history")
    for name, spec in specs.items():  # every strategy's results in every chart (no training history for logistic)
        expected = STRATEGIES if name == "training" else EVALUATED
        assert {row["filename"] for row in spec["data"]["values"]} == {f"{s}.csv" for s in expected}
    html = page.read_text()
    positions = [html.index(f"_plots_{figure}.png") for figure in ("confusion", "prc", "roc")]
    assert html.index('id = "training"') < min(positions)  # the PNG figures after the charts
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
    for chart in ("roc", "precision_recall"):
        assert [label for label, _ in drawn[chart]["legend"]] == list(COLOURS)
        assert all(colour == COLOURS[label] for label, colour in drawn[chart]["legend"])
        assert sorted(line["stroke"] for line in drawn[chart]["lines"]) == sorted(COLOURS[s] for s in EVALUATED)
    assert drawn["training"]["legend"][: len(STRATEGIES)] == [[s, COLOURS[s]] for s in STRATEGIES]
    headers = [text for role, text in drawn["confusion"]["texts"] if role == "title-text"]
    assert headers[: len(EVALUATED)] == list(EVALUATED)


def test_split_param_change_reruns_split_and_later_stages_only(repo, reproduced):
    params = repo.cwd / "params.yaml"
    original = params.read_text()
    for change in ({"split__method": "time"}, {"split__group_duplicates": False}):
        set_params(params, **change)
        assert repo.changed_stages() == {"split"}, change
        params.write_text(original)
    set_params(params, split__seed=7)
    # dvc status compares each stage with its own dependencies: only split sees the change ...
    assert repo.changed_stages() == {"split"}
    # ... and repro carries it on to every stage downstream, leaving download and clean cached.
    assert ran(repo.run("dvc", "repro")) == {"split", "scale", *TRAIN_STAGES, "evaluate", "export"}
    assert repo.changed_stages() == set()


def assert_headline_diff_about(strategy: str, diff: dict):
    """`dvc metrics diff` lists only the strategy's headline numbers and the verdicts of pairs with it, each one
    changed after rounding."""
    assert list(diff) == ["metrics/summary.json"]
    rows = diff["metrics/summary.json"]
    assert any(key.startswith(f"{strategy}.") for key in rows)
    assert all(strategy in key.split(".")[0].split("-") for key in rows), rows
    assert all(row["old"] != row["new"] for row in rows.values())


def test_a_resampled_experiment_reruns_two_stages_and_diffs_only_resampled_headline_numbers(repo, reproduced):
    repo.commit("results")
    experiment = repo.run("dvc", "exp", "run", "-S", "train_resampled.steps_per_epoch=4")
    assert ran(experiment) == {"train_resampled", "evaluate"}
    assert_headline_diff_about("resampled", json.loads(repo.run("dvc", "metrics", "diff", "--json")))


@needs_chromium
def test_plots_diff_draws_each_revision_side_by_side(repo, reproduced, tmp_path):
    # after the previous test the workspace holds other resampled results than HEAD
    repo.run("dvc", "plots", "diff", "HEAD", "-o", "diff_page")
    page = repo.cwd / "diff_page" / "index.html"
    result = check_page(page, tmp_path / "diff.png")
    assert result.returncode == 0, result.stdout + result.stderr
    drawn = chart_contents(page)
    for chart in ("roc", "precision_recall", "confusion", "cost_k", "training"):
        assert {"HEAD", "workspace"} <= {text for _, text in drawn[chart]["texts"]}, chart  # panel headers
    assert len(drawn["roc"]["lines"]) == 2 * len(EVALUATED)


@pytest.mark.parametrize(
    ("stage", "change"), [("logistic", {"train_logistic__C": 0.01}), ("gbdt", {"train_gbdt__l2_regularization": 0.5})]
)
def test_a_reference_param_change_reruns_only_its_stage_and_evaluate(repo, reproduced, stage, change):
    repo.commit("results")
    set_params(repo.cwd / "params.yaml", **change)
    assert repo.changed_stages() == {f"train_{stage}"}
    assert ran(repo.run("dvc", "repro")) == {f"train_{stage}", "evaluate"}
    assert_headline_diff_about(stage, json.loads(repo.run("dvc", "metrics", "diff", "--json")))


def test_export_stage_packs_the_chosen_strategy_and_reruns_when_its_inputs_change(repo, reproduced, monkeypatch):
    card_file = repo.cwd / "models" / "export" / "model.json"

    def chosen(strategy):  # the k and threshold evaluate chose on validation
        result = json.loads((repo.cwd / "metrics" / "test" / f"{strategy}.json").read_text())
        return result["amount"]["k"]["ensemble"], result["chosen"]["threshold"]["ensemble"]

    card = json.loads(card_file.read_text())
    assert (card["strategy"], card["k"], card["calibration_logit_shift"]) == ("baseline", chosen("baseline")[0], 0)
    assert (card["cost_column"], card["cost_false_positive"]) == ("Amount", 5)
    assert card["members"] == 2 and card["inputs"][-1]["column"] == "Amount"
    assert (repo.cwd / "models" / "export" / "saved_model" / "saved_model.pb").exists()

    set_params(repo.cwd / "params.yaml", export__strategy="weighted")
    assert repo.changed_stages() == {"export"}
    assert ran(repo.run("dvc", "repro")) == {"export"}
    card = json.loads(card_file.read_text())
    assert (card["strategy"], card["k"]) == ("weighted", chosen("weighted")[0])
    assert card["calibration_logit_shift"] < 0  # the weighted members are calibrated to the real fraud rate

    set_params(repo.cwd / "params.yaml", evaluate__cost_false_positive=50)  # false alarms dearer: a higher threshold
    assert ran(repo.run("dvc", "repro")) == {"evaluate", "export"}
    card = json.loads(card_file.read_text())
    assert (card["k"], card["cost_false_positive"]) == (chosen("weighted")[0], 50)
    assert ran(repo.run("dvc", "repro")) == set()

    # score applies the rule evaluate scored: on the raw test rows it flags the rows evaluate counts as flagged
    monkeypatch.chdir(repo.cwd)
    rows = raw_test_rows()
    rows.to_csv(repo.cwd / "test_rows.csv", index=False)
    repo.run("python", "-m", "stages.score", "test_rows.csv", "scores.csv")
    scores = pd.read_csv(repo.cwd / "scores.csv")
    amount = json.loads((repo.cwd / "metrics" / "test" / "weighted.json").read_text())["amount"]
    expected = flagged(scores["probability"].to_numpy(), rows["Amount"].to_numpy(), card["k"], 50)
    assert scores["flagged"].tolist() == expected.astype(int).tolist()
    assert (scores["flagged"].sum(), (scores["flagged"] & scores["Class"]).sum()) == (
        amount["tp"]["ensemble"] + amount["fp"]["ensemble"],
        amount["tp"]["ensemble"],
    )

    # A number cost: clean keeps no Amount of its own; scale's outputs, hence the training, stay as they are
    set_params(repo.cwd / "params.yaml", evaluate__cost_false_negative=133)
    assert ran(repo.run("dvc", "repro")) == {"clean", "split", "scale", "evaluate", "export"}
    card, result = (
        json.loads(card_file.read_text()),
        json.loads((repo.cwd / "metrics" / "test" / "weighted.json").read_text()),
    )
    assert "cost_column" not in card and "amount" not in result
    assert card["threshold"] == result["chosen"]["threshold"]["ensemble"]


def test_way_back_after_an_experiment_where_the_training_bytes_differ_from_the_commit(repo, reproduced):
    """The committed dvc.lock names baseline models and predictions this machine never made, as one committed from
    another processor does: the README's way back makes this machine's results again, deleting nothing, and
    fraudflow.verify accepts them."""
    work = repo.cwd
    repo.run("git", "checkout", "--", "params.yaml")
    repo.run("dvc", "repro")
    predictions = work / "data" / "predictions" / "baseline.parquet"
    ours = predictions.read_bytes()
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for entry in stage.get("deps", []) + stage.get("outs", []):
            if entry["path"] in ("models/baseline", "data/predictions/baseline.parquet"):
                entry["md5"] = "0" * 32 + (".dir" if entry["path"].startswith("models") else "")
    (work / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    repo.commit("results from another machine")

    repo.run("dvc", "exp", "run", "-S", "train_baseline.epochs=2")
    assert predictions.read_bytes() != ours
    repo.run("git", "checkout", "--", "params.yaml")
    back = repo.run("dvc", "repro")
    # trained again, to the same bytes; export may come back from DVC's run cache of the first repro
    assert {"train_baseline", "evaluate"} <= ran(back) <= {"train_baseline", "evaluate", "export"}
    assert predictions.read_bytes() == ours
    assert {p.name for p in (work / "models" / "baseline").iterdir()} == {"member_0.keras", "member_1.keras"}
    assert (work / "models" / "export" / "model.json").exists()
    verified = subprocess.run(
        [sys.executable, "-m", "fraudflow.verify"], cwd=work, env=repo.env, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "hashes of training outputs differ" in verified.stdout
