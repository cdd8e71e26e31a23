"""The real `dvc` commands on small data, in a temporary git repository holding a copy of the project."""

import json
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import REPO, make_creditcard, python_environment, set_params

PROJECT_FILES = ["stages", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"]
DATA_STAGES = ["download", "clean", "split", "scale"]
TRAIN_STAGES = ["train_baseline", "train_weighted", "train_resampled"]
STRATEGIES = ["baseline", "weighted", "resampled"]
# The tests before the last one reproduce and check the stages up to evaluate: the export stage reads the
# ensemble layout (models/<strategy>/member_<i>.keras) that the new train stage writes, and the last test
# checks it. With that train stage in place, UP_TO can become the whole pipeline (no target) and "export" join
# the expected stages.
UP_TO = "evaluate"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repo with the project, small fast params, and CREDITCARD_URL pointing at a small CSV."""
    root = tmp_path_factory.mktemp("pipeline")
    work = root / "project"
    work.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / name)
    source_csv = root / "creditcard.csv"
    make_creditcard(rows=3000, frauds=60).to_csv(source_csv, index=False)
    set_params(
        work / "params.yaml",
        download__sha256="",
        train__batch_size=256,
        train__patience=2,
        train_baseline__epochs=3,
        train_weighted__epochs=3,
        train_resampled__epochs=3,
        train_resampled__steps_per_epoch=5,
    )
    env = {**python_environment(), "CREDITCARD_URL": str(source_csv)}
    runner = Runner(work, env)
    runner.run("git", "init", "-q")
    runner.run("dvc", "init", "-q")
    shutil.copytree(REPO / ".dvc" / "plots", work / ".dvc" / "plots")  # the project's plot templates
    runner.run("dvc", "config", "core.analytics", "false")
    runner.commit("project")
    return runner


class Runner:
    def __init__(self, cwd, env):
        self.cwd, self.env = cwd, env

    def run(self, *command) -> str:
        result = subprocess.run(command, cwd=self.cwd, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def commit(self, message: str):
        self.run("git", "add", "-A")
        self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message)

    def changed_stages(self, *targets) -> set[str]:
        return set(json.loads(self.run("dvc", "status", "--json", *targets)))


@pytest.fixture(scope="module")
def reproduced(repo):
    return repo.run("dvc", "repro", UP_TO)


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_runs_every_stage_and_writes_outputs(repo, reproduced):
    assert ran(reproduced) == set(DATA_STAGES + TRAIN_STAGES + ["evaluate"])
    work = repo.cwd
    assert (work / "data" / "raw" / "creditcard.csv").stat().st_size > 0
    assert {p.name for p in (work / "data" / "split").iterdir()} == {"train.parquet", "val.parquet", "test.parquet"}
    assert (work / "data" / "scaled" / "scaler.json").exists()
    for strategy in ("baseline", "weighted", "resampled"):
        assert (work / "models" / f"{strategy}.keras").exists()
        assert (work / "data" / "predictions" / f"{strategy}.parquet").exists()
        assert json.loads((work / "metrics" / "train" / f"{strategy}.json").read_text())["epochs_run"] <= 3
    assert json.loads((work / "metrics" / "split.json").read_text())["test"] == {"rows": 600, "frauds": 12}


def test_second_repro_skips_every_stage(repo, reproduced):
    again = repo.run("dvc", "repro", UP_TO)
    assert ran(again) == set()
    assert all(
        f"Stage '{stage}' didn't change, skipping" in again for stage in DATA_STAGES + TRAIN_STAGES + ["evaluate"]
    )


def test_metrics_show_lists_every_strategy_side_by_side(repo, reproduced):
    shown = json.loads(repo.run("dvc", "metrics", "show", "--json"))
    files = next(iter(shown.values()))["data"]
    for strategy in STRATEGIES:
        test_metrics = files[f"metrics/test/{strategy}.json"]["data"]
        assert {"tp", "fp", "tn", "fn", "precision", "recall", "roc_auc", "average_precision", "log_loss"} <= set(
            test_metrics
        )
        assert sum(test_metrics[k] for k in ("tp", "fp", "tn", "fn")) == 600
        assert f"metrics/train/{strategy}.json" in files
    assert files["metrics/split.json"]["data"]["test"] == {"rows": 600, "frauds": 12}


def test_plots_show_writes_one_page_with_the_roc_curves(repo, reproduced):
    repo.run("dvc", "plots", "show", "-o", "plots_page")
    page = repo.cwd / "plots_page" / "index.html"
    html = page.read_text()
    assert "ROC curve (test split)" in html and '"fpr"' in html and '"tpr"' in html
    assert all(f'"filename": "{strategy}.csv"' in html for strategy in STRATEGIES)
    assert "roc.png" in html
    assert page.stat().st_size < 2_000_000


def test_split_param_change_reruns_split_and_later_stages_only(repo, reproduced):
    set_params(repo.cwd / "params.yaml", split__seed=7)
    # dvc status compares each stage with its own dependencies: only split sees the change ...
    assert repo.changed_stages("--with-deps", UP_TO) == {"split"}
    # ... and repro carries it on to every stage downstream, leaving download and clean cached.
    assert ran(repo.run("dvc", "repro", UP_TO)) == {"split", "scale", *TRAIN_STAGES, "evaluate"}
    assert repo.changed_stages("--with-deps", UP_TO) == set()


def test_resampled_param_change_reruns_only_train_resampled_and_evaluate(repo, reproduced):
    repo.commit("results")
    set_params(repo.cwd / "params.yaml", train_resampled__steps_per_epoch=4)
    assert repo.changed_stages("--with-deps", UP_TO) == {"train_resampled"}
    assert ran(repo.run("dvc", "repro", UP_TO)) == {"train_resampled", "evaluate"}
    diff = json.loads(repo.run("dvc", "metrics", "diff", "--json"))
    assert "metrics/train/resampled.json" in diff and "metrics/train/baseline.json" not in diff


def test_export_stage_packs_the_chosen_strategy_and_reruns_when_its_params_change(repo, reproduced):
    """The contract with the train stage: it writes models/<strategy>/member_<i>.keras."""
    assert ran(repo.run("dvc", "repro")) == {"export"}
    card_file = repo.cwd / "models" / "export" / "model.json"
    card = json.loads(card_file.read_text())
    assert (card["strategy"], card["threshold"]) == ("baseline", 0.5)
    assert card["members"] >= 1 and card["columns"][-1] == "Amount"
    assert (repo.cwd / "models" / "export" / "saved_model" / "saved_model.pb").exists()

    set_params(repo.cwd / "params.yaml", export__strategy="weighted")
    assert repo.changed_stages() == {"export"}
    assert ran(repo.run("dvc", "repro")) == {"export"}
    assert json.loads(card_file.read_text())["strategy"] == "weighted"

    set_params(repo.cwd / "params.yaml", evaluate__threshold=0.3)
    assert ran(repo.run("dvc", "repro")) == {"evaluate", "export"}
    assert json.loads(card_file.read_text())["threshold"] == 0.3
    assert ran(repo.run("dvc", "repro")) == set()

    repo.run("python", "-m", "stages.score", "data/raw/creditcard.csv", "scores.csv")
    scores = pd.read_csv(repo.cwd / "scores.csv")
    assert len(scores) == 3000 and scores["flagged"].tolist() == (scores["probability"] > 0.3).astype(int).tolist()
