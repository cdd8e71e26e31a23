"""python -m fraudflow.verify: committed results against the work tree, on planted differences in a git repo."""

import json
import subprocess

import pytest
import yaml

from fraudflow import verify

METRICS = {
    "average_precision": {"ensemble": 0.8190123456, "ensemble_lower": 0.7441, "difference": 0.0008013711},
    "chosen": {"tp": {"ensemble": 80}},
}
HEADLINE = {"ap": "0.819 [0.741, 0.881]", "roc_auc": 0.974}
HISTORY = "member,epoch,loss\n0,1,0.0103149\n0,2,0.00812\n"
RULE = {"strategy": "baseline", "calibration_logit_shift": 0.0, "cost_column": "Amount", "k": 0.4466835922}
ROC = "strategy,order,fpr,tpr\nbaseline,0,0.0,0.0\nbaseline,0,0.0012,0.8125\nweighted,1,0.0,0.0\n"
LOCK = {
    "schema": "2.0",
    "stages": {
        "split": {"cmd": "python -m stages.split", "outs": [{"path": "data/split", "md5": "a" * 32 + ".dir"}]},
        "train@baseline": {
            "cmd": "python -m stages.train baseline",
            "deps": [{"path": "data/split", "md5": "a" * 32 + ".dir"}],
            "params": {"params.yaml": {"train": {"seed": 42}}},
            "outs": [{"path": "models/baseline", "md5": "b" * 32 + ".dir"}],
        },
    },
}


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A git repo holding committed results; the working directory."""
    files = {
        "metrics/test/baseline.json": json.dumps(METRICS),
        "metrics/split.json": json.dumps({"test": {"rows": 600}}),
        "metrics/headline/baseline.json": json.dumps(HEADLINE),
        "docs/results.md": "| baseline | 0.819 [0.741, 0.881] |\n",
        "plots/history/baseline.csv": HISTORY,
        "models/rules/baseline.json": json.dumps(RULE),
        "plots/roc.csv": ROC,
        "dvc.lock": yaml.safe_dump(LOCK),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *command], check=True)
    return tmp_path


def change_json(path, update):
    data = json.loads(path.read_text())
    update(data)
    path.write_text(json.dumps(data))


def test_unchanged_results_match(committed, capsys):
    assert verify.main([]) == 0
    assert "8 of 8 tracked files byte-identical with HEAD" in capsys.readouterr().out


def test_a_last_bit_difference_passes_and_is_reported(committed, capsys):
    metrics = committed / "metrics/test/baseline.json"
    change_json(metrics, lambda d: d["average_precision"].update(ensemble=0.8190123457))
    assert verify.main([]) == 0
    out = capsys.readouterr().out
    assert "metrics/test/baseline.json: 1 values differ, largest 1.2e-10 relative" in out
    assert "the results match HEAD: largest difference 1.2e-10 relative" in out
    assert "average_precision.ensemble: 0.8190123456 -> 0.8190123457" in out


def test_a_count_difference_fails_naming_the_file_and_key(committed, capsys):
    change_json(committed / "metrics/test/baseline.json", lambda d: d["chosen"]["tp"].update(ensemble=81))
    assert verify.main([]) == 1
    out = capsys.readouterr().out
    assert "metrics/test/baseline.json: chosen.tp.ensemble committed 80, now 81 (must match exactly)" in out
    assert "1 differences beyond the tolerance: the results do NOT match HEAD" in out


def test_a_float_beyond_the_tolerance_fails(committed, capsys):
    change_json(committed / "metrics/test/baseline.json", lambda d: d["average_precision"].update(ensemble_lower=0.75))
    assert verify.main([]) == 1
    assert "average_precision.ensemble_lower committed 0.7441, now 0.75 (7.9e-03 relative > 0.001)" in (
        capsys.readouterr().out
    )


def test_a_value_near_zero_may_differ_by_the_absolute_tolerance(committed, capsys):
    metrics = committed / "metrics/test/baseline.json"
    change_json(metrics, lambda d: d["average_precision"].update(difference=0.0008009763))  # 4.9e-04 relative
    assert verify.main([]) == 0
    change_json(metrics, lambda d: d["average_precision"].update(difference=0.0008213711))  # 2e-05 absolute
    assert verify.main([]) == 1
    assert "average_precision.difference committed 0.0008013711, now 0.0008213711" in capsys.readouterr().out


def test_a_file_outside_the_training_outputs_must_be_byte_identical(committed, capsys):
    (committed / "metrics/split.json").write_text(json.dumps({"test": {"rows": 600}}, indent=1))
    (committed / "stray.txt").write_text("new")
    assert verify.main([]) == 1
    out = capsys.readouterr().out
    assert "metrics/split.json: differs (must be byte-identical)" in out
    assert "stray.txt: new (not in the commit's files)" in out


def test_the_rule_chosen_on_validation_is_checked_and_every_strategys_curve_points_only_reported(committed, capsys):
    change_json(committed / "models/rules/baseline.json", lambda d: d.update(k=0.4466835925))  # a last bit
    assert verify.main([]) == 0
    assert "models/rules/baseline.json: 1 values differ" in capsys.readouterr().out
    change_json(committed / "models/rules/baseline.json", lambda d: d.update(k=0.5))
    assert verify.main([]) == 1
    assert "models/rules/baseline.json: k committed 0.4466835922, now 0.5" in capsys.readouterr().out

    change_json(committed / "models/rules/baseline.json", lambda d: d.update(k=0.4466835922))
    (committed / "plots/roc.csv").write_text(ROC.replace("0.8125", "0.875"))  # one row across a threshold
    assert verify.main([]) == 0
    assert "plots/roc.csv: curve redrawn, 1 of 3 points differ" in capsys.readouterr().out


def test_the_rounded_headline_numbers_and_the_results_document_are_reported_not_checked(committed, capsys):
    """A last bit of another processor can move a rounded headline number across its rounding edge; the detailed
    metrics it is rounded from are the ones checked."""
    change_json(committed / "metrics/headline/baseline.json", lambda d: d.update(ap="0.820 [0.741, 0.881]"))
    change_json(committed / "metrics/headline/baseline.json", lambda d: d.update(roc_auc=0.975))
    (committed / "docs/results.md").write_text("| baseline | 0.820 [0.741, 0.881] |\n")
    assert verify.main([]) == 0
    printed = capsys.readouterr().out
    assert "metrics/headline/baseline.json: 2 values differ" in printed and "docs/results.md: bytes differ" in printed


def test_history_values_are_reported_but_its_members_and_epochs_must_match(committed, capsys):
    history = committed / "plots/history/baseline.csv"
    history.write_text(HISTORY.replace("0.0103149", "0.0104"))  # 8e-3: training amplifies last bits over epochs
    assert verify.main([]) == 0
    assert "plots/history/baseline.csv: 1 values differ, largest 8.2e-03 relative" in capsys.readouterr().out
    history.write_text(HISTORY.replace("0,2,", "0,3,"))
    assert verify.main([]) == 1
    assert "plots/history/baseline.csv: row 2 epoch committed 2, now 3 (must match exactly)" in capsys.readouterr().out
    history.write_text(HISTORY.rsplit("0,2", 1)[0])
    assert verify.main([]) == 1
    assert "plots/history/baseline.csv: 2 rows committed, 1 now" in capsys.readouterr().out


def test_dvc_lock_may_differ_in_training_hashes_only(committed, capsys):
    lock = committed / "dvc.lock"
    other_model = yaml.safe_load(lock.read_text())
    other_model["stages"]["train@baseline"]["outs"][0]["md5"] = "c" * 32 + ".dir"
    lock.write_text(yaml.safe_dump(other_model))
    assert verify.main([]) == 0
    assert "dvc.lock: 1 hashes of training outputs differ" in capsys.readouterr().out

    other_split = yaml.safe_load(lock.read_text())
    other_split["stages"]["split"]["outs"][0]["md5"] = "d" * 32 + ".dir"
    lock.write_text(yaml.safe_dump(other_split))
    assert verify.main([]) == 1
    assert "dvc.lock: stage split: data/split differs (must be byte-identical)" in capsys.readouterr().out

    other_params = yaml.safe_load(lock.read_text())
    other_params["stages"]["split"]["outs"][0]["md5"] = "a" * 32 + ".dir"
    other_params["stages"]["train@baseline"]["params"]["params.yaml"]["train"]["seed"] = 7
    lock.write_text(yaml.safe_dump(other_params))
    assert verify.main([]) == 1
    assert "dvc.lock: stage train@baseline: its command or params differ" in capsys.readouterr().out
